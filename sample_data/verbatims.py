"""What synthetic patients write: lay verbatim reactions in the patient app's reports, with the true PTs (issue 17).

Doctors and pharmacists report MedDRA PT names; a patient types what happened in their own words. This module
rewrites the ``reactions`` of every ``patient_app`` case line the generator produced:

* each reaction becomes ``{"verbatim": text, "language": zh|en|ja, "onset_date": ...}`` without ``pt``/``soc``;
  the language follows the reporting country (CN -> zh, JP -> ja, elsewhere en);
* the text comes from the synthetic terminology's lay synonyms or the PT's own name in that language
  (``sample_data.terminology.verbatim``: filler words, English typos, a dropped CJK character);
* ``MERGE_P`` of cases with two or more reactions name the first two in ONE sentence ("dizzy and felt sick",
  "头晕，想吐"): one inbox reaction, two true PTs, the earlier onset; ``MIXED_P`` of such Chinese or Japanese
  sentences write the second reaction in English;
* ``UNCOVERED_P`` of reactions are written with a vague phrase no terminology entry covers ("felt weird",
  "不舒服"): the true PT is known to the ground truth but cannot be coded (``covered`` false).

The words of one case are drawn from a generator seeded by ``(seed, case_id)``, so a follow-up version repeats
its initial version's words and the rest of the world's random stream is untouched. Lines that are not valid
JSON (the generator's truncated uploads) are left as they are.

The ground truth is ``ground_truth_verbatims.parquet``: one row per verbatim reaction with ``case_id``,
``version``, ``reaction_seq``, ``verbatim``, ``language``, ``true_pts`` (list) and ``covered``.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from sample_data.terminology import verbatim

TRUTH_FILE = "ground_truth_verbatims.parquet"
LANGUAGE_OF_COUNTRY = {"CN": "zh", "JP": "ja"}
MERGE_P = 0.35
MIXED_P = 0.15
UNCOVERED_P = 0.03
# vague complaints that name no reaction the terminology knows (the coder must leave them uncoded)
UNCOVERED = {
    "en": ("felt weird", "not feeling myself", "just off", "felt strange all day"),
    "zh": ("不舒服", "怪怪的", "浑身不对劲"),
    "ja": ("調子が悪い", "変な感じ", "なんとなく不調"),
}
TRUTH_SCHEMA = {
    "case_id": pl.String,
    "version": pl.Int64,
    "reaction_seq": pl.Int64,
    "verbatim": pl.String,
    "language": pl.String,
    "true_pts": pl.List(pl.String),
    "covered": pl.Boolean,
}


def _case_words(seed: int, doc: dict) -> tuple[list[dict], list[dict]]:
    """(new reactions, truth rows) for one patient-app case version."""
    rng = np.random.default_rng([seed, 1717, zlib.crc32(str(doc["case_id"]).encode())])
    lang = LANGUAGE_OF_COUNTRY.get(doc.get("country") or "", "en")
    groups = [[r] for r in doc["reactions"]]
    if len(groups) >= 2 and rng.random() < MERGE_P:
        groups = [groups[0] + groups[1], *groups[2:]]
    out, truth = [], []
    for seq, group in enumerate(groups):
        pts = [r["pt"] for r in group]
        onsets = [r.get("onset_date") for r in group if r.get("onset_date")]
        covered = rng.random() >= UNCOVERED_P
        if covered:
            mixed = lang != "en" and len(pts) == 2 and rng.random() < MIXED_P
            text = verbatim(rng, pts, lang, mixed=mixed)
        else:
            options = UNCOVERED[lang]
            text = options[int(rng.integers(len(options)))]
        out.append({"verbatim": text, "language": lang, "onset_date": min(onsets) if onsets else None})
        truth.append(
            {
                "case_id": doc["case_id"],
                "version": doc["version"],
                "reaction_seq": seq,
                "verbatim": text,
                "language": lang,
                "true_pts": pts,
                "covered": covered,
            }
        )
    return out, truth


def patient_verbatims(lines_by_month: dict[str, list[str]], seed: int) -> tuple[dict[str, list[str]], pl.DataFrame]:
    """Case lines with patient-app reactions rewritten as verbatims, and the truth frame (see module doc)."""
    out: dict[str, list[str]] = {}
    truth: list[dict] = []
    for month, lines in lines_by_month.items():
        new = []
        for line in lines:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                new.append(line)  # a truncated upload: quarantined by the loader, words or not
                continue
            if doc.get("source") != "patient_app" or not doc.get("reactions"):
                new.append(line)
                continue
            doc["reactions"], rows = _case_words(seed, doc)
            truth.extend(rows)
            new.append(json.dumps(doc, ensure_ascii=False))
        out[month] = new
    return out, pl.DataFrame(truth, schema=TRUTH_SCHEMA)


def write_patient_verbatims(out_dir: Path, lines_by_month: dict[str, list[str]], seed: int, enabled: bool):
    """The generator's hook: rewrite patients' reactions as verbatims (``enabled``) and write the truth file;
    without verbatims the truth file of an earlier world is removed. Returns the (possibly new) lines."""
    path = Path(out_dir) / TRUTH_FILE
    if not enabled:
        path.unlink(missing_ok=True)
        return lines_by_month
    lines, truth = patient_verbatims(lines_by_month, seed)
    truth.write_parquet(path, statistics=False)
    return lines

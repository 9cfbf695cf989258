"""Coding precision/recall per language on the synthetic world's labelled verbatims (issue 17).

    .venv/bin/python benchmarks/bench_meddra_coding.py [--n 400] [--seed 17]

Writes the synthetic terminology (MedDRA file format) to a temporary folder, loads it with the real loader, codes
the labelled verbatims of ``sample_data.terminology.labelled_set`` (lay synonyms, filler words, typos, two
reactions in a line, mixed Chinese/Japanese + English) and prints one line per language."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sample_data.terminology import VERSION, labelled_set, write_terminology
from warehouse.schema import connect
from warehouse.terminology.coder import Coder, precision_recall
from warehouse.terminology.meddra import load_release


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="verbatims per language")
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(str(Path(tmp, "w.duckdb")))
        for folder in write_terminology(Path(tmp, "meddra")):
            load_release(con, folder)
        code_of = dict(
            con.execute("SELECT name, code FROM meddra_term WHERE level = 'pt' AND language = 'en'").fetchall()
        )
        rows = labelled_set(seed=args.seed, n_per_language=args.n)
        print(f"{'language':<8} {'verbatims':>9} {'precision':>9} {'recall':>7} {'review':>7} {'ms/term':>7}  methods")
        for lang in ("en", "zh", "ja", "mixed"):
            coder = Coder(con, VERSION, None if lang == "mixed" else lang)
            lab = [(r["verbatim"], {code_of[p] for p in r["true_pts"]}) for r in rows if r["language"] == lang]
            t0 = time.perf_counter()
            m = precision_recall(coder, lab)
            ms = 1000 * (time.perf_counter() - t0) / max(1, len(lab))
            print(
                f"{lang:<8} {m['verbatims']:>9} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['to_review']:>7.1%} "
                f"{ms:>7.2f}  {m['methods']}"
            )
        con.close()


if __name__ == "__main__":
    main()

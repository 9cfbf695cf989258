"""Code verbatim reaction text to MedDRA: verbatim -> LLT -> PT, with the method and a confidence (issue 17).

Methods, tried in this order on each verbatim:

``exact``       the text is a current LLT name as written;
``normalised``  equal after Unicode NFKC, case folding, punctuation and space removal;
``split``       the text names several reactions: cut at separators (``,`` ``;`` "and", ``，`` ``、`` ``和`` ``と``...)
                and at LLT names found inside it, each fragment coded on its own;
``contained``   one LLT name found inside longer text ("i had a headache after the shot", "吃完药后头晕"):
                longest dictionary match, word by word in alphabetic scripts and character by character in
                Chinese and Japanese (no segmentation model needed: the dictionary is the lexicon);
``fuzzy``       edit-distance similarity to the closest LLT name at or above ``FUZZY_CUTOFF``: in alphabetic
                scripts every window of 1-5 words is compared with the optimal-string-alignment distance
                (rapidfuzz ``OSA``: insertions, deletions, substitutions and adjacent transpositions each cost 1,
                similarity = 1 - d / max length), so "coguh" and "injectiion site erythema" are found inside
                longer text; in Chinese/Japanese the best partial alignment (rapidfuzz ``partial_ratio``);
``unmatched``   nothing above; ``pt_code`` is null.

Only current LLTs are used for coding (MedDRA's rule: non-current LLTs stay for legacy data). A fragment whose
name maps to several PTs, a fuzzy match below ``REVIEW_BELOW`` and an unmatched text are flagged
``needs_review`` (the review queue: ``review_queue()``).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import asdict, dataclass

import duckdb
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

FUZZY_CUTOFF = 0.79  # similarity 0..1: one slip in a five-letter word is 0.8
REVIEW_BELOW = 0.92
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
# separators between reactions; Japanese particles (と, や) are not cut on: they occur inside words, and the
# character-level longest match below separates "血が出たと注射したところが赤い" without them
_SEP = re.compile(r"\s*(?:[,;/+&，、；。！!？?]|\band\b|\bwith\b|\bplus\b|还有|和|及|与|跟|还)\s*")
_MAX_WORDS = 5


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, spaces collapsed (dropped between CJK characters)."""
    t = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    t = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in t)
    t = " ".join(t.split())
    return unicodedata.normalize("NFKC", re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])", "", t))


@dataclass(frozen=True)
class Coded:
    fragment: str
    llt_code: int | None
    llt_name: str | None
    pt_code: int | None
    pt_name: str | None
    method: str
    confidence: float
    needs_review: bool
    language: str | None = None


class Coder:
    """The coding dictionary of one loaded release (version; one language or all languages of that version)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, version: str | None = None, language: str | None = None):
        if version is None:
            row = con.execute("SELECT meddra_version FROM meddra_release ORDER BY loaded_at DESC LIMIT 1").fetchone()
            if row is None:
                raise ValueError("no MedDRA release is loaded (pvtrace meddra load DIR)")
            version = row[0]
        params = [version] + ([language] if language else [])
        lang_sql = " AND l.language = ?" if language else ""
        rows = con.execute(
            "SELECT l.llt_name, l.llt_code, l.pt_code, t.name, l.language FROM meddra_llt l JOIN meddra_term t "
            "ON t.meddra_version = l.meddra_version AND t.language = l.language AND t.level = 'pt' AND t.code = l.pt_code "
            f"WHERE l.current AND l.meddra_version = ?{lang_sql} ORDER BY l.language, l.llt_code",
            params,
        ).fetchall()
        if not rows:
            raise ValueError(f"MedDRA {version} {language or ''} is not loaded".replace("  ", " "))
        self.version, self.language = version, language
        self.exact: dict[str, tuple] = {}
        self.norm: dict[str, set[tuple]] = {}
        self.first: dict[str, tuple] = {}
        for name, llt, pt, pt_name, lang in rows:
            entry = (llt, name, pt, pt_name, lang)
            self.exact.setdefault(name, entry)
            key = normalise(name)
            if key:
                self.norm.setdefault(key, set()).add(entry)
                self.first.setdefault(key, entry)
        self._keys = list(self.norm)
        self._max_len = max(len(k) for k in self._keys)

    def _entry(self, key: str) -> tuple[tuple, bool]:
        """The LLT for a normalised name and whether it is ambiguous (several PTs)."""
        return self.first[key], len({e[2] for e in self.norm[key]}) > 1

    def _coded(self, fragment: str, key: str, method: str, confidence: float) -> Coded:
        (llt, name, pt, pt_name, lang), ambiguous = self._entry(key)
        return Coded(fragment, llt, name, pt, pt_name, method, confidence, ambiguous or confidence < REVIEW_BELOW, lang)

    def _contained(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping longest dictionary matches inside normalised text: (start, end, key)."""
        found, i, n = [], 0, len(text)
        cjk = bool(_CJK.search(text))
        while i < n:
            if not cjk and i > 0 and text[i - 1] != " ":  # words start after a space in alphabetic scripts
                i += 1
                continue
            hit = None
            for j in range(min(n, i + self._max_len), i, -1):
                k = text[i:j]
                if k in self.norm and (cjk or j == n or text[j] == " "):
                    hit = (i, j, k)
                    break
            if hit:
                found.append(hit)
                i = hit[1]
            else:
                i += 1
        return found

    def _one(self, fragment: str) -> list[Coded]:
        if fragment.strip() in self.exact:
            key = normalise(fragment)
            return [self._coded(fragment, key, "exact", 1.0)]
        key = normalise(fragment)
        if not key:
            return []
        if key in self.norm:
            return [self._coded(fragment, key, "normalised", 1.0)]
        if _CJK.search(key):
            return self._one_cjk(fragment, key)
        return self._one_words(fragment, key)

    def _one_cjk(self, fragment: str, key: str) -> list[Coded]:
        hits = self._contained(key)
        if hits:
            covered = sum(len(k) for _, _, k in hits) / max(1, len(key.replace(" ", "")))
            conf = round(min(1.0, 0.8 + 0.2 * covered), 3) if len(hits) == 1 else 1.0
            method = "contained" if len(hits) == 1 else "split"
            return [self._coded(fragment, k, method, conf) for _, _, k in hits]
        best = process.extractOne(
            key, [k for k in self._keys if len(k) >= 3], scorer=fuzz.partial_ratio, score_cutoff=100 * FUZZY_CUTOFF
        )
        if best is not None:
            return [self._coded(fragment, best[0], "fuzzy", round(best[1] / 100.0, 3))]
        return []

    def _one_words(self, fragment: str, key: str) -> list[Coded]:
        """Windows of 1-5 words matched exactly or by OSA similarity; the best non-overlapping ones kept."""
        words = key.split()
        cands = []  # (weight = characters x similarity^4: an exact window beats a longer near-miss, start, end, key)
        for n in range(1, min(len(words), _MAX_WORDS) + 1):
            for i in range(len(words) - n + 1):
                w = " ".join(words[i : i + n])
                if w in self.norm:
                    cands.append((len(w), 1.0, i, i + n, w))
                elif len(w) >= 4:
                    best = process.extractOne(
                        w, self._keys, scorer=OSA.normalized_similarity, score_cutoff=FUZZY_CUTOFF
                    )
                    if best is not None:
                        cands.append((len(w) * best[1] ** 4, best[1], i, i + n, best[0]))
        chosen, used = [], set()
        for _, score, i, j, k in sorted(cands, key=lambda c: (-c[0], -c[1], c[2])):
            if used.isdisjoint(range(i, j)):
                used.update(range(i, j))
                chosen.append((i, score, k))
        chosen.sort()
        if len(chosen) > 1:
            return [self._coded(fragment, k, "split", round(score, 3)) for _, score, k in chosen]
        return [
            self._coded(fragment, k, "contained" if score == 1.0 else "fuzzy", round(score, 3))
            for _, score, k in chosen
        ]

    def code(self, verbatim: str) -> list[Coded]:
        """Every reaction named in ``verbatim``; a single ``unmatched`` row (codes null) when none is found."""
        if not isinstance(verbatim, str):
            raise ValueError(f"a verbatim must be text, got {type(verbatim).__name__}")
        whole = self._one(verbatim) if verbatim.strip() in self.exact or normalise(verbatim) in self.norm else None
        if whole:
            return whole
        parts = [p for p in _SEP.split(verbatim) if p and p.strip()]
        out: list[Coded] = []
        leftover = []  # fragments that named nothing: kept as an unmatched part, so the review queue sees them
        for p in parts:
            got = self._one(p)
            out += got
            if not got and any(ch.isalpha() for ch in p):
                leftover.append(p)
        seen, unique = set(), []
        for c in out:  # one row per PT
            if c.pt_code not in seen:
                seen.add(c.pt_code)
                unique.append(c)
        if len(unique) > 1:
            unique = [dataclasses.replace(c, method="split") for c in unique]
        if unique:
            return unique + [Coded(p, None, None, None, None, "unmatched", 0.0, True, self.language) for p in leftover]
        return [Coded(verbatim, None, None, None, None, "unmatched", 0.0, True, self.language)]

    def code_json(self, verbatim: str) -> dict:
        """One object per verbatim: the first coded term at top level, every term in ``parts``."""
        parts = self.code(verbatim)
        top = asdict(parts[0])
        top.pop("fragment")
        return {
            "term": verbatim,
            **top,
            "meddra_version": self.version,
            "parts": [asdict(p) for p in parts],
        }


def save_coding(con: duckdb.DuckDBPyConnection, coder: Coder, verbatims: list[str]) -> int:
    """Code and store (replacing earlier codings of the same verbatims in this version); returns rows written."""
    rows = []
    for v in dict.fromkeys(verbatims):
        for i, c in enumerate(coder.code(v)):
            rows.append(
                (
                    v,
                    c.language,
                    coder.version,
                    i,
                    c.fragment,
                    c.llt_code,
                    c.pt_code,
                    c.method,
                    c.confidence,
                    c.needs_review,
                )
            )
    con.execute("CREATE TEMP TABLE IF NOT EXISTS _v (verbatim VARCHAR)")
    con.execute("DELETE FROM _v")
    con.executemany("INSERT INTO _v VALUES (?)", [(v,) for v in dict.fromkeys(verbatims)])
    con.execute(
        "DELETE FROM meddra_coding WHERE meddra_version = ? AND verbatim IN (SELECT verbatim FROM _v)", [coder.version]
    )
    if rows:
        con.executemany(
            "INSERT INTO meddra_coding (verbatim, language, meddra_version, part_seq, fragment, llt_code, pt_code, "
            "method, confidence, needs_review) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def review_queue(con: duckdb.DuckDBPyConnection, version: str | None = None) -> list[dict]:
    """Coded verbatims that a person should check (fuzzy below the review threshold, ambiguous, unmatched)."""
    sql = (
        "SELECT verbatim, language, meddra_version, part_seq, fragment, llt_code, pt_code, method, confidence "
        "FROM meddra_coding WHERE needs_review"
        + (" AND meddra_version = ?" if version else "")
        + " ORDER BY confidence, verbatim"
    )
    cur = con.execute(sql, [version] if version else [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def precision_recall(coder: Coder, labelled: list[tuple[str, set[int]]]) -> dict:
    """Micro-averaged precision and recall of PT codes over ``(verbatim, true PT codes)`` pairs.

    precision = correct PTs / PTs coded, recall = correct PTs / true PTs (a verbatim naming two reactions counts
    twice); also the share of verbatims sent to the review queue and the methods used."""
    tp = fp = fn = review = 0
    methods: dict[str, int] = {}
    for text, truth in labelled:
        coded = coder.code(text)
        got = {c.pt_code for c in coded if c.pt_code is not None}
        tp, fp, fn = tp + len(got & truth), fp + len(got - truth), fn + len(truth - got)
        review += any(c.needs_review for c in coded)
        for c in coded:
            methods[c.method] = methods.get(c.method, 0) + 1
    n = len(labelled)
    return {
        "verbatims": n,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "to_review": review / n if n else float("nan"),
        "methods": dict(sorted(methods.items())),
    }

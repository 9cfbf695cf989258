"""Patients' verbatims coded during the run, and the planted batch defect found through them (issue 17).

    nice -n 10 .venv/bin/python benchmarks/bench_verbatim_coding.py --seed 42 --scale 1.0 --work /tmp/verbatims

Generates the same synthetic world twice (same seed): once with every reaction a PT name, once with the patient
app's reactions written as verbatims (``generate_world(verbatims=True)``); loads the synthetic terminology (MedDRA
file format, invented codes) into each warehouse, runs the whole graph (``run_pipeline``, no reports), and runs the
verbatim world a second time at SMQ narrow level (``PVTRACE_EVENT_LEVEL=smq_narrow``) on the same warehouse, so PT-
and SMQ-level signals sit in one register. Prints:

* coding precision / recall per language against ``ground_truth_verbatims.parquet`` (covered terms; ``recall_all``
  counts the uncoverable vague phrases as misses), the share sent to review, and the coding step's time;
* for the planted batch defect, in each run: counted cases linked to the batch with a defect PT (or SMQ), and the
  batch-level register rows (event, level, methods, first detected and the delay from the defect's start).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import polars as pl

from assets.cli import run_pipeline
from sample_data.terminology import SMQS, write_terminology
from sample_data.verbatims import TRUTH_FILE
from sample_data.world import generate_world
from warehouse.queries import read_model
from warehouse.schema import connect
from warehouse.terminology.case_coding import code_case_reactions, coding_scores
from warehouse.terminology.hierarchy import EVENT_LEVEL_ENV
from warehouse.terminology.meddra import load_release

SMQ = "Hypersensitivity (synthetic SMQ)"


def _load_terminology(warehouse: Path, root: Path) -> None:
    con = connect(str(warehouse))
    try:
        for folder in write_terminology(root / "meddra"):
            load_release(con, folder)
    finally:
        con.close()


def _run(inbox: Path, warehouse: Path, output: Path, level: str) -> float:
    os.environ[EVENT_LEVEL_ENV] = level
    t0 = time.perf_counter()
    try:
        run_pipeline(str(inbox), str(warehouse), str(output), quiet=True, reports="none")
    finally:
        os.environ.pop(EVENT_LEVEL_ENV, None)
    return time.perf_counter() - t0


def _defect(warehouse: Path, defect: dict, level: str) -> list[str]:
    start = dt.date.fromisoformat(defect["starts_on"])
    pts = defect["pts"] if level == "pt" else list(SMQS[SMQ][0])
    con = connect(str(warehouse), read_only=True)
    try:
        read_model.install(con)
        (cases,) = con.execute(
            "SELECT count(DISTINCT case_id) FROM pv_case_event(NULL) WHERE batch_id = ? AND list_contains(?, pt)",
            [defect["batch_id"], pts],
        ).fetchone()
        rows = con.execute(
            "SELECT pt, event_level, methods, first_detected FROM signal WHERE level = 'batch' AND batch_id = ? "
            "AND event_level = ? ORDER BY first_detected, pt",
            [defect["batch_id"], level],
        ).fetchall()
    finally:
        con.close()
    out = [f"    counted cases linked to the batch with a defect {'PT' if level == 'pt' else 'SMQ PT'}: {cases}"]
    for pt, lvl, methods, first in rows:
        out.append(f"    batch signal {pt} [{lvl}]: {', '.join(methods)}; first {first} ({(first - start).days} d)")
    if not rows:
        out.append("    no batch-level signal for the defect batch at this level")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", required=True, help="a scratch folder (emptied)")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report: list[str] = []
    for name, verbatims in (("PT names", False), ("verbatims", True)):
        root = work / ("verbatims" if verbatims else "pts")
        truth = generate_world(root / "inbox", seed=args.seed, scale=args.scale, verbatims=verbatims)
        defect = next(s for s in truth["signals"] if s["kind"] == "batch_defect")
        wh = root / "pv.duckdb"
        _load_terminology(wh, root)
        took = _run(root / "inbox", wh, root / "output", "pt")
        report.append(f"world with {name} (seed {args.seed}, scale {args.scale}): pipeline {took:.0f} s")
        report += _defect(wh, defect, "pt")
        if not verbatims:
            continue
        con = connect(str(wh))
        try:
            labelled = pl.read_parquet(root / "inbox" / TRUTH_FILE)
            scores = coding_scores(con, labelled)
            t0 = time.perf_counter()
            counts = code_case_reactions(con)  # the coding step alone, as the run does it
            coding_s = time.perf_counter() - t0
        finally:
            con.close()
        report.append(
            f"  coding step: {coding_s:.1f} s for {counts['verbatim_reactions']:,} verbatim reactions; {counts}"
        )
        with pl.Config(tbl_rows=10, tbl_cols=10, float_precision=3, tbl_hide_dataframe_shape=True):
            report.append(str(scores))
        took = _run(root / "inbox", wh, root / "output", "smq_narrow")
        report.append(f"  same warehouse, run at SMQ narrow level: pipeline {took:.0f} s")
        report += _defect(wh, defect, "smq_narrow")
        con = connect(str(wh), read_only=True)
        try:
            levels = con.execute("SELECT event_level, count(*) FROM signal GROUP BY 1 ORDER BY 1").fetchall()
        finally:
            con.close()
        report.append(f"  register signals by event level: {json.dumps(dict(levels))}")
    print("\n".join(report))


if __name__ == "__main__":
    main()

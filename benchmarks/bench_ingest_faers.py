"""Time ``warehouse.inputs.regulator.ingest`` on a synthetic FAERS quarter with the real ASCII layout.

    .venv/bin/python benchmarks/bench_ingest_faers.py [--cases 400000] [--drugs 1500000] [--reactions 1200000]

Writes DEMO/DRUG/REAC/OUTC/RPSR ``$``-files (FAERS 2017Q2 headers) into a temp folder with
DuckDB, ingests the folder into a fresh warehouse, then re-ingests it (idempotent path) and
prints wall times, CPU times (user + system of this process and its DuckDB threads — on a shared
machine the wall time depends on the other load, the CPU time much less) and the process's peak
resident memory (``resource.getrusage``; DuckDB runs in-process, so its memory is included).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse.inputs.regulator.ingest import ingest

DEMO_COLS = [
    "primaryid",
    "caseid",
    "caseversion",
    "i_f_code",
    "event_dt",
    "mfr_dt",
    "init_fda_dt",
    "fda_dt",
    "rept_cod",
    "auth_num",
    "mfr_num",
    "mfr_sndr",
    "lit_ref",
    "age",
    "age_cod",
    "age_grp",
    "sex",
    "e_sub",
    "wt",
    "wt_cod",
    "rept_dt",
    "to_mfr",
    "occp_cod",
    "reporter_country",
    "occr_country",
]
DRUG_COLS = [
    "primaryid",
    "caseid",
    "drug_seq",
    "role_cod",
    "drugname",
    "prod_ai",
    "val_vbm",
    "route",
    "dose_vbm",
    "cum_dose_chr",
    "cum_dose_unit",
    "dechal",
    "rechal",
    "lot_num",
    "exp_dt",
    "nda_num",
    "dose_amt",
    "dose_unit",
    "dose_form",
    "dose_freq",
]


def write_quarter(folder: Path, cases: int, drugs: int, reactions: int) -> None:
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    opts = "(DELIMITER '$', HEADER true, QUOTE '')"

    def blanks(cols, given):
        return ", ".join(given.get(c, f"'' AS {c}") if c in given else f"'' AS {c}" for c in cols)

    demo = {
        "primaryid": "(10000000 + i)::VARCHAR || (1 + i % 3)::VARCHAR AS primaryid",
        "caseid": "(10000000 + i)::VARCHAR AS caseid",
        "caseversion": "(1 + i % 3)::VARCHAR AS caseversion",
        "i_f_code": "CASE WHEN i % 3 = 0 THEN 'I' ELSE 'F' END AS i_f_code",
        "event_dt": "strftime(DATE '2019-10-01' + ((hash(i, 1) % 90)::BIGINT)::INTEGER, '%Y%m%d') AS event_dt",
        "init_fda_dt": "strftime(DATE '2020-01-01' + ((hash(i, 2) % 60)::BIGINT)::INTEGER, '%Y%m%d') AS init_fda_dt",
        "fda_dt": "strftime(DATE '2020-01-01' + ((hash(i, 3) % 90)::BIGINT)::INTEGER, '%Y%m%d') AS fda_dt",
        "rept_cod": "'EXP' AS rept_cod",
        "age": "((hash(i, 4) % 90)::BIGINT)::VARCHAR AS age",
        "age_cod": "'YR' AS age_cod",
        "sex": "CASE (hash(i, 5) % 3)::BIGINT WHEN 0 THEN 'F' WHEN 1 THEN 'M' ELSE 'UNK' END AS sex",
        "occp_cod": "['MD', 'PH', 'OT', 'CN', 'LW'][1 + (hash(i, 6) % 5)::BIGINT] AS occp_cod",
        "reporter_country": "'US' AS reporter_country",
        "occr_country": "'US' AS occr_country",
    }
    con.execute(f"COPY (SELECT {blanks(DEMO_COLS, demo)} FROM range({cases}) t(i)) TO '{folder}/DEMO20Q1.txt' {opts}")
    drug = {
        "primaryid": "(10000000 + i % {n})::VARCHAR || (1 + (i % {n}) % 3)::VARCHAR AS primaryid",
        "caseid": "(10000000 + i % {n})::VARCHAR AS caseid",
        "drug_seq": "(1 + i // {n})::VARCHAR AS drug_seq",
        "role_cod": "CASE WHEN i < {n} THEN 'PS' ELSE ['SS', 'C', 'C', 'I'][1 + (hash(i, 7) % 4)::BIGINT] END AS role_cod",
        "drugname": "'BRAND' || ((hash(i, 8) % 3000)::BIGINT)::VARCHAR AS drugname",
        "prod_ai": "CASE WHEN (hash(i, 9) % 20)::BIGINT = 0 THEN '' ELSE 'INGREDIENT' || ((hash(i, 8) % 3000)::BIGINT // 3)::VARCHAR END AS prod_ai",
        "val_vbm": "'1' AS val_vbm",
        "route": "'Oral' AS route",
        "lot_num": "CASE (hash(i, 10) % 10)::BIGINT WHEN 0 THEN 'L' || ((hash(i, 11) % 50000)::BIGINT)::VARCHAR WHEN 1 THEN 'UNKNOWN' "
        "WHEN 2 THEN 'lot# ' || ((hash(i, 12) % 9000)::BIGINT)::VARCHAR || 'A' ELSE '' END AS lot_num",
    }
    drug = {k: v.replace("{n}", str(cases)) for k, v in drug.items()}
    con.execute(f"COPY (SELECT {blanks(DRUG_COLS, drug)} FROM range({drugs}) t(i)) TO '{folder}/DRUG20Q1.txt' {opts}")
    con.execute(
        f"""COPY (SELECT (10000000 + i % {cases})::VARCHAR || (1 + (i % {cases}) % 3)::VARCHAR AS primaryid,
                         (10000000 + i % {cases})::VARCHAR AS caseid, 'Event term ' || ((hash(i, 13) % 5000)::BIGINT)::VARCHAR AS pt,
                         '' AS drug_rec_act
                  FROM range({reactions}) t(i)) TO '{folder}/REAC20Q1.txt' {opts}"""
    )
    con.execute(
        f"""COPY (SELECT (10000000 + i)::VARCHAR || (1 + i % 3)::VARCHAR AS primaryid, (10000000 + i)::VARCHAR AS caseid,
                         ['HO', 'OT', 'DE', 'LT', 'DS'][1 + (hash(i, 14) % 5)::BIGINT] AS outc_cod
                  FROM range({cases}) t(i) WHERE (hash(i, 15) % 2)::BIGINT = 0) TO '{folder}/OUTC20Q1.txt' {opts}"""
    )
    con.execute(
        f"""COPY (SELECT (10000000 + i)::VARCHAR || (1 + i % 3)::VARCHAR AS primaryid, (10000000 + i)::VARCHAR AS caseid,
                         'HP' AS rpsr_cod
                  FROM range({cases}) t(i) WHERE (hash(i, 16) % 10)::BIGINT = 0) TO '{folder}/RPSR20Q1.txt' {opts}"""
    )
    con.close()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=400_000)
    ap.add_argument("--drugs", type=int, default=1_500_000)
    ap.add_argument("--reactions", type=int, default=1_200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_faers_") as tmp:
        folder = Path(tmp, "quarter")
        folder.mkdir()
        t0 = time.perf_counter()
        write_quarter(folder, args.cases, args.drugs, args.reactions)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(
            f"synthetic FAERS quarter: {args.cases:,} cases, {args.drugs:,} drug rows, {args.reactions:,} reaction rows, "
            f"{size:.0f} MB, written in {time.perf_counter() - t0:.1f} s; peak RSS so far {peak_mb():.0f} MB"
        )
        db = Path(tmp, "w.duckdb")
        t0, c0 = time.perf_counter(), cpu_s()
        counts = ingest(folder, "faers", db)
        first = time.perf_counter() - t0
        print(
            f"first ingest : {first:6.1f} s wall, {cpu_s() - c0:6.1f} s CPU  ({args.drugs / first:,.0f} drug rows/s); "
            f"peak RSS {peak_mb():.0f} MB"
        )
        t0, c0 = time.perf_counter(), cpu_s()
        again = ingest(folder, "faers", db)
        print(
            f"re-ingest    : {time.perf_counter() - t0:6.1f} s wall, {cpu_s() - c0:6.1f} s CPU  (idempotent: same counts = "
            f"{all(again[k] == counts[k] for k in ('cases', 'drugs', 'reactions', 'lots'))}); peak RSS {peak_mb():.0f} MB"
        )
        keys = ("cases", "case_versions", "drugs", "reactions", "lots", "quarantined", "duplicates_flagged")
        print(
            json.dumps(
                {k: counts[k] for k in keys}
                | {"unmapped_rows": counts["unmapped_drugs"]["rows"], "warehouse_mb": round(db.stat().st_size / 1e6)}
            )
        )


if __name__ == "__main__":
    main()

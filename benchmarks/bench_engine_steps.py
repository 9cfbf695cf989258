"""The moved set-based steps on each engine (issue 15): wall time per step on a warehouse.

For a warehouse built by a run (``pvtrace run`` / ``make demo``), runs each step of
docs/architecture.md "Engines" on the DuckDB engine (the warehouse connection) and, with
``--spark``, on a local Spark session reading Parquet exports of the tables, and prints the best
of ``--repeat`` wall times, the rows out, whether both engines gave the same rows, and Spark's
export time. DuckDB is limited to ``--threads`` and Spark to ``local[--threads]`` so that the
per-core figures compare. Prints figures only; no assertions. The warehouse is copied first (the
steps that store a table write into the copy).

    .venv/bin/python benchmarks/bench_engine_steps.py output/pvtrace.duckdb [--spark] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import polars as pl

from warehouse.engine import engine_from_config
from warehouse.engine.read_model import READ_MODEL_TABLES
from warehouse.linkage.case_batch_links import PACK_TABLES, packs_for_codes
from warehouse.queries.batch_inputs import BATCH_CASE_TABLES, batch_case_rows
from warehouse.queries.detection_inputs import report_event_counts
from warehouse.queries.exposure import EXPOSURE_TABLES, exposure_weekly


def steps(con: duckdb.DuckDBPyConnection):
    codes = con.sql("SELECT pack_code_reported FROM case_drug").pl()["pack_code_reported"]
    return {
        "exposure_weekly": lambda e: e.to_polars(exposure_weekly(e)),
        "counts_product": lambda e: report_event_counts(con, "product", e),
        "counts_ingredient": lambda e: report_event_counts(con, "ingredient", e),
        "batch_case_rows": lambda e: batch_case_rows(con, engine=e),
        "packs_for_codes": lambda e: packs_for_codes(e, codes),
    }


def _best(f, repeat: int) -> tuple[float, pl.DataFrame]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    if a.shape != b.shape:
        return False
    keys = [c for c, t in a.schema.items() if t not in (pl.Float64, pl.Float32)]
    a, b = a.sort(keys, nulls_last=True), b.select(a.columns).sort(keys, nulls_last=True)
    floats = [c for c in a.columns if c not in keys]
    return a.select(keys).equals(b.select(keys)) and all(
        ((a[c] - b[c]).abs() <= 1e-9 * a[c].abs().clip(lower_bound=1e-12)).all() for c in floats
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("warehouse")
    ap.add_argument("--spark", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        shutil.copy(args.warehouse, path)
        con = duckdb.connect(str(path))
        con.execute(f"SET threads = {args.threads}")
        sizes = {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("delivery", "case_drug", "pack")}
        print(
            f"warehouse: {', '.join(f'{t} {n:,}' for t, n in sizes.items())}; {args.threads} threads / local[{args.threads}]"
        )
        duck = engine_from_config("duckdb", duckdb_con=con)
        results = {}
        for name, f in steps(con).items():
            f(duck)  # the first call compiles and caches the SQL
            results[name] = _best(lambda f=f: f(duck), args.repeat)
        spark_results, export_s = {}, None
        if args.spark:
            from warehouse.engine.spark import spark_session

            t = time.perf_counter()
            session = spark_session(master=f"local[{args.threads}]")
            start_s = time.perf_counter() - t
            spk = engine_from_config("spark", spark=session)
            t = time.perf_counter()
            spk.load_warehouse(con, sorted({*READ_MODEL_TABLES, *EXPOSURE_TABLES, *BATCH_CASE_TABLES, *PACK_TABLES}))
            export_s = time.perf_counter() - t
            print(f"spark: session {start_s:.1f} s, Parquet export of the step tables {export_s:.2f} s")
            for name, f in steps(con).items():
                f(spk)
                spark_results[name] = _best(lambda f=f: f(spk), args.repeat)
            spk.close()
        print(f"{'step':20s} {'rows':>9s} {'duckdb s':>9s}" + (f" {'spark s':>9s}  same" if args.spark else ""))
        for name, (secs, out) in results.items():
            line = f"{name:20s} {out.height:9,d} {secs:9.3f}"
            if args.spark:
                s_secs, s_out = spark_results[name]
                line += f" {s_secs:9.3f}  {_same(out, s_out)}"
            print(line)
        con.close()


if __name__ == "__main__":
    main()

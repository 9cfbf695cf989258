"""The whole demo on each engine (issue 15): ``pvtrace demo --engine duckdb`` and ``--engine spark``
on the same world and clock, timed, then their signal registers compared.

    .venv/bin/python benchmarks/bench_engine_run.py [--scale 1] [--seed 42] [--workdir benchmarks/out/engine_run]
        [--clock 2026-11-01T00:00:00+00:00] [--reports none]

Each run is a child process (``pvtrace demo``: the world with its verbatims, the MedDRA release, the
whole graph) into its own folder, its progress lines kept in ``<workdir>/<engine>/run.log``. Prints each run's wall time, then the registers' comparison
(:func:`warehouse.stores.signal_register.register_differences`): rows in each, rows in one only,
rows whose identity, methods or status differ, and the figures that differ as stored (the register
keeps ``FIGURE_SIG_DIGITS`` significant digits) with the largest relative difference. Also compares
the stored tables the moved steps write (exposure, case↔batch links, sequential monitoring, the
scores) row for row. Prints figures only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
TABLES = (
    "exposure_weekly",
    "case_batch_link",
    "sequential_monitoring",
    "disproportionality_score",
    "batch_heterogeneity",
)


def run(engine: str, args: argparse.Namespace) -> tuple[float, Path]:
    folder = Path(args.workdir) / engine
    cmd = [
        str(ROOT / ".venv" / "bin" / "pvtrace"),
        "demo",
        "--engine",
        engine,
        "--seed",
        str(args.seed),
        "--scale",
        str(args.scale),
        "--clock",
        args.clock,
        "--reports",
        args.reports,
        "--inbox",
        str(folder / "inbox"),
        "--warehouse",
        str(folder / "pvtrace.duckdb"),
        "--output",
        str(folder / "output"),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (folder / "run.log").write_text(proc.stdout + proc.stderr)  # the run's progress lines (wall and CPU s per stage)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the {engine} run failed")
    return wall, folder / "pvtrace.duckdb"


def table_equal(a, b, table: str) -> str:
    """'identical' when both tables hold the same rows (any order), else how many rows differ."""
    q = f"SELECT * FROM {table}"
    x = a.sql(q).pl()
    y = b.sql(q).pl()
    if x.height != y.height:
        return f"{x.height} vs {y.height} rows"
    if x.sort(x.columns).equals(y.sort(y.columns)):
        return "identical"
    keys = [c for c, t in x.schema.items() if not t.is_float()]
    diff = x.join(y, on=keys, how="anti", nulls_equal=True).height
    return f"{x.height} rows, {diff} differ in keys; floats differ elsewhere" if diff else "same keys, floats differ"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--clock", default="2026-11-01T00:00:00+00:00")
    ap.add_argument("--reports", default="none", choices=["latest", "all", "none"])
    ap.add_argument("--workdir", default="benchmarks/out/engine_run")
    args = ap.parse_args()

    from warehouse.schema import connect
    from warehouse.stores.signal_register import register_differences

    paths = {}
    for engine in ("duckdb", "spark"):
        wall, paths[engine] = run(engine, args)
        print(f"pvtrace demo --engine {engine:<6} (scale {args.scale}): {wall:7.1f} s wall", flush=True)
    a, b = (connect(str(paths[e]), read_only=True) for e in ("duckdb", "spark"))
    try:
        d = register_differences(a, b)
        print(f"register rows: duckdb {d['rows_a']}, spark {d['rows_b']}")
        print(f"rows in one register only: {len(d['only_a'])} + {len(d['only_b'])}; rows changed: {len(d['changed'])}")
        print(
            f"figures: {d['figures_compared']} compared, {d['figures_differing']} differ as stored "
            f"(max relative difference {d['max_rel_diff']:.2e})"
        )
        for ex in d["examples"]:
            print("  e.g.", *ex)
        for table in TABLES:
            print(f"{table:<26} {table_equal(a, b, table)}")
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()

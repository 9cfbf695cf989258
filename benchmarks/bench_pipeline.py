"""Scale benchmark of the whole pipeline: build a large synthetic world, run every stage, print figures.

    python benchmarks/bench_pipeline.py [--scale 10] [--seed 42] [--workdir benchmarks/out/pipeline]

Each stage (world generation, then every Dagster asset in dependency order, the monthly report
assets for the latest month last) runs in its own child process, so the peak resident memory
printed is that stage's own (ru_maxrss of the child, which includes ~300 MB of imports), and the
wall time includes the child's start-up; the start-up cost alone (importing Dagster and the
project) is printed first so it can be subtracted. The CPU seconds of the stage (all its threads) are
printed too: on a shared machine wall time moves with the load, CPU time much less. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(cmd: list[str]) -> tuple[float, dict]:
    """Run one stage in a child process; return (wall seconds, the figures it printed as its last line)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"stage failed: {' '.join(cmd)}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_stage(stage: str, inbox: str, warehouse: str, output: str) -> None:
    """Child mode: materialise one asset (its upstream already stored in the warehouse).

    A monthly report asset runs for the latest month the data covers, as ``pvtrace run`` does.
    """
    import dagster as dg

    from assets.cli import report_months
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, REPORT_ASSETS
    from assets.resources import default_resources

    t0 = time.perf_counter()
    c0 = _cpu()
    if stage == "__generate__":
        from sample_data.world import generate_world

        scale, seed = (float(x) for x in inbox.split("@")[1:])
        generate_world(Path(inbox.split("@")[0]), seed=int(seed), scale=scale)
    elif stage != "__startup__":
        key = dg.AssetKey.from_user_string(stage)
        partitioned = any(key in a.keys for a in REPORT_ASSETS)
        dg.materialize(
            [*ALL_ASSETS, *REPORT_ASSETS, *ALL_CHECKS],
            selection=[key],
            raise_on_error=True,
            partition_key=report_months(warehouse, "latest")[0] if partitioned else None,
            resources=default_resources(inbox=inbox, warehouse=warehouse, output=output),
        )
    print(
        json.dumps(
            {
                "stage_seconds": time.perf_counter() - t0,
                "stage_cpu_seconds": _cpu() - c0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def stage_order() -> list[str]:
    """The unpartitioned graph and the monthly reports in dependency order; the lake's daily landing is a
    job of its own (issue 15; measured by benchmarks/bench_scale.py), not a stage of this graph."""
    from assets.definitions import LAKE_ASSETS, defs

    lake = {key for a in LAKE_ASSETS for key in a.keys}
    graph = defs.resolve_asset_graph()
    return [key.to_user_string() for key in graph.toposorted_asset_keys if key not in lake]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "pipeline"))
    parser.add_argument("--reuse-world", action="store_true", help="keep an inbox already generated in --workdir")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--inbox", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.inbox, args.warehouse, args.output)
        return

    work = Path(args.workdir)
    inbox, output = work / "inbox", work / "output"
    warehouse = output / "pvtrace.duckdb"
    for p in (warehouse, Path(f"{warehouse}.wal")):
        p.unlink(missing_ok=True)
    py = sys.executable
    print(f"PV Trace pipeline benchmark: scale {args.scale}, seed {args.seed}, {os.cpu_count()} cores")
    print(f"{'stage':<28}{'wall s':>9}{'in-stage s':>12}{'CPU s':>8}{'peak RSS MB':>13}")

    if not (args.reuse_world and (inbox / "ground_truth.json").exists()):
        wall, info = run_child(
            [
                py,
                __file__,
                "--stage",
                "__generate__",
                "--inbox",
                f"{inbox}@{args.scale}@{args.seed}",
                "--warehouse",
                "",
                "--output",
                "",
            ]
        )
        print(
            f"{'generate world':<28}{wall:>9.1f}{info['stage_seconds']:>12.1f}{info['stage_cpu_seconds']:>8.1f}"
            f"{info['peak_rss_mb']:>13.0f}"
        )
    truth = json.loads((inbox / "ground_truth.json").read_text())
    print("   world: " + ", ".join(f"{k} {v:,}" for k, v in truth["counts"].items()))

    stages = ["__startup__", *stage_order()]  # unpartitioned graph, then the monthly reports
    total = cpu_total = peak = 0.0
    for stage in stages:
        wall, info = run_child(
            [
                py,
                __file__,
                "--stage",
                stage,
                "--inbox",
                str(inbox),
                "--warehouse",
                str(warehouse),
                "--output",
                str(output),
            ]
        )
        total += info["stage_seconds"]
        cpu_total += info["stage_cpu_seconds"]
        peak = max(peak, info["peak_rss_mb"])
        name = "(start-up: imports only)" if stage == "__startup__" else stage
        print(
            f"{name:<28}{wall:>9.1f}{info['stage_seconds']:>12.1f}{info['stage_cpu_seconds']:>8.1f}"
            f"{info['peak_rss_mb']:>13.0f}"
        )
    size = warehouse.stat().st_size / 2**20
    print(f"{'all asset stages':<28}{'':>9}{total:>12.1f}{cpu_total:>8.1f}{peak:>13.0f}  (peak: the largest stage)")
    print(f"warehouse file: {size:,.0f} MB")


if __name__ == "__main__":
    main()

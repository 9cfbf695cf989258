"""Scale model (issue 15 item 6): the heavy steps of a 10x world on DuckDB and on local Spark.

    nice -n 10 python benchmarks/bench_scale.py [--scale 10] [--workdir benchmarks/out/scale] [--reuse]

1. ``world``: generate the world and load it (the Dagster assets up to the statistics' inputs:
   ingestion, links, exposure), in a child process; kept with ``--reuse``.
2. One child process per measured step (so its peak RSS is its own), each printing rows, wall
   seconds, CPU seconds (this process and, for Spark, the JVM and its Python workers) and the
   throughput per core = rows / CPU seconds:

   * weekly exposure (packs + distinct patients per product × batch × region × week) from the
     deliveries — DuckDB on the warehouse (1 and 2 threads), Spark ``local[2]`` on the lake's
     Delta snapshot (``warehouse.lake.delta.spark_read``), results compared;
   * the lake: full load of deliveries (by day), packs (hash buckets), case versions; then one
     day landed incrementally;
   * the statistics (batch heterogeneity, MaxSPRT streams, MGPS posterior + battery) single
     process, fanned out on a process pool and on Spark ``local[2]`` grouped Arrow UDFs (results
     compared with the single run).

Prints figures only (docs/scale.md turns them into the extrapolation). The machine is shared:
read CPU seconds rather than wall time, and expect Spark's start-up (JVM, Python workers) to be
a fixed cost printed apart.
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TICK = os.sysconf("SC_CLK_TCK")


# ---- CPU and memory of a process tree (Linux /proc) -----------------------------------------------
def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds incl. reaped children) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (reaped ones are in their parent's)."""
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)], cpu[int(entry)] = _stat(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [c for c, p in parents.items() if p == pid]
    return total


def _hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def _self_cpu() -> float:
    """CPU seconds of this process and its reaped children (a process pool's workers, once joined)."""
    return sum(
        r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


class Meter:
    """Wall and CPU seconds of a block, for this process plus an optional JVM tree."""

    def __init__(self, jvm_pid: int | None = None):
        self.jvm_pid = jvm_pid

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), _self_cpu()
        self.j0 = _tree_cpu(self.jvm_pid) if self.jvm_pid else 0.0
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = _self_cpu() - self.c0
        self.jvm_cpu = (_tree_cpu(self.jvm_pid) - self.j0) if self.jvm_pid else 0.0
        return False


def _row(step: str, engine: str, rows: int, m: Meter, note: str = "") -> dict:
    cpu = m.cpu + m.jvm_cpu
    return {
        "step": step,
        "engine": engine,
        "rows": rows,
        "wall_s": round(m.wall, 2),
        "cpu_s": round(cpu, 2),
        "rows_per_cpu_s": round(rows / cpu) if cpu > 0 else None,
        "note": note,
    }


# ---- the world ------------------------------------------------------------------------------------
STATS_INPUTS = ["exposure", "case_batch_links"]


def build_world(work: Path, scale: float, seed: int) -> dict:
    import dagster as dg

    from assets.definitions import ALL_ASSETS
    from assets.resources import default_resources
    from sample_data.world import generate_world

    inbox, output = work / "inbox", work / "output"
    with Meter() as gen:
        generate_world(inbox, seed=seed, scale=scale)
    truth = json.loads((inbox / "ground_truth.json").read_text())
    selection = dg.AssetSelection.assets(*STATS_INPUTS).upstream()
    with Meter() as load:
        dg.materialize(
            ALL_ASSETS,
            selection=selection,
            raise_on_error=True,
            resources=default_resources(inbox=str(inbox), warehouse=str(output / "pvtrace.duckdb"), output=str(output)),
        )
    return {"counts": truth["counts"], "generate_s": round(gen.wall, 1), "load_s": round(load.wall, 1)}


# ---- measured steps (each in its own process) -----------------------------------------------------
WEEKLY_SQL = """
SELECT product_id, batch_id, region, date_trunc('week', {day})::DATE AS week,
       sum(quantity)::BIGINT AS packs_delivered, count(DISTINCT patient_key)::BIGINT AS patients_exposed
FROM {table} GROUP BY ALL
"""


def step_duckdb_exposure(work: Path) -> list[dict]:
    import duckdb

    out = []
    con = duckdb.connect(str(work / "output" / "pvtrace.duckdb"), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    n = con.sql("SELECT count(*) FROM delivery").fetchone()[0]
    for threads in (1, 2):
        con.execute(f"SET threads = {threads}")
        sql = WEEKLY_SQL.format(day="(delivered_at AT TIME ZONE 'UTC')::DATE", table="delivery")
        with Meter() as m:
            res = con.sql(f"SELECT count(*), sum(packs_delivered), sum(patients_exposed) FROM ({sql})").fetchone()
        out.append(_row("weekly exposure", f"duckdb {threads} thread(s)", n, m, f"groups,packs,patients={list(res)}"))
    return out


def _deliveries_arrow(work: Path):
    import duckdb

    con = duckdb.connect(str(work / "output" / "pvtrace.duckdb"), read_only=True)
    return con.sql(
        "SELECT delivery_id, delivered_at, pack_code, batch_id, product_id, patient_key, region, quantity::BIGINT AS quantity "
        "FROM delivery"
    ).to_arrow_table()


def step_lake(work: Path) -> list[dict]:
    import shutil

    import duckdb
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from warehouse.lake.store import Lake

    root = work / "lake"
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root, pack_buckets=64, case_buckets=64)
    src = duckdb.connect(str(work / "output" / "pvtrace.duckdb"), read_only=True)
    deliveries = _deliveries_arrow(work)
    day = pc.cast(pc.cast(deliveries["delivered_at"], "timestamp[us]"), "date32")
    last = pc.max(day).as_py()
    before = deliveries.filter(pc.less(day, last))
    out = []
    with Meter() as m:
        landed = lake.land_deliveries(before)
    out.append(
        _row("lake: deliveries full load", "delta-rs + duckdb", before.num_rows, m, f"partitions={landed.partitions}")
    )
    new_day = deliveries.filter(pc.equal(day, last))
    with Meter() as m:
        landed = lake.land_deliveries(new_day)
    out.append(_row("lake: one new day", "delta-rs + duckdb", new_day.num_rows, m, f"partitions={landed.partitions}"))
    packs = src.sql("SELECT pack_code, code_system, batch_id, gtin, commissioned_at FROM pack").to_arrow_table()
    commissioned = pc.cast(pc.cast(packs["commissioned_at"], "timestamp[us]"), "date32")
    last_day = pc.max(commissioned).as_py()
    history, new_packs = (packs.filter(f(commissioned, last_day)) for f in (pc.less, pc.equal))
    # the pack layout (issue 15): by code bucket alone, a day's new codes rewrite every bucket they fall in
    # (at national scale all of them: the whole table); by code bucket and commissioning day, they add files
    for period, layout in ((None, "bucket"), ("day", "bucket × day"), ("month", "bucket × month")):
        pack_lake = Lake(work / f"lake_packs_{period}", pack_buckets=64, pack_period=period)
        shutil.rmtree(pack_lake.root, ignore_errors=True)
        with Meter() as m:
            landed = pack_lake.land_packs(history)
        out.append(
            _row(
                f"lake: packs history ({layout})",
                "delta-rs + duckdb",
                history.num_rows,
                m,
                f"partitions={landed.partitions}",
            )
        )
        files = set(DeltaTable(pack_lake.uri("packs")).file_uris())
        with Meter() as m:
            landed = pack_lake.land_packs(new_packs)
        after = set(DeltaTable(pack_lake.uri("packs")).file_uris())
        rewritten = (
            pq.ParquetDataset(sorted(files - after)).read(columns=["pack_code"]).num_rows if files - after else 0
        )
        out.append(
            _row(
                f"lake: packs, one new day ({layout})",
                "delta-rs + duckdb",
                new_packs.num_rows,
                m,
                f"partitions={landed.partitions} files_removed={len(files - after)} files_added={len(after - files)} "
                f"old_rows_rewritten={rewritten}",
            )
        )
    cases = src.sql(
        "SELECT case_id, version::BIGINT AS version, received_on, patient_key, false AS nullified FROM case_report"
    ).to_arrow_table()
    with Meter() as m:
        landed = lake.land_case_versions(cases)
    out.append(
        _row(
            "lake: case versions (64 buckets)",
            "delta-rs + duckdb",
            cases.num_rows,
            m,
            f"partitions={landed.partitions}",
        )
    )
    return out


def _spark(cores: int):
    from warehouse.engine.spark import spark_session

    spark = spark_session(master=f"local[{cores}]", conf={"spark.sql.shuffle.partitions": str(4 * cores)})
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    return spark, (proc.pid if proc is not None else None)


def step_spark_exposure(work: Path, cores: int = 2) -> list[dict]:
    from warehouse.lake import delta

    with Meter() as start:
        spark, jvm = _spark(cores)
    out = [_row("spark session start", f"spark local[{cores}]", 0, start, "fixed cost")]
    df = delta.spark_read(spark, work / "lake" / "deliveries")
    df.createOrReplaceTempView("deliveries")
    sql = WEEKLY_SQL.format(day="delivered_on", table="deliveries").replace("::DATE", "").replace("::BIGINT", "")
    n = df.count()
    for run in ("first run", "again"):  # the first pays code generation and the JIT's warm-up
        with Meter(jvm) as m:
            res = spark.sql(f"SELECT count(*), sum(packs_delivered), sum(patients_exposed) FROM ({sql})").collect()[0]
        out.append(
            _row("weekly exposure", f"spark local[{cores}] Delta, {run}", n, m, f"groups,packs,patients={list(res)}")
        )
    out[-1]["jvm_peak_rss_mb"] = round(_hwm_mb(jvm)) if jvm else None
    return out


def _stat_inputs(work: Path):
    """The statistics' inputs, read once from the warehouse and kept as Parquet, so every mode
    gets the same bits (DuckDB's parallel float sums, e.g. the stratified E, are not
    bit-reproducible from one query to the next)."""
    import polars as pl

    cache = work / "stats_inputs"
    if not (cache / "meta.json").exists():
        cache.mkdir(exist_ok=True)
        inp = _query_stat_inputs(work)
        for name in ("cases", "exposure", "packs", "units", "counts"):
            inp[name].write_parquet(cache / f"{name}.parquet")
        (cache / "meta.json").write_text(json.dumps({"routes": inp["routes"], "dlp": inp["dlp"].isoformat()}))
    meta = json.loads((cache / "meta.json").read_text())
    out = {
        name: pl.read_parquet(cache / f"{name}.parquet") for name in ("cases", "exposure", "packs", "units", "counts")
    }
    import datetime as dt

    return {**out, "routes": meta["routes"], "dlp": dt.date.fromisoformat(meta["dlp"])}


def _query_stat_inputs(work: Path):
    import duckdb

    from warehouse.queries import batch_inputs
    from warehouse.queries.detection_inputs import report_event_counts
    from warehouse.queries.read_model import data_lock_point

    con = duckdb.connect(str(work / "output" / "pvtrace.duckdb"), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    cases = batch_inputs.batch_case_rows(con)
    return {
        "cases": cases,
        "exposure": batch_inputs.batch_exposure(con),
        "packs": batch_inputs.weekly_batch_exposure(con),
        "routes": batch_inputs.product_routes(con),
        "units": batch_inputs.batch_units_released(con),
        "dlp": data_lock_point(con) or cases["received_on"].max(),
        "counts": report_event_counts(con, "product"),
    }


def step_stats(work: Path, mode: str, cores: int = 2) -> list[dict]:
    import polars as pl
    from polars.testing import assert_frame_equal

    from warehouse.engine import fanout

    inp = _stat_inputs(work)
    out, jvm, spark = [], None, None
    if mode == "spark":
        with Meter() as start:
            spark, jvm = _spark(cores)
        out.append(_row("spark session start", f"spark local[{cores}]", 0, start, "fixed cost"))
    fan = fanout.FanOut(mode=mode, buckets=16, workers=cores, spark=spark)
    ref = work / "stats_single"
    ref.mkdir(exist_ok=True)
    engine = {"single": "one process", "process": f"process pool x{cores}", "spark": f"spark local[{cores}] UDFs"}[mode]
    results = {}
    with Meter(jvm) as m:
        het = fanout.heterogeneity_by_level(inp["cases"], inp["exposure"], fan)
    results["het_pt"] = het["pt"][0]
    out.append(_row("batch heterogeneity (pt+soc rows)", engine, sum(v[0].height for v in het.values()), m))
    with Meter(jvm) as m:
        seq = fanout.sequential_streams(inp["packs"], inp["cases"], inp["routes"], inp["units"], inp["dlp"], fan)
    results["seq"] = seq
    out.append(_row("MaxSPRT streams", engine, seq.height, m))
    with Meter(jvm) as m:
        pairs = fanout.score_pairs(inp["counts"], min_count=1, fan=fan).scored
    results["pairs"] = pairs
    out.append(_row("MGPS posterior + battery (pairs)", engine, pairs.height, m))
    for name, frame in results.items():
        path = ref / f"{name}.parquet"
        if mode == "single":
            frame.write_parquet(path)
        else:
            assert_frame_equal(frame, pl.read_parquet(path), check_exact=True)
    for r in out:
        if mode != "single" and r["rows"]:
            r["note"] = "results == single process"
    if jvm:
        out[-1]["jvm_peak_rss_mb"] = round(_hwm_mb(jvm))
    return out


STEPS = {
    "duckdb_exposure": step_duckdb_exposure,
    "lake": step_lake,
    "spark_exposure": step_spark_exposure,
    "stats_single": lambda w: step_stats(w, "single"),
    "stats_process": lambda w: step_stats(w, "process"),
    "stats_spark": lambda w: step_stats(w, "spark"),
}


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"step failed: {args}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "scale"))
    parser.add_argument("--reuse", action="store_true", help="keep the world and warehouse already in --workdir")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.workdir)
    if args.child:
        result = (
            build_world(work, args.scale, args.seed) if args.child == "world" else {"rows": STEPS[args.child](work)}
        )
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result, default=str))
        return

    print(f"PV Trace scale model: scale {args.scale}, seed {args.seed}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    if not (args.reuse and (work / "output" / "pvtrace.duckdb").exists()):
        work.mkdir(parents=True, exist_ok=True)
        world = run_child(
            ["--child", "world", "--workdir", str(work), "--scale", str(args.scale), "--seed", str(args.seed)]
        )
        print(f"world: generate {world['generate_s']} s, load {world['load_s']} s, peak RSS {world['peak_rss_mb']} MB")
        print("   " + ", ".join(f"{k} {v:,}" for k, v in world["counts"].items()))
    print(f"{'step':<36}{'engine':<28}{'rows':>11}{'wall s':>9}{'CPU s':>9}{'rows/CPU s':>12}{'RSS MB':>8}  note")
    for step in filter(None, args.steps.split(",")):
        res = run_child(["--child", step, "--workdir", str(work)])
        for r in res["rows"]:
            rss = r.get("jvm_peak_rss_mb")
            rss_text = f"{res['peak_rss_mb']}" + (f"+{rss}" if rss else "")
            print(
                f"{r['step']:<36}{r['engine']:<28}{r['rows']:>11,}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}"
                f"{(r['rows_per_cpu_s'] or 0):>12,}{rss_text:>8}  {r['note']}"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()

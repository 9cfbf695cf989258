"""Signal burden: how many new signals each rule raises per month, and how many of them reach the priority threshold.

    python benchmarks/bench_signal_burden.py --warehouse output/pvtrace.duckdb [--threshold 0.4]
    python benchmarks/bench_signal_burden.py --world inbox            # runs the pipeline into a temporary warehouse

Any world: the demo world, a seed/scale of your own, or the null world (``pvtrace generate --null``), where every
signal is a false signal and the table is the false-signal rate per month.

At every month end from the first case to the data lock point (no look-ahead: counts, packs and cases as received
by that date), the rules are replayed at product level — ``evans``, ``ema_sdr``, ``who_umc``, ``fda_mgps`` (the
evaluation's replay, ``assets.evaluation.disproportionality_replay``, MGPS prior refitted quarterly) — and the batch
heterogeneity flag (``batch_exact+eb``, PT and SOC level, the register's rule) is re-run; MaxSPRT (``maxsprt``,
``maxsprt_group``) crossings are read from the stored weekly looks (``sequential_monitoring``: each look used only the
data received by then; its delay distribution and stream list come from the final data). A signal is *new* for a rule
in the first month the rule fires on it; for *any* (what the register gets) in the first month any rule fires.

Priority at each month end: the month's signals are written into the ``signal`` table of a **copy** of the warehouse
and scored with the register's own query and statistic (``warehouse.queries.priority_inputs``,
``signals.priority``), at that month's data lock point. ``≥ t`` counts the new signals whose priority in their first
month is at or above the threshold; ``reach t`` counts signals (any rule) whose priority first reaches it that month —
what the full report pages and the manufacturer alerts carry. Ingredient-level pairs (the same reports pooled over a
substance's products) are left out. Prints figures only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

PRODUCT_RULES = ("evans", "ema_sdr", "who_umc", "fda_mgps")
BATCH_RULES = ("batch_exact+eb", "maxsprt", "maxsprt_group")
RULES = (*PRODUCT_RULES, *BATCH_RULES)


def month_ends(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month end from ``first``'s month up to ``last`` (``last`` itself closes a partial month)."""
    out, y, m = [], first.year, first.month
    while True:
        end = dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)
        if end >= last:
            return out + [last]
        out.append(end)
        y, m = y + (m == 12), m % 12 + 1


def build_world(inbox: str, root: Path) -> str:
    """Run the unpartitioned pipeline on an inbox into a temporary warehouse; returns its path."""
    import dagster as dg

    from assets.definitions import ALL_ASSETS
    from assets.resources import default_resources

    warehouse = root / "pvtrace.duckdb"
    resources = default_resources(inbox=inbox, warehouse=str(warehouse), output=str(root / "output"))
    dg.materialize(ALL_ASSETS, resources=resources, raise_on_error=True)
    return str(warehouse)


def product_firings(con, cutoffs: list[dt.date]) -> pl.DataFrame:
    """cutoff, key, rule, n11, e for every product-level rule firing at every cut-off."""
    from assets.evaluation import disproportionality_replay
    from warehouse.queries.detection_inputs import report_event_counts_by_cutoff

    fired = disproportionality_replay(con, cutoffs)
    counts = report_event_counts_by_cutoff(con, "product", cutoffs).select(
        "cutoff", pl.col("drug").alias("product"), pl.col("event").alias("pt"), "n11", "e"
    )
    return (
        fired.join(counts, on=["cutoff", "product", "pt"], how="left")
        .explode("rules_fired")
        .select(
            "cutoff",
            pl.lit("product").alias("level"),
            "product",
            "pt",
            pl.lit(None, dtype=pl.String).alias("batch"),
            pl.col("rules_fired").alias("rule"),
            pl.col("n11").cast(pl.Int64),
            pl.col("e").cast(pl.Float64),
        )
    )


def batch_firings(con, cutoffs: list[dt.date]) -> pl.DataFrame:
    """cutoff, key, rule, n11, e for the heterogeneity flag at every cut-off and the MaxSPRT crossings up to it."""
    from assets.evaluation import heterogeneity_replay

    het = heterogeneity_replay(con, cutoffs)
    out = [
        het.select(
            "cutoff",
            pl.lit("batch").alias("level"),
            "product",
            pl.col("event").alias("pt"),
            "batch",
            pl.lit("batch_exact+eb").alias("rule"),
            pl.col("cases").alias("n11"),
            pl.col("expected").alias("e"),
        )
    ]
    seq = con.sql(
        "SELECT product_id AS product, pt, batch_id AS batch, crossed_on, crossed_on_group, signalled, "
        "signalled_group, observed_at_crossing, expected_at_crossing FROM sequential_monitoring "
        "WHERE signalled OR signalled_group"
    ).pl()
    grid = pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date})
    for rule, flag, date in (
        ("maxsprt", "signalled", "crossed_on"),
        ("maxsprt_group", "signalled_group", "crossed_on_group"),
    ):
        crossed = seq.filter(pl.col(flag) & pl.col(date).is_not_null())
        if crossed.height:
            out.append(
                grid.join(crossed, how="cross")
                .filter(pl.col(date) <= pl.col("cutoff"))
                .select(
                    "cutoff",
                    pl.lit("batch").alias("level"),
                    "product",
                    "pt",
                    "batch",
                    pl.lit(rule).alias("rule"),
                    pl.col("observed_at_crossing").cast(pl.Int64).alias("n11"),
                    pl.col("expected_at_crossing").cast(pl.Float64).alias("e"),
                )
            )
    return pl.concat(out, how="vertical_relaxed") if out else pl.DataFrame()


def priorities(copy_path: str, firings: pl.DataFrame, cutoffs: list[dt.date]) -> pl.DataFrame:
    """cutoff, level, product, pt, batch, priority: the register's score of every signal firing at each cut-off."""
    from signals.priority import QUERY_PARAMETERS, priority_scores
    from warehouse.queries.priority_inputs import priority_inputs
    from warehouse.schema import connect
    from warehouse.stores.signal_register import signal_id

    methods = {"batch_exact+eb": ["batch_exact", "batch_eb"]}
    con = connect(copy_path)
    out = []
    try:
        for cutoff in cutoffs:
            rows = firings.filter(pl.col("cutoff") == cutoff)
            if rows.height == 0:
                continue
            per_key = rows.group_by("level", "product", "pt", "batch").agg(
                pl.col("rule").unique().sort().alias("rules"), pl.col("n11").max(), pl.col("e").max()
            )
            register = per_key.select(
                pl.struct("level", "product", "pt", "batch")
                .map_elements(
                    lambda r: signal_id(r["level"], r["product"], r["pt"], r["batch"]), return_dtype=pl.String
                )
                .alias("signal_id"),
                "level",
                pl.col("product").alias("product_id"),
                "pt",
                pl.col("batch").alias("batch_id"),
                pl.col("rules")
                .map_elements(
                    lambda rs: sorted(m for r in rs for m in methods.get(r, [r])), return_dtype=pl.List(pl.String)
                )
                .alias("methods"),
                pl.struct("n11", "e").map_elements(json.dumps, return_dtype=pl.String).alias("figures"),
            )
            con.execute("DELETE FROM signal")
            con.register("_sig", register.to_arrow())
            con.execute(
                "INSERT INTO signal (signal_id, level, product_id, pt, batch_id, methods, figures, first_detected, "
                "last_detected, status) SELECT signal_id, level, product_id, pt, batch_id, methods, figures::JSON, ?, ?, "
                "'new' FROM _sig",
                [cutoff, cutoff],
            )
            con.unregister("_sig")
            scored = priority_scores(priority_inputs(con, cutoff, **QUERY_PARAMETERS))
            out.append(
                register.select("signal_id", "level", "product_id", "pt", "batch_id")
                .join(scored.select("signal_id", "priority"), on="signal_id")
                .with_columns(pl.lit(cutoff).alias("cutoff"))
            )
    finally:
        con.close()
    return pl.concat(out).rename({"product_id": "product", "batch_id": "batch"})


def burden(firings: pl.DataFrame, scored: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """Per month: new signals per rule (and how many of them are at or above the threshold in that month)."""
    key = ["level", "product", "pt", "batch"]
    prio = scored.select("cutoff", *key, "priority")
    firsts = (
        pl.concat([firings, firings.with_columns(pl.lit("any").alias("rule"))])
        .group_by("rule", *key)
        .agg(pl.col("cutoff").min())
        .join(prio, on=["cutoff", *key], how="left", nulls_equal=True)
    )
    reach = (
        prio.filter(pl.col("priority") >= threshold)
        .group_by(*key)
        .agg(pl.col("cutoff").min())
        .group_by("cutoff")
        .agg(pl.len().alias("reach"))
    )
    months = pl.DataFrame({"cutoff": sorted(firings["cutoff"].unique().to_list())})
    table = months
    for rule in (*RULES, "any"):
        r = (
            firsts.filter(pl.col("rule") == rule)
            .group_by("cutoff")
            .agg(pl.len().alias(rule), (pl.col("priority") >= threshold).sum().alias(f"{rule}≥t"))
        )
        table = table.join(r, on="cutoff", how="left")
    return table.join(reach, on="cutoff", how="left").fill_null(0).sort("cutoff")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--warehouse", help="a warehouse built by the pipeline (read only; a copy is scored)")
    src.add_argument("--world", help="an inbox: the pipeline is run into a temporary warehouse first")
    ap.add_argument("--threshold", type=float, default=None, help="priority threshold (default: the register's)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = ap.parse_args()

    from assets.register import priority_threshold
    from signals.priority import validate_threshold
    from warehouse.queries.read_model import data_lock_point
    from warehouse.schema import connect

    threshold = validate_threshold(args.threshold) if args.threshold is not None else priority_threshold()
    with tempfile.TemporaryDirectory(prefix="pvtrace-burden-") as tmp:
        t0 = time.perf_counter()
        warehouse = build_world(args.world, Path(tmp)) if args.world else args.warehouse
        built = time.perf_counter() - t0
        copy = str(Path(tmp) / "scored.duckdb")
        shutil.copyfile(warehouse, copy)
        con = connect(copy)
        try:
            dlp = data_lock_point(con)
            (first,) = con.sql("SELECT min(received_on) FROM latest_case").fetchone()
            cutoffs = month_ends(first, dlp)
            t1 = time.perf_counter()
            firings = pl.concat([product_firings(con, cutoffs), batch_firings(con, cutoffs)], how="vertical_relaxed")
            t2 = time.perf_counter()
        finally:
            con.close()
        scored = priorities(copy, firings, cutoffs)
        t3 = time.perf_counter()
    table = burden(firings, scored, threshold)
    months = table.height
    print(
        f"signal burden: {Path(args.world or args.warehouse).name}, {months} monthly cut-offs {cutoffs[0]} … {dlp}, "
        f"priority threshold {threshold:g}"
    )
    print(
        f"(pipeline {built:.1f} s, replay {t2 - t1:.1f} s, priority {t3 - t2:.1f} s; product-level rules and batch methods; "
        f"'≥t': new that month and at or above the threshold; 'reach': first month at or above it, any rule)"
    )
    cols = ["month", *[f"{r} (≥t)" for r in (*RULES, "any")], "reach"]
    rows = [
        [f"{r['cutoff']:%Y-%m}", *[f"{r[x]} ({r[f'{x}≥t']})" for x in (*RULES, "any")], str(r["reach"])]
        for r in table.to_dicts()
    ]
    total = [
        "total",
        *[f"{table[x].sum()} ({table[f'{x}≥t'].sum()})" for x in (*RULES, "any")],
        str(table["reach"].sum()),
    ]
    mean = [
        "per month",
        *[f"{table[x].sum() / months:.1f} ({table[f'{x}≥t'].sum() / months:.1f})" for x in (*RULES, "any")],
        f"{table['reach'].sum() / months:.1f}",
    ]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in [*rows, total, mean]:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(c), *(len(r[i]) for r in [*rows, total, mean])) for i, c in enumerate(cols)]
        for r in [cols, *rows, total, mean]:
            print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()

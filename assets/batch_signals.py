"""Batch signals: heterogeneity of each batch against the product's other batches, and weekly MaxSPRT per batch.

Counting rules and exposure live in ``warehouse.queries.batch_inputs`` / ``warehouse.queries.exposure``; the
statistics in ``signals.batch_heterogeneity``, ``signals.baseline``, ``signals.batch_surveillance``.
The plain functions here (``compute_heterogeneity``, ``compute_sequential``, ``batch_detections``)
are what the assets, the register and ``pvtrace evaluate`` share.
"""

import dagster as dg
import duckdb
import polars as pl

from assets.detection import exposure
from assets.ingestion import case_batch_links
from assets.resources import WarehouseResource
from signals.baseline import reporting_delay_pmf
from signals.batch_heterogeneity import FlagRule, batch_heterogeneity, funnel_limits
from signals.batch_surveillance import SurveillanceDesign, events_of_interest, monitor_batch_streams, weekly_looks
from warehouse.queries.batch_inputs import (
    LEVELS,
    batch_case_rows,
    batch_event_frame,
    batch_exposure,
    batch_units_released,
    onset_frame,
    product_routes,
    store_heterogeneity,
    store_sequential,
    weekly_batch_exposure,
)
from warehouse.queries.evidence import data_lock_point

GROUP = "detection"
#: flag = BH FDR 5 % on the exact conditional test over Tarone's subset of tests that can reach
#: it (Gilbert 2005), EB05 of the shrunken rate ratio > 1, and >= 3 reports
FLAG_RULE = FlagRule(q_max=0.05, rr_shrunk_lo_min=1.0, min_cases=3, discrete_fdr=True)
DESIGN = SurveillanceDesign()


def compute_heterogeneity(
    con: duckdb.DuckDBPyConnection, up_to=None, cases: pl.DataFrame | None = None, with_funnel: bool = True
) -> dict[str, tuple[pl.DataFrame, pl.DataFrame | None]]:
    """Per level (pt, soc): (per-batch statistics with ``flagged``, funnel grid).

    ``up_to``: a cut-off date — only reports received and packs delivered by then (for replays).
    """
    cases = batch_case_rows(con) if cases is None else cases
    if up_to is not None:
        cases = cases.filter(pl.col("received_on") <= up_to)
    expo = batch_exposure(con, up_to)
    out = {}
    for level in LEVELS:
        frame = batch_event_frame(cases, expo, level)
        if frame.height == 0:
            out[level] = (frame, None)
            continue
        scored = batch_heterogeneity(
            frame, onset_frame(cases, level), rule=FLAG_RULE, with_overdispersion=with_funnel, with_funnel=with_funnel
        )
        grid = funnel_limits(frame, grid_points=40)[1] if with_funnel else None
        out[level] = (scored, grid)
    return out


def compute_sequential(con: duckdb.DuckDBPyConnection, design: SurveillanceDesign = DESIGN) -> pl.DataFrame:
    """Weekly MaxSPRT of every batch x event of interest, from each batch's first delivery to the DLP."""
    dlp = data_lock_point(con)
    packs = weekly_batch_exposure(con)
    if packs.height == 0 or dlp is None:
        return pl.DataFrame()
    cases = batch_case_rows(con)
    lags = ((cases["received_on"] - cases["start_date"]).dt.total_days() // 7).to_numpy()
    looks = weekly_looks(packs["week"].min(), dlp)
    events = events_of_interest(product_routes(con))
    return monitor_batch_streams(
        packs,
        cases.rename({"pt": "event"}),
        events,
        looks,
        reporting_delay_pmf(lags),
        batch_units_released(con),
        design,
        dlp,
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[exposure, case_batch_links],
    description="Each batch's reporting rate per pack delivered against the product's other batches, per PT and "
    "SOC: exact conditional test, EB shrunken rate ratio, NB overdispersion, funnel limits, onset.",
)
def batch_heterogeneity_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    metadata = {}
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        for level, (scored, grid) in compute_heterogeneity(con).items():
            if grid is None:
                grid = pl.DataFrame()
            n = store_heterogeneity(con, level, scored, grid, dlp)
            flagged = int(scored["flagged"].sum()) if n else 0
            metadata[f"{level}_rows"] = n
            metadata[f"{level}_flagged"] = flagged
            context.log.info(f"batch heterogeneity ({level}): {n} batch x event rows, {flagged} flagged")
    metadata["data_lock_point"] = str(dlp)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[exposure, case_batch_links],
    description="Weekly exact Poisson MaxSPRT per batch x PT of interest from the batch's release, against the "
    "leave-one-out, reporting-delay-adjusted rate of the product's other batches.",
)
def sequential_monitoring(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        result = compute_sequential(con)
        n = store_sequential(con, result, dlp) if result.height else 0
    crossed = int(result["signalled"].sum()) if n else 0
    context.log.info(f"sequential monitoring: {n} streams, {crossed} crossed the MaxSPRT boundary")
    return dg.MaterializeResult(metadata={"streams": n, "signalled": crossed, "data_lock_point": str(dlp)})


# ---- detections for the signal register ---------------------------------------------------------
FIGURE_SIG_DIGITS = 6


def _rounded(col: str, dtype) -> pl.Expr:
    return pl.col(col).round_sig_figs(FIGURE_SIG_DIGITS) if dtype.is_float() else pl.col(col)


def batch_detections(con: duckdb.DuckDBPyConnection, dlp) -> pl.DataFrame:
    """Register rows (level 'batch', batch_id set) from the stored heterogeneity flags and MaxSPRT crossings.

    Methods: ``batch_exact`` (Tarone-BH q of the exact conditional test < 0.05) and ``batch_eb``
    (EB05 of the shrunken rate ratio > 1) — both hold for a flagged row —, ``maxsprt``
    (continuous boundary crossed at a weekly look) and ``maxsprt_group`` (group-sequential
    boundary crossed).  ``detected_on``: the date of the first crossing look for MaxSPRT, the
    data lock point for heterogeneity; a row found by both takes the earlier date.
    """
    het = con.sql(
        "SELECT level AS event_level, product_id, event AS pt, batch_id, cases, exposure, expected, rr, rr_lo, rr_hi, "
        "p_exact, q_exact, rr_shrunk, rr_shrunk_lo, rr_shrunk_hi, median_batch AS onset_median_days, "
        "median_rest AS onset_median_days_rest FROM batch_heterogeneity WHERE flagged"
    ).pl()
    seq = con.sql(
        "SELECT product_id, batch_id, pt, observed, expected AS seq_expected, llr, cv, alpha, expected_total, "
        "crossed_on, observed_at_crossing, expected_at_crossing, signalled, signalled_group, crossed_on_group "
        "FROM sequential_monitoring WHERE signalled OR signalled_group"
    ).pl()
    rows = []
    for r in het.to_dicts():
        figs = {k: v for k, v in r.items() if k not in ("product_id", "pt", "batch_id")}
        figs.update(n11=r["cases"], e=r["expected"])
        rows.append(
            {
                "key": (r["product_id"], r["pt"], r["batch_id"]),
                "methods": ["batch_exact", "batch_eb"],
                "figures": figs,
                "detected_on": dlp,
            }
        )
    for r in seq.to_dicts():
        methods = (["maxsprt"] if r["signalled"] else []) + (["maxsprt_group"] if r["signalled_group"] else [])
        dates = [d for d in (r["crossed_on"] if r["signalled"] else None, r["crossed_on_group"]) if d is not None]
        figs = {
            "maxsprt_" + k: v
            for k, v in r.items()
            if k not in ("product_id", "pt", "batch_id", "signalled", "signalled_group")
        }
        figs.setdefault("n11", r["observed"])
        figs.setdefault("e", r["seq_expected"])
        rows.append(
            {
                "key": (r["product_id"], r["pt"], r["batch_id"]),
                "methods": methods,
                "figures": figs,
                "detected_on": min(dates),
            }
        )
    merged: dict[tuple, dict] = {}
    for r in rows:
        m = merged.setdefault(r["key"], {"methods": [], "figures": {}, "detected_on": r["detected_on"]})
        m["methods"] += [x for x in r["methods"] if x not in m["methods"]]
        m["figures"] = {**r["figures"], **m["figures"]}
        m["detected_on"] = min(m["detected_on"], r["detected_on"])
    if not merged:
        return pl.DataFrame(
            schema={
                "level": pl.String,
                "product_id": pl.String,
                "ingredient": pl.String,
                "pt": pl.String,
                "batch_id": pl.String,
                "methods": pl.List(pl.String),
                "figures": pl.String,
                "detected_on": pl.Date,
            }
        )
    import json
    import math

    def clean(v):
        if isinstance(v, float):
            return None if not math.isfinite(v) else float(f"{v:.{FIGURE_SIG_DIGITS}g}")
        return v.isoformat() if hasattr(v, "isoformat") else v

    return pl.DataFrame(
        [
            {
                "level": "batch",
                "product_id": k[0],
                "ingredient": None,
                "pt": k[1],
                "batch_id": k[2],
                "methods": sorted(m["methods"]),
                "figures": json.dumps({a: clean(b) for a, b in m["figures"].items()}, sort_keys=True),
                "detected_on": m["detected_on"],
            }
            for k, m in sorted(merged.items())
        ],
        schema={
            "level": pl.String,
            "product_id": pl.String,
            "ingredient": pl.String,
            "pt": pl.String,
            "batch_id": pl.String,
            "methods": pl.List(pl.String),
            "figures": pl.String,
            "detected_on": pl.Date,
        },
    )

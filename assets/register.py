"""Scores → the signal register (stable ids, methods that fired, history). Storage in ``warehouse.stores.signal_register``."""

import os

import dagster as dg
import polars as pl

from assets.batch_signals import batch_heterogeneity_scores, sequential_monitoring
from assets.detection import disproportionality_scores
from assets.resources import WarehouseResource
from signals.batch_detection import batch_detections
from signals.disproportionality import EB_COLUMNS, SCORE_COLUMNS
from signals.priority import DEFAULT_THRESHOLD, QUERY_PARAMETERS, priority_scores, validate_threshold
from signals.scoring import round_figures_expr
from warehouse.queries.batch_inputs import crossed_streams, flagged_heterogeneity
from warehouse.queries.priority_inputs import priority_inputs
from warehouse.queries.read_model import data_lock_point
from warehouse.stores.signal_register import store_priority, update_register
from warehouse.terminology.hierarchy import refresh_event_map, run_event_level

GROUP = "detection"
# the priority at or above which a signal gets a full report page and rides in manufacturer alerts
PRIORITY_THRESHOLD_ENV = "PVTRACE_PRIORITY_THRESHOLD"


def priority_threshold(env=None) -> float:
    """The configured priority threshold: ``$PVTRACE_PRIORITY_THRESHOLD`` (a number in [0, 1]) or
    :data:`signals.priority.DEFAULT_THRESHOLD`; a bad value is a ValueError naming the variable."""
    raw = (os.environ if env is None else env).get(PRIORITY_THRESHOLD_ENV, "").strip()
    if not raw:
        return DEFAULT_THRESHOLD
    try:
        return validate_threshold(raw)
    except ValueError as exc:
        raise ValueError(f"{PRIORITY_THRESHOLD_ENV}: {exc}") from None


def score_priority(con, dlp) -> pl.DataFrame:
    """Every register row's priority and components at the data lock point, stored in ``signal``."""
    scored = priority_scores(priority_inputs(con, dlp, **QUERY_PARAMETERS))
    store_priority(con, scored)
    return scored


# statistics quoted with each product/ingredient signal (rounded by the one register rule, signals.scoring): the
# counts, then every disproportionality statistic signals defines except the Yates-corrected chi-square
FIGURES = ["n11", "e", *(c for c in SCORE_COLUMNS if c != "chi2_yates"), *EB_COLUMNS]


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[disproportionality_scores, batch_heterogeneity_scores, sequential_monitoring],
    description="Stable signals (product, ingredient and batch level) with the methods that fired, first/last "
    "detection, status history and the priority score with its components (signals.priority).",
)
def signal_register(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        scores = con.sql("SELECT * FROM disproportionality_score WHERE len(rules_fired) > 0").pl()
        dlp = data_lock_point(con)
        detections = scores.select(
            "level",
            pl.when(pl.col("level") == "product").then(pl.col("drug")).alias("product_id"),
            pl.when(pl.col("level") == "ingredient").then(pl.col("drug")).alias("ingredient"),
            pl.col("event").alias("pt"),
            pl.lit(None, dtype=pl.String).alias("batch_id"),
            pl.col("rules_fired").alias("methods"),
            pl.struct(round_figures_expr(c) if scores.schema[c].is_float() else pl.col(c) for c in FIGURES)
            .struct.json_encode()
            .alias("figures"),
        )
        batch = batch_detections(flagged_heterogeneity(con), crossed_streams(con), dlp)
        detections = pl.concat(
            [
                detections.with_columns(pl.lit(None, dtype=pl.Date).alias("detected_on")),
                batch.select(detections.columns + ["detected_on"]),
            ],
            how="vertical_relaxed",
        )
        # issue 17: every detection of this run is at the run's event level (PT, HLT, ..., SMQ)
        detections = detections.with_columns(pl.lit(run_event_level()).alias("event_level"))
        refresh_event_map(con)  # how the read model finds the cases of a signal above PT (newest release)
        counts = update_register(con, detections, dlp, context.run.run_id)
        counts["batch_level_detections"] = batch.height
        scored = score_priority(con, dlp)
        threshold = priority_threshold()
        counts["priority_threshold"] = threshold
        counts["above_priority_threshold"] = int((scored["priority"] >= threshold).sum()) if scored.height else 0
    return dg.MaterializeResult(metadata={**counts, "data_lock_point": str(dlp)})

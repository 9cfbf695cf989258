"""Counts → scores → the signal register. Statistics come from ``signals``; storage from ``warehouse``."""


import dagster as dg
import polars as pl

from assets.ingestion import case_batch_links, deliveries, medication_logs
from assets.resources import WarehouseResource
from signals.disproportionality import score
from signals.rules import apply_rules
from warehouse.counts import contingency_counts
from warehouse.detection_inputs import LEVELS, additional_monitoring, report_event_rows_sql, store_scores
from warehouse.evidence import data_lock_point
from warehouse.exposure import build_exposure
from warehouse.signal_register import update_register

GROUP = "detection"
STRATA = ["sex", "age_band", "report_year"]
# Statistics quoted with each signal in the register (and so in reports and alerts), to
# FIGURE_SIG_DIGITS significant digits: DuckDB's parallel float sums are not bit-reproducible,
# and a last-bit change must not make an unchanged signal look changed (new alert hash).
FIGURE_SIG_DIGITS = 6
FIGURES = ["n11", "e", "prr", "prr_lo95", "prr_hi95", "chi2", "ror", "ror_lo95", "ror_hi95", "ic", "ic025", "ic975",
           "ebgm", "eb05", "eb95"]


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=[deliveries, medication_logs],
          description="Packs delivered, patients exposed and person-weeks per product, batch, region and week.")
def exposure(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        counts = build_exposure(con)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=[case_batch_links],
          description="PRR, ROR, χ², IC and rules per product × PT and ingredient × PT (stratified expected counts).")
def disproportionality_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    metadata = {}
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        for level in LEVELS:
            counts = contingency_counts(con, f"({report_event_rows_sql(level)})", strata=STRATA)
            counts = counts.join(additional_monitoring(con, level), on="drug", how="left")
            scored = apply_rules(score(counts))
            store_scores(con, level, scored, dlp)
            fired = scored.filter(pl.col("rules_fired").list.len() > 0)
            metadata[f"{level}_pairs"] = scored.height
            metadata[f"{level}_pairs_with_a_rule_fired"] = fired.height
            context.log.info(f"{level}: {scored.height} pairs scored, {fired.height} with a rule fired")
    metadata["data_lock_point"] = str(dlp)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=[disproportionality_scores],
          description="Stable signals with the methods that fired, first/last detection and status history.")
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
            pl.struct(
                pl.col(c).round_sig_figs(FIGURE_SIG_DIGITS) if scores.schema[c].is_float() else pl.col(c) for c in FIGURES
            ).struct.json_encode().alias("figures"),
        )
        counts = update_register(con, detections, dlp, context.run.run_id)
    return dg.MaterializeResult(metadata={**counts, "data_lock_point": str(dlp)})

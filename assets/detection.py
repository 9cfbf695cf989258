"""Counts → scores: exposure, and the disproportionality battery per level. Statistics from ``signals``; I/O from ``warehouse``."""

import dagster as dg
import polars as pl

from assets.engine import EngineResource
from assets.ingestion import case_batch_links, deliveries, medication_logs
from assets.resources import WarehouseResource
from warehouse.engine import fanout
from warehouse.engine.read_model import READ_MODEL_TABLES
from warehouse.queries.detection_inputs import (
    LEVELS,
    additional_monitoring,
    report_event_counts,
    store_prior,
    store_scores,
)
from warehouse.queries.exposure import EXPOSURE_TABLES, build_exposure
from warehouse.queries.read_model import data_lock_point

GROUP = "detection"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[deliveries, medication_logs],
    description="Packs delivered, patients exposed and person-weeks per product, batch, region and week.",
)
def exposure(warehouse: WarehouseResource, engine: EngineResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con, engine.open(con, EXPOSURE_TABLES) as eng:
        counts = build_exposure(con, eng)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[case_batch_links],
    description="PRR, ROR, χ², IC, MGPS (EBGM, EB05, EB95 with a fitted prior) and the regulator rules per "
    "product × PT and ingredient × PT; expected counts stratified by sex, age band and report year; "
    "Fisher mid-p with Benjamini–Hochberg q-values.",
)
def disproportionality_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
) -> dg.MaterializeResult:
    metadata = {}
    with warehouse.transaction() as con, engine.open(con, READ_MODEL_TABLES) as eng:
        dlp = data_lock_point(con)
        for level in LEVELS:
            counts = report_event_counts(con, level, eng).join(additional_monitoring(con, level), on="drug", how="left")
            if counts.is_empty():  # e.g. FAERS alone: no product catalogue, so no product-level pairs (issue 17)
                store_scores(con, level, counts, dlp)
                metadata[f"{level}_pairs"] = 0
                continue
            # DuMouchel's prior fitted on this level's own pairs (n ≥ 1, stratified E); Fisher mid-p + BH q
            # the posterior per drug bucket in parallel when PVTRACE_FANOUT says so (default: one call)
            result = fanout.score_pairs(counts, min_count=1, fan=fanout.FanOut.from_env())
            scored, prior = result.scored, result.prior
            store_scores(con, level, scored, dlp)
            store_prior(con, level, prior, dlp)
            metadata[f"{level}_prior"] = dg.MetadataValue.json(
                {k: getattr(prior, k) for k in ("alpha1", "beta1", "alpha2", "beta2", "p", "loglik", "at_bound")}
            )
            fired = scored.filter(pl.col("rules_fired").list.len() > 0)
            metadata[f"{level}_pairs"] = scored.height
            metadata[f"{level}_pairs_with_a_rule_fired"] = fired.height
            context.log.info(f"{level}: {scored.height} pairs scored, {fired.height} with a rule fired")
    metadata["data_lock_point"] = str(dlp)
    return dg.MaterializeResult(metadata=metadata)

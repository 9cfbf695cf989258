"""Counts → scores → the signal register. Statistics come from ``signals``; storage from ``warehouse``."""

import dagster as dg
import polars as pl

from assets.ingestion import case_batch_links, deliveries, medication_logs
from assets.resources import WarehouseResource
from signals.disproportionality import score
from signals.mgps import fit_prior
from signals.multiplicity import add_fdr
from signals.rules import apply_rules
from warehouse.queries.counts import contingency_counts
from warehouse.queries.detection_inputs import (
    LEVELS,
    additional_monitoring,
    report_event_rows_sql,
    store_prior,
    store_scores,
)
from warehouse.queries.evidence import data_lock_point
from warehouse.queries.exposure import build_exposure

GROUP = "detection"
STRATA = ["sex", "age_band", "report_year"]


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[deliveries, medication_logs],
    description="Packs delivered, patients exposed and person-weeks per product, batch, region and week.",
)
def exposure(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        counts = build_exposure(con)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[case_batch_links],
    description="PRR, ROR, χ², IC, MGPS (EBGM, EB05, EB95 with a fitted prior) and the regulator rules per "
    "product × PT and ingredient × PT; expected counts stratified by sex, age band and report year; "
    "Fisher mid-p with Benjamini–Hochberg q-values.",
)
def disproportionality_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    metadata = {}
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        for level in LEVELS:
            counts = contingency_counts(con, f"({report_event_rows_sql(level)})", strata=STRATA)
            counts = counts.join(additional_monitoring(con, level), on="drug", how="left")
            # DuMouchel's prior, fitted on this level's own pairs (n ≥ 1, stratified E)
            prior = fit_prior(counts["n11"].to_numpy(), counts["e"].to_numpy(), min_count=1)
            # one-sided Fisher mid-p and Benjamini–Hochberg q over all pairs of the level
            scored = apply_rules(add_fdr(score(counts, prior=prior)))
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

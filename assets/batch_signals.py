"""Batch signals: heterogeneity of each batch against the product's other batches, and weekly MaxSPRT per batch.

Table I/O: ``warehouse.queries.batch_inputs`` (counted case rows, exposure, storage). The glue and
the statistics: ``signals.batch_detection`` (over ``signals.batch_heterogeneity``,
``signals.batch_surveillance``, ``signals.baseline``).
"""

import dagster as dg
import polars as pl

from assets.detection import exposure
from assets.engine import EngineResource
from assets.ingestion import case_batch_links
from assets.resources import WarehouseResource
from warehouse.engine import fanout
from warehouse.engine.read_model import READ_MODEL_TABLES
from warehouse.queries.batch_inputs import (
    BATCH_CASE_TABLES,
    batch_case_rows,
    batch_exposure,
    batch_units_released,
    product_routes,
    store_heterogeneity,
    store_sequential,
    weekly_batch_exposure,
)
from warehouse.queries.read_model import data_lock_point

GROUP = "detection"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[exposure, case_batch_links],
    description="Each batch's reporting rate per pack delivered against the product's other batches, per PT and "
    "SOC: exact conditional test, EB shrunken rate ratio, NB overdispersion, funnel limits, onset.",
)
def batch_heterogeneity_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
) -> dg.MaterializeResult:
    metadata = {}
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        with engine.open(con, (*READ_MODEL_TABLES, *BATCH_CASE_TABLES)) as eng:
            cases = batch_case_rows(con, engine=eng)
        # per product bucket in parallel when PVTRACE_FANOUT says so (default: one call)
        by_level = fanout.heterogeneity_by_level(cases, batch_exposure(con), fanout.FanOut.from_env())
        for level, (scored, grid) in by_level.items():
            n = store_heterogeneity(con, level, scored, pl.DataFrame() if grid is None else grid, dlp)
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
def sequential_monitoring(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        with engine.open(con, (*READ_MODEL_TABLES, *BATCH_CASE_TABLES)) as eng:
            cases = batch_case_rows(con, engine=eng)
        result = fanout.sequential_streams(
            weekly_batch_exposure(con),
            cases,
            product_routes(con),
            batch_units_released(con),
            dlp,
            fanout.FanOut.from_env(),
        )
        n = store_sequential(con, result, dlp) if result.height else 0
    crossed = int(result["signalled"].sum()) if n else 0
    context.log.info(f"sequential monitoring: {n} streams, {crossed} crossed the MaxSPRT boundary")
    return dg.MaterializeResult(metadata={"streams": n, "signalled": crossed, "data_lock_point": str(dlp)})

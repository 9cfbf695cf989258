# Dagster validates context annotations at definition time, so no `from __future__ import annotations` here.
"""Batch traceability records: one row per batch with where it went and what was reported.

Thin: the SQL lives in ``warehouse.linkage.batch_record``; reports, alerts and the dashboard read the
``batch_traceability`` table (or call ``batch_traceability_record`` for one batch).
"""

import dagster as dg

from assets.ingestion import case_batch_links, deliveries, supply_events
from assets.resources import WarehouseResource
from warehouse.linkage.batch_record import build_batch_traceability

GROUP = "traceability"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[supply_events, deliveries, case_batch_links],
    description="Per batch: product, manufacturer, site, dates, units released/shipped/delivered, regions and "
    "pharmacies reached, supply route, cold-chain excursions, recall status, linked reports by method.",
)
def batch_traceability_records(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.transaction() as con:
        counts = build_batch_traceability(con)
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(int(v)) for k, v in counts.items()})


@dg.asset_check(
    asset=batch_traceability_records, description="Every delivered batch has a supply route (EPCIS events) behind it."
)
def delivered_batches_have_a_route(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        delivered, without_route = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE len(route) = 0) FROM batch_traceability WHERE units_delivered > 0"
        ).fetchone()
        examples = [
            b
            for (b,) in con.sql(
                "SELECT batch_id FROM batch_traceability WHERE units_delivered > 0 AND len(route) = 0 "
                "ORDER BY batch_id LIMIT 10"
            ).fetchall()
        ]
    return dg.AssetCheckResult(
        passed=without_route == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "delivered_batches": delivered,
            "without_route": without_route,
            "examples": dg.MetadataValue.json(examples),
        },
    )

"""Asset checks that the warehouse's natural keys hold (warehouse.schema.NATURAL_KEYS).

The large fact tables carry no PRIMARY KEY index (it makes bulk replaces ~1000x slower in
DuckDB); their loaders de-duplicate before writing, and these checks verify it after every
materialisation: a duplicated or null key part fails the check (ERROR), naming the table.
"""

import dagster as dg

from assets.batch_signals import batch_heterogeneity_scores, sequential_monitoring
from assets.detection import disproportionality_scores
from assets.ingestion import case_batch_links, case_reports, deliveries, medication_logs, packs, supply_events
from assets.resources import WarehouseResource
from warehouse.schema import key_violations

KEYED_TABLES = [
    (packs, ["pack"]),
    (supply_events, ["supply_event"]),
    (deliveries, ["delivery"]),
    (medication_logs, ["medication_log"]),
    (case_reports, ["case_report", "case_drug", "case_reaction"]),
    (case_batch_links, ["case_batch_link"]),
    (disproportionality_scores, ["disproportionality_score"]),
    (batch_heterogeneity_scores, ["batch_heterogeneity"]),
    (sequential_monitoring, ["sequential_monitoring"]),
]


def _natural_key_check(asset, tables: list[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="natural_keys_unique",
        blocking=True,
        description=f"Every row of {', '.join(tables)} has a unique, complete natural key.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            violations = key_violations(con, tables)
        return dg.AssetCheckResult(
            passed=not any(violations.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={f"violations_{t}": n for t, n in violations.items()},
        )

    return _check


natural_key_checks = [_natural_key_check(asset, tables) for asset, tables in KEYED_TABLES]

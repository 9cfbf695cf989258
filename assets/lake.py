# Dagster validates context annotations at definition time, so no `from __future__ import annotations` here.
"""Inbox → Delta lake, one UTC day per partition (issue 15: daily partitions for deliveries and cases).

``lake_deliveries`` and ``lake_case_versions`` land the rows of their day — deliveries by the UTC day
of ``delivered_at``, case versions by ``received_on`` — into the lake (``warehouse.lake``), with the
warehouse loaders' own rules (``warehouse.lake.daily``): every row of the day is loaded or quarantined
(``<stage>_quarantine``, by day). A partition *replaces* its day: re-running it changes nothing, and
the lake's derived tables (``delivery_daily``, ``exposure_weekly``, ``case_latest``) are recomputed
for the partitions the day touches only. Each table's partition is written in one Delta commit, so a
failed day leaves each table at its old or its new version, never a half-written partition; a day
that failed between two tables is repaired by running it again.

The partitions start at ``PVTRACE_LANDING_START`` (default 2024-01-01, the demo world's first
deliveries); ``daily_landing_job`` runs them, its schedule lands the day just ended at 01:00 UTC, and
a backfill of a range runs as one run (the inbox is read once for the range). The lake lives under
``PVTRACE_LAKE`` (default ``output/lake``). This is the path past one machine: Spark reads these
tables (docs/scale.md); the unpartitioned graph (``pvtrace run``, the demo) does not use them and
the register, alerts and dashboard stay on the embedded DuckDB store.
"""

import datetime as dt
import os

import dagster as dg

from assets.ingestion import packs
from assets.resources import InboxResource, WarehouseResource
from warehouse.lake.daily import DayRows, case_version_days, delivery_days
from warehouse.lake.store import Lake

GROUP = "lake"
LANDING_START = os.environ.get("PVTRACE_LANDING_START", "2024-01-01")
DAILY = dg.DailyPartitionsDefinition(start_date=LANDING_START, timezone="UTC", hour_offset=1)
DEFAULT_LAKE = "output/lake"
PER_DAY_METADATA_MAX = 31


class LakeResource(dg.ConfigurableResource):
    """The Delta lake's root folder (or object-store URI delta-rs understands)."""

    path: str

    def lake(self) -> Lake:
        return Lake(self.path)


def default_lake(path: str | None = None) -> LakeResource:
    return LakeResource(path=path or os.environ.get("PVTRACE_LAKE", DEFAULT_LAKE))


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The UTC days of the run's partition(s): one for the schedule, a range for a backfill."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _land(lake: Lake, rows: DayRows, days: list[dt.date], stage: str) -> dg.MaterializeResult:
    land = lake.land_deliveries if stage == "deliveries" else lake.land_case_versions
    landed = land(rows.loaded, days)
    quarantined = lake.land_quarantine(stage, rows.quarantined, days)
    per_day = [
        dict(zip(("day", "read", "loaded", "quarantined"), (str(d), *rows.accounted(d)), strict=True)) for d in days
    ]
    return dg.MaterializeResult(
        metadata={
            "days": len(days),
            "rows_read": sum(r["read"] for r in per_day),
            "rows_loaded": rows.loaded.height,
            "rows_quarantined": rows.quarantined.height,
            "partitions_rewritten": dg.MetadataValue.json({**landed.partitions, **quarantined.partitions}),
            # each partition of a range repeats the metadata: the per-day table only for a short range
            "per_day": dg.MetadataValue.json(per_day if len(days) <= PER_DAY_METADATA_MAX else []),
            "reasons": dg.MetadataValue.json(
                dict(rows.quarantined.group_by("reason").len().sort("reason").iter_rows())
                if rows.quarantined.height
                else {}
            ),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"delta"},
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[packs],
    description="One UTC day of deliveries into the lake (by delivered_at), resolved by the warehouse's "
    "delivery loader against its packs; the day's daily counts and its week's exposure recomputed.",
)
def lake_deliveries(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource, lake: LakeResource
) -> dg.MaterializeResult:
    days = partition_days(context)
    with warehouse.connect() as con:
        rows = delivery_days(con, inbox.folder, warehouse.pseudonym_salt(), days)
    return _land(lake.lake(), rows, days, "deliveries")


@dg.asset(
    group_name=GROUP,
    kinds={"delta"},
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="One day of case versions into the lake (by received_on), read by the case loader's reader; "
    "the latest version recomputed in the case buckets the day touches.",
)
def lake_case_versions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource, lake: LakeResource
) -> dg.MaterializeResult:
    days = partition_days(context)
    rows = case_version_days(inbox.folder, warehouse.pseudonym_salt(), days)
    return _land(lake.lake(), rows, days, "cases")


LAKE_ASSETS = [lake_deliveries, lake_case_versions]

daily_landing_job = dg.define_asset_job(
    "daily_landing_job",
    selection=dg.AssetSelection.assets(*LAKE_ASSETS),
    executor_def=dg.in_process_executor,
    description="One UTC day of deliveries and case versions from the inbox into the Delta lake (docs/scale.md).",
)
# fires at 01:00 UTC (the partitions' hour_offset) and lands the day just ended
daily_landing_schedule = dg.build_schedule_from_partitioned_job(daily_landing_job, name="daily_landing")

__all__ = ["LAKE_ASSETS", "LakeResource", "daily_landing_job", "daily_landing_schedule", "default_lake"]

"""The Dagster code location: every asset, check, job and schedule of PV Trace.

All assets write to one DuckDB file, which allows a single writing process, so the jobs use
the in-process executor (docs/architecture.md, "Assets and jobs"). ``dagster dev`` loads this module (pyproject
``[tool.dagster]``).
"""

import dagster as dg

from assets import (
    alerting,
    batch_signals,
    checks,
    detection,
    ingestion,
    register,
    reporting,
    traceability,
)
from assets.generation import publish_generation_op
from assets.lake import LAKE_ASSETS, daily_landing_job, daily_landing_schedule, default_lake
from assets.resources import default_resources

# ALL_ASSETS: the unpartitioned graph (load → score → register → alerts), materialised in one go.
# REPORT_ASSETS: the regulator deliverables, partitioned by month (assets/reporting.py); Dagster
# refuses to materialise both kinds in one call without a partition key, so they are kept apart.
ALL_ASSETS = dg.load_assets_from_modules([ingestion, detection, batch_signals, register, alerting, traceability])
ALL_CHECKS = dg.load_asset_checks_from_modules(
    [ingestion, detection, batch_signals, register, reporting, alerting, traceability, checks]
)
REPORT_ASSETS = reporting.PARTITIONED_ASSETS
# LAKE_ASSETS (issue 15): the inbox into the Delta lake, one UTC day per partition (assets/lake.py), apart too.


@dg.job(
    name="daily_detection_job",
    executor_def=dg.in_process_executor,
    description="The unpartitioned graph as one new generation (assets/generation.py, the same function as "
    "`pvtrace run`): load what arrived, recompute scores and the register on a working copy, publish it or "
    "nothing, then send manufacturer alerts (reports: monthly_report_job).",
)
def daily_detection_job():
    publish_generation_op()


monthly_report_job = dg.define_asset_job(
    "monthly_report_job",
    selection=dg.AssetSelection.assets(*REPORT_ASSETS),
    executor_def=dg.in_process_executor,
    description="For one month: the periodic signal report (HTML + PDF) and E2B(R3) batch per jurisdiction, the eRMR CSVs.",
)

daily_detection_schedule = dg.ScheduleDefinition(
    job=daily_detection_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    name="daily_detection",
)
# fires at 04:00 UTC on the 1st (the partitions' hour_offset) and builds the month just ended
monthly_report_schedule = dg.build_schedule_from_partitioned_job(monthly_report_job, name="monthly_report")

defs = dg.Definitions(
    assets=[*ALL_ASSETS, *REPORT_ASSETS, *LAKE_ASSETS],
    asset_checks=ALL_CHECKS,
    jobs=[daily_detection_job, monthly_report_job, alerting.manufacturer_alerts_job, daily_landing_job],
    schedules=[daily_detection_schedule, monthly_report_schedule, daily_landing_schedule],
    sensors=[alerting.signal_register_sensor],
    resources={**default_resources(), "lake": default_lake()},
    executor=dg.in_process_executor,
)

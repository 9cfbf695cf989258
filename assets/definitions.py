"""The Dagster code location: every asset, check, job and schedule of PV Trace.

All assets write to one DuckDB file, which allows a single writing process, so the jobs use
the in-process executor (DESIGN.md §5). ``dagster dev`` loads this module (pyproject
``[tool.dagster]``).
"""


import dagster as dg

from assets import alerting, batch_signals, detection, ingestion, register, reporting, traceability
from assets.resources import default_resources

ALL_ASSETS = dg.load_assets_from_modules([ingestion, detection, batch_signals, register, reporting, alerting, traceability])
ALL_CHECKS = dg.load_asset_checks_from_modules([ingestion, detection, batch_signals, register, reporting, alerting, traceability])

pvtrace_job = dg.define_asset_job(
    "pvtrace_job", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
    description="The whole graph: inbox → warehouse → scores → signal register → report and alerts.",
)
daily_detection_job = dg.define_asset_job(
    "daily_detection_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(reporting.periodic_signal_report),
    executor_def=dg.in_process_executor,
    description="Load what arrived, recompute scores and the register, send manufacturer alerts.",
)
monthly_report_job = dg.define_asset_job(
    "monthly_report_job", selection=dg.AssetSelection.assets(reporting.periodic_signal_report),
    executor_def=dg.in_process_executor, description="Render the periodic signal report from the current register.",
)

daily_detection_schedule = dg.ScheduleDefinition(
    job=daily_detection_job, cron_schedule="0 2 * * *", execution_timezone="UTC", name="daily_detection",
)
monthly_report_schedule = dg.ScheduleDefinition(
    job=monthly_report_job, cron_schedule="0 4 1 * *", execution_timezone="UTC", name="monthly_report",
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[pvtrace_job, daily_detection_job, monthly_report_job, alerting.manufacturer_alerts_job],
    schedules=[daily_detection_schedule, monthly_report_schedule],
    sensors=[alerting.signal_register_sensor],
    resources=default_resources(),
    executor=dg.in_process_executor,
)

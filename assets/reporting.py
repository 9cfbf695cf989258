"""Signal register → the periodic report and manufacturer alerts (rendered by ``reports``)."""


import datetime as dt
from importlib.metadata import PackageNotFoundError, version

import dagster as dg

from assets.detection import exposure
from assets.register import signal_register
from assets.ingestion import supply_events
from assets.resources import OutputResource, WarehouseResource
from reports.periodic_report import PeriodicReport, write_periodic_report
from warehouse.evidence import (
    data_lock_point, input_lineage, signal_batches, signal_overview, warehouse_summary,
)

GROUP = "reporting"


def code_version() -> str:
    try:
        return version("pvtrace")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dg.asset(group_name=GROUP, kinds={"html"}, deps=[signal_register, exposure, supply_events],
          description="Periodic signal report (HTML) with the batch traceability annex, under output/reports/.")
def periodic_signal_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                           output: OutputResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        dlp = data_lock_point(con)
        report = PeriodicReport(
            title="PV Trace periodic signal report",
            data_lock_point=dlp, run_id=context.run.run_id, generated_at=_now(), code_version=code_version(),
            summary=warehouse_summary(con), signals=signal_overview(con), batches=signal_batches(con),
            lineage=input_lineage(con),
        )
    path = write_periodic_report(report, output.folder("reports"), f"periodic_signal_report_{dlp}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), "data_lock_point": str(dlp),
        "signals": report.signals.height,
    })

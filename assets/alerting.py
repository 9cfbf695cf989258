"""Signal register → batch-linked alerts to manufacturers (content and channels in ``reports.alerts``)."""

import datetime as dt

import dagster as dg
import polars as pl

from assets.detection import exposure
from assets.ingestion import supply_events
from assets.register import signal_register
from assets.reporting import _now
from assets.resources import OutputResource, WarehouseResource
from reports.alerts import build_alert, write_alert
from warehouse.alert_log import previous_alert, record_alert
from warehouse.evidence import data_lock_point, signal_batches, signal_case_summaries, signal_overview

GROUP = "alerting"


@dg.asset(group_name=GROUP, kinds={"json", "html"}, deps=[signal_register, exposure, supply_events],
          description="Per-manufacturer batch-linked alerts (JSON + HTML) under output/alerts/<manufacturer>/.")
def manufacturer_alerts(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                        output: OutputResource) -> dg.MaterializeResult:
    written, unchanged = [], 0
    with warehouse.transaction() as con:
        dlp = data_lock_point(con)
        signals = signal_overview(con).filter(pl.col("level") == "product")
        batches, cases = signal_batches(con), signal_case_summaries(con)
        manufacturers = con.sql("SELECT manufacturer_id, name FROM manufacturer ORDER BY 1").pl().to_dicts()
        for m in manufacturers:
            own = signals.filter(pl.col("manufacturer_id") == m["manufacturer_id"])
            if own.height == 0:
                continue
            ids = own["signal_id"].implode()
            alert = build_alert(m, own, batches.filter(pl.col("signal_id").is_in(ids)),
                                cases.filter(pl.col("signal_id").is_in(ids)), dlp)
            prev = previous_alert(con, alert.manufacturer_id)
            if prev and prev[0] == alert.alert_id:
                unchanged += 1
                continue
            json_path, html_path = write_alert(alert, output.folder("alerts", m["manufacturer_id"]), _now(),
                                               supersedes=prev[0] if prev else None)
            record_alert(con, alert_id=alert.alert_id, manufacturer_id=alert.manufacturer_id,
                         signal_ids=own["signal_id"].to_list(),
                         batch_ids=sorted({b["batch_id"] for s in alert.content["signals"] for b in s["batches"]}),
                         content_hash=alert.content_hash, created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                         json_path=str(json_path), html_path=str(html_path))
            written.append(str(json_path))
    context.log.info(f"{len(written)} alerts written, {unchanged} unchanged since the last run")
    return dg.MaterializeResult(metadata={"written": len(written), "unchanged": unchanged,
                                          "files": dg.MetadataValue.json(written)})

"""Signal register → batch-linked alerts to manufacturers, through a transactional outbox.

1. In one transaction: for each manufacturer with signals on its own products, build the alert
   from evidence scoped to that manufacturer (``warehouse.queries.alert_evidence``); if its state
   (signals, statuses, implicated batches) differs from the latest alert's, record it with one
   pending delivery per channel (``warehouse.stores.alert_outbox``). Commit.
2. After the commit: deliver everything due — this run's alerts and whatever earlier runs left
   pending — on the file outbox, e-mail and webhook (``reports.channels``), with bounded retries.

``signal_register_sensor`` requests ``manufacturer_alerts_job`` when the register changes (an
analyst's status change, a new or refreshed signal) or when deliveries left pending fall due.
"""

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from assets.detection import exposure
from assets.ingestion import supply_events
from assets.register import priority_threshold, signal_register
from assets.resources import OutputResource, WarehouseResource
from reports.alerts import (
    alert_document,
    alert_state,
    build_alert,
    carried_signal_ids,
    document_text,
    render_alert_html,
    render_alert_text,
)
from reports.channels.dispatch import RetryPolicy, deliver_pending
from reports.channels.file import FileChannel
from reports.channels.smtp import SmtpChannel
from reports.channels.webhook import WebhookChannel
from warehouse.queries.alert_evidence import (
    alert_batches_by_manufacturer,
    alert_case_summaries,
    alert_signals,
    batch_consignments,
    batch_excursions,
    batch_pharmacies,
)
from warehouse.queries.read_model import data_lock_point
from warehouse.schema import connect
from warehouse.stores.alert_outbox import (
    DuckDBOutbox,
    delivery_counts,
    enqueue_alert,
    latest_alert,
    utcnow,
)

GROUP = "alerting"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


CHANNELS = ("file", "email", "webhook")


def manufacturer_channels(row: dict) -> list[str]:
    """Channels for a manufacturer: ``alert_channels`` from the reference data, else all three."""
    wanted = [c.strip().lower() for c in (row.get("alert_channels") or "").replace(";", ",").split(",") if c.strip()]
    return [c for c in CHANNELS if c in wanted] if wanted else list(CHANNELS)


def default_channels(output_root: Path, env=None) -> dict:
    return {"file": FileChannel(Path(output_root)), "email": SmtpChannel(env), "webhook": WebhookChannel(env)}


def enqueue_alerts(
    con: duckdb.DuckDBPyConnection,
    salt: str,
    generated_at: str,
    created_at: dt.datetime,
    priority_threshold: float | None = None,
) -> dict:
    """Record a new alert (and its pending deliveries) for every manufacturer whose alert state changed.

    With a ``priority_threshold`` an alert carries the signals at or above it (or escalated/validated) and
    summarises the rest (``reports.alerts.carried_signal_ids``); its state, hence whether it is new, follows the
    carried signals only. A manufacturer with signals but none to carry gets one alert with the summary (a
    kilobyte, sent once), so it knows of them; a signal rising above the threshold updates it."""
    dlp = data_lock_point(con)
    new, unchanged = [], 0
    manufacturers = con.sql("SELECT * FROM manufacturer ORDER BY manufacturer_id").pl().to_dicts()
    batches_of = alert_batches_by_manufacturer(con)
    for m in manufacturers:
        mid = m["manufacturer_id"]
        signals = alert_signals(con, mid)
        if signals.height == 0:
            continue
        batches = batches_of[mid]
        prev = latest_alert(con, mid)
        carried = carried_signal_ids(signals, priority_threshold)
        # identity first (cheap): an unchanged state needs no cases, consignments or pharmacies
        state = alert_state(
            mid,
            [
                {
                    "signal_id": s,
                    "status": st,
                    "batches": [{"batch_id": b} for b in batches.filter(pl.col("signal_id") == s)["batch_id"]],
                }
                for s, st in signals.filter(pl.col("signal_id").is_in(sorted(carried)))
                .select("signal_id", "status")
                .iter_rows()
            ],
        )
        if prev and prev["state"] == state:
            unchanged += 1
            continue
        batch_ids = batches.filter(pl.col("signal_id").is_in(sorted(carried)))["batch_id"].unique().to_list()
        alert = build_alert(
            m,
            signals,
            batches,
            alert_case_summaries(con, mid, salt),
            dlp,
            pharmacies=batch_pharmacies(con, mid, batch_ids),
            consignments=batch_consignments(con, mid, batch_ids),
            excursions=batch_excursions(con, mid, batch_ids),
            supersedes=prev["alert_id"] if prev else None,
            previous_state=prev["state"] if prev else None,
            priority_threshold=priority_threshold,
        )
        doc = alert_document(alert, generated_at)
        render_alert_html(doc), render_alert_text(doc)  # a template error fails the run here, not every delivery
        document = document_text(doc)
        if enqueue_alert(
            con,
            alert_id=alert.alert_id,
            manufacturer_id=mid,
            signal_ids=alert.signal_ids,
            batch_ids=alert.batch_ids,
            content_hash=alert.content_hash,
            state=alert.state,
            supersedes=alert.supersedes,
            document=document,
            channels=manufacturer_channels(m),
            created_at=created_at,
        ):
            new.append(alert.alert_id)
    return {"new": new, "unchanged": unchanged}


@dg.asset(
    group_name=GROUP,
    kinds={"json", "html", "duckdb"},
    deps=[signal_register, exposure, supply_events],
    description="Per-manufacturer batch-linked alerts, recorded in the alert outbox and delivered to the file "
    "outbox (output/alerts/<manufacturer>/), e-mail and webhook; pending deliveries retried.",
)
def manufacturer_alerts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, output: OutputResource
) -> dg.MaterializeResult:
    salt = warehouse.pseudonym_salt()
    with warehouse.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            queued = enqueue_alerts(con, salt, _now(), utcnow(), priority_threshold=priority_threshold())
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        outbox = DuckDBOutbox(con, run_id=context.run.run_id)
        sent = deliver_pending(
            outbox, default_channels(output.folder("alerts")), RetryPolicy.from_env(), log=context.log
        )
        states = delivery_counts(con)
    context.log.info(f"{len(queued['new'])} new alerts, {queued['unchanged']} unchanged; deliveries this run: {sent}")
    return dg.MaterializeResult(
        metadata={
            "new_alerts": len(queued["new"]),
            "unchanged": queued["unchanged"],
            "alerts": dg.MetadataValue.json(queued["new"]),
            "deliveries_this_run": dg.MetadataValue.json(sent),
            "delivery_states": dg.MetadataValue.json(states),
        }
    )


@dg.asset_check(
    asset=manufacturer_alerts, description="No alert delivery failed permanently or waits for more than a day."
)
def alert_deliveries(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        failed, stale = con.execute(
            "SELECT count(*) FILTER (WHERE state = 'failed'), "
            "count(*) FILTER (WHERE state IN ('pending', 'sending') AND created_at < ?) FROM alert_delivery",
            [utcnow() - dt.timedelta(days=1)],
        ).fetchone()
        states = delivery_counts(con)
    return dg.AssetCheckResult(
        passed=failed == 0 and stale == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed": failed, "pending_over_a_day": stale, "states": dg.MetadataValue.json(states)},
    )


manufacturer_alerts_job = dg.define_asset_job(
    "manufacturer_alerts_job",
    selection=dg.AssetSelection.assets(manufacturer_alerts),
    executor_def=dg.in_process_executor,
    description="Build alerts from the current signal register and deliver everything due.",
)


def register_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A hash of what alerts depend on in the register: ids, statuses, batches, last detection."""
    h = hashlib.sha256()
    for row in con.execute(
        "SELECT signal_id, status, batch_id, last_detected FROM signal ORDER BY signal_id"
    ).fetchall():
        h.update(repr(row).encode())
    return h.hexdigest()[:16]


def _next_due(con: duckdb.DuckDBPyConnection) -> str | None:
    """When the earliest undelivered (pending or in-doubt) delivery falls due, if any."""
    try:
        (due,) = con.execute(
            "SELECT min(coalesce(next_attempt_at, created_at)) FROM alert_delivery "
            "WHERE state IN ('pending', 'sending')"
        ).fetchone()
    except duckdb.CatalogException:  # a warehouse from before the outbox
        return None
    return due.isoformat() if due else None


def _file_stamp(path: str) -> str:
    """Size and mtime of the warehouse and its WAL: unchanged means nothing was written."""
    parts = []
    for p in (Path(path), Path(f"{path}.wal")):
        st = p.stat() if p.exists() else None
        parts.append(f"{st.st_mtime_ns}:{st.st_size}" if st else "-")
    return "|".join(parts)


@dg.sensor(
    job=manufacturer_alerts_job,
    minimum_interval_seconds=int(os.environ.get("PVTRACE_ALERT_SENSOR_S", "300")),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs manufacturer alerting when the signal register changes or a pending delivery falls due.",
)
def signal_register_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Cursor: the warehouse file stamp, the register fingerprint and when pending deliveries fall due.

    DuckDB lets a reader block a writer, so the sensor opens the warehouse (read-only, for
    milliseconds) only when the file changed since the last tick; otherwise it decides from the cursor.
    """
    if not Path(warehouse.path).exists():
        return dg.SkipReason(f"no warehouse at {warehouse.path}")
    cursor = json.loads(context.cursor) if context.cursor else {}
    stamp, now = _file_stamp(warehouse.path), utcnow().isoformat()
    if cursor.get("stamp") == stamp:
        fingerprint, due = cursor["fp"], cursor.get("due")
    else:
        try:
            con = connect(warehouse.path, read_only=True, lock_wait=0)  # never make the daemon wait
        except duckdb.Error as e:  # a run holds the write lock: look again at the next tick
            return dg.SkipReason(f"warehouse busy: {e}")
        try:
            fingerprint, due = register_fingerprint(con), _next_due(con)
        finally:
            con.close()
    if fingerprint != cursor.get("fp"):
        context.update_cursor(json.dumps({"stamp": stamp, "fp": fingerprint, "due": due}))
        return dg.RunRequest(run_key=f"register-{fingerprint}", tags={"pvtrace/trigger": "signal_register"})
    if due and due <= now:
        # asked once per due time; the run rewrites the file, so the next tick reads the new state
        context.update_cursor(json.dumps({"stamp": stamp, "fp": fingerprint, "due": None}))
        return dg.RunRequest(run_key=f"retry-{fingerprint}-{due}", tags={"pvtrace/trigger": "pending_deliveries"})
    context.update_cursor(json.dumps({"stamp": stamp, "fp": fingerprint, "due": due}))
    return dg.SkipReason("signal register unchanged, nothing due")

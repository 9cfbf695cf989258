"""Alerting through Dagster: the asset on a planted warehouse with all three channels live on loopback
(and nothing leaking through any of them), a webhook that is down for one run, and the sensor that
requests the alerting job when the signal register changes or a pending delivery falls due."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets.alerting import (
    manufacturer_alerts,
    manufacturer_alerts_job,
    signal_register_sensor,
)
from assets.definitions import defs
from assets.resources import WarehouseResource, default_resources
from reports.channels.webhook import default_secret_env, verify
from tests.reports.alert_fixtures import (
    ACME,
    FORBIDDEN_FOR_ACME,
    RIVAL,
    SmtpReceiver,
    WebhookReceiver,
    build_alert_warehouse,
    set_signal_status,
)
from warehouse.schema import connect

pytestmark = pytest.mark.e2e

FAST_RETRIES = {
    "PVTRACE_ALERT_ATTEMPTS_PER_RUN": "2",
    "PVTRACE_ALERT_RETRY_BASE_S": "0.01",
    "PVTRACE_ALERT_NEXT_RUN_DELAY_S": "0",
}


def materialise(tmp_path):
    result = dg.materialize(
        [manufacturer_alerts],
        resources=default_resources(
            inbox=str(tmp_path / "inbox"), warehouse=str(tmp_path / "pv.duckdb"), output=str(tmp_path / "out")
        ),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def states(path) -> dict:
    con = connect(str(path), read_only=True)
    try:
        return {
            (m, c): s for m, c, s in con.sql("SELECT manufacturer_id, channel, state FROM alert_delivery").fetchall()
        }
    finally:
        con.close()


def test_definitions_have_the_alerting_job_and_sensor():
    assert defs.resolve_job_def("manufacturer_alerts_job").name == "manufacturer_alerts_job"
    assert defs.resolve_sensor_def("signal_register_sensor").job_name == "manufacturer_alerts_job"


def test_all_channels_deliver_nothing_leaks_and_a_down_webhook_catches_up(tmp_path, monkeypatch):
    for k, v in FAST_RETRIES.items():
        monkeypatch.setenv(k, v)
    with SmtpReceiver() as smtp, WebhookReceiver(fail_first=2, fail_status=502) as hook:
        for k, v in smtp.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv(default_secret_env(ACME), "acme-secret")
        build_alert_warehouse(tmp_path / "pv.duckdb", webhook_url=hook.url)
        first = materialise(tmp_path)
        assert first["new_alerts"] == 2
        s = states(tmp_path / "pv.duckdb")
        assert s[(ACME, "file")] == s[(ACME, "email")] == "sent" and s[(ACME, "webhook")] == "pending"
        assert s[(RIVAL, "webhook")] == "skipped" and s[(RIVAL, "email")] == "sent"
        second = materialise(tmp_path)  # nothing changed: no new alert, the pending webhook goes out
        assert second["new_alerts"] == 0 and second["deliveries_this_run"]["sent"] == 1
        assert states(tmp_path / "pv.duckdb")[(ACME, "webhook")] == "sent"
        assert len(hook.requests) == 3 and len(smtp.messages) == 2

    files = list((tmp_path / "out" / "alerts" / ACME).glob("*"))
    acme_mail = next(m for m in smtp.messages if m["to"] == ["pv@acme.example"])
    texts = [f.read_text() for f in files] + [acme_mail["raw"].decode("utf-8", "replace")]
    texts += [str(p.get_content()) for p in acme_mail["message"].walk() if not p.is_multipart()]
    texts += [r["body"].decode() for r in hook.requests]
    for text in texts:
        for term in FORBIDDEN_FOR_ACME:
            assert term not in text, f"{term!r} leaked to Acme"
    assert verify("acme-secret", hook.requests[-1]["body"], hook.requests[-1]["headers"]["X-PVTrace-Signature"])
    doc = json.loads(hook.requests[-1]["body"])
    assert doc["manufacturer"]["manufacturer_id"] == ACME and {s["signal_id"] for s in doc["signals"]} == {
        "SIG-A-PROD",
        "SIG-A-BATCH",
    }


def test_sensor_requests_a_run_when_the_register_changes(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, email=None, channels="file")
    wh = WarehouseResource(path=str(path))

    def tick(cursor):
        ctx = dg.build_sensor_context(cursor=cursor, resources={"warehouse": wh})
        return signal_register_sensor(ctx), ctx.cursor

    first, cursor = tick(None)
    assert isinstance(first, dg.RunRequest) and first.run_key == f"register-{json.loads(cursor)['fp']}"
    again, cursor2 = tick(cursor)
    assert isinstance(again, dg.SkipReason) and json.loads(cursor2)["fp"] == json.loads(cursor)["fp"]
    set_signal_status(path, "SIG-A-PROD", "under_review")  # an analyst's decision
    changed, cursor3 = tick(cursor)
    assert isinstance(changed, dg.RunRequest) and json.loads(cursor3)["fp"] != json.loads(cursor)["fp"]


def test_sensor_requests_a_run_for_deliveries_that_fell_due(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, email=None, channels="file")
    con = connect(str(path))
    con.execute(
        "INSERT INTO alert (alert_id, manufacturer_id, signal_ids, content_hash, created_at) "
        "VALUES ('ALR-1', 'MFR-ACME', ['SIG-A-PROD'], 'h', TIMESTAMP '2024-07-01 00:00:00')"
    )
    con.execute(
        "INSERT INTO alert_delivery (alert_id, channel, manufacturer_id, idempotency_key, state, attempts, "
        "created_at, next_attempt_at, last_attempt_at) VALUES ('ALR-1', 'webhook', 'MFR-ACME', 'ALR-1/webhook', "
        "'pending', 3, TIMESTAMP '2024-07-01 00:00:00', TIMESTAMP '2024-07-01 01:00:00', TIMESTAMP '2024-07-01 00:00:00')"
    )
    con.close()
    wh = WarehouseResource(path=str(path))
    ctx = dg.build_sensor_context(cursor=None, resources={"warehouse": wh})
    signal_register_sensor(ctx)  # first tick: the register itself
    retry = signal_register_sensor(dg.build_sensor_context(cursor=ctx.cursor, resources={"warehouse": wh}))
    assert isinstance(retry, dg.RunRequest) and retry.run_key.startswith("retry-")
    # asked once: the next tick without any write waits for the run to change things
    ctx2 = dg.build_sensor_context(cursor=ctx.cursor, resources={"warehouse": wh})
    signal_register_sensor(ctx2)
    assert isinstance(
        signal_register_sensor(dg.build_sensor_context(cursor=ctx2.cursor, resources={"warehouse": wh})), dg.SkipReason
    )


def test_sensor_skips_while_the_warehouse_is_missing_or_locked(tmp_path):
    missing = signal_register_sensor(
        dg.build_sensor_context(resources={"warehouse": WarehouseResource(path=str(tmp_path / "none.duckdb"))})
    )
    assert isinstance(missing, dg.SkipReason)
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path)
    writer = connect(str(path))  # a run holds the warehouse for writing
    try:
        busy = signal_register_sensor(
            dg.build_sensor_context(resources={"warehouse": WarehouseResource(path=str(path))})
        )
    finally:
        writer.close()
    assert isinstance(busy, dg.SkipReason) and "busy" in busy.skip_message


@pytest.mark.parametrize("job", [manufacturer_alerts_job])
def test_sensor_job_selects_only_alerting(job):
    assert job.selection.resolve(defs.resolve_asset_graph()) == {manufacturer_alerts.key}

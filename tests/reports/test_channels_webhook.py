"""The webhook channel against a real HTTP server on 127.0.0.1: HMAC-SHA256 over the exact body,
idempotency key, transient vs permanent answers, a receiver that fails then recovers."""

from __future__ import annotations

import json

import pytest

from reports.channels import ChannelError
from reports.channels.dispatch import RetryPolicy
from reports.channels.webhook import WebhookChannel, default_secret_env, sign, verify
from tests.reports.alert_fixtures import (
    ACME,
    FORBIDDEN_FOR_ACME,
    WebhookReceiver,
    build_alert_warehouse,
)
from tests.reports.test_channels_file import T0, Clock, rows, run
from warehouse.stores.alert_outbox import Delivery

SECRET_ENV = default_secret_env(ACME)  # PVTRACE_WEBHOOK_SECRET_MFR_ACME
DOC = json.dumps({"alert_id": "ALR-X-1", "supersedes": None, "signals": [], "note": "é"}, ensure_ascii=False)


def delivery(url: str, secret_env: str | None = None) -> Delivery:
    return Delivery(
        alert_id="ALR-X-1",
        channel="webhook",
        manufacturer_id=ACME,
        idempotency_key="ALR-X-1/webhook",
        state="pending",
        attempts=0,
        document=DOC,
        supersedes=None,
        alert_email=None,
        alert_webhook_url=url,
        alert_webhook_secret_env=secret_env,
    )


def test_signature_is_hmac_sha256_over_the_exact_body_and_headers_carry_the_idempotency_key():
    with WebhookReceiver() as rx:
        channel = WebhookChannel(env={SECRET_ENV: "s3cret"}, timeout_s=5)
        sent = channel.send(delivery(rx.url))
    assert sent.response_code == "200"
    (req,) = rx.requests
    assert req["body"] == DOC.encode("utf-8")
    assert verify("s3cret", req["body"], req["headers"]["X-PVTrace-Signature"])
    assert not verify("other", req["body"], req["headers"]["X-PVTrace-Signature"])
    assert req["headers"]["X-PVTrace-Signature"] == sign("s3cret", DOC.encode())
    assert req["headers"]["Idempotency-Key"] == "ALR-X-1/webhook" and req["headers"]["X-PVTrace-Event"] == "alert.new"


def test_not_configured_is_a_reason_not_an_error():
    channel = WebhookChannel(env={})
    assert "alert_webhook_url" in channel.unavailable(delivery(""))
    assert SECRET_ENV in channel.unavailable(delivery("https://hooks.example/x"))
    # reference data may only name a PVTRACE_WEBHOOK_SECRET_* variable, never another secret
    assert "refused" in WebhookChannel(env={"PVTRACE_SMTP_PASSWORD": "pw"}).unavailable(
        delivery("https://hooks.example/x", secret_env="PVTRACE_SMTP_PASSWORD")
    )
    assert "plain http" in WebhookChannel(env={SECRET_ENV: "s"}).unavailable(delivery("http://hooks.example/x"))
    assert WebhookChannel(env={SECRET_ENV: "s"}).unavailable(delivery("http://127.0.0.1:9/x")) is None


@pytest.mark.parametrize("status,permanent", [(503, False), (429, False), (408, False), (400, True), (404, True)])
def test_transient_and_permanent_answers(status, permanent):
    with WebhookReceiver(fail_first=1, fail_status=status) as rx, pytest.raises(ChannelError) as err:
        WebhookChannel(env={SECRET_ENV: "s"}, timeout_s=5).send(delivery(rx.url))
    assert err.value.permanent is permanent and err.value.response_code == str(status)


def test_connection_refused_is_transient():
    with WebhookReceiver() as rx:
        url = rx.url
    with pytest.raises(ChannelError) as err:  # the server is gone
        WebhookChannel(env={SECRET_ENV: "s"}, timeout_s=2).send(delivery(url))
    assert not err.value.permanent


def test_receiver_down_then_recovers_across_runs_and_gets_each_alert_once(tmp_path):
    with WebhookReceiver(fail_first=10**6, fail_status=503) as rx:
        path = tmp_path / "pv.duckdb"
        build_alert_warehouse(path, webhook_url=rx.url, email=None, channels="webhook")
        channels = {"webhook": WebhookChannel(env={SECRET_ENV: "s3cret"}, timeout_s=5)}
        pol = RetryPolicy(attempts_per_run=2, base_delay_s=0.01, next_run_delay_s=0, sleep=lambda s: None)
        _, counts = run(path, tmp_path / "out", channels=channels, pol=pol)
        assert counts["retry_later"] == 1 and len(rx.requests) == 2  # Acme's alert: 2 tries; rival: no webhook
        assert rows(
            path, f"SELECT state, attempts, response_code FROM alert_delivery WHERE manufacturer_id = '{ACME}'"
        ) == [("pending", 2, "503")]
        rx.fail_first = 0  # the receiver recovers
        _, counts = run(path, tmp_path / "out", channels=channels, pol=pol, clock=Clock(T0.replace(hour=7)))
        assert counts["sent"] == 1
        _, counts = run(path, tmp_path / "out", channels=channels, pol=pol, clock=Clock(T0.replace(hour=8)))
        assert counts["sent"] == 0
    last = rx.requests[-1]
    assert len(rx.requests) == 3 and len({r["headers"]["Idempotency-Key"] for r in rx.requests}) == 1
    body = last["body"]
    assert verify("s3cret", body, last["headers"]["X-PVTrace-Signature"])
    text = body.decode()
    for term in FORBIDDEN_FOR_ACME:
        assert term not in text, f"{term!r} leaked into the webhook body"
    (stored,) = rows(path, f"SELECT document FROM alert WHERE manufacturer_id = '{ACME}'")[0]
    assert stored.encode() == body  # the exact outbox document, byte for byte
    log = rows(
        path, "SELECT outcome, response_code FROM alert_delivery_attempt WHERE channel = 'webhook' ORDER BY rowid"
    )
    assert log == [("retry", "503"), ("retry", "503"), ("sent", "200")]

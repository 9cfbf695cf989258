"""The e-mail channel against a real SMTP server (aiosmtpd) on 127.0.0.1: the message's parts and
headers, a deterministic Message-ID, updates threaded to what they supersede, a server that is down
or answers 451 then recovers, and a 5xx refusal that is permanent."""

from __future__ import annotations

import json

import pytest

from reports.channels import ChannelError
from reports.channels.dispatch import RetryPolicy
from reports.channels.smtp import SmtpChannel, message_id
from tests.reports.alert_fixtures import (
    ACME,
    FORBIDDEN_FOR_ACME,
    SmtpReceiver,
    build_alert_warehouse,
    set_signal_status,
)
from tests.reports.test_channels_file import T0, Clock, rows, run
from warehouse.stores.alert_outbox import Delivery

POLICY = {"attempts_per_run": 2, "base_delay_s": 0.01, "next_run_delay_s": 0}


def pol() -> RetryPolicy:
    return RetryPolicy(**POLICY, sleep=lambda s: None)


def test_alert_mail_has_text_html_and_the_exact_json_and_leaks_nothing(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, email="pv@acme.example; qa@acme.example", channels="email")
    with SmtpReceiver() as rx:
        _, counts = run(path, tmp_path / "out", channels={"email": SmtpChannel(env=rx.env, timeout_s=5)}, pol=pol())
        assert counts["sent"] == 2
        set_signal_status(path, "SIG-A-PROD", "validated")
        _, counts = run(
            path,
            tmp_path / "out",
            channels={"email": SmtpChannel(env=rx.env, timeout_s=5)},
            pol=pol(),
            clock=Clock(T0.replace(hour=9)),
        )
        assert counts["sent"] == 1
    acme = [m for m in rx.messages if "pv@acme.example" in m["to"]]
    assert len(acme) == 2 and acme[0]["to"] == ["pv@acme.example", "qa@acme.example"]
    first, update = acme[0]["message"], acme[1]["message"]
    (stored_first, stored_update) = [
        d for (d,) in rows(path, f"SELECT document FROM alert WHERE manufacturer_id = '{ACME}' ORDER BY created_at")
    ]
    doc = json.loads(stored_first)
    assert first["Message-ID"] == message_id(doc["alert_id"]) and doc["alert_id"] in first["Subject"]
    assert first.get_body(("plain",)).get_content().startswith("PV Trace batch-linked safety alert")
    assert "<table" in first.get_body(("html",)).get_content()
    (attachment,) = list(first.iter_attachments())
    assert attachment.get_filename() == f"{doc['alert_id']}.json"
    assert attachment.get_content() == stored_first.encode()  # the outbox document, byte for byte
    # the update threads to the alert it supersedes
    assert update["In-Reply-To"] == first["Message-ID"] and update["Subject"].startswith("[PV Trace] Update:")
    assert json.loads(stored_update)["supersedes"] == doc["alert_id"]
    for m in acme:
        raw = m["raw"].decode("utf-8", "replace")
        for part in m["message"].walk():
            if not part.is_multipart():
                raw += str(part.get_content())
        for term in FORBIDDEN_FOR_ACME:
            assert term not in raw, f"{term!r} leaked into Acme's e-mail"
    assert (
        rows(path, f"SELECT message_id FROM alert_delivery WHERE manufacturer_id = '{ACME}' ORDER BY created_at")[0][0]
        == first["Message-ID"]
    )


def test_server_down_then_451_then_recovers_without_duplicates(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, channels="email")
    with SmtpReceiver(fail_first=2) as rx:
        env = rx.env
    channel = SmtpChannel(env=env, timeout_s=3)
    _, counts = run(path, tmp_path / "out", channels={"email": channel}, pol=pol())  # nobody listening
    # first alert: 2 tries on a dead server; the second alert to the same server is deferred
    assert counts["retry_later"] == 1 and counts["deferred"] == 1
    assert {s for (s,) in rows(path, "SELECT state FROM alert_delivery")} == {"pending"}
    errors = [e for (e,) in rows(path, "SELECT error FROM alert_delivery_attempt")]
    assert errors and all("Connection" in e or "refused" in e.lower() for e in errors)
    # the server is back (the SMTP settings come from the environment at delivery time), but answers 451
    # twice before accepting
    with SmtpReceiver(fail_first=2) as rx2:
        channel = SmtpChannel(env=rx2.env, timeout_s=5)
        _, counts = run(path, tmp_path / "out", channels={"email": channel}, pol=pol(), clock=Clock(T0.replace(hour=7)))
        assert counts["retry_later"] == 1 and counts["sent"] == 0  # 451, 451: still pending
        _, counts = run(path, tmp_path / "out", channels={"email": channel}, pol=pol(), clock=Clock(T0.replace(hour=8)))
        assert counts["sent"] == 2
        _, counts = run(path, tmp_path / "out", channels={"email": channel}, pol=pol(), clock=Clock(T0.replace(hour=9)))
        assert counts["sent"] == 0
    assert len(rx2.messages) == 2 and len({m["message"]["Message-ID"] for m in rx2.messages}) == 2
    log = [o for (o,) in rows(path, "SELECT outcome FROM alert_delivery_attempt ORDER BY rowid")]
    assert log.count("sent") == 2 and "failed" not in log


def test_permanent_refusal_is_failed():
    with SmtpReceiver(fail_first=1, fail_code="554 5.7.1 message rejected") as rx:
        d = Delivery(
            alert_id="ALR-X-1",
            channel="email",
            manufacturer_id=ACME,
            idempotency_key="ALR-X-1/email",
            state="pending",
            attempts=0,
            document=json.dumps(
                {
                    "alert_id": "ALR-X-1",
                    "supersedes": None,
                    "signals": [],
                    "batch_traceability": {},
                    "manufacturer": {"name": "Acme"},
                    "data_lock_point": "2024-07-01",
                    "generated_at": "x",
                    "notice": "n",
                    "changes": None,
                }
            ),
            supersedes=None,
            alert_email="pv@acme.example",
            alert_webhook_url=None,
            alert_webhook_secret_env=None,
        )
        with pytest.raises(ChannelError) as err:
            SmtpChannel(env=rx.env, timeout_s=5).send(d)
    assert err.value.permanent and err.value.response_code == "554"
    assert "PVTRACE_SMTP_HOST" in SmtpChannel(env={}).unavailable(d)


def test_a_broken_setting_skips_the_channel_with_the_reason(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, channels="file,email")
    bad = SmtpChannel(env={"PVTRACE_SMTP_HOST": "127.0.0.1", "PVTRACE_SMTP_PORT": "twenty-five"})
    from assets.alerting import default_channels

    _, counts = run(
        path, tmp_path / "out", channels={**default_channels(tmp_path / "out", env={}), "email": bad}, pol=pol()
    )
    assert counts["sent"] == 2 and counts["skipped"] == 2  # the files still go out
    reasons = {e for (e,) in rows(path, "SELECT last_error FROM alert_delivery WHERE channel = 'email'")}
    assert len(reasons) == 1 and "misconfigured" in reasons.pop()

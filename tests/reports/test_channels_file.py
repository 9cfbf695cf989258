"""The outbox with the file channel: idempotent alerts, updates that supersede, retries and backoff,
a channel that fails then recovers, and a restart mid-delivery that neither loses nor duplicates."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from assets.alerting import default_channels, enqueue_alerts
from reports.channels import ChannelError, Sent
from reports.channels.dispatch import RetryPolicy, deliver_pending
from tests.reports.alert_fixtures import (
    ACME,
    RIVAL,
    build_alert_warehouse,
    set_signal_status,
)
from warehouse.schema import connect
from warehouse.stores.alert_outbox import DuckDBOutbox, requeue_delivery

T0 = dt.datetime(2024, 7, 2, 6, 0)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def policy(**kw) -> RetryPolicy:
    sleeps = []
    p = RetryPolicy(
        attempts_per_run=3, base_delay_s=0.01, max_delay_s=0.05, next_run_delay_s=60, sleep=sleeps.append, **kw
    )
    p.sleeps = sleeps
    return p


@pytest.fixture()
def wh(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path, email=None, channels="file")
    return path


def run(path, output, channels=None, clock=None, pol=None):
    """One alerting run as the asset does it: enqueue in a transaction, then deliver after the commit."""
    clock = clock or Clock()
    con = connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        queued = enqueue_alerts(con, "salt", clock().isoformat(), clock())
        con.execute("COMMIT")
        counts = deliver_pending(
            DuckDBOutbox(con, "run", clock=clock), channels or default_channels(output, env={}), pol or policy()
        )
        return queued, counts
    finally:
        con.close()


def rows(path, sql):
    con = connect(str(path), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_same_state_gives_one_alert_and_one_delivery(wh, tmp_path):
    out = tmp_path / "out"
    queued, counts = run(wh, out)
    assert len(queued["new"]) == 2 and counts["sent"] == 2
    files = sorted(p.name for p in (out / ACME).iterdir())
    assert files == sorted([f"{queued['new'][0]}.html", f"{queued['new'][0]}.json"])
    assert json.loads((out / ACME / files[1]).read_text())["kind"] == "new"
    queued2, counts2 = run(wh, out, clock=Clock(T0 + dt.timedelta(days=1)))
    assert queued2 == {"new": [], "unchanged": 2} and counts2["sent"] == 0
    assert rows(wh, "SELECT count(*) FROM alert") == [(2,)]
    assert rows(wh, "SELECT channel, state, attempts FROM alert_delivery WHERE channel = 'file'") == [
        ("file", "sent", 1),
        ("file", "sent", 1),
    ]


def test_a_change_gives_an_update_that_references_the_previous_alert(wh, tmp_path):
    out = tmp_path / "out"
    first, _ = run(wh, out)
    acme_first = next(a for a in first["new"] if ACME in a)
    set_signal_status(wh, "SIG-A-PROD", "validated")
    second, counts = run(wh, out, clock=Clock(T0 + dt.timedelta(hours=1)))
    assert len(second["new"]) == 1 and counts["sent"] == 1  # only Acme's state changed
    doc = json.loads((out / ACME / f"{second['new'][0]}.json").read_text())
    assert doc["kind"] == "update" and doc["supersedes"] == acme_first
    assert doc["changes"]["changed_signals"][0]["status"] == ["new", "validated"]
    # back to the earlier state: a new update (superseding the second), not a silent reuse of the first id
    set_signal_status(wh, "SIG-A-PROD", "new")
    third, _ = run(wh, out, clock=Clock(T0 + dt.timedelta(hours=2)))
    assert third["new"] and third["new"][0] not in (acme_first, second["new"][0])


class Flaky:
    """A channel that fails ``failures`` times (transiently) and then delivers; records every send."""

    name = "file"

    def __init__(self, failures: int, permanent: bool = False):
        self.failures, self.permanent, self.sends = failures, permanent, []

    def unavailable(self, d):
        return None

    def endpoint(self, d):
        return "flaky"

    def send(self, d):
        self.sends.append(d.idempotency_key)
        if len(self.sends) <= self.failures:
            raise ChannelError("503 down", permanent=self.permanent, response_code="503")
        return Sent(destination="flaky", response_code="200", message_id=d.idempotency_key)


def test_retries_with_backoff_within_a_run(wh, tmp_path):
    flaky, pol = Flaky(failures=2), policy()
    _, counts = run(wh, tmp_path, channels={"file": flaky}, pol=pol)
    assert counts["sent"] == 2 and len(flaky.sends) == 4  # first alert: 2 failures + success; second: at once
    assert len(pol.sleeps) == 2 and pol.sleeps[1] > pol.sleeps[0] * 1.2  # exponential (with bounded jitter)
    log = rows(wh, "SELECT attempt, outcome FROM alert_delivery_attempt ORDER BY rowid")
    assert [o for _, o in log] == ["retry", "retry", "sent", "sent"]


def test_channel_down_keeps_the_alert_pending_and_the_next_run_sends_it(wh, tmp_path):
    down = Flaky(failures=10**6)
    _, counts = run(wh, tmp_path, channels={"file": down})
    # one endpoint exhausted its tries: the other alert for it is deferred, not hammered
    assert counts == {"sent": 0, "retry_later": 1, "failed": 0, "skipped": 0, "deferred": 1}
    assert len(down.sends) == 3
    pending = rows(wh, "SELECT state, attempts, next_attempt_at, last_error FROM alert_delivery ORDER BY attempts DESC")
    assert [r[0] for r in pending] == ["pending", "pending"]
    assert pending[0][1] == 3 and pending[0][2] == T0 + dt.timedelta(seconds=60 * 4) and "503" in pending[0][3]
    # the next run before next_attempt_at leaves the backed-off one alone
    up = Flaky(failures=0)
    _, counts = run(wh, tmp_path, channels={"file": up}, clock=Clock(T0 + dt.timedelta(seconds=30)))
    assert counts["sent"] == 1 and len(up.sends) == 1
    _, counts = run(wh, tmp_path, channels={"file": up}, clock=Clock(T0 + dt.timedelta(hours=1)))
    assert counts["sent"] == 1 and len(set(up.sends)) == len(up.sends) == 2
    assert rows(wh, "SELECT state, count(*) FROM alert_delivery GROUP BY 1") == [("sent", 2)]


def test_permanent_refusal_is_failed_not_retried_and_can_be_requeued(wh, tmp_path):
    refusing = Flaky(failures=1, permanent=True)
    _, counts = run(wh, tmp_path, channels={"file": refusing})
    assert counts["failed"] == 1 and counts["sent"] == 1 and len(refusing.sends) == 2
    (alert_id,) = rows(wh, "SELECT alert_id FROM alert_delivery WHERE state = 'failed'")[0]
    con = connect(str(wh))
    requeue_delivery(con, alert_id, "file")
    con.close()
    _, counts = run(wh, tmp_path, channels={"file": refusing}, clock=Clock(T0 + dt.timedelta(minutes=1)))
    assert counts["sent"] == 1


def test_restart_mid_delivery_resends_only_what_is_not_marked_sent(wh, tmp_path):
    out = tmp_path / "out"

    class Crash(BaseException):
        pass

    class CrashAfterFirstSend(Flaky):
        def send(self, d):
            result = super().send(d)
            if len(self.sends) == 2:
                raise Crash()  # the process dies after the receiver got it, before it is marked sent
            return result

    crashing = CrashAfterFirstSend(failures=0)
    with pytest.raises(Crash):
        run(wh, out, channels={"file": crashing})
    states = dict(rows(wh, "SELECT manufacturer_id, state FROM alert_delivery"))
    assert sorted(states.values()) == ["sending", "sent"]  # one sent, one in doubt
    in_doubt = next(m for m, s in states.items() if s == "sending")
    restarted = Flaky(failures=0)
    queued, counts = run(wh, out, channels={"file": restarted}, clock=Clock(T0 + dt.timedelta(minutes=5)))
    assert queued["new"] == [] and counts["sent"] == 1
    # the in-doubt one is re-sent with the same idempotency key (receivers dedupe), the sent one is not
    assert restarted.sends == [crashing.sends[1]] and in_doubt in crashing.sends[1]
    assert rows(wh, "SELECT count(*) FROM alert_delivery WHERE state = 'sent'") == [(2,)]


def test_unconfigured_channels_are_skipped_with_a_reason_then_used_once_configured(tmp_path):
    path = tmp_path / "pv.duckdb"
    build_alert_warehouse(path)  # all channels; Acme has an e-mail but no webhook URL, no SMTP in env
    _, counts = run(path, tmp_path / "out")
    reasons = dict(rows(path, f"SELECT channel, last_error FROM alert_delivery WHERE manufacturer_id = '{ACME}'"))
    states = dict(rows(path, f"SELECT channel, state FROM alert_delivery WHERE manufacturer_id = '{ACME}'"))
    assert states == {"file": "sent", "email": "skipped", "webhook": "skipped"}
    assert "PVTRACE_SMTP_HOST" in reasons["email"] and "alert_webhook_url" in reasons["webhook"]
    assert rows(path, "SELECT count(*) FROM alert_delivery_attempt WHERE channel != 'file'") == [(0,)]
    assert {m for (m,) in rows(path, "SELECT DISTINCT manufacturer_id FROM alert")} == {ACME, RIVAL}

    class Mail(Flaky):
        def unavailable(self, d):
            return None if d.alert_email else "no alert_email"

    mail = Mail(failures=0)
    _, counts = run(path, tmp_path / "out", channels={**default_channels(tmp_path / "out", env={}), "email": mail})
    assert counts["sent"] == 2 and len(mail.sends) == 2  # the latest alert of each manufacturer goes out now

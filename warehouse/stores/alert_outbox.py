"""The alert outbox and delivery log (a transactional outbox in DuckDB).

``alert``: one row per alert — manufacturer, signals, implicated batches, content hash of its
state, the alert it supersedes, and the exact JSON document every channel delivers.
``alert_delivery``: one row per (alert, channel) with the idempotency key ``<alert_id>/<channel>``
and a state:

    pending ──claim──▶ sending ──▶ sent
       ▲                  │  └───▶ failed   (permanent: a 4xx from the webhook, a 5xx refusal of the message)
       └──── transient ───┘        skipped  (channel not configured: no recipient, no SMTP host, no secret)

An alert and its delivery rows are inserted in the same transaction as the decision to alert,
and delivery happens after that commit. Each claim (``sending``, attempts + 1) is committed
before the network call, each outcome right after it, so a restart finds every delivery either
``sent`` (never re-sent) or not (re-sent with the same idempotency key: receivers dedupe on the
webhook ``Idempotency-Key`` header or the e-mail ``Message-ID``). ``sending`` after a crash means
"in doubt" and is delivered again. ``skipped`` rows of a manufacturer's latest alert are looked
at again on every run, so configuring a channel later still delivers the current alert.
``alert_delivery_attempt`` logs every attempt with its outcome, response code and error.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb

DELIVERY_STATES = ("pending", "sending", "sent", "failed", "skipped")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def latest_alert(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> dict | None:
    """The manufacturer's latest alert: alert_id, content_hash and state (None for alerts from before states)."""
    row = con.execute(
        "SELECT alert_id, content_hash, state::VARCHAR FROM alert WHERE manufacturer_id = ? "
        "ORDER BY created_at DESC, alert_id LIMIT 1",
        [manufacturer_id],
    ).fetchone()
    if row is None:
        return None
    return {"alert_id": row[0], "content_hash": row[1], "state": json.loads(row[2]) if row[2] else None}


def enqueue_alert(
    con: duckdb.DuckDBPyConnection,
    *,
    alert_id: str,
    manufacturer_id: str,
    signal_ids: list[str],
    batch_ids: list[str],
    content_hash: str,
    state: dict,
    supersedes: str | None,
    document: str,
    channels: list[str],
    created_at: dt.datetime,
    json_path: str | None = None,
    html_path: str | None = None,
) -> bool:
    """Record the alert and one pending delivery per channel; False (and nothing written) if already recorded.

    Call inside the caller's transaction: the alert and its deliveries commit together.
    """
    (exists,) = con.execute("SELECT count(*) FROM alert WHERE alert_id = ?", [alert_id]).fetchone()
    if exists:
        return False
    con.execute(
        """INSERT INTO alert (alert_id, manufacturer_id, signal_ids, batch_ids, content_hash, created_at, json_path,
                              html_path, supersedes, state, document)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            alert_id,
            manufacturer_id,
            signal_ids,
            batch_ids,
            content_hash,
            created_at,
            json_path,
            html_path,
            supersedes,
            json.dumps(state, sort_keys=True),
            document,
        ],
    )
    for channel in channels:
        con.execute(
            """INSERT INTO alert_delivery (alert_id, channel, manufacturer_id, idempotency_key, state, attempts,
                                           created_at, next_attempt_at)
               VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)""",
            [alert_id, channel, manufacturer_id, f"{alert_id}/{channel}", created_at, created_at],
        )
    return True


@dataclass
class Delivery:
    """One (alert, channel) delivery as the channels see it, with the manufacturer's current settings."""

    alert_id: str
    channel: str
    manufacturer_id: str
    idempotency_key: str
    state: str
    attempts: int
    document: str
    supersedes: str | None
    alert_email: str | None
    alert_webhook_url: str | None
    alert_webhook_secret_env: str | None


class DuckDBOutbox:
    """The outbox on a warehouse connection: what is due, and the state changes of each delivery.

    Every method commits on its own (autocommit), so each step of a delivery is durable before the next.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str | None = None, clock=utcnow):
        self.con, self.run_id, self.clock = con, run_id, clock

    def due(self, now: dt.datetime | None = None) -> list[Delivery]:
        """Pending and in-doubt deliveries whose time has come, and skipped ones of each latest alert; oldest first."""
        now = now or self.clock()
        rows = self.con.execute(
            """
            WITH latest AS (
                SELECT manufacturer_id, arg_max(alert_id, created_at) AS alert_id FROM alert GROUP BY manufacturer_id
            )
            SELECT d.alert_id, d.channel, d.manufacturer_id, d.idempotency_key, d.state, d.attempts, a.document,
                   a.supersedes, m.alert_email, m.alert_webhook_url, m.alert_webhook_secret_env
            FROM alert_delivery d
            JOIN alert a USING (alert_id)
            LEFT JOIN manufacturer m ON m.manufacturer_id = d.manufacturer_id
            WHERE (d.state IN ('pending', 'sending') AND coalesce(d.next_attempt_at, d.created_at) <= ?)
               OR (d.state = 'skipped' AND d.alert_id IN (SELECT alert_id FROM latest))
            ORDER BY a.created_at, d.alert_id, d.channel
            """,
            [now],
        ).fetchall()
        return [Delivery(*r) for r in rows]

    def _apply(self, statements: list[tuple[str, list]]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            for sql, params in statements:
                self.con.execute(sql, params)
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def claim(self, d: Delivery) -> int:
        """Mark the delivery in flight (attempts + 1) before the network call; return the attempt number."""
        now = self.clock()
        self._apply(
            [
                (
                    (
                        "UPDATE alert_delivery SET state = 'sending', attempts = attempts + 1, last_attempt_at = ? "
                        "WHERE alert_id = ? AND channel = ?"
                    ),
                    [now, d.alert_id, d.channel],
                )
            ]
        )
        d.attempts += 1
        d.state = "sending"
        return d.attempts

    def _log(self, d: Delivery, started_at, outcome: str, response_code, message_id, error) -> tuple[str, list]:
        return (
            "INSERT INTO alert_delivery_attempt VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                d.alert_id,
                d.channel,
                d.attempts,
                started_at,
                self.clock(),
                outcome,
                response_code,
                message_id,
                error,
                self.run_id,
            ],
        )

    def mark_sent(
        self,
        d: Delivery,
        *,
        destination: str | None,
        response_code: str | None,
        message_id: str | None,
        started_at,
        note: str | None = None,
    ) -> None:
        d.state = "sent"
        self._apply(
            [
                (
                    (
                        "UPDATE alert_delivery SET state = 'sent', sent_at = ?, destination = ?, response_code = ?, message_id = ?, "
                        "last_error = ?, next_attempt_at = NULL WHERE alert_id = ? AND channel = ?"
                    ),
                    [self.clock(), destination, response_code, message_id, note, d.alert_id, d.channel],
                ),
                self._log(d, started_at, "sent", response_code, message_id, note),
            ]
        )

    def mark_retry(
        self,
        d: Delivery,
        *,
        destination: str | None,
        error: str,
        response_code: str | None,
        next_attempt_at: dt.datetime,
        started_at,
    ) -> None:
        d.state = "pending"
        self._apply(
            [
                (
                    (
                        "UPDATE alert_delivery SET state = 'pending', destination = ?, last_error = ?, response_code = ?, "
                        "next_attempt_at = ? WHERE alert_id = ? AND channel = ?"
                    ),
                    [destination, error, response_code, next_attempt_at, d.alert_id, d.channel],
                ),
                self._log(d, started_at, "retry", response_code, None, error),
            ]
        )

    def mark_failed(
        self, d: Delivery, *, destination: str | None, error: str, response_code: str | None, started_at
    ) -> None:
        d.state = "failed"
        self._apply(
            [
                (
                    (
                        "UPDATE alert_delivery SET state = 'failed', destination = ?, last_error = ?, response_code = ?, "
                        "next_attempt_at = NULL WHERE alert_id = ? AND channel = ?"
                    ),
                    [destination, error, response_code, d.alert_id, d.channel],
                ),
                self._log(d, started_at, "failed", response_code, None, error),
            ]
        )

    def mark_skipped(self, d: Delivery, reason: str) -> None:
        """Channel not configured: recorded with the reason, not an error, and not an attempt."""
        d.state = "skipped"
        self._apply(
            [
                (
                    "UPDATE alert_delivery SET state = 'skipped', last_error = ? WHERE alert_id = ? AND channel = ?",
                    [reason, d.alert_id, d.channel],
                )
            ]
        )


def requeue_delivery(con: duckdb.DuckDBPyConnection, alert_id: str, channel: str) -> None:
    """Put a failed or skipped delivery back in the queue (after an operator fixed the cause)."""
    con.execute(
        "UPDATE alert_delivery SET state = 'pending', next_attempt_at = NULL "
        "WHERE alert_id = ? AND channel = ? AND state IN ('failed', 'skipped')",
        [alert_id, channel],
    )


def delivery_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(
        con.sql("SELECT channel || ':' || state, count(*) FROM alert_delivery GROUP BY ALL ORDER BY 1").fetchall()
    )

"""Sessions, login throttling and the authentication audit trail of the dashboard (all in the review store).

Sessions are server-side (``web_session``). The cookie carries 32 random bytes (URL-safe base64)
and nothing else: no user name, no role, no CSRF token. The store keeps only the SHA-256 of
that value, so a copy of the review store does not give live sessions. A session ends

* on logout, on a password change (every session of the account), when an admin revokes it,
  disables the account or changes its roles, or when ``dashboard-user add`` resets the account;
* after ``idle_s`` without a request (default 30 min) and ``absolute_s`` after login (8 h).

Logging in always issues a new token (and revokes the one the browser presented): no fixation.

Login throttling (:class:`LoginGuard`), checked *before* the password is verified:

* per account: after ``lock_after`` (5) failures since the last successful login or unlock, the
  account is locked for ``lock_base_s`` (60 s), doubling with each further failure up to
  ``lock_max_s`` (1 h). The count is read from the audit trail itself, so it survives restarts and
  treats unknown user names exactly as real ones (no "which accounts exist" oracle). While
  locked, even the right password is refused. An admin can unlock.
* per client address: at most ``client_limit`` failed logins (default 20 per 10 minutes, a moving
  window of the ``limits`` library, in memory), then HTTP 429 with ``Retry-After``.
* argon2 runs in at most :data:`dashboard.store.HASH_SLOTS` threads at once (bounded memory).

Every successful and failed login, lockout, client throttle, logout, revocation, password change
and account change is appended to ``auth_event`` (nothing updates or deletes it).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from dashboard.store import _now, open_store

COOKIE = "pvtrace_session"
LOGIN_CSRF_COOKIE = "pvtrace_login_csrf"
# events that end a failure streak (the per-account lock counts failures since the latest of these)
STREAK_RESET = ("login_ok", "account_unlocked", "account_saved", "password_changed")


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 30 * 60
    absolute_s: float = 8 * 3600
    touch_every_s: float = 30.0  # last_seen_at is written at most this often per session


@dataclass(frozen=True)
class LoginPolicy:
    lock_after: int = 5
    lock_base_s: float = 60.0
    lock_max_s: float = 3600.0
    client_limit: str = "20 per 10 minutes"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clip(text: str | None, n: int = 64) -> str | None:
    """User-typed text in the audit trail: bounded and printable (a user name, never a password)."""
    if text is None:
        return None
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text[:n]


# ---- audit trail ------------------------------------------------------------------------------
def record(
    warehouse: str | Path,
    kind: str,
    username: str | None,
    *,
    actor: str | None = None,
    client: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one event to ``auth_event``."""
    with open_store(warehouse) as con:
        con.execute(
            "INSERT INTO auth_event (event_id, occurred_at, kind, username, actor, client, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [uuid.uuid4().hex, _now(), kind, _clip(username), _clip(actor), _clip(client), detail],
        )


def audit_events(warehouse: str | Path, *, username: str | None = None, limit: int = 500) -> list[dict]:
    with open_store(warehouse) as con:
        where, params = ("WHERE username = ? OR actor = ?", [username, username]) if username else ("", [])
        cur = con.execute(
            f"SELECT occurred_at, kind, username, actor, client, detail FROM auth_event {where} ORDER BY occurred_at DESC, event_id "
            f"LIMIT {int(limit)}",
            params,
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


# ---- sessions ---------------------------------------------------------------------------------
def new_session(warehouse: str | Path, username: str, client: str | None) -> tuple[str, str]:
    """A new session for ``username``: (cookie token, CSRF token). Only the token's hash is stored."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = _now()
    with open_store(warehouse) as con:
        con.execute(
            "INSERT INTO web_session (token_hash, username, csrf_token, created_at, last_seen_at, client) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [token_hash(token), username, csrf, now, now, _clip(client)],
        )
    return token, csrf


def load_session(warehouse: str | Path, token: str | None, policy: SessionPolicy) -> dict | None:
    """The live session for a cookie token, or None (unknown, revoked, idle or past its absolute lifetime).

    An expired session is marked revoked with the reason; a live one has ``last_seen_at`` refreshed."""
    if not token or len(token) > 128:
        return None
    h = token_hash(token)
    now = _now()
    with open_store(warehouse) as con:
        row = con.execute(
            "SELECT username, csrf_token, created_at, last_seen_at, revoked_at FROM web_session WHERE token_hash = ?",
            [h],
        ).fetchone()
        if row is None or row[4] is not None:
            return None
        username, csrf, created, seen, _ = row
        reason = None
        if now - created > timedelta(seconds=policy.absolute_s):
            reason = "absolute timeout"
        elif now - seen > timedelta(seconds=policy.idle_s):
            reason = "idle timeout"
        if reason:
            con.execute(
                "UPDATE web_session SET revoked_at = ?, revoked_reason = ? WHERE token_hash = ? AND revoked_at IS NULL",
                [now, reason, h],
            )
            return None
        if now - seen > timedelta(seconds=policy.touch_every_s):
            con.execute("UPDATE web_session SET last_seen_at = ? WHERE token_hash = ?", [now, h])
    return {"token_hash": h, "username": username, "csrf": csrf, "created_at": created}


def revoke(warehouse: str | Path, token: str | None, reason: str) -> bool:
    if not token:
        return False
    with open_store(warehouse) as con:
        n = con.execute(
            "UPDATE web_session SET revoked_at = ?, revoked_reason = ? WHERE token_hash = ? AND revoked_at IS NULL "
            "RETURNING token_hash",
            [_now(), reason, token_hash(token)],
        ).fetchall()
    return bool(n)


def revoke_user_sessions(warehouse: str | Path, username: str, reason: str) -> int:
    """Revoke every live session of ``username``; return how many."""
    with open_store(warehouse) as con:
        rows = con.execute(
            "UPDATE web_session SET revoked_at = ?, revoked_reason = ? WHERE username = ? AND revoked_at IS NULL "
            "RETURNING token_hash",
            [_now(), reason, username],
        ).fetchall()
    return len(rows)


def live_sessions(warehouse: str | Path, policy: SessionPolicy) -> dict[str, int]:
    """Live sessions per user (not revoked, within both timeouts)."""
    now = _now()
    with open_store(warehouse) as con:
        rows = con.execute(
            "SELECT username, count(*) FROM web_session WHERE revoked_at IS NULL AND created_at > ? AND last_seen_at > ? "
            "GROUP BY username",
            [now - timedelta(seconds=policy.absolute_s), now - timedelta(seconds=policy.idle_s)],
        ).fetchall()
    return dict(rows)


# ---- login throttling -------------------------------------------------------------------------
def failure_streak(warehouse: str | Path, username: str) -> tuple[int, datetime | None]:
    """Failed logins of ``username`` since the last success, unlock or password reset; and the latest failure."""
    with open_store(warehouse) as con:
        return con.execute(
            f"""SELECT count(*), max(occurred_at) FROM auth_event
                WHERE username = $u AND kind = 'login_failed'
                  AND occurred_at > coalesce((SELECT max(occurred_at) FROM auth_event WHERE username = $u
                                     AND kind IN ({", ".join(f"'{k}'" for k in STREAK_RESET)})), TIMESTAMP '1970-01-01')""",
            {"u": _clip(username)},
        ).fetchone()


def lock_seconds(failures: int, policy: LoginPolicy) -> float:
    """How long ``failures`` consecutive failures lock an account: 0 below ``lock_after``, then doubling."""
    if failures < policy.lock_after:
        return 0.0
    return min(policy.lock_base_s * 2 ** (failures - policy.lock_after), policy.lock_max_s)


@dataclass
class Refusal:
    status: int
    message: str
    retry_after: int


class LoginGuard:
    """Per-account lockout with backoff (from the audit trail) and a per-client limit on failures."""

    def __init__(self, warehouse: str | Path, policy: LoginPolicy | None = None):
        self.warehouse = warehouse
        self.policy = policy or LoginPolicy()
        self._limit = parse(self.policy.client_limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._throttled_logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_for(self, username: str) -> float:
        """Seconds the account is still locked (0: not locked)."""
        n, last = failure_streak(self.warehouse, username)
        wait = lock_seconds(n, self.policy)
        if not wait or last is None:
            return 0.0
        return max(0.0, (last + timedelta(seconds=wait) - _now()).total_seconds())

    def check(self, username: str, client: str) -> Refusal | None:
        """Refuse before verifying the password when the client or the account is throttled."""
        if not self._limiter.test(self._limit, "client", client):
            reset = self._limiter.get_window_stats(self._limit, "client", client).reset_time
            wait = max(1, int(reset - time.time()) + 1)
            with self._lock:  # one audit row per throttled window, not one per refused request
                if self._throttled_logged.get(client, 0) < time.time():
                    self._throttled_logged[client] = time.time() + wait
                    log_it = True
                else:
                    log_it = False
            if log_it:
                record(
                    self.warehouse,
                    "client_throttled",
                    username,
                    client=client,
                    detail=f"more than {self.policy.client_limit} failed logins from this address",
                )
            return Refusal(429, "Too many failed logins from your address. Try again later.", wait)
        wait = self.locked_for(username)
        if wait > 0:
            return Refusal(
                429, "This account is temporarily locked after repeated failed logins. Try again later.", int(wait) + 1
            )
        return None

    def failed(self, username: str, client: str) -> None:
        """Record a failed login; start (or extend) a lockout when the streak reaches the threshold."""
        self._limiter.hit(self._limit, "client", client)
        record(self.warehouse, "login_failed", username, client=client)
        n, _ = failure_streak(self.warehouse, username)
        wait = lock_seconds(n, self.policy)
        if wait:
            record(
                self.warehouse,
                "lockout",
                username,
                client=client,
                detail=f"locked for {int(wait)} s after {n} consecutive failed logins",
            )

    def succeeded(self, username: str, client: str) -> None:
        record(self.warehouse, "login_ok", username, client=client)

    def unlock(self, username: str, actor: str, client: str | None = None) -> None:
        record(self.warehouse, "account_unlocked", username, actor=actor, client=client)

"""The review store: dashboard accounts and the analysts' triage journal, beside the warehouse.

Why a separate file. DuckDB lets one process hold a file open for writing, and a *reader* also
blocks a writer from opening it (shared vs exclusive file lock). The pipeline opens and closes
the warehouse once per asset and does not retry, so every millisecond the dashboard holds the
warehouse open is a chance to fail a pipeline step. Accounts and triage decisions therefore live
in ``<warehouse>.review.duckdb``, a small file only the dashboard and ``pvtrace dashboard-user``
write (each with short-lived connections, retried on a lock conflict).

How a decision reaches the warehouse. A triage decision is first appended to ``triage_decision``
here (append-only; nothing in the code updates or deletes it), so it is never lost. It is then
*applied* to the warehouse by :func:`apply_pending`: in one transaction it appends a
``signal_history`` row (who, when decided, from → to, ``"<action>: <comment>"``, run_id
``dashboard:<decision_id>``) and sets ``signal.status``. The ``run_id`` makes applying idempotent:
a decision whose id is already in ``signal_history`` is skipped, so the dashboard's background
applier and the pipeline (which may call :func:`apply_pending` at the start of its register
step) can both try without doubling a row. Reports and alerts read ``signal.status`` as before.

Triage actions and the register's vocabulary (``warehouse.stores.signal_register.STATUSES``):
``validate`` → ``validated``, ``refute`` → ``refuted``, ``monitor`` → ``under_review`` (keep
watching), ``escalate`` → ``escalated`` (raised to the safety committee / QPPV; a status of its
own so reports and alerts can tell it from routine monitoring).

Passwords are argon2id hashes (argon2-cffi defaults); nothing stores a clear password. Hashing
and verifying run at most :data:`HASH_SLOTS` at a time in the process (each argon2 call takes
64 MiB): a burst of logins queues for a slot (and gets :class:`HashBusy` after
``HASH_WAIT_S``) instead of multiplying the server's memory.

Accounts carry one or more roles (:data:`ROLES`, stored comma-separated in ``account.role``):
``admin`` manages accounts and reads the audit trail, ``analyst`` triages, ``viewer`` reads, and
``manufacturer`` (alone, bound to one ``manufacturer_id``) sees only that company's portal.
Sessions and the authentication audit trail live here too (:mod:`dashboard.auth`).

The file is created ``0600`` (the process's umask, :func:`warehouse.files.restrict_umask`); an
older store with wider permissions is narrowed when first opened.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from warehouse.files import restrict_umask
from warehouse.stores.signal_register import STATUSES

log = logging.getLogger("pvtrace.dashboard")

ROLES = ("admin", "analyst", "viewer", "manufacturer")
# what each role may do; an account may hold several roles (except manufacturer, which stands alone)
PERMISSIONS = {
    "admin": {"manage_accounts", "read_audit"},
    "analyst": {"read_signals", "triage"},
    "viewer": {"read_signals"},
    "manufacturer": {"portal"},
}
HASH_SLOTS = 2  # concurrent argon2 computations per process (64 MiB each)
HASH_WAIT_S = 10.0
MIN_PASSWORD = 8
TRIAGE_ACTIONS = {
    "validate": "validated",
    "refute": "refuted",
    "monitor": "under_review",
    "escalate": "escalated",
}
DECISION_RUN_PREFIX = "dashboard:"
assert set(TRIAGE_ACTIONS.values()) <= set(STATUSES), "triage targets must be register statuses"

_DDL = [
    """
    CREATE TABLE IF NOT EXISTS account (
        username VARCHAR PRIMARY KEY,
        role VARCHAR NOT NULL,
        password_hash VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS triage_decision (
        decision_id VARCHAR PRIMARY KEY,
        signal_id VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        from_status VARCHAR,
        to_status VARCHAR NOT NULL,
        comment VARCHAR NOT NULL
    )""",
    # "new since last review": a user's review marks (append-only, latest wins)
    """
    CREATE TABLE IF NOT EXISTS review_mark (
        username VARCHAR NOT NULL,
        marked_at TIMESTAMP NOT NULL
    )""",
    # issue 16: a manufacturer account's company; disabled accounts cannot log in
    "ALTER TABLE account ADD COLUMN IF NOT EXISTS manufacturer_id VARCHAR",
    "ALTER TABLE account ADD COLUMN IF NOT EXISTS disabled BOOLEAN DEFAULT false",
    "ALTER TABLE account ADD COLUMN IF NOT EXISTS password_changed_at TIMESTAMP",
    # server-side sessions: the cookie carries a random token; only its SHA-256 is kept here
    """
    CREATE TABLE IF NOT EXISTS web_session (
        token_hash VARCHAR PRIMARY KEY,
        username VARCHAR NOT NULL,
        csrf_token VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        last_seen_at TIMESTAMP NOT NULL,
        client VARCHAR,
        revoked_at TIMESTAMP,
        revoked_reason VARCHAR
    )""",
    # the authentication audit trail (append-only): logins, failures, lockouts, logouts, account changes
    """
    CREATE TABLE IF NOT EXISTS auth_event (
        event_id VARCHAR PRIMARY KEY,
        occurred_at TIMESTAMP NOT NULL,
        kind VARCHAR NOT NULL,
        username VARCHAR,
        actor VARCHAR,
        client VARCHAR,
        detail VARCHAR
    )""",
    "CREATE INDEX IF NOT EXISTS auth_event_username ON auth_event (username)",
]

_hasher = PasswordHasher()
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


class StoreBusy(RuntimeError):
    """The file stayed locked by another process for the whole retry window."""


class HashBusy(RuntimeError):
    """Every password-hashing slot stayed taken for ``HASH_WAIT_S``: too many logins at once."""


@contextmanager
def hash_slot(wait_s: float | None = None):
    """One of the process's :data:`HASH_SLOTS` argon2 slots (bounded memory under a login burst)."""
    if not _hash_slots.acquire(timeout=HASH_WAIT_S if wait_s is None else wait_s):
        raise HashBusy("too many password checks at once; retry in a moment")
    try:
        yield
    finally:
        _hash_slots.release()


def normalise_roles(role) -> tuple[str, ...]:
    """Roles from ``"admin,analyst"`` or an iterable, validated, in :data:`ROLES` order."""
    items = role.split(",") if isinstance(role, str) else list(role)
    roles = {r.strip() for r in items if r and r.strip()}
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"role must be one or more of {ROLES}, not {role!r}")
    if "manufacturer" in roles and len(roles) > 1:
        raise ValueError("the manufacturer role cannot be combined with another role")
    return tuple(r for r in ROLES if r in roles)


def permissions(roles) -> set[str]:
    return set().union(*(PERMISSIONS[r] for r in roles)) if roles else set()


def review_store_path(warehouse: str | Path) -> Path:
    return Path(str(warehouse) + ".review.duckdb")


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and ("lock" in text or "conflicting" in text)


def connect_with_retry(
    path: str | Path, *, read_only: bool = False, timeout_s: float = 3.0, pause_s: float = 0.1
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, retrying while another process holds a conflicting lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_error(exc) or time.monotonic() >= deadline:
                if is_lock_error(exc):
                    raise StoreBusy(f"{path} is locked by another process: {exc}") from exc
                raise
            time.sleep(pause_s)


_store_lock = threading.RLock()  # one process: never mix connection configs to the same file
_ready: set[str] = set()  # stores whose schema this process has already ensured


@contextmanager
def open_store(warehouse: str | Path, *, timeout_s: float = 3.0):
    """A short-lived connection to the review store (created ``0600`` if missing), serialised in-process."""
    path = review_store_path(warehouse)
    with _store_lock:
        restrict_umask()
        con = connect_with_retry(path, timeout_s=timeout_s)
        try:
            key = f"{path}|{os.stat(path).st_ino}"  # a store deleted and made anew needs its tables again
            if key not in _ready:
                for ddl in _DDL:
                    con.execute(ddl)
                for f in (path, Path(str(path) + ".wal")):
                    if f.exists() and os.stat(f).st_mode & 0o077:
                        log.warning("narrowing the permissions of %s to 0600", f)
                        os.chmod(f, 0o600)
                _ready.add(key)
            yield con
        finally:
            con.close()


def _now() -> datetime:
    """Local wall-clock time, naive: the same clock as the register's ``current_timestamp`` rows in
    ``signal_history`` (DuckDB casts it to TIMESTAMP in the local time zone), so one audit trail
    and "new since last review" compare like with like."""
    return datetime.now()


# ---- accounts ---------------------------------------------------------------------------------
USERNAME_MAX = 64


def _check_username(username: str) -> str:
    username = (username or "").strip()
    if not username or len(username) > USERNAME_MAX or any(c.isspace() or not c.isprintable() for c in username):
        raise ValueError(f"a username of 1 to {USERNAME_MAX} printable characters without spaces is required")
    return username


def hash_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"a password of at least {MIN_PASSWORD} characters is required")
    with hash_slot():
        return _hasher.hash(password)


def add_user(warehouse: str | Path, username: str, password: str, role, *, manufacturer_id: str | None = None) -> None:
    """Create an account, or reset its password and roles if it exists (its sessions are then revoked).

    ``role``: one role, ``"admin,analyst"`` or an iterable. ``manufacturer`` needs ``manufacturer_id``
    (and no other role); no other role may carry one."""
    username = _check_username(username)
    roles = normalise_roles(role)
    manufacturer_id = (manufacturer_id or "").strip() or None
    if ("manufacturer" in roles) != (manufacturer_id is not None):
        raise ValueError("the manufacturer role needs a --manufacturer-id, and only that role takes one")
    digest = hash_password(password)
    now = _now()
    with open_store(warehouse) as con:
        existed = con.execute("SELECT count(*) FROM account WHERE username = ?", [username]).fetchone()[0]
        con.execute(
            "INSERT OR REPLACE INTO account (username, role, password_hash, created_at, manufacturer_id, disabled, "
            "password_changed_at) VALUES (?, ?, ?, ?, ?, false, ?)",
            [username, ",".join(roles), digest, now, manufacturer_id, now],
        )
        if existed:
            con.execute(
                "UPDATE web_session SET revoked_at = ?, revoked_reason = 'account reset' "
                "WHERE username = ? AND revoked_at IS NULL",
                [now, username],
            )


def _account(row) -> dict:
    roles = normalise_roles(row[1])
    return {
        "username": row[0],
        "role": "+".join(roles),
        "roles": roles,
        "permissions": permissions(roles),
        "manufacturer_id": row[2],
        "disabled": bool(row[3]),
    }


_ACCOUNT_COLS = "username, role, manufacturer_id, coalesce(disabled, false)"


def get_user(warehouse: str | Path, username: str) -> dict | None:
    """The account (username, role label, roles, permissions, manufacturer_id, disabled) or None."""
    with open_store(warehouse) as con:
        row = con.execute(f"SELECT {_ACCOUNT_COLS} FROM account WHERE username = ?", [username]).fetchone()
    return _account(row) if row else None


def list_users(warehouse: str | Path) -> list[dict]:
    with open_store(warehouse) as con:
        rows = con.execute(f"SELECT {_ACCOUNT_COLS} FROM account ORDER BY username").fetchall()
    return [_account(r) for r in rows]


def authenticate(warehouse: str | Path, username: str, password: str) -> dict | None:
    """The account if the password matches its argon2 hash and it is enabled, else None (same work either way).

    Raises :class:`HashBusy` when no hashing slot frees up in time."""
    with open_store(warehouse) as con:
        row = con.execute(
            f"SELECT {_ACCOUNT_COLS}, password_hash FROM account WHERE username = ?", [(username or "").strip()]
        ).fetchone()
    digest = row[4] if row else _DUMMY_HASH
    with hash_slot():
        try:
            ok = _hasher.verify(digest, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    if not (ok and row) or row[3]:
        return None
    return _account(row)


def set_password(warehouse: str | Path, username: str, password: str) -> None:
    """Replace the password hash (the caller revokes the sessions: :func:`dashboard.auth.revoke_user_sessions`)."""
    digest = hash_password(password)
    with open_store(warehouse) as con:
        con.execute(
            "UPDATE account SET password_hash = ?, password_changed_at = ? WHERE username = ?",
            [digest, _now(), username],
        )


def set_roles(warehouse: str | Path, username: str, role, manufacturer_id: str | None = None) -> None:
    roles = normalise_roles(role)
    manufacturer_id = (manufacturer_id or "").strip() or None
    if ("manufacturer" in roles) != (manufacturer_id is not None):
        raise ValueError("the manufacturer role needs a manufacturer id, and only that role takes one")
    with open_store(warehouse) as con:
        con.execute(
            "UPDATE account SET role = ?, manufacturer_id = ? WHERE username = ?",
            [",".join(roles), manufacturer_id, username],
        )


def set_disabled(warehouse: str | Path, username: str, disabled: bool) -> None:
    with open_store(warehouse) as con:
        con.execute("UPDATE account SET disabled = ? WHERE username = ?", [bool(disabled), username])


_DUMMY_HASH = _hasher.hash("not-a-password-" + uuid.uuid4().hex)


# ---- triage journal ---------------------------------------------------------------------------
def record_decision(
    warehouse: str | Path, signal_id: str, actor: str, action: str, comment: str, from_status: str | None
) -> dict:
    """Append one decision to the journal; return it. The warehouse is updated by :func:`apply_pending`."""
    if action not in TRIAGE_ACTIONS:
        raise ValueError(f"unknown triage action {action!r}")
    comment = (comment or "").strip()
    if not comment:
        raise ValueError("a comment is required")
    decision = {
        "decision_id": uuid.uuid4().hex[:16],
        "signal_id": signal_id,
        "decided_at": _now(),
        "actor": actor,
        "action": action,
        "from_status": from_status,
        "to_status": TRIAGE_ACTIONS[action],
        "comment": comment,
    }
    with open_store(warehouse) as con:
        con.execute(
            "INSERT INTO triage_decision (decision_id, signal_id, decided_at, actor, action, from_status, to_status, comment) "
            "VALUES ($decision_id, $signal_id, $decided_at, $actor, $action, $from_status, $to_status, $comment)",
            decision,
        )
    return decision


def decisions(warehouse: str | Path, signal_id: str | None = None) -> list[dict]:
    with open_store(warehouse) as con:
        where, params = ("WHERE signal_id = ?", [signal_id]) if signal_id else ("", [])
        cur = con.execute(f"SELECT * FROM triage_decision {where} ORDER BY decided_at, decision_id", params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def mark_reviewed(warehouse: str | Path, username: str) -> None:
    with open_store(warehouse) as con:
        con.execute("INSERT INTO review_mark VALUES (?, ?)", [username, _now()])


def last_review(warehouse: str | Path, username: str) -> datetime | None:
    """When the user last marked the list reviewed or triaged a signal (None: never)."""
    with open_store(warehouse) as con:
        return con.execute(
            "SELECT max(t) FROM (SELECT max(marked_at) AS t FROM review_mark WHERE username = $u "
            "UNION ALL SELECT max(decided_at) FROM triage_decision WHERE actor = $u)",
            {"u": username},
        ).fetchone()[0]


# ---- applying decisions to the warehouse -----------------------------------------------------
def apply_pending(warehouse_con: duckdb.DuckDBPyConnection, journal: list[dict]) -> int:
    """Apply journal decisions not yet in ``signal_history`` (matched by run_id); return how many.

    ``warehouse_con`` is a write connection to the warehouse; runs in one transaction. Appends
    history rows and sets ``signal.status``; never updates or deletes history.
    """
    if not journal:
        return 0
    done = {
        r[0]
        for r in warehouse_con.execute(
            "SELECT run_id FROM signal_history WHERE starts_with(run_id, ?)", [DECISION_RUN_PREFIX]
        ).fetchall()
    }
    todo = [d for d in journal if DECISION_RUN_PREFIX + d["decision_id"] not in done]
    if not todo:
        return 0
    warehouse_con.execute("BEGIN TRANSACTION")
    try:
        applied = 0
        for d in sorted(todo, key=lambda d: (d["decided_at"], d["decision_id"])):
            row = warehouse_con.execute("SELECT status FROM signal WHERE signal_id = ?", [d["signal_id"]]).fetchone()
            if row is None:
                continue  # a signal this warehouse does not have (e.g. another warehouse's store)
            warehouse_con.execute(
                "INSERT INTO signal_history (signal_id, changed_at, from_status, to_status, actor, comment, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    d["signal_id"],
                    d["decided_at"],
                    row[0],
                    d["to_status"],
                    d["actor"],
                    f"{d['action']}: {d['comment']}",
                    DECISION_RUN_PREFIX + d["decision_id"],
                ],
            )
            warehouse_con.execute("UPDATE signal SET status = ? WHERE signal_id = ?", [d["to_status"], d["signal_id"]])
            applied += 1
        warehouse_con.execute("COMMIT")
    except BaseException:
        warehouse_con.execute("ROLLBACK")
        raise
    return applied


def apply_pending_to_warehouse(warehouse: str | Path, *, timeout_s: float = 2.0) -> int:
    """Open the warehouse briefly for writing and apply pending decisions.

    Raises :class:`StoreBusy` if the pipeline holds the warehouse for the whole ``timeout_s``;
    the decisions stay in the journal and a later call applies them.
    """
    from dashboard import coding  # issue 17: the coding review journal travels with the triage journal

    journal, coding_journal = decisions(warehouse), coding.decisions(warehouse)
    if not journal and not coding_journal:
        return 0
    con = connect_with_retry(warehouse, timeout_s=timeout_s)
    try:
        coding.apply_to_warehouse(con, coding_journal)
        return apply_pending(con, journal)
    finally:
        con.close()


def apply_review_store(warehouse_con: duckdb.DuckDBPyConnection, warehouse: str | Path) -> int:
    """For the pipeline: apply the dashboard's pending decisions through its own open connection."""
    if not review_store_path(warehouse).exists():
        return 0
    from dashboard import coding  # issue 17

    coding.apply_to_warehouse(warehouse_con, coding.decisions(warehouse))
    return apply_pending(warehouse_con, decisions(warehouse))

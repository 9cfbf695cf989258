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

Passwords are argon2id hashes (argon2-cffi defaults); nothing stores a clear password.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from warehouse.stores.signal_register import STATUSES

ROLES = ("analyst", "viewer")
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
]

_hasher = PasswordHasher()


class StoreBusy(RuntimeError):
    """The file stayed locked by another process for the whole retry window."""


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


@contextmanager
def open_store(warehouse: str | Path, *, timeout_s: float = 3.0):
    """A short-lived connection to the review store (created if missing), serialised in-process."""
    path = review_store_path(warehouse)
    with _store_lock:
        con = connect_with_retry(path, timeout_s=timeout_s)
        try:
            for ddl in _DDL:
                con.execute(ddl)
            yield con
        finally:
            con.close()


def _now() -> datetime:
    """Local wall-clock time, naive: the same clock as the register's ``current_timestamp`` rows in
    ``signal_history`` (DuckDB casts it to TIMESTAMP in the local time zone), so one audit trail
    and "new since last review" compare like with like."""
    return datetime.now()


# ---- accounts ---------------------------------------------------------------------------------
def add_user(warehouse: str | Path, username: str, password: str, role: str) -> None:
    """Create an account, or reset its password and role if it exists."""
    username = username.strip()
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if not username or len(password) < 8:
        raise ValueError("a username and a password of at least 8 characters are required")
    digest = _hasher.hash(password)
    with open_store(warehouse) as con:
        con.execute(
            "INSERT OR REPLACE INTO account (username, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            [username, role, digest, _now()],
        )


def get_user(warehouse: str | Path, username: str) -> dict | None:
    with open_store(warehouse) as con:
        row = con.execute("SELECT username, role FROM account WHERE username = ?", [username]).fetchone()
    return {"username": row[0], "role": row[1]} if row else None


def authenticate(warehouse: str | Path, username: str, password: str) -> dict | None:
    """The account if the password matches its argon2 hash, else None (same work either way)."""
    with open_store(warehouse) as con:
        row = con.execute(
            "SELECT username, role, password_hash FROM account WHERE username = ?", [username.strip()]
        ).fetchone()
    digest = row[2] if row else _DUMMY_HASH
    try:
        ok = _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return {"username": row[0], "role": row[1]} if (ok and row) else None


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
    journal = decisions(warehouse)
    if not journal:
        return 0
    con = connect_with_retry(warehouse, timeout_s=timeout_s)
    try:
        return apply_pending(con, journal)
    finally:
        con.close()


def apply_review_store(warehouse_con: duckdb.DuckDBPyConnection, warehouse: str | Path) -> int:
    """For the pipeline: apply the dashboard's pending decisions through its own open connection."""
    if not review_store_path(warehouse).exists():
        return 0
    return apply_pending(warehouse_con, decisions(warehouse))

"""Verification-API clients and the API's append-only audit log, in a side store beside the warehouse.

Why a side store, and why SQLite. The API answers while the pipeline writes: DuckDB lets one
process hold a file for writing, and a reader's lock also stops a writer, so the API never opens
the warehouse (it reads a private snapshot, :mod:`api.snapshot`). It must however *write* on every
request (the audit row) while ``pvtrace api-client add/revoke`` change clients from another
process. A DuckDB file admits one writing process at a time, so either the server keeps the file
(and the CLI cannot add a client while the API runs) or every request reopens it (milliseconds per
request). SQLite in WAL mode (Python's standard library) allows several processes to write the same
file, each insert taking ~0.1 ms, and reads never block. So ``<warehouse>.api.sqlite`` holds:

* ``api_client`` — name, scopes, jurisdiction, rate limits, the key's prefix (to recognise it in a
  listing) and the key's SHA-256. Keys are 256-bit random tokens (``secrets.token_urlsafe(32)``):
  a fast hash is right for them (nothing to brute-force, unlike a password), and lookup is by hash.
  The clear key is printed once by :func:`add_client` and never stored.
* ``api_audit`` (one row per request: client, time, method, path, scope, HTTP status, number of
  codes, count of answers per status) and ``api_audit_code`` (per code asked: the code as sent, and
  the answer's ``valid`` and ``status``). Both are append-only: triggers abort any UPDATE or DELETE.
  A request is answered only after its audit rows are committed.

Pack codes are not patient data (a code identifies a pack, never who received it); the audit holds
no patient key, and the API has none to give.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "DEFAULT_CODE_LIMIT",
    "DEFAULT_RATE_LIMIT",
    "JURISDICTIONS",
    "SCOPES",
    "AuditStore",
    "add_client",
    "audit_rows",
    "client_for_key",
    "hash_key",
    "list_clients",
    "revoke_client",
    "store_path",
]

SCOPES = ("verify", "trace", "safety")
#: market regions a client may belong to (``product.region`` vocabulary; reports.jurisdictions)
JURISDICTIONS = ("CN", "EU", "US", "JP")
#: requests per client (``limits`` notation; several limits separated by ";")
DEFAULT_RATE_LIMIT = "20/second;1000/minute"
#: pack codes per client (a POST /v1/verify of n codes costs n)
DEFAULT_CODE_LIMIT = "200000/hour"
KEY_PREFIX = "pvt_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,79}$")

_DDL = [
    """
    CREATE TABLE IF NOT EXISTS api_client (
        client_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        jurisdiction TEXT,
        rate_limit TEXT NOT NULL,
        code_limit TEXT NOT NULL,
        key_prefix TEXT NOT NULL,
        key_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    """
    CREATE TABLE IF NOT EXISTS api_audit (
        request_id TEXT PRIMARY KEY,
        client_id TEXT,
        at TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        scope TEXT,
        http_status INTEGER NOT NULL,
        n_codes INTEGER NOT NULL,
        statuses TEXT
    )""",
    """
    CREATE TABLE IF NOT EXISTS api_audit_code (
        request_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        code TEXT,
        valid INTEGER,
        status TEXT,
        PRIMARY KEY (request_id, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS api_audit_client_at ON api_audit (client_id, at)",
    *(
        f"""
    CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
    BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
        for table in ("api_audit", "api_audit_code")
        for op in ("UPDATE", "DELETE")
    ),
]


def store_path(warehouse: str | Path) -> Path:
    return Path(str(warehouse) + ".api.sqlite")


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


def _connect(warehouse: str | Path) -> sqlite3.Connection:
    path = store_path(warehouse)
    new = not path.exists()
    con = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    for ddl in _DDL:
        con.execute(ddl)
    if new:
        path.chmod(0o600)  # key hashes and the audit trail: the owner only
    return con


def hash_key(key: str) -> str:
    """SHA-256 of a client key (hex). Keys are random 256-bit tokens, so no salt or slow hash is needed."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_scopes(scopes: str | Sequence[str]) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    out = [s.strip() for s in items if s.strip()]
    bad = [s for s in out if s not in SCOPES]
    if bad or not out:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {scopes!r}")
    return sorted(set(out), key=SCOPES.index)


def _check_limit(text: str) -> str:
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError as exc:
        raise ValueError(f"rate limit {text!r} is not in the form '20/second;1000/minute'") from exc
    return text


def add_client(
    warehouse: str | Path,
    name: str,
    scopes: str | Sequence[str],
    jurisdiction: str | None = None,
    *,
    rate_limit: str = DEFAULT_RATE_LIMIT,
    code_limit: str = DEFAULT_CODE_LIMIT,
) -> tuple[dict, str]:
    """Create a client; return (its record, its key). The key is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not _NAME_RE.match(name):
        raise ValueError("a client name is 1-80 letters, digits, spaces or . _ @ - (starting with a letter or digit)")
    scope_list = _parse_scopes(scopes)
    if jurisdiction is not None:
        jurisdiction = jurisdiction.strip().upper()
        if jurisdiction not in JURISDICTIONS:
            raise ValueError(f"jurisdiction must be one of {', '.join(JURISDICTIONS)}; got {jurisdiction!r}")
    if "safety" in scope_list and jurisdiction is None:
        raise ValueError("the safety scope needs a --jurisdiction (what a client may see depends on it)")
    _check_limit(rate_limit)
    _check_limit(code_limit)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = {
        "client_id": "cl_" + uuid.uuid4().hex[:12],
        "name": name,
        "scopes": ",".join(scope_list),
        "jurisdiction": jurisdiction,
        "rate_limit": rate_limit,
        "code_limit": code_limit,
        "key_prefix": key[:10],
        "key_sha256": hash_key(key),
        "created_at": _now(),
        "revoked_at": None,
    }
    con = _connect(warehouse)
    try:
        try:
            con.execute(
                "INSERT INTO api_client VALUES (:client_id, :name, :scopes, :jurisdiction, :rate_limit, :code_limit, "
                ":key_prefix, :key_sha256, :created_at, :revoked_at)",
                record,
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a client named {name!r} exists already (revoke it, or pick another name)") from exc
    finally:
        con.close()
    return _public(record), key


def _public(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "key_sha256"}
    out["scopes"] = out["scopes"].split(",") if isinstance(out["scopes"], str) else out["scopes"]
    return out


_COLUMNS = (
    "client_id, name, scopes, jurisdiction, rate_limit, code_limit, key_prefix, key_sha256, created_at, revoked_at"
)


def _rows(con: sqlite3.Connection, where: str = "", params: Sequence = ()) -> list[dict]:
    cur = con.execute(f"SELECT {_COLUMNS} FROM api_client {where} ORDER BY created_at, name", params)
    names = [c[0] for c in cur.description]
    return [_public(dict(zip(names, row))) for row in cur.fetchall()]


def list_clients(warehouse: str | Path) -> list[dict]:
    """Every client (revoked ones too, with ``revoked_at``); never a key or its hash."""
    con = _connect(warehouse)
    try:
        return _rows(con)
    finally:
        con.close()


def revoke_client(warehouse: str | Path, name_or_id: str) -> bool:
    """Revoke a client by name or id (its key stops working at the next request). False if none was active."""
    con = _connect(warehouse)
    try:
        cur = con.execute(
            "UPDATE api_client SET revoked_at = ? WHERE (name = ? OR client_id = ?) AND revoked_at IS NULL",
            [_now(), name_or_id, name_or_id],
        )
        return cur.rowcount > 0
    finally:
        con.close()


def client_for_key(con: sqlite3.Connection, key: str) -> dict | None:
    """The active client holding ``key``, or None (unknown or revoked)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    rows = _rows(con, "WHERE key_sha256 = ? AND revoked_at IS NULL", [hash_key(key)])
    return rows[0] if rows else None


class AuditStore:
    """The server's connection to the side store: client lookup and audit appends, thread-safe."""

    def __init__(self, warehouse: str | Path):
        self.warehouse = Path(warehouse)
        self._con = _connect(warehouse)
        self._lock = threading.Lock()

    def client(self, key: str) -> dict | None:
        with self._lock:
            return client_for_key(self._con, key)

    def append(
        self,
        *,
        client_id: str | None,
        method: str,
        path: str,
        scope: str | None,
        http_status: int,
        codes: Sequence[str | None] = (),
        valid: Sequence[bool | None] = (),
        statuses: Sequence[str | None] = (),
    ) -> str:
        """Append one request (and one row per code asked); committed before returning its id."""
        request_id = uuid.uuid4().hex
        counts: dict[str, int] = {}
        for i, s in enumerate(statuses):
            key = s if s is not None else ("invalid" if valid and valid[i] is False else "none")
            counts[key] = counts.get(key, 0) + 1
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.execute(
                    "INSERT INTO api_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        request_id,
                        client_id,
                        _now(),
                        method,
                        path[:2000],
                        scope,
                        http_status,
                        len(codes),
                        json.dumps(counts, sort_keys=True) if counts else None,
                    ],
                )
                if codes:
                    self._con.executemany(
                        "INSERT INTO api_audit_code VALUES (?, ?, ?, ?, ?)",
                        (
                            (
                                request_id,
                                i,
                                None if c is None else str(c)[:500],
                                None if i >= len(valid) or valid[i] is None else int(valid[i]),
                                statuses[i] if i < len(statuses) else None,
                            )
                            for i, c in enumerate(codes)
                        ),
                    )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return request_id

    def close(self) -> None:
        with self._lock:
            self._con.close()


def audit_rows(warehouse: str | Path, client_id: str | None = None) -> list[dict]:
    """Audit requests (oldest first), optionally of one client, with their codes."""
    con = _connect(warehouse)
    try:
        where, params = ("WHERE client_id = ?", [client_id]) if client_id else ("", [])
        cur = con.execute(f"SELECT * FROM api_audit {where} ORDER BY at, rowid", params)
        names = [c[0] for c in cur.description]
        out = [dict(zip(names, r)) for r in cur.fetchall()]
        for row in out:
            row["statuses"] = json.loads(row["statuses"]) if row["statuses"] else {}
            row["codes"] = [
                {"code": c, "valid": None if v is None else bool(v), "status": s}
                for c, v, s in con.execute(
                    "SELECT code, valid, status FROM api_audit_code WHERE request_id = ? ORDER BY seq",
                    [row["request_id"]],
                ).fetchall()
            ]
        return out
    finally:
        con.close()

"""What the API reads: a private copy of the warehouse, with the pack-state table verification joins.

The API never opens the warehouse itself. DuckDB's file lock lets one process write, and a
read-only connection's shared lock also stops the pipeline from opening the file; a steady stream
of verification requests, each opening the warehouse read-only, would starve the pipeline (whose
assets open and close the warehouse once per step). Measured with ``benchmarks/bench_api.py`` on a
scale-1 world (410k packs; 2 cores shared with other jobs): a read-only ``duckdb.connect`` plus one
query costs 65-100 ms per request and holds the lock meanwhile, whereas a snapshot (copy + the tables
below) takes 10-12 s once per warehouse change and holds no DuckDB lock at all. So the API works like the dashboard
(:mod:`dashboard.data`): it copies the warehouse file (and its WAL) to
``<warehouse>.api-snapshot-{a,b}.duckdb`` when the warehouse has changed and then stayed unchanged
for ``quiet_s`` seconds, keeps the copy only if the warehouse did not change while copying, and
serves from it until the next copy. Two file names alternate, so requests in flight keep reading
the previous copy while the next one is prepared.

The copy is the API's own file, so it is opened read-write and enriched once per snapshot with
``api_pack_state``: one row per serialised pack with its canonical key (``gs1|gtin|serial`` or
``nmpa|code``, from :func:`warehouse.linkage.pack_codes.parse_pack_codes`) and its first dispensing
(delivery time, pharmacy, region, country — never the patient key), and ``api_batch_state``: per
batch, the supply-event facts verification needs (decommissioned quantity, recall disposition).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from warehouse.linkage.pack_codes import parse_pack_codes

log = logging.getLogger("pvtrace.api")

#: CBV 2.0 business steps and dispositions that take a pack out of the supply chain for good
#: (EU FMD "decommissioned": destroyed, stolen, locked, exported ...). ``dispensed`` and ``recalled``
#: and ``expired`` are statuses of their own.
DECOMMISSION_BIZ_STEPS = ("decommissioning", "destroying")
DECOMMISSION_DISPOSITIONS = ("destroyed", "disposed", "stolen", "damaged", "inactive", "non_sellable_other")

#: the key both sides of verification are joined on
PACK_KEY_SQL = "CASE WHEN {s} = 'gs1' THEN 'gs1|' || {g} || '|' || {r} WHEN {s} = 'nmpa' THEN 'nmpa|' || {n} || {r} END"


def pack_key_sql(system: str, gtin: str, serial: str, nmpa: str) -> str:
    """SQL of a pack's canonical key from parsed columns (null when the code names no single pack)."""
    return PACK_KEY_SQL.format(s=system, g=gtin, r=serial, n=nmpa)


class SnapshotUnavailable(RuntimeError):
    """No snapshot of the warehouse could be taken yet."""


def _signature(path: Path) -> tuple:
    st = path.stat()
    wal = Path(str(path) + ".wal")
    wst = wal.stat() if wal.exists() else None
    return (st.st_mtime_ns, st.st_size, wst.st_mtime_ns if wst else None, wst.st_size if wst else None)


@dataclass
class Copy:
    path: Path
    con: duckdb.DuckDBPyConnection
    taken_at: datetime


_PREPARE_SQL = [
    f"""
    CREATE OR REPLACE TABLE api_dispensed AS
    SELECT key AS pack_key, arg_min(d.delivered_at, (d.delivered_at, d.delivery_id)) AS dispensed_at,
           arg_min(d.pharmacy_id, (d.delivered_at, d.delivery_id)) AS pharmacy_id,
           arg_min(d.region, (d.delivered_at, d.delivery_id)) AS region,
           arg_min(d.country, (d.delivered_at, d.delivery_id)) AS country,
           count(*) AS deliveries
    FROM delivery d JOIN (
        SELECT code, {pack_key_sql("system", "gtin", "serial", "nmpa_drug_code")} AS key FROM _delivery_codes
    ) c ON c.code = d.pack_code
    WHERE key IS NOT NULL
    GROUP BY key
    """,
    f"""
    CREATE OR REPLACE TABLE api_pack_state AS
    SELECT k.*, d.dispensed_at, d.pharmacy_id AS dispensed_pharmacy, d.region AS dispensed_region,
           d.country AS dispensed_country
    FROM (SELECT p.pack_code, p.code_system, p.batch_id, p.serial, p.gtin, p.nmpa_drug_code, p.commissioned_at,
                 {pack_key_sql("p.code_system", "p.gtin", "p.serial", "p.nmpa_drug_code")} AS pack_key
          FROM pack p) k
    LEFT JOIN api_dispensed d USING (pack_key)
    ORDER BY k.pack_key
    """,
    # single lookups probe this index (an index join: ~1 ms on 4M packs instead of a full scan)
    "CREATE INDEX api_pack_state_key ON api_pack_state (pack_key)",
    # product and lot look-ups of verification, resolved once per snapshot rather than per request
    """
    CREATE OR REPLACE TABLE api_product_gtin AS
    SELECT gtin, min(product_id) AS product_id FROM product WHERE gtin IS NOT NULL GROUP BY gtin
    """,
    """
    CREATE OR REPLACE TABLE api_product_nmpa AS
    SELECT nmpa_drug_code, min(product_id) AS product_id FROM product WHERE nmpa_drug_code IS NOT NULL
    GROUP BY nmpa_drug_code
    """,
    """
    CREATE OR REPLACE TABLE api_lot AS
    SELECT product_id, lot_number, min(batch_id) AS batch_id FROM batch GROUP BY product_id, lot_number
    """,
    f"""
    CREATE OR REPLACE TABLE api_batch_state AS
    SELECT b.batch_id,
           coalesce(sum(s.quantity) FILTER (WHERE s.role = 'object' AND (s.action = 'DELETE'
                    OR s.biz_step IN {DECOMMISSION_BIZ_STEPS} OR s.disposition IN {DECOMMISSION_DISPOSITIONS})), 0)
               AS decommissioned_units,
           coalesce(bool_or(s.disposition = 'recalled' OR s.biz_step = 'recalling'), false) AS recall_event,
           coalesce(bool_or(s.disposition = 'expired'), false) AS expired_event,
           (SELECT count(*) FROM api_pack_state k WHERE k.batch_id = b.batch_id AND k.dispensed_at IS NOT NULL)
               AS dispensed_packs
    FROM batch b LEFT JOIN supply_event s ON s.batch_id = b.batch_id
    GROUP BY b.batch_id
    """,
]


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Add the API's derived tables to a (private) warehouse copy."""
    codes = con.execute("SELECT DISTINCT pack_code FROM delivery WHERE pack_code IS NOT NULL").pl()["pack_code"]
    parsed = parse_pack_codes(codes)
    con.register("_delivery_codes", parsed.to_arrow())
    try:
        for sql in _PREPARE_SQL:
            con.execute(sql)
    finally:
        con.unregister("_delivery_codes")
    con.execute("CHECKPOINT")


class Snapshot:
    """The API's current warehouse copy, refreshed when the warehouse changed and went quiet. Thread-safe."""

    def __init__(self, warehouse: str | Path, *, quiet_s: float = 2.0):
        self.warehouse = Path(warehouse)
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._current: Copy | None = None
        self._retired: list[Copy] = []
        self._signature: tuple | None = None
        self._seen: tuple | None = None
        self._seen_at = 0.0
        self._slot = 0
        self.last_error: str | None = None

    def _paths(self) -> list[Path]:
        return [Path(f"{self.warehouse}.api-snapshot-{s}.duckdb") for s in "ab"]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the current copy (one per request: DuckDB cursors are per thread)."""
        current = self._current
        if current is None:
            self.refresh()
            current = self._current
        if current is None:
            raise SnapshotUnavailable(self.last_error or "no snapshot of the warehouse yet")
        return current.con.cursor()

    @property
    def taken_at(self) -> datetime | None:
        return self._current.taken_at if self._current else None

    @property
    def stale(self) -> bool:
        try:
            return self._signature is not None and _signature(self.warehouse) != self._signature
        except FileNotFoundError:
            return True

    def refresh(self, force: bool = False) -> bool:
        """Take a new copy if the warehouse changed and has been quiet (or none exists yet)."""
        with self._lock:
            if not self.warehouse.exists():
                self.last_error = f"warehouse {self.warehouse} does not exist"
                return False
            sig = _signature(self.warehouse)
            if sig == self._signature and not force:
                return False
            now = time.monotonic()
            if sig != self._seen:
                self._seen, self._seen_at = sig, now
            if not (force or self._current is None or now - self._seen_at >= self.quiet_s):
                return False
            return self._take(sig)

    def _take(self, sig: tuple) -> bool:
        target = self._paths()[self._slot]
        for retired in [c for c in self._retired if c.path == target]:  # last used two copies ago
            retired.con.close()
            self._retired.remove(retired)
        wal, target_wal = Path(str(self.warehouse) + ".wal"), Path(str(target) + ".wal")
        try:
            target_wal.unlink(missing_ok=True)
            shutil.copyfile(self.warehouse, target)
            if wal.exists():
                shutil.copyfile(wal, target_wal)
            if _signature(self.warehouse) != sig:
                self.last_error = "the pipeline is writing the warehouse"
                return False
            con = duckdb.connect(str(target))
            try:
                prepare(con)
            except BaseException:
                con.close()
                raise
        except (duckdb.Error, OSError, pl.exceptions.PolarsError) as exc:
            self.last_error = f"snapshot failed: {exc}"
            log.warning("API snapshot failed: %s", exc)
            return False
        os.chmod(target, 0o600)
        if self._current is not None:
            self._retired.append(self._current)
        self._current = Copy(target, con, datetime.now(tz=UTC))
        self._signature, self.last_error = sig, None
        self._slot = 1 - self._slot
        return True

    def close(self) -> None:
        with self._lock:
            for c in [*self._retired, *([self._current] if self._current else [])]:
                c.con.close()
            self._retired, self._current = [], None

"""Shared by the corruption suite and its table: load a (corrupted) mini inbox, read its manifest."""

from __future__ import annotations

from pathlib import Path

import duckdb

from sample_data.corruption import corruptions
from tests.mini_inbox import MILLION_AT, MILLION_PACK
from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.deliveries import load_deliveries, load_medication_logs
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import load_supply_events

SALT = "corruption-suite-salt"
CORRUPTIONS = corruptions(MILLION_PACK, MILLION_AT)


def load_inbox(con: duckdb.DuckDBPyConnection, inbox: Path) -> None:
    """Every inbox loader, in the graph's order."""
    load_reference(con, inbox)
    load_packs(con, inbox)
    load_supply_events(con, inbox)
    load_deliveries(con, inbox, SALT)
    load_medication_logs(con, inbox, SALT)
    load_cases(con, inbox, SALT)


def manifest(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, dict]:
    """load_manifest rows by file (relative to the inbox)."""
    root = str(inbox).rstrip("/") + "/"
    rows = con.sql(
        "SELECT file, kind, rows_read, rows_loaded, rows_quarantined, status, error FROM load_manifest"
    ).fetchall()
    return {
        f.removeprefix(root): {"kind": k, "read": r, "loaded": ld, "quarantined": q, "status": s, "error": e}
        for f, k, r, ld, q, s, e in rows
    }

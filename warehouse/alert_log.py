"""The alert table: which alert went to which manufacturer, keyed by content hash."""

from __future__ import annotations

import duckdb


def previous_alert(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> tuple[str, str] | None:
    """(alert_id, content_hash) of the manufacturer's latest alert, if any."""
    return con.execute(
        "SELECT alert_id, content_hash FROM alert WHERE manufacturer_id = ? ORDER BY created_at DESC, alert_id LIMIT 1",
        [manufacturer_id],
    ).fetchone()


def record_alert(con: duckdb.DuckDBPyConnection, *, alert_id: str, manufacturer_id: str, signal_ids: list[str],
                 batch_ids: list[str], content_hash: str, created_at, json_path: str, html_path: str) -> bool:
    """Insert the alert unless the same alert id is already recorded; True when it is new."""
    (exists,) = con.execute("SELECT count(*) FROM alert WHERE alert_id = ?", [alert_id]).fetchone()
    if exists:
        return False
    con.execute(
        "INSERT INTO alert VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [alert_id, manufacturer_id, signal_ids, batch_ids, content_hash, created_at, json_path, html_path],
    )
    return True

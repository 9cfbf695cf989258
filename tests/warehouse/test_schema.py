"""Opening the warehouse: schema versioning and waiting out another process's short lock."""

from __future__ import annotations

import multiprocessing as mp
import time

import duckdb
import pytest

from warehouse.schema import SCHEMA_VERSION, connect


def _hold(path: str, seconds: float, ready) -> None:
    con = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


def _holding_process(path: str, seconds: float):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold, args=(path, seconds, ready))
    proc.start()
    assert ready.wait(30)
    return proc


def test_schema_version_recorded_once(tmp_path):
    path = str(tmp_path / "w.duckdb")
    connect(path).close()
    con = connect(path)
    assert con.sql("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "w.duckdb")
    con = connect(path)
    con.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    con.execute("DELETE FROM schema_version WHERE version = ?", [SCHEMA_VERSION])
    con.close()
    with pytest.raises(RuntimeError, match="newer"):
        connect(path)


def test_a_short_lock_held_elsewhere_is_waited_out(tmp_path):
    path = str(tmp_path / "w.duckdb")
    connect(path).close()
    proc = _holding_process(path, 1.0)
    try:
        con = connect(path, lock_wait=20)
        assert con.sql("SELECT count(*) FROM schema_version").fetchone()[0] == 1
        con.close()
    finally:
        proc.join()


def test_a_long_lock_is_a_clear_error(tmp_path):
    path = str(tmp_path / "w.duckdb")
    connect(path).close()
    proc = _holding_process(path, 5.0)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            connect(path, lock_wait=0.3)
    finally:
        proc.join()


def test_fact_tables_carry_no_key_index_and_violations_are_counted():
    from warehouse.schema import NATURAL_KEYS, key_violations

    con = connect(":memory:")
    indexed = {
        t
        for (t,) in con.sql(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchall()
    }
    assert not indexed & set(NATURAL_KEYS)
    assert key_violations(con) == dict.fromkeys(NATURAL_KEYS, 0)
    con.execute(
        "INSERT INTO medication_log VALUES ('L1', 'k', 'D1', DATE '2025-01-06', 1, 0), "
        "('L1', 'k', 'D1', DATE '2025-01-13', 1, 0), ('L2', 'k', 'D2', DATE '2025-01-06', 1, 0)"
    )
    assert key_violations(con, ["medication_log"]) == {"medication_log": 1}


def test_version_1_warehouse_is_migrated_with_its_rows(tmp_path):
    path = str(tmp_path / "v1.duckdb")
    con = connect(path)
    con.execute("DROP VIEW latest_case_drug")
    con.execute("DROP VIEW latest_case_reaction")
    con.execute("DROP VIEW latest_case")
    con.execute("DROP TABLE case_report")
    con.execute(
        "CREATE TABLE case_report (case_id VARCHAR NOT NULL, version INTEGER NOT NULL, is_latest BOOLEAN NOT NULL, "
        "received_on DATE NOT NULL, source VARCHAR NOT NULL, PRIMARY KEY (case_id, version))"
    )
    con.execute("INSERT INTO case_report VALUES ('C1', 1, true, DATE '2025-01-01', 'hcp')")
    con.execute("DELETE FROM schema_version")
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.close()
    con = connect(path)
    assert con.sql("SELECT case_id, version, source, narrative FROM latest_case").fetchall() == [("C1", 1, "hcp", None)]
    pk = con.sql(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'case_report' AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    assert pk == 0
    assert con.sql("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION

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

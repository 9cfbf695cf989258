"""The deliveries load runs under a DuckDB memory limit and puts the connection's own limit back (issue 18)."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.inputs.platform.deliveries import LOAD_MEMORY_LIMIT_ENV, load_memory_limit


def _limit(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_limit_holds_inside_the_block_and_the_previous_one_comes_back(monkeypatch):
    con = duckdb.connect()
    before = _limit(con)
    monkeypatch.setenv(LOAD_MEMORY_LIMIT_ENV, "700MB")
    with load_memory_limit(con):
        inside = _limit(con)
    assert inside != before and inside.endswith("MiB") and 600 < float(inside.split()[0]) < 700
    assert _limit(con) == before


def test_the_limit_comes_back_after_an_error_and_none_sets_nothing(monkeypatch):
    con = duckdb.connect()
    before = _limit(con)
    monkeypatch.setenv(LOAD_MEMORY_LIMIT_ENV, "900MB")
    with pytest.raises(RuntimeError), load_memory_limit(con):
        raise RuntimeError("a failing load")
    assert _limit(con) == before
    monkeypatch.setenv(LOAD_MEMORY_LIMIT_ENV, "none")
    with load_memory_limit(con):
        assert _limit(con) == before


@pytest.mark.parametrize("bad", ["lots", "15", "1.5 GB; DROP TABLE delivery", "-1GB"])
def test_a_malformed_limit_is_refused_with_the_variable_named(monkeypatch, bad):
    monkeypatch.setenv(LOAD_MEMORY_LIMIT_ENV, bad)
    with pytest.raises(ValueError, match=LOAD_MEMORY_LIMIT_ENV), load_memory_limit(duckdb.connect()):
        pass

"""The engine interface: one Ibis expression, the same rows from DuckDB and from Spark, in UTC."""

import datetime as dt

import duckdb
import polars as pl
import pytest

from warehouse.engine import DuckDBEngine, engine_from_config


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'Europe/Paris'")  # a session time zone that is not UTC must not leak into steps
    c.execute(
        "CREATE TABLE t AS SELECT range::BIGINT AS i, TIMESTAMPTZ '2026-03-29 21:30:00+00' + range * INTERVAL 1 HOUR AS ts "
        "FROM range(5)"
    )
    yield c
    c.close()


def _weeks(engine):
    t = engine.table("t")
    d = t.ts.date()
    return t.select("i", d=d, w=d.truncate("W")).order_by("i")


EXPECTED = pl.DataFrame(
    {
        "i": [0, 1, 2, 3, 4],
        # 2026-03-29 is a Sunday; 22:30 UTC is already Monday in Paris, but every step works in UTC
        "d": [dt.date(2026, 3, 29)] * 3 + [dt.date(2026, 3, 30)] * 2,
        "w": [dt.date(2026, 3, 23)] * 3 + [dt.date(2026, 3, 30)] * 2,
    }
)


def test_duckdb_engine_computes_in_utc_and_leaves_the_connection_as_it_was(con):
    engine = engine_from_config("duckdb", duckdb_con=con)
    assert isinstance(engine, DuckDBEngine) and engine.name == "duckdb"
    assert engine.to_polars(_weeks(engine)).equals(EXPECTED)
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "Europe/Paris"
    assert con.execute("SELECT current_setting('python_enable_replacements')").fetchone()[0]  # as it was


def test_duckdb_engine_registers_arrow_polars_and_parquet_and_drops_them_on_close(con, tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"x": [3, 4, 5]}).write_parquet(path)
    with engine_from_config("duckdb", duckdb_con=con) as engine:
        assert engine.to_polars(engine.register("a", pl.DataFrame({"x": [1]}))).height == 1
        assert engine.to_polars(engine.register("b", path).x.sum().name("s").as_table())["s"][0] == 12
        engine.load_warehouse(con, ["t"])
        with pytest.raises(ValueError, match="wraps"):
            engine.load_warehouse(duckdb.connect(), ["t"])
    names = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()"
        ).fetchall()
    }
    assert not {"a", "b"} & names


def test_configuration_is_checked(con, monkeypatch):
    monkeypatch.setenv("PVTRACE_ENGINE", "postgres")
    with pytest.raises(ValueError, match="engine must be one of"):
        engine_from_config(duckdb_con=con)
    monkeypatch.setenv("PVTRACE_ENGINE", "DuckDB")
    assert engine_from_config(duckdb_con=con).name == "duckdb"
    with pytest.raises(ValueError, match="duckdb_con"):
        engine_from_config("duckdb")
    with pytest.raises(ValueError, match="identifier"):
        engine_from_config("duckdb", duckdb_con=con).table("t; DROP TABLE t")


@pytest.mark.spark
def test_spark_engine_gives_the_same_rows_from_the_exported_warehouse(con, spark):
    with engine_from_config("spark", spark=spark) as engine:
        assert engine.name == "spark"
        engine.load_warehouse(con, ["t"])
        assert engine.to_polars(_weeks(engine)).equals(EXPECTED)
        engine.register("_a", pl.DataFrame({"x": [1, 2]}))
        assert engine.to_polars(engine.table("_a").order_by("x"))["x"].to_list() == [1, 2]
        staging = engine.staging
        assert staging.exists()
    assert not staging.exists()
    assert not spark.catalog.tableExists("_a")

"""One interface, two engines: the heavy set-based steps are Ibis expressions run by an :class:`Engine`.

``DuckDBEngine`` wraps the warehouse's own DuckDB connection (``ibis.duckdb.from_connection``):
the tables are the warehouse's, inside the caller's transaction, and nothing is copied.
``SparkEngine`` wraps a Spark session (``ibis.pyspark``; local, a cluster, Spark Connect or
Databricks Connect): tables are made visible to it by :meth:`Engine.register` (Arrow, polars,
or a Parquet file/folder) or, from a DuckDB warehouse, by :meth:`Engine.load_warehouse`
(the named tables exported as Parquet into a staging folder Spark reads; over Spark Connect,
sent as Arrow).

Every step is written once against :meth:`Engine.table` and returns an Ibis expression; the
caller materialises it with :meth:`Engine.to_arrow` / :meth:`Engine.to_polars` (small results:
counts, exposure rows) or keeps composing. Both engines compute in UTC.

Configuration (:func:`engine_from_config`): ``PVTRACE_ENGINE`` = ``duckdb`` (default) | ``spark``;
the Spark session from :func:`warehouse.engine.spark.spark_session` (``PVTRACE_SPARK_MASTER``,
``PVTRACE_SPARK_REMOTE``, ``PVTRACE_SPARK_CONF``); ``PVTRACE_SPARK_STAGING`` = the folder for
Parquet exports (must be readable by the executors on a cluster; default a private temp folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import polars as pl
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    from ibis.expr.types import Table
    from pyspark.sql import SparkSession

__all__ = ["ENGINES", "DuckDBEngine", "Engine", "SparkEngine", "engine_from_config"]

ENGINES = ("duckdb", "spark")

Data = pa.Table | pl.DataFrame | str | Path

#: DuckDB SQL of steps already compiled in this process: (step key, input column types) → SQL
_SQL_CACHE: dict[tuple, str] = {}


def _as_arrow(data: pa.Table | pl.DataFrame) -> pa.Table:
    if isinstance(data, pl.DataFrame):
        return data.to_arrow()
    if isinstance(data, pa.Table):
        return data
    raise TypeError(f"expected a pyarrow Table, a polars DataFrame or a Parquet path, got {type(data).__name__}")


def _check_name(name: str) -> str:
    if not name or not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ValueError(f"table name must be an identifier (letters, digits, _), got {name!r}")
    return name


class Engine:
    """What a step needs from an engine. Subclasses: :class:`DuckDBEngine`, :class:`SparkEngine`."""

    #: ``"duckdb"`` or ``"spark"``
    name: str
    #: the Ibis backend the expressions run on
    backend: Any

    def table(self, name: str) -> Table:
        """The table (or view, or registered data) called ``name`` as an Ibis table expression."""
        return self.backend.table(_check_name(name))

    def register(self, name: str, data: Data) -> Table:
        """Make ``data`` (Arrow, polars, or a Parquet file / folder / glob) visible as ``name``; returns it."""
        raise NotImplementedError

    def drop(self, name: str) -> None:
        """Forget one name :meth:`register` created (no error if it is not there)."""
        raise NotImplementedError

    def load_warehouse(self, con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
        """Make these tables (or views) of the DuckDB warehouse ``con`` visible to the engine by name."""
        raise NotImplementedError

    def to_arrow(self, expr) -> pa.Table:
        """Run ``expr`` and return its rows as an Arrow table with the expression's schema."""
        raise NotImplementedError

    def to_polars(self, expr) -> pl.DataFrame:
        """Run ``expr`` and return its rows as a polars DataFrame."""
        return pl.from_arrow(self.to_arrow(expr))

    def run(self, key: Hashable, build: Callable[[Engine], Any], tables: Iterable[str] = ()) -> pl.DataFrame:
        """``to_polars(build(self))``: how a step runs. ``key`` names the step and its arguments, ``tables``
        the warehouse tables it reads; a DuckDB engine keeps the compiled SQL per (key, those tables'
        column types), so a step's Python-side cost (building and compiling the expression, ~0.1–0.7 s)
        is paid once per process, not per call."""
        return self.to_polars(build(self))

    def store(
        self,
        key: Hashable,
        build: Callable[[Engine], Any],
        con: duckdb.DuckDBPyConnection,
        table: str,
        tables: Iterable[str] = (),
    ) -> int:
        """``to_duckdb(build(self), con, table)`` with the compiled-SQL cache of :meth:`run`."""
        return self.to_duckdb(build(self), con, table)

    def to_duckdb(self, expr, con: duckdb.DuckDBPyConnection, table: str) -> int:
        """Store the rows of ``expr`` as table ``table`` of the DuckDB warehouse ``con`` (replacing it,
        in ``con``'s transaction); returns the row count. A DuckDB engine on ``con`` never leaves DuckDB."""
        _check_name(table)
        rows = self.to_arrow(expr)
        con.register("_pv_engine_rows", rows)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _pv_engine_rows")
        finally:
            con.unregister("_pv_engine_rows")
        return rows.num_rows

    def insert_into(self, expr, con: duckdb.DuckDBPyConnection, table: str) -> int:
        """Append the rows of ``expr`` to the existing table ``table`` of the DuckDB warehouse ``con``
        (columns matched by name, in ``con``'s transaction; the table keeps its definition); returns
        the row count. A DuckDB engine on ``con`` never leaves DuckDB; others send the rows as Arrow."""
        _check_name(table)
        rows = self.to_arrow(expr)
        cols = ", ".join(f'"{c}"' for c in rows.column_names)
        con.register("_pv_engine_rows", rows)
        try:
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _pv_engine_rows")
        finally:
            con.unregister("_pv_engine_rows")
        return rows.num_rows

    def close(self) -> None:
        """Drop what :meth:`register` / :meth:`load_warehouse` created; the session or connection stays open."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class DuckDBEngine(Engine):
    """The warehouse's own DuckDB connection, as an Ibis backend (the default engine).

    Ibis' ``from_connection`` sets the connection's time zone to UTC and switches off replacement
    scans; the second is restored so that the rest of PV Trace sees the connection as it was, and
    the time zone (restored too) is UTC only while an expression runs (every step's dates are UTC dates)."""

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        replacements, zone = con.execute(
            "SELECT current_setting('python_enable_replacements'), current_setting('TimeZone')"
        ).fetchone()
        self.backend = ibis.duckdb.from_connection(con)
        con.execute(f"SET python_enable_replacements = {str(bool(replacements)).lower()}")
        con.execute("SET TimeZone = ?", [zone])
        self._registered: list[str] = []

    def register(self, name: str, data: Data) -> Table:
        _check_name(name)
        if isinstance(data, str | Path):
            literal = "'" + str(data).replace("'", "''") + "'"  # a view's definition cannot take a parameter
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet({literal})")
            self._registered.append(f"view:{name}")
        else:
            self.con.register(name, _as_arrow(data))
            self._registered.append(f"arrow:{name}")
        return self.table(name)

    def drop(self, name: str) -> None:
        for entry in [e for e in self._registered if e.split(":", 1)[1] == name]:
            self._registered.remove(entry)
            if entry.startswith("arrow:"):
                self.con.unregister(name)
            else:
                self.con.execute(f"DROP VIEW IF EXISTS {name}")

    def load_warehouse(self, con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
        if con is not self.con:
            raise ValueError("a DuckDB engine reads the warehouse connection it wraps; pass that connection")
        for name in tables:
            _check_name(name)

    @contextlib.contextmanager
    def _utc(self) -> Iterator[None]:
        (zone,) = self.con.execute("SELECT current_setting('TimeZone')").fetchone()
        if zone == "UTC":
            yield
            return
        self.con.execute("SET TimeZone = 'UTC'")
        try:
            yield
        finally:
            self.con.execute("SET TimeZone = ?", [zone])

    def to_arrow(self, expr) -> pa.Table:
        with self._utc():
            return self.backend.to_pyarrow(expr)

    def to_polars(self, expr) -> pl.DataFrame:
        with self._utc():
            return self.backend.to_polars(expr)

    def _typed_sql(self, expr) -> str:
        """The expression's SQL with every output column cast to the expression's own type (DuckDB
        widens SUM to HUGEINT where Ibis says int64, so results and tables keep Ibis' schema)."""
        from ibis.backends.sql.datatypes import DuckDBType

        cols = ", ".join(
            f'CAST("{name}" AS {DuckDBType.from_ibis(dtype).sql("duckdb")}) AS "{name}"'
            for name, dtype in expr.schema().items()
        )
        return f"SELECT {cols} FROM ({self.backend.compile(expr)}) AS _pv_step"

    def _cached_sql(self, key: Hashable, build: Callable[[Engine], Any], tables: Iterable[str]) -> str:
        tables = sorted(tables)
        (types,) = self.con.execute(
            "SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_index) "
            "FROM duckdb_columns() WHERE table_name IN (SELECT unnest(?::VARCHAR[]))",
            [tables],
        ).fetchone()
        cache_key = (key, types)
        sql = _SQL_CACHE.get(cache_key)
        if sql is None:
            sql = self._typed_sql(build(self))
            if len(_SQL_CACHE) > 256:
                _SQL_CACHE.clear()
            _SQL_CACHE[cache_key] = sql
        return sql

    def run(self, key: Hashable, build: Callable[[Engine], Any], tables: Iterable[str] = ()) -> pl.DataFrame:
        sql = self._cached_sql(key, build, tables)
        with self._utc():
            return self.con.sql(sql).pl()

    def store(
        self,
        key: Hashable,
        build: Callable[[Engine], Any],
        con: duckdb.DuckDBPyConnection,
        table: str,
        tables: Iterable[str] = (),
    ) -> int:
        if con is not self.con:
            return super().store(key, build, con, table, tables)
        return self._create(table, self._cached_sql(key, build, tables))

    def _create(self, table: str, sql: str) -> int:
        _check_name(table)
        with self._utc():
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def to_duckdb(self, expr, con: duckdb.DuckDBPyConnection, table: str) -> int:
        if con is not self.con:
            return super().to_duckdb(expr, con, table)
        return self._create(table, self._typed_sql(expr))

    def insert_into(self, expr, con: duckdb.DuckDBPyConnection, table: str) -> int:
        if con is not self.con:
            return super().insert_into(expr, con, table)
        _check_name(table)
        cols = ", ".join(f'"{c}"' for c in expr.schema().names)
        with self._utc():
            (count,) = self.con.execute(f"INSERT INTO {table} ({cols}) {self._typed_sql(expr)}").fetchone()
        return count

    def close(self) -> None:
        for entry in reversed(list(self._registered)):
            self.drop(entry.split(":", 1)[1])


class SparkEngine(Engine):
    """A Spark session (local, cluster, Spark Connect) as an Ibis backend.

    Data reach Spark as temp views: Parquet read by Spark (a file, or a folder a cluster's
    executors can read), or Arrow sent through the session (Spark Connect: the client's files
    are not the server's). Results come back through Spark's Arrow path (``DataFrame.toArrow``),
    cast to the expression's schema."""

    name = "spark"

    def __init__(self, session: SparkSession, staging: str | Path | None = None):
        self.session = session
        self.backend = ibis.pyspark.connect(session)
        self._remote = _is_connect(session)
        self._staging_given = staging or os.environ.get("PVTRACE_SPARK_STAGING") or None
        self._staging: Path | None = None
        self._views: list[str] = []

    @property
    def staging(self) -> Path:
        """The folder Parquet exports go to (created on first use; a temp folder is removed on close)."""
        if self._staging is None:
            if self._staging_given:
                self._staging = Path(self._staging_given) / f"pvtrace-{uuid.uuid4().hex[:12]}"
                self._staging.mkdir(parents=True, mode=0o700)
            else:
                self._staging = Path(tempfile.mkdtemp(prefix="pvtrace-spark-"))
        return self._staging

    def _file(self, name: str) -> Path:
        # Spark (Hadoop) skips files whose name starts with "_" or ".": never name one so
        return self.staging / f"t-{name}.parquet"

    def _view(self, name: str, frame) -> Table:
        frame.createOrReplaceTempView(name)
        if name not in self._views:
            self._views.append(name)
        return self.table(name)

    def register(self, name: str, data: Data) -> Table:
        _check_name(name)
        if isinstance(data, str | Path):
            return self._view(name, self.session.read.parquet(str(data)))
        table = _as_arrow(data)
        if self._remote:
            return self._view(name, self.session.createDataFrame(table))
        import pyarrow.parquet as pq

        path = self._file(name)
        pq.write_table(table, path)
        return self._view(name, self.session.read.parquet(str(path)))

    def drop(self, name: str) -> None:
        if name in self._views:
            self.session.catalog.dropTempView(name)
            self._views = [v for v in self._views if v != name]
        path = self._file(name) if self._staging is not None else None
        if path is not None and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def load_warehouse(self, con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
        for name in tables:
            _check_name(name)
            if self._remote:
                self.register(name, con.sql(f"SELECT * FROM {name}").to_arrow_table())
                continue
            path = self._file(name)
            con.execute(f"COPY (SELECT * FROM {name}) TO '{path}' (FORMAT parquet)")
            self._view(name, self.session.read.parquet(str(path)))

    def to_arrow(self, expr) -> pa.Table:
        self.backend._run_pre_execute_hooks(expr)
        table_expr = expr.as_table()
        sql = self.backend.compile(table_expr)
        schema = table_expr.schema().to_pyarrow()
        result = self.session.sql(sql).toArrow()
        return result.rename_columns(schema.names).cast(schema)

    def close(self) -> None:
        for name in reversed(self._views):
            self.session.catalog.dropTempView(name)
        self._views = []
        if self._staging is not None:  # this engine's own folder (under PVTRACE_SPARK_STAGING or temp)
            shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None


def _is_connect(session) -> bool:
    return type(session).__module__.startswith("pyspark.sql.connect")


def engine_from_config(
    engine: str | None = None,
    *,
    duckdb_con: duckdb.DuckDBPyConnection | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
    remote: str | None = None,
    staging: str | Path | None = None,
) -> Engine:
    """The engine ``engine`` names, else ``PVTRACE_ENGINE``, else DuckDB.

    ``duckdb`` needs ``duckdb_con`` (the warehouse connection); ``spark`` uses ``spark`` if given,
    else builds the configured session (:func:`warehouse.engine.spark.spark_session` with
    ``master`` / ``remote``). An unknown name is a ValueError."""
    chosen = (engine or os.environ.get("PVTRACE_ENGINE") or "duckdb").strip().lower()
    if chosen not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {chosen!r} (PVTRACE_ENGINE)")
    if chosen == "duckdb":
        if duckdb_con is None:
            raise ValueError("the duckdb engine wraps the warehouse connection: pass duckdb_con")
        return DuckDBEngine(duckdb_con)
    if spark is None:
        from warehouse.engine.spark import spark_session

        spark = spark_session(master=master, remote=remote)
    return SparkEngine(spark, staging=staging)

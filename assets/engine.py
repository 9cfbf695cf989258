"""The engine resource: which engine runs the heavy set-based steps (docs/architecture.md, "Engines").

``PVTRACE_ENGINE`` = ``duckdb`` (default: the warehouse's own connection) or ``spark``
(``PVTRACE_SPARK_MASTER`` / ``PVTRACE_SPARK_REMOTE`` / ``PVTRACE_SPARK_CONF``, see
``warehouse/engine/spark.py``). Whatever the engine, results are stored in the DuckDB warehouse:
the register, alerts and dashboard stay on the embedded store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager

import dagster as dg

from warehouse.engine.engines import ENGINES, engine_from_config


class EngineResource(dg.ConfigurableResource):
    """The engine a step computes on; ``open`` hands it the warehouse tables the step reads."""

    engine: str = "duckdb"
    spark_master: str = ""
    spark_remote: str = ""

    @contextmanager
    def open(self, con, tables: Iterable[str] = ()):
        """An :class:`~warehouse.engine.Engine` with ``tables`` of the warehouse ``con`` visible to it
        (DuckDB: the connection itself; Spark: a Parquet export of each table), closed afterwards."""
        engine = engine_from_config(
            self.engine, duckdb_con=con, master=self.spark_master or None, remote=self.spark_remote or None
        )
        try:
            engine.load_warehouse(con, tables)
            yield engine
        finally:
            engine.close()


def default_engine(engine: str | None = None) -> EngineResource:
    """The engine resource from ``engine`` or the environment (``PVTRACE_ENGINE``, default duckdb)."""
    name = (engine or os.environ.get("PVTRACE_ENGINE") or "duckdb").strip().lower()
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r} (PVTRACE_ENGINE / --engine)")
    return EngineResource(
        engine=name,
        spark_master=os.environ.get("PVTRACE_SPARK_MASTER", ""),
        spark_remote=os.environ.get("PVTRACE_SPARK_REMOTE", ""),
    )

"""The read model's counting rules on any engine: ``pv_counted_case``, ``pv_counted_drug``, ``pv_case_event``.

The rules live once, as the DuckDB macros of :mod:`warehouse.queries.read_model` (and the
``latest_*`` views of :mod:`warehouse.schema`). A DuckDB engine calls the macros with no data
lock point; a Spark engine gets the same statements as temp views, translated mechanically from
the DuckDB text by sqlglot (the dialect compiler Ibis itself uses) with the lock point set to
NULL: no second hand-written copy of a rule. The engine tests compare the two on a synthetic world.
"""

from __future__ import annotations

import re

import sqlglot

from warehouse.engine.engines import DuckDBEngine, Engine
from warehouse.queries import read_model
from warehouse.schema import _DDL

__all__ = ["READ_MODEL_TABLES", "prepare", "read_model_table", "spark_sql"]

#: The warehouse tables the read model's counting rules read (what a Spark engine must be given).
READ_MODEL_TABLES = ("case_report", "case_drug", "case_reaction", "case_reaction_coding", "case_batch_link", "product")

_VIEWS = ("latest_case", "latest_case_drug", "latest_case_reaction")
_MACROS = ("pv_counted_case", "pv_counted_drug", "pv_case_event")
_MACRO_HEAD = re.compile(r"^\s*CREATE OR REPLACE TEMP MACRO (\w+)\(dlp\) AS TABLE", re.IGNORECASE)
_VIEW_HEAD = re.compile(r"^\s*CREATE OR REPLACE VIEW (\w+) AS", re.IGNORECASE)


def _statements() -> dict[str, str]:
    """name → the SELECT defining it (DuckDB dialect), lock point NULL, macro calls made view names."""
    out: dict[str, str] = {}
    for statement in _DDL:
        m = _VIEW_HEAD.match(statement)
        if m and m.group(1) in _VIEWS:
            out[m.group(1)] = statement[m.end() :]
    for name in _MACROS:
        text = read_model.MACROS[name]
        m = _MACRO_HEAD.match(text)
        if not m or m.group(1) != name:  # pragma: no cover - guards a change of the macro's header
            raise RuntimeError(f"read model macro {name} no longer has the expected header")
        body = re.sub(r"\b(pv_\w+)\(dlp\)", r"\1", text[m.end() :])
        out[name] = re.sub(r"\bdlp\b", "NULL", body)
    missing = [n for n in (*_VIEWS, *_MACROS) if n not in out]
    if missing:  # pragma: no cover
        raise RuntimeError(f"read model statements not found: {missing}")
    return out


def spark_sql(name: str) -> str:
    """The Spark SQL SELECT of one read-model relation (for inspection and the tests)."""
    return sqlglot.transpile(_statements()[name], read="duckdb", write="spark")[0]


def prepare(engine: Engine) -> None:
    """Make the read model's relations available on the engine (DuckDB: install the macros; Spark:
    create the translated views once; the engine must have :data:`READ_MODEL_TABLES` loaded)."""
    if isinstance(engine, DuckDBEngine):
        read_model.install(engine.con)
        return
    if engine.name != "spark":  # pragma: no cover
        raise ValueError(f"no read model for engine {engine.name!r}")
    if "pv_case_event" not in engine._views:  # created once per engine (close() drops them)
        for view in (*_VIEWS, *_MACROS):  # dependency order
            engine.session.sql(f"CREATE OR REPLACE TEMP VIEW {view} AS {spark_sql(view)}")
            if view not in engine._views:
                engine._views.append(view)


def read_model_table(engine: Engine, name: str):
    """The read model's ``name`` (a ``latest_*`` view or ``pv_*`` macro above) with no lock point, as an Ibis table.

    DuckDB: the macro itself (installed on the engine's connection). Spark: the translated views,
    created on first use; the engine must have :data:`READ_MODEL_TABLES` loaded."""
    if name not in (*_VIEWS, *_MACROS):
        raise ValueError(f"not a read-model relation: {name!r}")
    prepare(engine)
    if isinstance(engine, DuckDBEngine):
        return engine.backend.sql(f"SELECT * FROM {name}(NULL)" if name in _MACROS else f"SELECT * FROM {name}")
    return engine.table(name)

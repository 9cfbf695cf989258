"""Queries over a loaded MedDRA release: PT -> HLT/HLGT/SOC/SMQ mapping, and the E2B LLT mapping (issue 17).

``event_map_sql(level)`` is the one mapping of the event column: a SELECT of ``(pt, event)`` pairs that a
counting query joins on its PT name to count at another level. Its contract:

* ``pt``, ``hlt``, ``hlgt``, ``soc``: the PT's *primary* path (``mdhier.asc`` primary_soc_fg = Y), so a PT
  linked to a second SOC is counted once, as MedDRA's primary-SOC convention asks for single counting;
* ``smq_narrow``: each SMQ whose narrow-scope terms hold the PT (one row per SMQ: a PT can be in several);
* ``smq_broad``: each SMQ whose narrow *or* broad terms hold it (a broad search includes the narrow terms);
  only active terms (term_status A) of active SMQs, PT-level terms (term_level 4) and LLT-level terms through
  their PT.

PTs are matched by the English (or ``language``) PT name, which is what case reactions carry. A PT absent from
the release maps to nothing (the caller keeps it at PT level or drops it, and says so).

The run's event level (issue 17): ``run_event_level()`` (``PVTRACE_EVENT_LEVEL``, set by ``pvtrace run|demo|detect
--event-level``; default ``pt``) is the level disproportionality (``warehouse.queries.detection_inputs``) and the batch
methods (``warehouse.queries.batch_inputs``) count at; ``meddra_event_map`` (rewritten by ``refresh_event_map`` in the
run's register step) is the same mapping for the newest release, which the read model uses to find the cases of a
register row at a level above PT.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # pragma: no cover
    import ibis

    from warehouse.engine.engines import Engine

LEVELS = ("pt", "hlt", "hlgt", "soc", "smq_narrow", "smq_broad")
EVENT_LEVEL_ENV = "PVTRACE_EVENT_LEVEL"


def run_event_level() -> str:
    """The run's event level: ``PVTRACE_EVENT_LEVEL`` (one of :data:`LEVELS`), default ``pt``."""
    level = (os.environ.get(EVENT_LEVEL_ENV) or "pt").strip().lower()
    if level not in LEVELS:
        raise ValueError(f"{EVENT_LEVEL_ENV}={level!r}: the event level must be one of {', '.join(LEVELS)}")
    return level


def level_version(con: duckdb.DuckDBPyConnection, level: str, language: str = "en") -> str | None:
    """The release a level above PT maps with (the newest of ``language``); None at PT. A level above PT
    without a loaded release is an error (there is nothing to group PTs by)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == "pt":
        return None
    version = latest_version(con, language)
    if version is None:
        raise ValueError(f"event level {level!r} needs a MedDRA release ({language}) loaded: pvtrace meddra load DIR")
    return version


def refresh_event_map(con: duckdb.DuckDBPyConnection, language: str = "en") -> int:
    """Rewrite ``meddra_event_map`` (event_level, pt, event) for every level above PT of the newest release of
    ``language`` (empty without one); returns its rows."""
    con.execute("DELETE FROM meddra_event_map")
    version = latest_version(con, language)
    if version is None:
        return 0
    for level in LEVELS[1:]:
        con.execute(
            f"INSERT INTO meddra_event_map SELECT DISTINCT '{level}', pt, event FROM ({event_map_sql(level, version, language)})"
        )
    return con.execute("SELECT count(*) FROM meddra_event_map").fetchone()[0]


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def latest_version(con: duckdb.DuckDBPyConnection, language: str = "en") -> str | None:
    row = con.execute(
        "SELECT meddra_version FROM meddra_release WHERE language = ? ORDER BY loaded_at DESC LIMIT 1", [language]
    ).fetchone()
    return row[0] if row else None


def event_map_sql(level: str, version: str, language: str = "en") -> str:
    """SELECT pt, event: the PT name and the name of its group at ``level`` (see the module docstring)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    v, lang = _lit(version), _lit(language)
    pt = (
        f"SELECT code AS pt_code, name AS pt FROM meddra_term "
        f"WHERE level = 'pt' AND meddra_version = {v} AND language = {lang}"
    )
    if level == "pt":
        return f"SELECT pt, pt AS event FROM ({pt})"
    if level in ("hlt", "hlgt", "soc"):
        return (
            f"SELECT p.pt, t.name AS event FROM ({pt}) p "
            f"JOIN meddra_hierarchy h ON h.pt_code = p.pt_code AND h.primary_soc "
            f"AND h.meddra_version = {v} AND h.language = {lang} "
            f"JOIN meddra_term t ON t.level = '{level}' AND t.code = h.{level}_code "
            f"AND t.meddra_version = {v} AND t.language = {lang}"
        )
    scopes = "(2)" if level == "smq_narrow" else "(1, 2)"
    return (
        f"SELECT DISTINCT p.pt, s.smq_name AS event FROM ({pt}) p "
        f"JOIN (SELECT c.smq_code, CASE c.term_level WHEN 4 THEN c.term_code ELSE l.pt_code END AS pt_code "
        f"      FROM meddra_smq_term c LEFT JOIN meddra_llt l ON c.term_level = 5 AND l.llt_code = c.term_code "
        f"      AND l.meddra_version = {v} AND l.language = {lang} "
        f"      WHERE c.meddra_version = {v} AND c.language = {lang} AND c.term_level IN (4, 5) "
        f"      AND c.term_scope IN {scopes} AND upper(coalesce(c.term_status, 'A')) = 'A') m "
        f"  ON m.pt_code = p.pt_code "
        f"JOIN meddra_smq s ON s.smq_code = m.smq_code AND s.meddra_version = {v} AND s.language = {lang} "
        f"AND upper(coalesce(s.smq_status, 'A')) = 'A'"
    )


def e2b_llt_mapping(
    con: duckdb.DuckDBPyConnection, version: str | None = None, language: str = "en"
) -> dict[str, tuple[int, str]]:
    """Reported term or PT name -> (LLT code, MedDRA version) for an E2B(R3) writer (reaction/event fields
    E.i.1.2 / E.i.2.1 carry an LLT code and the MedDRA version).

    A PT name maps to the PT's own LLT (same code, as MedDRA defines every PT as an LLT); any other current LLT
    name maps to itself. Non-current LLTs are left out (MedDRA: not for new coding). Keys are the names as in
    the release; an empty dict when no release of ``language`` is loaded (the writer then sends names only)."""
    version = version or latest_version(con, language)
    if version is None:
        return {}
    rows = con.execute(
        "SELECT llt_name, llt_code, llt_code = pt_code AS is_pt FROM meddra_llt "
        "WHERE current AND meddra_version = ? AND language = ? ORDER BY is_pt, llt_code",
        [version, language],
    ).fetchall()
    # PT-named LLTs last so that they win when a lay LLT has the same name as a PT
    return {name: (int(code), version) for name, code, _ in rows}


@contextlib.contextmanager
def event_map_on(
    engine: Engine, con: duckdb.DuckDBPyConnection, level: str, language: str = "en"
) -> Iterator[str | None]:
    """Make the (pt, event) pairs of ``level`` (:func:`event_map_sql`, newest release) visible to ``engine`` for
    the duration of the block; yields the name to pass to :func:`map_events`, or None at PT (nothing to map).
    The pairs are small (one row per PT and group) and are read from the warehouse once per call."""
    if level == "pt":
        yield None
        return
    version = level_version(con, level, language)
    name = f"_pv_event_map_{level}"
    pairs = con.execute(f"SELECT DISTINCT pt, event FROM ({event_map_sql(level, version, language)})").pl()
    engine.register(name, pairs)
    try:
        yield name
    finally:
        engine.drop(name)


def map_events(
    rows: ibis.Table, engine: Engine, name: str | None, *, event_col: str = "event", keep_unmapped: bool = False
) -> ibis.Table:
    """:func:`map_events_sql` as an engine expression: ``rows`` with ``event_col`` (PT names) replaced by the groups
    of the map ``name`` registered by :func:`event_map_on` (None: unchanged), one row per (row, group), duplicates
    removed; unmapped rows drop out, or with ``keep_unmapped`` stay with a null event."""
    if name is None:
        return rows
    m = engine.table(name)
    m = m.select(mapped_pt_=m.pt, mapped_event_=m.event)
    on = rows[event_col] == m.mapped_pt_
    joined = rows.left_join(m, on) if keep_unmapped else rows.join(m, on)
    return joined.select(
        *[joined.mapped_event_.name(c) if c == event_col else joined[c] for c in rows.columns]
    ).distinct()


def map_events_sql(
    rows_sql: str,
    level: str,
    version: str | None,
    language: str = "en",
    *,
    event_col: str = "event",
    keep_unmapped=False,
) -> str:
    """Any counting relation with an ``event_col`` column holding PT names, re-expressed at ``level``: the event
    replaced by its group, one row per (row, group), duplicates removed (a report naming two PTs of one SMQ counts
    once for that SMQ). Rows whose PT the level does not group (not in any SMQ, or absent from the release) drop out
    at levels above PT, or with ``keep_unmapped`` stay with a null event (so they still count towards a
    disproportionality table's N and drug margin, as reports with no event of interest)."""
    if level == "pt":
        return rows_sql
    if version is None:
        raise ValueError(f"event level {level!r} needs a MedDRA version")
    join = "LEFT JOIN" if keep_unmapped else "JOIN"
    return (
        f"SELECT DISTINCT r.* EXCLUDE ({event_col}), m.event AS {event_col} FROM ({rows_sql}) r "
        f"{join} ({event_map_sql(level, version, language)}) m ON m.pt = r.{event_col}"
    )

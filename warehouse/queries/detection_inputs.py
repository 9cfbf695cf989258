"""What the disproportionality statistics count, and where their scores are stored.

Counted reports are the read model's (:mod:`warehouse.queries.read_model`, ``pv_case_event``):
the latest version of each case, not flagged as a suspected duplicate, with the drug in a
suspect or interacting role; the product is the one its scanned pack code names, else the one
mapped from the reported name. Counts are of distinct reports (``report_id`` = case id), never
of drug-event rows, built by the one contingency-count SQL (:mod:`warehouse.queries.counts`).
Expected counts are stratified by sex, age band and report year (:data:`STRATA`).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

import duckdb
import ibis
import polars as pl

from warehouse.engine.engines import DuckDBEngine, Engine
from warehouse.engine.read_model import READ_MODEL_TABLES, prepare, read_model_table
from warehouse.queries.counts import contingency_counts_expr, counts_source
from warehouse.terminology.hierarchy import event_map_on, map_events, run_event_level

LEVELS = ("product", "ingredient")
STRATA = ["sex", "age_band", "report_year"]

_SUBJECT = {"product": "product_id", "ingredient": "ingredient"}


_EVENT_COLUMNS = {
    "case_id": "string",
    "product_id": "string",
    "ingredient": "string",
    "pt": "string",
    "sex": "string",
    "age_years": "float64",
    "received_on": "date",
}


def report_event_rows(events: ibis.Table, level: str) -> ibis.Table:
    """Report-level rows (report_id, drug, event, the strata, received_on) of one level: THE definition.

    ``events`` are the read model's ``pv_case_event`` rows (:func:`warehouse.engine.read_model.read_model_table`
    on an engine). Strata: sex (null → 'U'), age band (0-17, 18-64, 65+, unknown), report year."""
    if level not in _SUBJECT:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    drug = events[_SUBJECT[level]]
    age = events.age_years
    age_band = ibis.cases((age.isnull(), "unknown"), (age < 18, "0-17"), (age < 65, "18-64"), else_="65+")
    return (
        events.filter(drug.notnull())
        .select(
            report_id=events.case_id,
            drug=drug,
            event=events.pt,
            sex=events.sex.fill_null("U"),
            age_band=age_band,
            report_year=events.received_on.year(),
            received_on=events.received_on,
        )
        .distinct()
    )


@functools.lru_cache(maxsize=4)
def report_event_rows_sql(level: str) -> str:
    """:func:`report_event_rows` as DuckDB SQL text over ``pv_case_event(NULL)`` (for SQL callers).

    Reads the read model's ``pv_case_event``: run :func:`warehouse.queries.read_model.install` on
    the connection first (the functions below do)."""
    placeholder = ibis.table(_EVENT_COLUMNS, name="pv_case_event")
    sql = ibis.to_sql(report_event_rows(placeholder, level), dialect="duckdb")
    return sql.replace('"pv_case_event"', "pv_case_event(NULL)")


def _counts(rows: ibis.Table, by: list[str] | None = None) -> ibis.Table:
    src = counts_source(rows, strata=STRATA, by=by)
    return contingency_counts_expr(src, len(STRATA), by).order_by([*(by or []), "drug", "event"])


def report_event_counts(
    con: duckdb.DuckDBPyConnection, level: str, engine: Engine | None = None, *, event_level: str | None = None
) -> pl.DataFrame:
    """drug, event, n11, n1_, n_1, n, e (stratified) of one level at the current data.

    Computed by ``engine`` (which must hold :data:`warehouse.engine.read_model.READ_MODEL_TABLES`),
    else by DuckDB on ``con``. ``event_level`` (default: the run's, ``warehouse.terminology.hierarchy.run_event_level``):
    PT, or HLT/HLGT/SOC/SMQ narrow/broad of the newest loaded MedDRA release (issue 17); a report whose PTs that level
    does not group still counts towards N and its drug's margin."""
    if level not in _SUBJECT:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    event_level = event_level or run_event_level()
    engine = engine or DuckDBEngine(con)
    prepare(engine)
    with event_map_on(engine, con, event_level) as mapping:
        return engine.run(
            ("report_event_counts", level, event_level),
            lambda e: _counts(
                map_events(
                    report_event_rows(read_model_table(e, "pv_case_event"), level), e, mapping, keep_unmapped=True
                )
            ),
            READ_MODEL_TABLES,
        )


def report_event_counts_by_cutoff(
    con: duckdb.DuckDBPyConnection, level: str, cutoffs: list[dt.date], engine: Engine | None = None
) -> pl.DataFrame:
    """cutoff, drug, event, n11, n1_, n_1, n, e for every cut-off date, in one query.

    A report counts at cut-off ``t`` when its latest version was received on or before ``t`` (the
    latest version's ``received_on``: follow-ups arriving later than ``t`` slightly re-date a case;
    on the synthetic world few follow-ups change the product or PT)."""
    engine = engine or DuckDBEngine(con)
    name = f"_pv_cutoffs_{uuid.uuid4().hex[:8]}"
    try:
        k = engine.register(name, pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date}))
        rows = report_event_rows(read_model_table(engine, "pv_case_event"), level)
        rows = rows.join(k, rows.received_on <= k.cutoff)
        return engine.to_polars(_counts(rows, by=["cutoff"]))
    finally:
        engine.drop(name)


def score_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The stored columns of ``disproportionality_score``, in order: the table's own (warehouse/schema.py is their one
    definition; the statistics' names are ``signals.disproportionality.SCORE_COLUMNS`` / ``EB_COLUMNS``, and
    tests/warehouse/test_score_columns.py checks that the table holds every one of them)."""
    return [r[0] for r in con.execute("DESCRIBE disproportionality_score").fetchall()]


def store_scores(con: duckdb.DuckDBPyConnection, level: str, scored: pl.DataFrame, data_lock_point) -> int:
    """Replace the stored scores of one level with this run's (a statistic the frame lacks is stored as NULL)."""
    columns = score_columns(con)
    frame = scored.with_columns(
        pl.lit(level).alias("level"), pl.lit(data_lock_point).cast(pl.Date).alias("data_lock_point")
    )
    for col in columns:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    con.execute("DELETE FROM disproportionality_score WHERE level = ?", [level])
    con.register("_scores", frame.select(columns).to_arrow())
    con.execute(f"INSERT INTO disproportionality_score ({', '.join(columns)}) SELECT * FROM _scores")
    con.unregister("_scores")
    return frame.height


def additional_monitoring(con: duckdb.DuckDBPyConnection, level: str) -> pl.DataFrame:
    """Which drugs are under additional monitoring (EMA SDR uses n ≥ 3 for them)."""
    key = "product_id" if level == "product" else "ingredient"
    return con.sql(
        f"SELECT {key} AS drug, bool_or(coalesce(additional_monitoring, false)) AS additional_monitoring "
        f"FROM product GROUP BY {key}"
    ).pl()


def store_prior(con: duckdb.DuckDBPyConnection, level: str, prior, data_lock_point) -> None:
    """Keep the MGPS prior a run used, so a report can cite the hyperparameters behind EBGM/EB05."""
    con.execute("DELETE FROM mgps_prior WHERE level = ?", [level])
    con.execute(
        "INSERT INTO mgps_prior VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            level,
            prior.alpha1,
            prior.beta1,
            prior.alpha2,
            prior.beta2,
            prior.p,
            prior.loglik,
            prior.n_pairs,
            prior.converged,
            prior.at_bound,
            prior.method,
            data_lock_point,
        ],
    )

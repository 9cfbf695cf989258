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

import duckdb
import polars as pl

from warehouse.queries import read_model
from warehouse.queries.counts import contingency_counts
from warehouse.terminology.hierarchy import level_version, map_events_sql, run_event_level

LEVELS = ("product", "ingredient")
STRATA = ["sex", "age_band", "report_year"]

_SUBJECT = {"product": "product_id", "ingredient": "ingredient"}


def report_event_rows_sql(level: str) -> str:
    """A SELECT of report-level rows (report_id, drug, event, strata, received_on) for one level.

    Reads the read model's ``pv_case_event``: run :func:`warehouse.queries.read_model.install` on
    the connection first (the functions below do)."""
    if level not in _SUBJECT:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return f"""
        SELECT DISTINCT case_id AS report_id, {_SUBJECT[level]} AS drug, pt AS event,
               coalesce(sex, 'U') AS sex,
               CASE WHEN age_years IS NULL THEN 'unknown' WHEN age_years < 18 THEN '0-17'
                    WHEN age_years < 65 THEN '18-64' ELSE '65+' END AS age_band,
               year(received_on) AS report_year, received_on
        FROM pv_case_event(NULL)
        WHERE {_SUBJECT[level]} IS NOT NULL
    """


def report_event_counts(con: duckdb.DuckDBPyConnection, level: str, event_level: str | None = None) -> pl.DataFrame:
    """drug, event, n11, n1_, n_1, n, e (stratified) of one level at the current data.

    ``event_level`` (default: the run's, ``warehouse.terminology.hierarchy.run_event_level``): PT, or HLT/HLGT/SOC/
    SMQ narrow/broad of the newest loaded MedDRA release (issue 17); a report whose PTs that level does not group
    still counts towards N and its drug's margin."""
    read_model.install(con)
    event_level = event_level or run_event_level()
    rows = map_events_sql(
        report_event_rows_sql(level), event_level, level_version(con, event_level), keep_unmapped=True
    )
    return contingency_counts(con, rows, strata=STRATA)


def report_event_counts_by_cutoff(con: duckdb.DuckDBPyConnection, level: str, cutoffs: list[dt.date]) -> pl.DataFrame:
    """cutoff, drug, event, n11, n1_, n_1, n, e for every cut-off date, in one query.

    A report counts at cut-off ``t`` when its latest version was received on or before ``t`` (the
    latest version's ``received_on``: follow-ups arriving later than ``t`` slightly re-date a case;
    on the synthetic world few follow-ups change the product or PT)."""
    read_model.install(con)
    con.register("_cutoffs", pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date}).to_arrow())
    try:
        rows = (
            f"SELECT k.cutoff, r.* FROM ({report_event_rows_sql(level)}) r JOIN _cutoffs k ON r.received_on <= k.cutoff"
        )
        return contingency_counts(con, rows, strata=STRATA, by=["cutoff"])
    finally:
        con.unregister("_cutoffs")


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

"""What the disproportionality statistics count, and where their scores are stored.

Counted reports: the latest version of each case, not flagged as a suspected duplicate,
with the drug in a suspect or interacting role. A drug's product is the one its scanned pack
code names when there is one, else the product mapped from the reported name. Counts are of
distinct reports (``report_id`` = case id), never of drug-event rows.
"""

from __future__ import annotations

import duckdb
import polars as pl

LEVELS = ("product", "ingredient")

_SUBJECT = {
    "product": "coalesce(l.product_id, d.product_id)",
    "ingredient": "coalesce(p.ingredient, d.ingredient)",
}


def report_event_rows_sql(level: str) -> str:
    """A SELECT of report-level rows (report_id, drug, event, strata) for one level."""
    if level not in _SUBJECT:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return f"""
        SELECT DISTINCT c.case_id AS report_id, {_SUBJECT[level]} AS drug, r.pt AS event,
               coalesce(c.sex, 'U') AS sex,
               CASE WHEN c.age_years IS NULL THEN 'unknown' WHEN c.age_years < 18 THEN '0-17'
                    WHEN c.age_years < 65 THEN '18-64' ELSE '65+' END AS age_band,
               year(c.received_on) AS report_year
        FROM latest_case c
        JOIN latest_case_drug d USING (case_id)
        JOIN latest_case_reaction r USING (case_id)
        LEFT JOIN case_batch_link l ON l.case_id = d.case_id AND l.version = d.version AND l.drug_seq = d.drug_seq
        LEFT JOIN product p ON p.product_id = coalesce(l.product_id, d.product_id)
        WHERE c.duplicate_of IS NULL AND d.role IN ('suspect', 'interacting')
          AND {_SUBJECT[level]} IS NOT NULL
    """


SCORE_COLUMNS = [
    "level",
    "drug",
    "event",
    "n11",
    "n1_",
    "n_1",
    "n",
    "e",
    "prr",
    "prr_lo95",
    "prr_hi95",
    "chi2",
    "chi2_yates",
    "ror",
    "ror_lo95",
    "ror_hi95",
    "ic",
    "ic025",
    "ic975",
    "ebgm",
    "eb05",
    "eb95",
    "p_fisher",
    "q_bh",
    "rules_fired",
    "data_lock_point",
]


def store_scores(con: duckdb.DuckDBPyConnection, level: str, scored: pl.DataFrame, data_lock_point) -> int:
    """Replace the stored scores of one level with this run's."""
    frame = scored.with_columns(
        pl.lit(level).alias("level"), pl.lit(data_lock_point).cast(pl.Date).alias("data_lock_point")
    )
    for col in SCORE_COLUMNS:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    con.execute("DELETE FROM disproportionality_score WHERE level = ?", [level])
    con.register("_scores", frame.select(SCORE_COLUMNS).to_arrow())
    con.execute(f"INSERT INTO disproportionality_score ({', '.join(SCORE_COLUMNS)}) SELECT * FROM _scores")
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

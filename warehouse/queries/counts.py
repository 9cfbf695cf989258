"""Drug–event contingency counts built inside DuckDB from report-level rows.

Same definitions as :func:`signals.stratification.contingency_counts` (distinct
reports; rows with a null drug/event still count towards n and the other
margin; null stratum values form their own stratum), computed in one SQL
statement so the report rows never leave the database.  The SQL sticks to
features DuckDB 1.5 and 2.0 share and returns through ``con.sql(q).pl()``.
"""

from __future__ import annotations

import re

import polars as pl

__all__ = ["contingency_counts", "contingency_counts_sql"]

_SUBQUERY = re.compile(r"^\s*(\(|select\b|with\b|from\b|values\b)", re.IGNORECASE)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relation_sql(relation: str) -> str:
    """A table/view name is used as written (it may be schema-qualified);
    a query is wrapped as a subquery."""
    if _SUBQUERY.match(relation):
        return f"({relation.strip().rstrip(';')})"
    return relation


def contingency_counts_sql(
    relation: str,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
) -> str:
    """The SQL text used by :func:`contingency_counts` (for EXPLAIN or reuse)."""
    strata = list(strata or [])
    scols = "".join(f", {_q(s)} AS s{i}" for i, s in enumerate(strata))
    sel = "".join(f", s{i}" for i in range(len(strata)))
    src = (
        f"src AS (SELECT {_q(report_col)} AS rid, {_q(drug_col)} AS drug, {_q(event_col)} AS event{scols} "
        f"FROM {_relation_sql(relation)} AS rel WHERE {_q(report_col)} IS NOT NULL)"
    )
    ctes = [
        src,
        "pairs AS (SELECT drug, event, count(DISTINCT rid) AS n11 FROM src "
        "WHERE drug IS NOT NULL AND event IS NOT NULL GROUP BY drug, event)",
        "drugs AS (SELECT drug, count(DISTINCT rid) AS n1_ FROM src WHERE drug IS NOT NULL GROUP BY drug)",
        "events AS (SELECT event, count(DISTINCT rid) AS n_1 FROM src WHERE event IS NOT NULL GROUP BY event)",
        "tot AS (SELECT count(DISTINCT rid) AS n FROM src)",
    ]
    if strata:

        def same(a, b):
            return " AND ".join(f"{a}.s{i} IS NOT DISTINCT FROM {b}.s{i}" for i in range(len(strata)))

        grp = ", ".join(f"s{i}" for i in range(len(strata)))
        ctes += [
            f"sd AS (SELECT drug{sel}, count(DISTINCT rid) AS n1s FROM src WHERE drug IS NOT NULL GROUP BY drug, {grp})",
            f"se AS (SELECT event{sel}, count(DISTINCT rid) AS n_1s FROM src WHERE event IS NOT NULL GROUP BY event, {grp})",
            f"st AS (SELECT {grp}, count(DISTINCT rid) AS ns FROM src GROUP BY {grp})",
            "ex AS (SELECT p.drug, p.event, sum(CAST(sd.n1s AS DOUBLE) * se.n_1s / st.ns) AS e "
            "FROM pairs p JOIN sd ON sd.drug = p.drug "
            f"JOIN se ON se.event = p.event AND {same('se', 'sd')} "
            f"JOIN st ON {same('st', 'sd')} GROUP BY p.drug, p.event)",
        ]
        e_expr, e_join = "ex.e", "JOIN ex ON ex.drug = p.drug AND ex.event = p.event"
    else:
        e_expr, e_join = "CAST(d.n1_ AS DOUBLE) * ev.n_1 / tot.n", ""
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        "SELECT p.drug, p.event, CAST(p.n11 AS BIGINT) AS n11, CAST(d.n1_ AS BIGINT) AS n1_, "
        f"CAST(ev.n_1 AS BIGINT) AS n_1, CAST(tot.n AS BIGINT) AS n, CAST({e_expr} AS DOUBLE) AS e\n"
        "FROM pairs p JOIN drugs d ON d.drug = p.drug JOIN events ev ON ev.event = p.event "
        f"CROSS JOIN tot {e_join}\nORDER BY p.drug, p.event"
    )


def contingency_counts(
    con,
    relation: str,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
) -> pl.DataFrame:
    """Per-pair ``drug, event, n11, n1_, n_1, n, e`` for the report rows in
    ``relation`` (a table, a view, or a SELECT query), computed by DuckDB.

    ``e`` = n1_·n_1/n, or Σ_s n1_(s)·n_1(s)/n(s) over the ``strata`` columns
    (DuMouchel, 1999).  Sorted by drug, event.
    """
    q = contingency_counts_sql(relation, report_col=report_col, drug_col=drug_col, event_col=event_col, strata=strata)
    return con.sql(q).pl()

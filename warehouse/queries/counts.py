"""Drug–event contingency counts built inside DuckDB from report-level rows: the one SQL definition.

Detection (:mod:`warehouse.queries.detection_inputs`), the evaluation replay (every weekly
cut-off in one statement, ``by=["cutoff"]``) and the eRMR export's margins all call
:func:`contingency_counts_sql`. Definitions as :func:`signals.stratification.contingency_counts`
(the pure polars implementation, kept as the independent reference the tests compare against):
distinct reports; rows with a null drug/event still count towards n and the other margin; null
stratum values form their own stratum. ``by`` runs the whole computation separately within each
group (every count, margin and n is then per group). The SQL sticks to features DuckDB 1.5 and
2.0 share and returns through ``con.sql(q).pl()``.
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
    by: list[str] | None = None,
) -> str:
    """The SQL text used by :func:`contingency_counts` (for EXPLAIN or reuse)."""
    strata, by = list(strata or []), list(by or [])
    scols = "".join(f", {_q(s)} AS s{i}" for i, s in enumerate(strata))
    bcols = "".join(f"{_q(b)} AS b{i}, " for i, b in enumerate(by))
    g = "".join(f"b{i}, " for i in range(len(by)))  # group prefix
    sel = "".join(f", s{i}" for i in range(len(strata)))

    def on(a: str, b: str, parts: list[str]) -> str:
        return " AND ".join([f"{a}.{p} IS NOT DISTINCT FROM {b}.{p}" for p in parts] or ["TRUE"])

    bkeys = [f"b{i}" for i in range(len(by))]
    src = (
        f"src AS (SELECT {bcols}{_q(report_col)} AS rid, {_q(drug_col)} AS drug, {_q(event_col)} AS event{scols} "
        f"FROM {_relation_sql(relation)} AS rel WHERE {_q(report_col)} IS NOT NULL)"
    )
    ctes = [
        src,
        f"pairs AS (SELECT {g}drug, event, count(DISTINCT rid) AS n11 FROM src "
        f"WHERE drug IS NOT NULL AND event IS NOT NULL GROUP BY {g}drug, event)",
        f"drugs AS (SELECT {g}drug, count(DISTINCT rid) AS n1_ FROM src WHERE drug IS NOT NULL GROUP BY {g}drug)",
        f"events AS (SELECT {g}event, count(DISTINCT rid) AS n_1 FROM src WHERE event IS NOT NULL GROUP BY {g}event)",
        f"tot AS (SELECT {g}count(DISTINCT rid) AS n FROM src{' GROUP BY ' + g.rstrip(', ') if by else ''})",
    ]
    if strata:
        skeys = [f"s{i}" for i in range(len(strata))]
        grp = g + ", ".join(skeys)
        ctes += [
            f"sd AS (SELECT {g}drug{sel}, count(DISTINCT rid) AS n1s FROM src WHERE drug IS NOT NULL GROUP BY drug, {grp})",
            f"se AS (SELECT {g}event{sel}, count(DISTINCT rid) AS n_1s FROM src WHERE event IS NOT NULL "
            f"GROUP BY event, {grp})",
            f"st AS (SELECT {grp}, count(DISTINCT rid) AS ns FROM src GROUP BY {grp})",
            f"ex AS (SELECT {''.join(f'p.{k}, ' for k in bkeys)}p.drug, p.event, "
            "sum(CAST(sd.n1s AS DOUBLE) * se.n_1s / st.ns) AS e "
            f"FROM pairs p JOIN sd ON sd.drug = p.drug AND {on('sd', 'p', bkeys)} "
            f"JOIN se ON se.event = p.event AND {on('se', 'sd', bkeys + skeys)} "
            f"JOIN st ON {on('st', 'sd', bkeys + skeys)} GROUP BY {''.join(f'p.{k}, ' for k in bkeys)}p.drug, p.event)",
        ]
        e_expr = "ex.e"
        e_join = f"JOIN ex ON ex.drug = p.drug AND ex.event = p.event AND {on('ex', 'p', bkeys)}"
    else:
        e_expr, e_join = "CAST(d.n1_ AS DOUBLE) * ev.n_1 / tot.n", ""
    out_by = "".join(f"p.b{i} AS {_q(b)}, " for i, b in enumerate(by))
    order = "".join(f"p.b{i}, " for i in range(len(by)))
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT {out_by}p.drug, p.event, CAST(p.n11 AS BIGINT) AS n11, CAST(d.n1_ AS BIGINT) AS n1_, "
        f"CAST(ev.n_1 AS BIGINT) AS n_1, CAST(tot.n AS BIGINT) AS n, CAST({e_expr} AS DOUBLE) AS e\n"
        f"FROM pairs p JOIN drugs d ON d.drug = p.drug AND {on('d', 'p', bkeys)} "
        f"JOIN events ev ON ev.event = p.event AND {on('ev', 'p', bkeys)} "
        f"JOIN tot ON {on('tot', 'p', bkeys)} {e_join}\nORDER BY {order}p.drug, p.event"
    )


def contingency_counts(
    con,
    relation: str,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
    by: list[str] | None = None,
    params: dict | None = None,
) -> pl.DataFrame:
    """Per-pair ``[by…,] drug, event, n11, n1_, n_1, n, e`` for the report rows in
    ``relation`` (a table, a view, or a SELECT query; ``params`` binds its ``$names``), computed by DuckDB.

    ``e`` = n1_·n_1/n, or Σ_s n1_(s)·n_1(s)/n(s) over the ``strata`` columns
    (DuMouchel, 1999).  Sorted by (by…, drug, event).
    """
    q = contingency_counts_sql(
        relation, report_col=report_col, drug_col=drug_col, event_col=event_col, strata=strata, by=by
    )
    return con.sql(q, params=params).pl() if params else con.sql(q).pl()

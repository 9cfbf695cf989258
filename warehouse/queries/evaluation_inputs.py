"""Replays for the evaluation harness: what detection would have counted at each past data cut-off.

A report counts at cut-off ``t`` when its latest version was received on or before ``t`` (the
latest version's ``received_on``: follow-ups arriving later than ``t`` slightly re-date a case;
on the synthetic world few follow-ups change the product or PT).  All cut-offs are computed in
one SQL statement: the report rows are joined to the list of cut-offs and every contingency
margin is grouped by cut-off as well, with the same definitions as ``warehouse.queries.counts``
(distinct reports; expected counts stratified by sex, age band and report year).
"""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.queries.detection_inputs import report_event_rows_sql

STRATA = ("sex", "age_band", "report_year")


def contingency_counts_by_cutoff(con: duckdb.DuckDBPyConnection, level: str, cutoffs: list) -> pl.DataFrame:
    """cutoff, drug, event, n11, n1_, n_1, n, e (stratified) for every cut-off date, in one query."""
    g = ", ".join(STRATA)
    same = " AND ".join(f"a.{s} IS NOT DISTINCT FROM b.{s}" for s in STRATA)
    con.register("_cutoffs", pl.DataFrame({"cutoff": cutoffs}, schema={"cutoff": pl.Date}).to_arrow())
    try:
        return con.sql(f"""
        WITH rows AS (
            SELECT r.*, c.received_on FROM ({report_event_rows_sql(level)}) r
            JOIN latest_case c ON c.case_id = r.report_id
        ),
        src AS (SELECT k.cutoff, rows.report_id AS rid, rows.drug, rows.event, {", ".join("rows." + s for s in STRATA)}
                FROM rows JOIN _cutoffs k ON rows.received_on <= k.cutoff),
        pairs AS (SELECT cutoff, drug, event, count(DISTINCT rid) AS n11 FROM src GROUP BY ALL),
        drugs AS (SELECT cutoff, drug, count(DISTINCT rid) AS n1_ FROM src GROUP BY ALL),
        events AS (SELECT cutoff, event, count(DISTINCT rid) AS n_1 FROM src GROUP BY ALL),
        tot AS (SELECT cutoff, count(DISTINCT rid) AS n FROM src GROUP BY ALL),
        sd AS (SELECT cutoff, drug, {g}, count(DISTINCT rid) AS n1s FROM src GROUP BY ALL),
        se AS (SELECT cutoff, event, {g}, count(DISTINCT rid) AS n_1s FROM src GROUP BY ALL),
        st AS (SELECT cutoff, {g}, count(DISTINCT rid) AS ns FROM src GROUP BY ALL),
        ex AS (
            SELECT p.cutoff, p.drug, p.event, sum(CAST(a.n1s AS DOUBLE) * b.n_1s / c.ns) AS e
            FROM pairs p
            JOIN sd a ON a.cutoff = p.cutoff AND a.drug = p.drug
            JOIN se b ON b.cutoff = p.cutoff AND b.event = p.event AND {same}
            JOIN st c ON c.cutoff = p.cutoff AND {same.replace("a.", "c.").replace("b.", "a.")}
            GROUP BY ALL
        )
        SELECT p.cutoff, p.drug, p.event, p.n11::BIGINT AS n11, d.n1_::BIGINT AS n1_, ev.n_1::BIGINT AS n_1,
               t.n::BIGINT AS n, ex.e
        FROM pairs p
        JOIN drugs d USING (cutoff, drug) JOIN events ev USING (cutoff, event) JOIN tot t USING (cutoff)
        JOIN ex USING (cutoff, drug, event)
        ORDER BY p.cutoff, p.drug, p.event
        """).pl()
    finally:
        con.unregister("_cutoffs")

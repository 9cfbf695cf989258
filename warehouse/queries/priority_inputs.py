"""What the priority score (:mod:`signals.priority`) reads for every register row, at a data lock point.

A signal's cases are the read model's (``pv_signal_case``); this module only counts them — serious,
first received within ``recent_days`` of the DLP, reported by a health professional, and the mean
completeness of the reports (the share of :data:`signals.priority.COMPLETENESS_FIELDS` present) —
and reads the signal's own ``n11``/``e`` from its figures. Batch concentration: the batch-test
families (heterogeneity, sequential) among a batch signal's own methods, or, for a product or
substance signal, among the methods of the batch signals (not refuted or closed) on its product(s)
for the same PT: the read model's ``pv_signal_tested_batch``, the batches a report or an alert may
name (``reports.alerts.standing_out`` applies the same rule to an alert's scoped frames).

A batch signal found at SOC level has no case here: the read model matches a signal's cases on the
PT, so its shares are 0 and only its strength and batch tests count.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from warehouse.queries.read_model import install

PRIORITY_INPUTS_SQL = """
WITH lock AS (SELECT coalesce($dlp::DATE, (SELECT max(received_on) FROM latest_case)) AS dlp),
per_case AS (
    SELECT k.signal_id, k.case_id,
           bool_or(k.serious) AS serious,
           min(k.initial_received) AS initial_received,
           (any_value(k.age_years) IS NOT NULL)::INT
           + (any_value(k.sex) IN ('M', 'F'))::INT
           + (min(k.tto_days) IS NOT NULL)::INT
           + (coalesce(any_value(k.outcome), 'unknown') <> 'unknown')::INT
           + (any_value(c.reporter_qualification) IS NOT NULL)::INT
           + bool_or(k.batch_id IS NOT NULL)::INT AS fields_present,
           list_contains($hcp, any_value(c.reporter_qualification)) AS hcp
    FROM pv_signal_case($dlp) k
    JOIN latest_case c USING (case_id)
    GROUP BY k.signal_id, k.case_id
),
per_signal AS (
    SELECT signal_id, count(*) AS n_cases,
           count(*) FILTER (WHERE serious) AS n_serious,
           count(*) FILTER (WHERE initial_received > (SELECT dlp FROM lock) - $recent_days::INT) AS n_recent,
           count(*) FILTER (WHERE hcp) AS n_hcp,
           avg(fields_present / $n_fields) AS completeness
    FROM per_case GROUP BY signal_id
),
concentration AS (
    SELECT signal_id, bool_or(list_has_any(methods, $het)) AS het, bool_or(list_has_any(methods, $seq)) AS seq
    FROM pv_signal_tested_batch GROUP BY signal_id
)
SELECT s.signal_id, s.level,
       coalesce(try_cast(s.figures->>'n11' AS DOUBLE), 0)::BIGINT AS n11,
       try_cast(s.figures->>'e' AS DOUBLE) AS expected,
       coalesce(k.het, false)::INT + coalesce(k.seq, false)::INT AS batch_tests,
       coalesce(c.n_cases, 0) AS n_cases, coalesce(c.n_serious, 0) AS n_serious,
       coalesce(c.n_recent, 0) AS n_recent, coalesce(c.n_hcp, 0) AS n_hcp, c.completeness,
       (SELECT dlp FROM lock) AS priority_on
FROM signal s
LEFT JOIN per_signal c USING (signal_id)
LEFT JOIN concentration k USING (signal_id)
ORDER BY s.signal_id
"""


def priority_inputs(
    con: duckdb.DuckDBPyConnection,
    dlp: dt.date | None,
    *,
    recent_days: int,
    hcp_qualifications: tuple[str, ...],
    test_families: tuple[tuple[str, ...], tuple[str, ...]],
    n_fields: int,
) -> pl.DataFrame:
    """One row per register signal: the inputs of :func:`signals.priority.priority_scores` at the data lock
    point (``None``: the latest case received) and ``priority_on`` (that date).

    The definitions are the statistic's (``signals.priority.QUERY_PARAMETERS``: the recency window, the
    health-professional qualifications, the two batch-test families, the number of completeness fields),
    passed in so the warehouse imports no statistic."""
    heterogeneity, sequential = test_families
    return (
        install(con)
        .execute(
            PRIORITY_INPUTS_SQL,
            {
                "dlp": dlp,
                "recent_days": int(recent_days),
                "hcp": list(hcp_qualifications),
                "het": list(heterogeneity),
                "seq": list(sequential),
                "n_fields": float(n_fields),
            },
        )
        .pl()
    )

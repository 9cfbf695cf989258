"""Read-side queries for the periodic regulatory reports, scoped to a market region and a period.

Everything here reads. A *period* is ``[start, end]`` (dates, inclusive); the data lock point of a
period report is ``end``: only cases received on or before it count, so a report on a past month
is not changed by cases that arrived later. What counts, a signal's cases and its batches are the
read model's (:mod:`warehouse.queries.read_model`); the queries here only filter them by data lock
point, market region and signal. The *initial* receipt date of a case (its first version) is day 0
of the expedited clock.

Results are polars frames sorted on stable keys, so the same warehouse renders the same report.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from warehouse.queries.counts import contingency_counts_sql
from warehouse.queries.read_model import install


def period_signals(con: duckdb.DuckDBPyConnection, region: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Signals in scope of a market region at a period's end, each tagged ``new`` / ``ongoing`` / ``closed``.

    Product- and batch-level signals on products of the region; ingredient-level signals on an
    ingredient of one of its products. A signal first detected after the period end did not exist yet.
    With the register's priority score and components (as of its last run) and ``status_changed``: an
    analyst changed the signal's status during the period (a ``signal_history`` row with a previous status);
    ``tested_lots``: the lots a batch-level test singles out for the signal's event (read model
    ``pv_signal_tested_batch``), as ``lot (product)``.
    """
    return (
        install(con)
        .sql(
            """
        SELECT signal_id, level, product_id, product_name, ingredient, manufacturer_id, manufacturer_name,
               pt, batch_id, batch_lot, methods, figures, first_detected, last_detected, status,
               CASE WHEN status IN ('closed', 'refuted') THEN 'closed'
                    WHEN first_detected BETWEEN $start AND $end THEN 'new' ELSE 'ongoing' END AS category,
               priority, priority_strength, priority_batch, priority_seriousness, priority_recency,
               priority_completeness, priority_reporter,
               signal_id IN (SELECT signal_id FROM signal_history WHERE from_status IS NOT NULL
                             AND changed_at::DATE BETWEEN $start AND $end) AS status_changed,
               (SELECT list(DISTINCT t.lot_number || ' (' || t.batch_product_name || ')' ORDER BY
                            t.lot_number || ' (' || t.batch_product_name || ')')
                FROM pv_signal_tested_batch t WHERE t.signal_id = pv_signal.signal_id) AS tested_lots
        FROM pv_signal
        WHERE first_detected <= $end
          AND ((level IN ('product', 'batch') AND market_region = $region)
               OR (level = 'ingredient' AND ingredient IN (SELECT ingredient FROM product WHERE region = $region)))
        ORDER BY level DESC, signal_id
        """,
            params={"start": start, "end": end, "region": region},
        )
        .pl()
    )


def signal_cases(con: duckdb.DuckDBPyConnection, signal_ids: list[str], dlp: dt.date) -> pl.DataFrame:
    """One row per (signal, case) received up to the data lock point: dates, seriousness, time to onset."""
    if not signal_ids:
        return pl.DataFrame()
    return (
        install(con)
        .sql(
            """
        SELECT signal_id, case_id, min(initial_received) AS initial_received, min(received_on) AS received_on,
               bool_or(serious) AS serious, any_value(array_to_string(seriousness, ', ')) AS seriousness,
               any_value(coalesce(outcome, 'unknown')) AS outcome, min(tto_days) AS days_to_onset
        FROM pv_signal_case($dlp)
        WHERE list_contains($ids, signal_id)
        GROUP BY signal_id, case_id
        ORDER BY signal_id, case_id
        """,
            params={"ids": sorted(signal_ids), "dlp": dlp},
        )
        .pl()
    )


def signal_batch_annex(con: duckdb.DuckDBPyConnection, signal_ids: list[str], dlp: dt.date) -> pl.DataFrame:
    """Per signal, its batches (read model ``pv_signal_batch``: the batches its cases received up to the
    DLP link to, and a batch-level signal's own batch) with the batch's traceability facts at the DLP."""
    if not signal_ids:
        return pl.DataFrame()
    return (
        install(con)
        .sql(
            """
        SELECT signal_id, batch_id, lot_number, product_id, product_name, manufacturer_name, site, manufactured_on,
               released_on, expiry_on, units_released, coalesce(recall_status, 'none') AS recall_status,
               units_delivered, regions, first_delivery, last_delivery, cold_chain_excursions, max_temp_c,
               linked_cases, serious_cases, cases_by_method, cases_per_10k_packs
        FROM pv_signal_batch($dlp)
        WHERE list_contains($ids, signal_id)
        ORDER BY signal_id, linked_cases DESC, lot_number, batch_id
        """,
            params={"ids": sorted(signal_ids), "dlp": dlp},
        )
        .pl()
    )


def scope_summary(con: duckdb.DuckDBPyConnection, region: str, start: dt.date, end: dt.date) -> dict:
    """The counts a report's 'sources and counts' quotes, for the region's products, in the period and cumulatively."""
    row = (
        install(con)
        .sql(
            """
        WITH scoped AS (SELECT DISTINCT case_id, initial_received, received_on, serious,
                          list_contains(seriousness, 'death') OR outcome = 'fatal' AS fatal
                   FROM pv_case_event($end) WHERE market_region = $region)
        SELECT count(*) AS cases_cumulative,
               count(*) FILTER (WHERE initial_received BETWEEN $start AND $end) AS cases_new,
               count(*) FILTER (WHERE received_on BETWEEN $start AND $end) AS cases_received_in_period,
               count(*) FILTER (WHERE serious AND initial_received BETWEEN $start AND $end) AS serious_new,
               count(*) FILTER (WHERE fatal AND initial_received BETWEEN $start AND $end) AS fatal_new,
               count(*) FILTER (WHERE serious) AS serious_cumulative
        FROM (SELECT case_id, min(initial_received) AS initial_received, max(received_on) AS received_on,
                     bool_or(serious) AS serious, bool_or(fatal) AS fatal FROM scoped GROUP BY case_id)
        """,
            params={"region": region, "start": start, "end": end},
        )
        .pl()
        .to_dicts()[0]
    )

    def one(q, **p):
        return con.sql(q, params=p).fetchone()[0]

    row.update(
        products=one("SELECT count(*) FROM product WHERE region = $r", r=region),
        manufacturers=one("SELECT count(DISTINCT manufacturer_id) FROM product WHERE region = $r", r=region),
        batches=one("SELECT count(*) FROM batch JOIN product USING (product_id) WHERE region = $r", r=region),
        deliveries=one(
            "SELECT count(*) FROM delivery d JOIN product p USING (product_id) WHERE p.region = $r "
            "AND delivered_at::DATE <= $e",
            r=region,
            e=end,
        ),
        packs_delivered=one(
            "SELECT coalesce(sum(quantity), 0) FROM delivery d JOIN product p USING (product_id) "
            "WHERE p.region = $r AND delivered_at::DATE <= $e",
            r=region,
            e=end,
        ),
        patients=one(
            "SELECT count(DISTINCT patient_key) FROM delivery d JOIN product p USING (product_id) "
            "WHERE p.region = $r AND delivered_at::DATE <= $e",
            r=region,
            e=end,
        ),
        all_cases=one("SELECT count(*) FROM pv_counted_case($e)", e=end),
        duplicates_flagged=one(
            "SELECT count(*) FROM latest_case WHERE duplicate_of IS NOT NULL AND received_on <= $e", e=end
        ),
        supply_events=one("SELECT count(*) FROM supply_event WHERE event_time::DATE <= $e", e=end),
        first_received=one("SELECT min(received_on) FROM latest_case"),
        last_received=one("SELECT max(received_on) FROM latest_case WHERE received_on <= $e", e=end),
        quarantine=con.sql(
            "SELECT stage, reason, count(*) AS n FROM quarantine GROUP BY ALL ORDER BY stage, n DESC, reason"
        )
        .pl()
        .to_dicts(),
    )
    return row


def expedited_cases(con: duckdb.DuckDBPyConnection, region: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Serious cases on the region's products first received in the period: what the expedited clock runs on."""
    return (
        install(con)
        .sql(
            """
        SELECT case_id, min(initial_received) AS initial_received, max(received_on) AS latest_received,
               any_value(country) AS country, any_value(array_to_string(seriousness, ', ')) AS seriousness,
               any_value(coalesce(outcome, 'unknown')) AS outcome,
               bool_or(list_contains(seriousness, 'death') OR outcome = 'fatal') AS fatal,
               string_agg(DISTINCT p.name, ', ' ORDER BY p.name) AS products,
               string_agg(DISTINCT b.lot_number, ', ' ORDER BY b.lot_number) AS lots,
               string_agg(DISTINCT h.pt, ', ' ORDER BY h.pt) AS reactions
        FROM pv_case_event($end) h
        JOIN product p USING (product_id)
        LEFT JOIN batch b ON b.batch_id = h.batch_id
        WHERE h.serious AND h.market_region = $region
        GROUP BY case_id
        HAVING min(initial_received) BETWEEN $start AND $end
        ORDER BY initial_received, case_id
        """,
            params={"region": region, "start": start, "end": end},
        )
        .pl()
    )


def icsr_rows(con: duckdb.DuckDBPyConnection, case_ids: list[str]) -> dict[str, pl.DataFrame]:
    """What an E2B(R3) ICSR needs for each case: the latest version, every drug (lot from the linkage), every reaction.

    No patient key and no free-text narrative: those never leave the warehouse (docs/architecture.md, "Privacy").
    The lot written is the *linked batch's* lot number when the case links to a batch, else the lot as
    reported (and the link method says which).
    """
    ids = sorted(case_ids)
    cases = con.sql(
        """
        SELECT c.case_id, c.version, first.initial_received, c.received_on, c.source, c.reporter_qualification,
               c.country, c.age_years, c.sex, c.serious, c.seriousness, coalesce(c.outcome, 'unknown') AS outcome
        FROM latest_case c
        JOIN (SELECT case_id, min(received_on) AS initial_received FROM case_report GROUP BY case_id) first USING (case_id)
        WHERE list_contains($ids, c.case_id)
        ORDER BY c.case_id
        """,
        params={"ids": ids},
    ).pl()
    drugs = con.sql(
        """
        SELECT d.case_id, d.drug_seq, d.role, coalesce(p.name, d.product_name_reported) AS product_name,
               d.product_name_reported, coalesce(d.ingredient, p.ingredient) AS ingredient, p.ndc, p.gtin,
               p.nmpa_drug_code, m.name AS manufacturer_name, d.start_date, p.route, p.form,
               b.lot_number AS linked_lot, d.lot_reported, l.method AS link_method
        FROM latest_case_drug d
        LEFT JOIN case_batch_link l ON l.case_id = d.case_id AND l.version = d.version AND l.drug_seq = d.drug_seq
        LEFT JOIN product p ON p.product_id = coalesce(l.product_id, d.product_id)
        LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
        LEFT JOIN batch b ON b.batch_id = l.batch_id
        WHERE list_contains($ids, d.case_id)
        ORDER BY d.case_id, d.drug_seq
        """,
        params={"ids": ids},
    ).pl()
    meddra = (
        "LEFT JOIN case_reaction_meddra md ON md.case_id = r.case_id AND md.version = r.version "
        "AND md.reaction_seq = r.reaction_seq"
    )
    reactions = con.sql(
        f"""
        SELECT r.case_id, r.reaction_seq, r.pt, r.soc, r.onset_date, md.meddra_code, md.meddra_version
        FROM latest_case_reaction r {meddra}
        WHERE list_contains($ids, r.case_id)
        ORDER BY r.case_id, r.reaction_seq
        """,
        params={"ids": ids},
    ).pl()
    return {"cases": cases, "drugs": drugs, "reactions": reactions}


def substance_event_counts(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> pl.DataFrame:
    """eRMR-style counts per (active substance, PT): total up to the DLP and new in the period (by initial receipt),
    serious and fatal, with the 2×2 margins for the ROR at the DLP (distinct reports, :mod:`warehouse.queries.counts`)."""
    rows = "SELECT case_id AS report_id, ingredient AS drug, pt AS event FROM pv_case_event($end) WHERE ingredient IS NOT NULL"
    return (
        install(con)
        .sql(
            f"""
        WITH pairs AS (
            SELECT ingredient, pt, case_id, any_value(initial_received) AS initial_received, bool_or(serious) AS serious,
                   bool_or(list_contains(seriousness, 'death') OR outcome = 'fatal') AS fatal
            FROM pv_case_event($end) WHERE ingredient IS NOT NULL GROUP BY ALL
        ),
        margins AS ({contingency_counts_sql(rows)}),
        am AS (SELECT ingredient, bool_or(coalesce(additional_monitoring, false)) AS additional_monitoring
               FROM product GROUP BY ALL)
        SELECT p.ingredient, p.pt,
               count(*) FILTER (WHERE initial_received BETWEEN $start AND $end) AS new_count,
               count(*) AS total_count,
               count(*) FILTER (WHERE serious AND initial_received BETWEEN $start AND $end) AS new_serious,
               count(*) FILTER (WHERE serious) AS total_serious,
               count(*) FILTER (WHERE fatal AND initial_received BETWEEN $start AND $end) AS new_fatal,
               count(*) FILTER (WHERE fatal) AS total_fatal,
               any_value(m.n1_) AS n1_, any_value(m.n_1) AS n_1, any_value(m.n) AS n,
               coalesce(any_value(am.additional_monitoring), false) AS additional_monitoring
        FROM pairs p JOIN margins m ON m.drug = p.ingredient AND m.event = p.pt
        LEFT JOIN am USING (ingredient)
        GROUP BY p.ingredient, p.pt
        ORDER BY p.ingredient, p.pt
        """,
            params={"start": start, "end": end},
        )
        .pl()
    )


def data_months(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    """First day of every month from the first to the last case received: the report partitions the data covers."""
    lo, hi = con.sql("SELECT min(received_on), max(received_on) FROM latest_case").fetchone()
    if lo is None:
        return []
    months, m = [], dt.date(lo.year, lo.month, 1)
    while m <= hi:
        months.append(m)
        m = dt.date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    return months


def input_lineage(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql("SELECT kind, path, sha256, n_bytes FROM ingested_file ORDER BY kind, path").pl()

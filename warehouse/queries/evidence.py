"""Read-side queries: the evidence behind each signal, for reports, alerts and the dashboard.

Everything here reads; nothing writes. Results are polars frames of plain columns, so the
``reports`` package renders them without knowing SQL. Case summaries are de-identified: age
bands, no patient keys, no narratives.
"""

from __future__ import annotations

import duckdb
import polars as pl

# cases that count: the latest version of each case, not flagged as a suspected duplicate
COUNTED_CASE_DRUGS_SQL = """
    SELECT c.case_id, c.received_on, c.serious, c.outcome, c.seriousness, c.age_years, c.sex, c.country, c.source,
           d.drug_seq, d.role, coalesce(l.product_id, d.product_id) AS product_id, d.ingredient,
           l.batch_id, l.method AS link_method, l.confidence AS link_confidence
    FROM latest_case c
    JOIN latest_case_drug d USING (case_id)
    LEFT JOIN case_batch_link l ON l.case_id = d.case_id AND l.version = d.version AND l.drug_seq = d.drug_seq
    WHERE c.duplicate_of IS NULL
"""

AGE_BAND_SQL = """CASE WHEN age_years IS NULL THEN 'unknown' WHEN age_years < 2 THEN '0-1'
    WHEN age_years < 12 THEN '2-11' WHEN age_years < 18 THEN '12-17' WHEN age_years < 65 THEN '18-64'
    WHEN age_years < 75 THEN '65-74' ELSE '75+' END"""


def data_lock_point(con: duckdb.DuckDBPyConnection):
    """The date of the latest case received: what a report's data lock point is by default."""
    return con.sql("SELECT max(received_on) FROM latest_case").fetchone()[0]


def signal_overview(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql(
        """
        SELECT s.signal_id, s.level, s.product_id, p.name AS product_name, coalesce(s.ingredient, p.ingredient) AS ingredient,
               p.manufacturer_id, m.name AS manufacturer_name, s.pt, s.batch_id, s.methods, s.figures::VARCHAR AS figures,
               s.first_detected, s.last_detected, s.status
        FROM signal s
        LEFT JOIN product p USING (product_id)
        LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
        ORDER BY s.status = 'new' DESC, s.first_detected DESC, s.signal_id
        """
    ).pl()


def signal_batches(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per signal on a product: each batch its cases link to, with the batch's traceability facts."""
    return con.sql(
        f"""
        WITH counted AS ({COUNTED_CASE_DRUGS_SQL}),
        hits AS (
            SELECT s.signal_id, k.case_id, k.batch_id, k.link_method
            FROM signal s
            JOIN counted k ON k.product_id = s.product_id AND k.role IN ('suspect', 'interacting')
            JOIN latest_case_reaction r ON r.case_id = k.case_id AND r.pt = s.pt
            WHERE s.product_id IS NOT NULL
        ),
        per_batch AS (
            SELECT signal_id, batch_id, count(DISTINCT case_id) AS linked_cases
            FROM hits WHERE batch_id IS NOT NULL GROUP BY ALL
        ),
        by_method AS (
            SELECT signal_id, batch_id, string_agg(link_method || ': ' || n, ', ' ORDER BY link_method) AS cases_by_method
            FROM (SELECT signal_id, batch_id, link_method, count(DISTINCT case_id) AS n
                  FROM hits WHERE batch_id IS NOT NULL GROUP BY ALL)
            GROUP BY ALL
        ),
        delivered AS (
            SELECT batch_id, sum(quantity) AS units_delivered, count(DISTINCT region) AS n_regions,
                   list(DISTINCT region ORDER BY region) AS regions, min(delivered_at)::DATE AS first_delivery,
                   max(delivered_at)::DATE AS last_delivery
            FROM delivery GROUP BY batch_id
        ),
        excursions AS (
            SELECT batch_id, count(*) AS excursions, max(max_temp_c) AS max_temp_c
            FROM cold_chain_excursion GROUP BY batch_id
        )
        SELECT pb.signal_id, pb.batch_id, b.lot_number, b.product_id, b.site, b.manufactured_on, b.expiry_on,
               b.released_on, b.units_released, b.recall_status,
               coalesce(d.units_delivered, 0) AS units_delivered, d.regions, d.first_delivery, d.last_delivery,
               coalesce(x.excursions, 0) AS cold_chain_excursions, x.max_temp_c,
               pb.linked_cases, bm.cases_by_method,
               round(1e4 * pb.linked_cases / nullif(d.units_delivered, 0), 2) AS cases_per_10k_packs
        FROM per_batch pb
        JOIN by_method bm USING (signal_id, batch_id)
        JOIN batch b USING (batch_id)
        LEFT JOIN delivered d USING (batch_id)
        LEFT JOIN excursions x USING (batch_id)
        ORDER BY pb.signal_id, pb.linked_cases DESC, pb.batch_id
        """
    ).pl()


def signal_case_summaries(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """De-identified summaries of the cases behind each product signal (no patient key, no narrative)."""
    return con.sql(
        f"""
        WITH counted AS ({COUNTED_CASE_DRUGS_SQL})
        SELECT DISTINCT s.signal_id, k.case_id, k.received_on, r.onset_date, {AGE_BAND_SQL} AS age_band,
               coalesce(k.sex, 'unknown') AS sex, k.serious, array_to_string(k.seriousness, ', ') AS seriousness,
               coalesce(k.outcome, 'unknown') AS outcome, k.source, k.batch_id, k.link_method
        FROM signal s
        JOIN counted k ON k.product_id = s.product_id AND k.role IN ('suspect', 'interacting')
        JOIN latest_case_reaction r ON r.case_id = k.case_id AND r.pt = s.pt
        WHERE s.product_id IS NOT NULL
        ORDER BY s.signal_id, k.received_on, k.case_id
        """
    ).pl()


def warehouse_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Counts a report's 'data and methods' section quotes."""
    one = lambda q: con.sql(q).fetchone()[0]  # noqa: E731
    return {
        "manufacturers": one("SELECT count(*) FROM manufacturer"),
        "products": one("SELECT count(*) FROM product"),
        "batches": one("SELECT count(*) FROM batch"),
        "packs": one("SELECT count(*) FROM pack"),
        "deliveries": one("SELECT count(*) FROM delivery"),
        "patients": one("SELECT count(DISTINCT patient_key) FROM delivery"),
        "case_versions": one("SELECT count(*) FROM case_report"),
        "cases": one("SELECT count(*) FROM latest_case"),
        "duplicates_flagged": one("SELECT count(*) FROM latest_case WHERE duplicate_of IS NOT NULL"),
        "serious_cases": one("SELECT count(*) FROM latest_case WHERE serious AND duplicate_of IS NULL"),
        "supply_events": one("SELECT count(*) FROM supply_event"),
        "first_received": one("SELECT min(received_on) FROM latest_case"),
        "last_received": one("SELECT max(received_on) FROM latest_case"),
        "quarantine": con.sql("SELECT stage, reason, count(*) AS n FROM quarantine GROUP BY ALL ORDER BY stage, n DESC")
        .pl()
        .to_dicts(),
        "linkage": con.sql(
            "SELECT method, count(*) AS n FROM case_batch_link l JOIN latest_case c USING (case_id, version) "
            "GROUP BY method ORDER BY n DESC"
        )
        .pl()
        .to_dicts(),
    }


def input_lineage(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql("SELECT kind, path, sha256, n_bytes FROM ingested_file ORDER BY kind, path").pl()

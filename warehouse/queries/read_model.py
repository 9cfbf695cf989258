"""The read model: what counts, a signal's cases, a signal's batches and the evidence figures, defined once.

Every reader of the evidence — the periodic reports (:mod:`warehouse.queries.report_queries`),
the manufacturer alerts (:mod:`warehouse.queries.alert_evidence`), the dashboard
(:mod:`dashboard.data`) and the statistics' inputs (:mod:`warehouse.queries.detection_inputs`,
:mod:`warehouse.queries.batch_inputs`) — reads the DuckDB table macros below and only *filters*
them (by data lock point, market region, manufacturer, signal). None of them restates a rule.

The macros are TEMP objects of the connection (:func:`install`; every function here installs
them first), so a read-only connection and the dashboard's snapshot can use them and the
warehouse file holds no second copy of the definitions.

``dlp`` — the data lock point — is a DATE or NULL (no lock: every case received so far).

``pv_counted_case(dlp)``
    **Which cases count.** The latest version of each case (``case_report.is_latest``: a
    case deleted by its source — FAERS deleted-case list, E2B nullification — has no latest
    version), not flagged as a suspected duplicate (``duplicate_of IS NULL``), received on or
    before the data lock point. ``initial_received`` = the first version's receipt date (day 0
    of the expedited clock).
``pv_counted_drug(dlp)``
    The counted cases' drugs in a *suspect* or *interacting* role. Product = the product the
    scanned pack code names (``case_batch_link.product_id``), else the product mapped from the
    reported name; ingredient = the product's ingredient, else the reported one; the batch link
    and its method and confidence; the product's market region and manufacturer.
``pv_case_event(dlp)``
    Counted drug × the case's reactions (PT, SOC, onset): the unit every count is built from.
    ``tto_days`` (time to onset) = onset date − the drug's start date in days when both exist and
    the difference is ≥ 0, else null (received − onset is a reporting delay, never a fallback).
``pv_signal_case(dlp)``
    **A signal's cases**: the case events matching a register row on PT and on its subject —
    ``product``: the product; ``batch``: the product *and* the batch (a batch-level signal's
    evidence is that batch's evidence); ``ingredient``: the ingredient. One row per matching
    (signal, case, drug, reaction); readers aggregate per case. A register row at an event level
    above PT (``signal.event_level``: HLT, HLGT, SOC, SMQ; issue 17) matches the case events of
    every PT its group holds (``meddra_event_map``).
``pv_batch_facts(dlp)``
    Per batch, the figures of the batch traceability record (:mod:`warehouse.linkage.batch_record`)
    a signal's batch table quotes, as of the data lock point: units delivered, regions,
    pharmacies, first/last delivery, cold-chain excursions up to the DLP.
``pv_signal_batch(dlp)``
    **A signal's batches**: each batch its cases link to (``implicated_by`` has
    ``linked_cases``), and for a batch-level signal its own batch (``batch_signal``), with the
    linked cases (all / serious, per link method) and the batch's facts and rate per 10k packs.
``pv_signal``
    The register row with its product, ingredient, manufacturer and batch lot (``batch_product_id``
    lets a reader check a batch signal's batch belongs to the signal's product) and its priority
    score with the components (``signals.priority``, stored by the register step).
``pv_signal_tested_batch``
    **The batches a batch-level test singles out for a signal's event**: a batch signal's own batch;
    for a product (ingredient) signal, the batches of the batch-level signals — not refuted or closed
    — on that product (a product of that ingredient) and the same PT, with their methods. What the
    priority score's batch concentration counts and what lets a report or an alert name a lot.
``pv_signal_score``
    **The evidence figures** behind a product- or ingredient-level signal: its row of
    ``disproportionality_score`` (n11, margins, E, every method's estimate). A batch-level
    signal has none here: its figures are the batch statistics in ``signal.figures``.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

__all__ = [
    "AGE_BAND_SQL",
    "MACROS",
    "data_lock_point",
    "install",
    "signal_batches",
    "signal_cases",
    "signals",
]

# de-identified age band (reports, alerts, dashboard): no age in years leaves the warehouse
AGE_BAND_SQL = """CASE WHEN age_years IS NULL THEN 'unknown' WHEN age_years < 2 THEN '0-1'
    WHEN age_years < 12 THEN '2-11' WHEN age_years < 18 THEN '12-17' WHEN age_years < 65 THEN '18-64'
    WHEN age_years < 75 THEN '65-74' ELSE '75+' END"""

_NO_LOCK = "DATE '9999-12-31'"

MACROS: dict[str, str] = {
    "pv_counted_case": f"""
        CREATE OR REPLACE TEMP MACRO pv_counted_case(dlp) AS TABLE
        SELECT c.*, f.initial_received
        FROM latest_case c
        JOIN (SELECT case_id, min(received_on) AS initial_received FROM case_report GROUP BY case_id) f USING (case_id)
        WHERE c.duplicate_of IS NULL AND c.received_on <= coalesce(dlp, {_NO_LOCK})""",
    "pv_counted_drug": """
        CREATE OR REPLACE TEMP MACRO pv_counted_drug(dlp) AS TABLE
        SELECT c.case_id, c.version, d.drug_seq, d.role, d.start_date,
               coalesce(l.product_id, d.product_id) AS product_id,
               coalesce(p.ingredient, d.ingredient) AS ingredient,
               p.region AS market_region, p.manufacturer_id,
               l.batch_id, l.method AS link_method, l.confidence AS link_confidence
        FROM pv_counted_case(dlp) c
        JOIN latest_case_drug d USING (case_id)
        LEFT JOIN case_batch_link l ON l.case_id = d.case_id AND l.version = d.version AND l.drug_seq = d.drug_seq
        LEFT JOIN product p ON p.product_id = coalesce(l.product_id, d.product_id)
        WHERE d.role IN ('suspect', 'interacting')""",
    "pv_case_event": """
        CREATE OR REPLACE TEMP MACRO pv_case_event(dlp) AS TABLE
        SELECT c.case_id, c.version, c.initial_received, c.received_on, c.serious, c.seriousness, c.outcome,
               c.country, c.source, c.age_years, c.sex, c.patient_key,
               d.drug_seq, d.role, d.start_date, d.product_id, d.ingredient, d.market_region, d.manufacturer_id,
               d.batch_id, d.link_method, d.link_confidence,
               r.reaction_seq, r.pt, r.soc, r.onset_date,
               CASE WHEN r.onset_date >= d.start_date THEN date_diff('day', d.start_date, r.onset_date) END AS tto_days
        FROM pv_counted_case(dlp) c
        JOIN pv_counted_drug(dlp) d USING (case_id)
        JOIN latest_case_reaction r USING (case_id)""",
    "pv_signal_case": """
        CREATE OR REPLACE TEMP MACRO pv_signal_case(dlp) AS TABLE
        SELECT s.signal_id, s.level, h.*
        FROM (SELECT s.*, coalesce(m.pt, s.pt) AS case_pt FROM signal s  -- above PT: each PT of the group (issue 17)
              LEFT JOIN meddra_event_map m ON coalesce(s.event_level, 'pt') <> 'pt'
                   AND m.event_level = s.event_level AND m.event = s.pt) s
        JOIN pv_case_event(dlp) h ON h.pt = s.case_pt AND (
            (s.level = 'product' AND h.product_id = s.product_id)
            OR (s.level = 'batch' AND h.product_id = s.product_id AND h.batch_id = s.batch_id)
            OR (s.level = 'ingredient' AND h.ingredient = s.ingredient))""",
    "pv_batch_facts": f"""
        CREATE OR REPLACE TEMP MACRO pv_batch_facts(dlp) AS TABLE
        WITH delivered AS (
            SELECT batch_id, sum(quantity)::BIGINT AS units_delivered,
                   list(DISTINCT region ORDER BY region) AS regions, count(DISTINCT region) AS n_regions,
                   count(DISTINCT pharmacy_id) AS pharmacies_reached,
                   min(delivered_at)::DATE AS first_delivery, max(delivered_at)::DATE AS last_delivery
            FROM delivery WHERE delivered_at::DATE <= coalesce(dlp, {_NO_LOCK}) GROUP BY batch_id
        ),
        excursions AS (
            SELECT batch_id, count(*) AS excursions, max(max_temp_c) AS max_temp_c
            FROM cold_chain_excursion WHERE event_time::DATE <= coalesce(dlp, {_NO_LOCK}) GROUP BY batch_id
        )
        SELECT b.batch_id, b.lot_number, b.product_id, p.name AS product_name, p.manufacturer_id,
               m.name AS manufacturer_name, b.site, b.manufactured_on, b.released_on, b.expiry_on,
               b.units_released, b.recall_status,
               coalesce(d.units_delivered, 0)::BIGINT AS units_delivered, d.regions, d.n_regions,
               coalesce(d.pharmacies_reached, 0) AS pharmacies_reached, d.first_delivery, d.last_delivery,
               coalesce(x.excursions, 0)::BIGINT AS cold_chain_excursions, x.max_temp_c
        FROM batch b
        JOIN product p ON p.product_id = b.product_id
        LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
        LEFT JOIN delivered d USING (batch_id)
        LEFT JOIN excursions x USING (batch_id)""",
    "pv_signal_batch": """
        CREATE OR REPLACE TEMP MACRO pv_signal_batch(dlp) AS TABLE
        WITH hits AS (SELECT signal_id, batch_id, case_id, serious, link_method
                      FROM pv_signal_case(dlp) WHERE batch_id IS NOT NULL),
        implicated AS (
            SELECT DISTINCT signal_id, batch_id, 'linked_cases' AS implicated_by FROM hits
            UNION
            SELECT signal_id, batch_id, 'batch_signal' FROM signal WHERE level = 'batch' AND batch_id IS NOT NULL
        ),
        per_batch AS (
            SELECT signal_id, batch_id, list(DISTINCT implicated_by ORDER BY implicated_by) AS implicated_by
            FROM implicated GROUP BY ALL
        ),
        cases AS (
            SELECT signal_id, batch_id, count(DISTINCT case_id) AS linked_cases,
                   count(DISTINCT case_id) FILTER (WHERE serious) AS serious_cases,
                   string_agg(DISTINCT link_method, ', ' ORDER BY link_method) AS link_methods
            FROM hits GROUP BY ALL
        ),
        by_method AS (
            SELECT signal_id, batch_id, string_agg(link_method || ': ' || n, ', ' ORDER BY link_method) AS cases_by_method
            FROM (SELECT signal_id, batch_id, link_method, count(DISTINCT case_id) AS n FROM hits GROUP BY ALL)
            GROUP BY ALL
        )
        SELECT pb.signal_id, pb.implicated_by, f.*,
               coalesce(c.linked_cases, 0) AS linked_cases, coalesce(c.serious_cases, 0) AS serious_cases,
               c.link_methods, bm.cases_by_method,
               round(1e4 * coalesce(c.linked_cases, 0) / nullif(f.units_delivered, 0), 2) AS cases_per_10k_packs
        FROM per_batch pb
        JOIN pv_batch_facts(dlp) f USING (batch_id)
        LEFT JOIN cases c ON c.signal_id = pb.signal_id AND c.batch_id = pb.batch_id
        LEFT JOIN by_method bm ON bm.signal_id = pb.signal_id AND bm.batch_id = pb.batch_id""",
    "pv_signal": """
        CREATE OR REPLACE TEMP VIEW pv_signal AS
        SELECT s.signal_id, s.level, s.product_id, p.name AS product_name,
               coalesce(s.ingredient, p.ingredient) AS ingredient, p.manufacturer_id, m.name AS manufacturer_name,
               p.region AS market_region, s.pt, s.batch_id, b.lot_number AS batch_lot, b.product_id AS batch_product_id,
               s.methods, s.figures::VARCHAR AS figures, s.first_detected, s.last_detected, s.status,
               s.priority, s.priority_strength, s.priority_batch, s.priority_seriousness, s.priority_recency,
               s.priority_completeness, s.priority_reporter, s.priority_on
        FROM signal s
        LEFT JOIN product p USING (product_id)
        LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
        LEFT JOIN batch b ON b.batch_id = s.batch_id""",
    "pv_signal_tested_batch": """
        CREATE OR REPLACE TEMP VIEW pv_signal_tested_batch AS
        SELECT s.signal_id, b.signal_id AS batch_signal_id, b.batch_id, bt.lot_number, b.product_id AS batch_product_id,
               p.name AS batch_product_name, b.methods
        FROM signal s
        JOIN signal b ON b.level = 'batch' AND b.pt = s.pt AND (
            (s.level = 'batch' AND b.signal_id = s.signal_id)
            OR (s.level <> 'batch' AND b.status NOT IN ('refuted', 'closed') AND (
                (s.level = 'product' AND b.product_id = s.product_id)
                OR (s.level = 'ingredient' AND b.product_id IN (SELECT product_id FROM product WHERE ingredient = s.ingredient)))))
        LEFT JOIN batch bt ON bt.batch_id = b.batch_id
        LEFT JOIN product p ON p.product_id = b.product_id""",
    "pv_signal_score": """
        CREATE OR REPLACE TEMP VIEW pv_signal_score AS
        SELECT s.signal_id, d.* EXCLUDE (rules_fired)
        FROM signal s
        JOIN disproportionality_score d ON d.level = s.level AND d.event = s.pt
         AND d.drug = (CASE WHEN s.level = 'ingredient' THEN s.ingredient ELSE s.product_id END)
        WHERE s.level IN ('product', 'ingredient')""",
}


def install(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Create (or replace) the read model's macros and views on this connection; returns it.

    TEMP objects only, so this works on a read-only connection and writes nothing to the file."""
    for statement in MACROS.values():
        con.execute(statement)
    return con


def data_lock_point(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The date of the latest case received: the data lock point of a run (and of a report by default)."""
    return con.sql("SELECT max(received_on) FROM latest_case").fetchone()[0]


def signals(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every register row with its product, ingredient, manufacturer and batch lot (``pv_signal``)."""
    return install(con).sql("SELECT * FROM pv_signal ORDER BY signal_id").pl()


def signal_cases(con: duckdb.DuckDBPyConnection, dlp: dt.date | None = None) -> pl.DataFrame:
    """One row per (signal, case): the agreement key of reports, alerts and the dashboard."""
    return (
        install(con)
        .execute(
            "SELECT DISTINCT signal_id, case_id FROM pv_signal_case($dlp) ORDER BY signal_id, case_id", {"dlp": dlp}
        )
        .pl()
    )


def signal_batches(con: duckdb.DuckDBPyConnection, dlp: dt.date | None = None) -> pl.DataFrame:
    """One row per (signal, batch) with its linked cases: the agreement key for batches."""
    return (
        install(con)
        .execute(
            "SELECT signal_id, batch_id, implicated_by, linked_cases FROM pv_signal_batch($dlp) ORDER BY ALL",
            {"dlp": dlp},
        )
        .pl()
    )

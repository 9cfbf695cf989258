"""Read-side queries for manufacturer alerts, scoped in SQL to one manufacturer's products.

Scoping is security: every query here takes a ``manufacturer_id`` and joins through
``product.manufacturer_id`` (and, for batches, ``batch.product_id``), so rows about another
company's products are never read into an alert at all. A case that also names another
company's product (co-suspect, concomitant) contributes only its own drug row: no other
drug, no narrative, no patient key. Case ids are replaced by a per-manufacturer keyed hash
(``case_ref``) so two companies cannot join their alerts on a case.

Which signals: every register row with a product of the manufacturer — ``product`` level
(implicated batches = the batches its cases link to) and ``batch`` level (the signal's own
batch, plus the same). ``ingredient`` level signals have no product and their figures pool
several companies' products, so they are not sent to any one manufacturer.
"""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import polars as pl

from warehouse.queries.evidence import AGE_BAND_SQL, COUNTED_CASE_DRUGS_SQL


def case_ref(salt: str, manufacturer_id: str, case_id: str) -> str:
    """A stable per-manufacturer reference for a case: HMAC-SHA256(salt, manufacturer|case)."""
    digest = hmac.new(salt.encode(), f"alert-case|{manufacturer_id}|{case_id}".encode(), hashlib.sha256).hexdigest()
    return "CASE-" + digest[:12].upper()


def alert_signals(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> pl.DataFrame:
    """The manufacturer's signals (product and batch level; a batch signal only if the batch is its product's)."""
    return con.execute(
        """
        SELECT s.signal_id, s.level, s.product_id, p.name AS product_name, coalesce(s.ingredient, p.ingredient) AS ingredient,
               p.manufacturer_id, s.pt, s.batch_id, s.methods, s.figures::VARCHAR AS figures,
               s.first_detected, s.last_detected, s.status
        FROM signal s
        JOIN product p ON p.product_id = s.product_id
        LEFT JOIN batch b ON b.batch_id = s.batch_id
        WHERE p.manufacturer_id = ? AND (s.batch_id IS NULL OR b.product_id = s.product_id)
        ORDER BY s.signal_id
        """,
        [manufacturer_id],
    ).pl()


# cases behind each of the manufacturer's signals: its own drug row only (product = signal product;
# a batch-level signal keeps the cases linked to its batch)
_SIGNAL_CASES_SQL = f"""
    WITH counted AS ({COUNTED_CASE_DRUGS_SQL})
    SELECT s.signal_id, k.case_id, k.received_on, r.onset_date, {AGE_BAND_SQL} AS age_band,
           coalesce(k.sex, 'unknown') AS sex, k.serious, array_to_string(k.seriousness, ', ') AS seriousness,
           coalesce(k.outcome, 'unknown') AS outcome, k.source,
           CASE WHEN b.product_id = s.product_id THEN k.batch_id END AS batch_id,
           CASE WHEN b.product_id = s.product_id THEN k.link_method ELSE 'product_only' END AS link_method
    FROM signal s
    JOIN product p ON p.product_id = s.product_id
    JOIN counted k ON k.product_id = s.product_id AND k.role IN ('suspect', 'interacting')
    JOIN latest_case_reaction r ON r.case_id = k.case_id AND r.pt = s.pt
    LEFT JOIN batch b ON b.batch_id = k.batch_id
    WHERE p.manufacturer_id = $mid AND (s.batch_id IS NULL OR k.batch_id = s.batch_id)
"""


def alert_case_summaries(con: duckdb.DuckDBPyConnection, manufacturer_id: str, salt: str) -> pl.DataFrame:
    """De-identified case summaries per signal: age band, sex, onset, seriousness, outcome, own batch link."""
    rows = con.execute(
        f"""
        SELECT DISTINCT signal_id, case_id, received_on, onset_date, age_band, sex, serious, seriousness, outcome,
               source, batch_id, link_method
        FROM ({_SIGNAL_CASES_SQL})
        ORDER BY signal_id, received_on, case_id
        """,
        {"mid": manufacturer_id},
    ).pl()
    # several reactions with the same PT in one case give one row (earliest onset)
    rows = rows.sort("signal_id", "received_on", "case_id", "onset_date", nulls_last=True).unique(
        subset=["signal_id", "case_id"], keep="first", maintain_order=True
    )
    refs = [case_ref(salt, manufacturer_id, c) for c in rows["case_id"].to_list()]
    return rows.with_columns(pl.Series("case_ref", refs, dtype=pl.String)).drop("case_id")


def alert_batches(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> pl.DataFrame:
    """Implicated batches per signal with the batch record, deliveries and linked-case rate."""
    return con.execute(
        f"""
        WITH hits AS (
            SELECT signal_id, batch_id, case_id, link_method FROM ({_SIGNAL_CASES_SQL}) WHERE batch_id IS NOT NULL
        ),
        implicated AS (
            SELECT signal_id, batch_id, 'linked_cases' AS implicated_by FROM hits
            UNION
            SELECT s.signal_id, s.batch_id, 'batch_signal' FROM signal s JOIN batch b ON b.batch_id = s.batch_id
            JOIN product p ON p.product_id = b.product_id
            WHERE s.batch_id IS NOT NULL AND b.product_id = s.product_id AND p.manufacturer_id = $mid
        ),
        per_batch AS (
            SELECT signal_id, batch_id, list(DISTINCT implicated_by ORDER BY implicated_by) AS implicated_by
            FROM implicated GROUP BY ALL
        ),
        cases AS (
            SELECT signal_id, batch_id, count(DISTINCT case_id) AS linked_cases,
                   string_agg(DISTINCT link_method, ', ' ORDER BY link_method) AS link_methods
            FROM hits GROUP BY ALL
        ),
        delivered AS (
            SELECT batch_id, sum(quantity)::BIGINT AS units_delivered, list(DISTINCT region ORDER BY region) AS regions,
                   count(DISTINCT pharmacy_id) AS pharmacies_reached,
                   min(delivered_at)::DATE AS first_delivery, max(delivered_at)::DATE AS last_delivery
            FROM delivery WHERE batch_id IN (SELECT batch_id FROM per_batch) GROUP BY batch_id
        )
        SELECT pb.signal_id, pb.batch_id, b.lot_number, b.product_id, b.site, b.manufactured_on, b.expiry_on,
               b.released_on, b.units_released, b.recall_status, pb.implicated_by,
               coalesce(d.units_delivered, 0)::BIGINT AS units_delivered, d.regions, coalesce(d.pharmacies_reached, 0) AS pharmacies_reached,
               d.first_delivery, d.last_delivery,
               coalesce(c.linked_cases, 0) AS linked_cases, c.link_methods,
               round(1e4 * coalesce(c.linked_cases, 0) / nullif(d.units_delivered, 0), 2) AS cases_per_10k_packs
        FROM per_batch pb
        JOIN batch b ON b.batch_id = pb.batch_id
        JOIN product p ON p.product_id = b.product_id AND p.manufacturer_id = $mid
        LEFT JOIN cases c ON c.signal_id = pb.signal_id AND c.batch_id = pb.batch_id
        LEFT JOIN delivered d ON d.batch_id = pb.batch_id
        ORDER BY pb.signal_id, linked_cases DESC, pb.batch_id
        """,
        {"mid": manufacturer_id},
    ).pl()


def _own_batches(batch_ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"batch_id": sorted(set(batch_ids))}, schema={"batch_id": pl.String})


def batch_pharmacies(con: duckdb.DuckDBPyConnection, manufacturer_id: str, batch_ids: list[str]) -> pl.DataFrame:
    """Where each batch went: units per region and pharmacy (no patient, no delivery id)."""
    con.register("_alert_batches", _own_batches(batch_ids).to_arrow())
    try:
        return con.execute(
            """
            SELECT d.batch_id, d.region, d.pharmacy_id, sum(d.quantity)::BIGINT AS units,
                   min(d.delivered_at)::DATE AS first_delivery, max(d.delivered_at)::DATE AS last_delivery
            FROM delivery d JOIN _alert_batches USING (batch_id)
            JOIN batch b ON b.batch_id = d.batch_id JOIN product p ON p.product_id = b.product_id
            WHERE p.manufacturer_id = ?
            GROUP BY ALL ORDER BY d.batch_id, d.region, d.pharmacy_id
            """,
            [manufacturer_id],
        ).pl()
    finally:
        con.unregister("_alert_batches")


def batch_consignments(con: duckdb.DuckDBPyConnection, manufacturer_id: str, batch_ids: list[str]) -> pl.DataFrame:
    """Each batch's consignments (EPCIS shipping/receiving pairs): from, to, region, quantity, times."""
    con.register("_alert_batches", _own_batches(batch_ids).to_arrow())
    try:
        return con.execute(
            """
            SELECT e.batch_id, coalesce(e.consignment_id, e.event_id) AS consignment_id, any_value(e.region) AS region,
                   min(e.source_location) AS from_location, min(e.destination_location) AS to_location,
                   max(e.quantity) FILTER (WHERE e.biz_step = 'shipping') AS quantity,
                   min(e.event_time) FILTER (WHERE e.biz_step = 'shipping') AS shipped_at,
                   max(e.event_time) FILTER (WHERE e.biz_step = 'receiving') AS received_at
            FROM supply_event e JOIN _alert_batches USING (batch_id)
            JOIN batch b ON b.batch_id = e.batch_id JOIN product p ON p.product_id = b.product_id
            WHERE p.manufacturer_id = ? AND e.biz_step IN ('shipping', 'receiving')
            GROUP BY ALL ORDER BY e.batch_id, shipped_at NULLS LAST, consignment_id
            """,
            [manufacturer_id],
        ).pl()
    finally:
        con.unregister("_alert_batches")


def batch_excursions(con: duckdb.DuckDBPyConnection, manufacturer_id: str, batch_ids: list[str]) -> pl.DataFrame:
    """Supply-chain temperature excursions of each batch (the supply loader's cold_chain_excursion table)."""
    con.register("_alert_batches", _own_batches(batch_ids).to_arrow())
    try:
        return con.execute(
            """
            SELECT x.batch_id, x.event_id, x.event_time, x.biz_step, x.consignment_id, x.region,
                   x.min_temp_c, x.max_temp_c, x.storage_min_c, x.storage_max_c
            FROM cold_chain_excursion x JOIN _alert_batches USING (batch_id)
            JOIN batch b ON b.batch_id = x.batch_id JOIN product p ON p.product_id = b.product_id
            WHERE p.manufacturer_id = ?
            ORDER BY x.batch_id, x.event_time, x.event_id
            """,
            [manufacturer_id],
        ).pl()
    finally:
        con.unregister("_alert_batches")

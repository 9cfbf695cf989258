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

What counts, a signal's cases and its batches are the read model's
(:mod:`warehouse.queries.read_model`); the queries here filter them to one manufacturer.
"""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import polars as pl

from warehouse.queries.read_model import AGE_BAND_SQL, install


def case_ref(salt: str, manufacturer_id: str, case_id: str) -> str:
    """A stable per-manufacturer reference for a case: HMAC-SHA256(salt, manufacturer|case)."""
    digest = hmac.new(salt.encode(), f"alert-case|{manufacturer_id}|{case_id}".encode(), hashlib.sha256).hexdigest()
    return "CASE-" + digest[:12].upper()


def alert_signals(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> pl.DataFrame:
    """The manufacturer's signals (product and batch level; a batch signal only if the batch is its product's)."""
    return (
        install(con)
        .execute(
            """
        SELECT signal_id, level, product_id, product_name, ingredient, manufacturer_id, pt, batch_id, methods, figures,
               first_detected, last_detected, status, priority
        FROM pv_signal
        WHERE product_id IS NOT NULL AND manufacturer_id = ? AND (batch_id IS NULL OR batch_product_id = product_id)
        ORDER BY signal_id
        """,
            [manufacturer_id],
        )
        .pl()
    )


# the manufacturer's signals: what every query below is scoped to
_OWN_SIGNALS = """SELECT signal_id FROM pv_signal WHERE product_id IS NOT NULL AND manufacturer_id = $mid
                  AND (batch_id IS NULL OR batch_product_id = product_id)"""


def alert_case_summaries(con: duckdb.DuckDBPyConnection, manufacturer_id: str, salt: str) -> pl.DataFrame:
    """De-identified case summaries per signal: age band, sex, onset, seriousness, outcome, own batch link.

    Only the signal product's own drug row of a case is read (a batch of another product is never named)."""
    rows = (
        install(con)
        .execute(
            f"""
        SELECT DISTINCT k.signal_id, k.case_id, k.received_on, k.onset_date, {AGE_BAND_SQL} AS age_band,
               coalesce(k.sex, 'unknown') AS sex, k.serious, array_to_string(k.seriousness, ', ') AS seriousness,
               coalesce(k.outcome, 'unknown') AS outcome, k.source,
               CASE WHEN b.product_id = k.product_id THEN k.batch_id END AS batch_id,
               CASE WHEN b.product_id = k.product_id THEN k.link_method ELSE 'product_only' END AS link_method
        FROM pv_signal_case(NULL) k
        LEFT JOIN batch b ON b.batch_id = k.batch_id
        WHERE k.signal_id IN ({_OWN_SIGNALS})
        ORDER BY k.signal_id, k.received_on, k.case_id
        """,
            {"mid": manufacturer_id},
        )
        .pl()
    )
    # several reactions with the same PT in one case give one row (earliest onset)
    rows = rows.sort("signal_id", "received_on", "case_id", "onset_date", nulls_last=True).unique(
        subset=["signal_id", "case_id"], keep="first", maintain_order=True
    )
    refs = [case_ref(salt, manufacturer_id, c) for c in rows["case_id"].to_list()]
    return rows.with_columns(pl.Series("case_ref", refs, dtype=pl.String)).drop("case_id")


_BATCH_COLUMNS = (
    "signal_id",
    "batch_id",
    "lot_number",
    "product_id",
    "site",
    "manufactured_on",
    "expiry_on",
    "released_on",
    "units_released",
    "recall_status",
    "implicated_by",
    "units_delivered",
    "regions",
    "pharmacies_reached",
    "first_delivery",
    "last_delivery",
    "linked_cases",
    "link_methods",
    "cases_per_10k_packs",
)


def _alert_batches_sql(one_manufacturer: bool) -> str:
    """Implicated batches of each manufacturer's own signals (the batch's manufacturer is the signal's, and the
    signal is one of :data:`_OWN_SIGNALS`'s), one manufacturer's (``$mid``) or every manufacturer's."""
    cols = ", ".join(f"b.{c}" for c in _BATCH_COLUMNS)
    return f"""
        SELECT b.manufacturer_id, {cols}
        FROM pv_signal_batch(NULL) b
        JOIN pv_signal s ON s.signal_id = b.signal_id AND s.manufacturer_id = b.manufacturer_id
        WHERE s.product_id IS NOT NULL AND (s.batch_id IS NULL OR s.batch_product_id = s.product_id)
        {"AND b.manufacturer_id = $mid" if one_manufacturer else ""}
        ORDER BY b.manufacturer_id, b.signal_id, b.linked_cases DESC, b.batch_id
        """


def alert_batches(con: duckdb.DuckDBPyConnection, manufacturer_id: str) -> pl.DataFrame:
    """Implicated batches per signal (read model ``pv_signal_batch``), the manufacturer's own only,
    with the batch record, deliveries and linked-case rate."""
    rows = install(con).execute(_alert_batches_sql(True), {"mid": manufacturer_id}).pl()
    return rows.drop("manufacturer_id")


def alert_batches_by_manufacturer(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """:func:`alert_batches` of every manufacturer from one query (the batch facts are computed once, not once
    per manufacturer: 0.8 s each on the 10x world), keyed by every manufacturer id of ``manufacturer`` (an
    empty frame for one with no implicated batch)."""
    rows = install(con).sql(_alert_batches_sql(False)).pl()
    parts = rows.partition_by("manufacturer_id", as_dict=True, maintain_order=True)
    empty = rows.clear().drop("manufacturer_id")
    return {
        mid: parts[(mid,)].drop("manufacturer_id") if (mid,) in parts else empty
        for (mid,) in con.sql("SELECT manufacturer_id FROM manufacturer").fetchall()
    }


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

"""Batch traceability record: what a regulator or a manufacturer asks about one batch.

Product, manufacturer, site, dates, units released / shipped / delivered, the regions and
pharmacies its packs reached, its supply route (EPCIS events in time order), its cold-chain
excursions, its recall status, and the case reports linked to it by link method.

One SQL text serves both readers: :func:`batch_traceability_record` (one batch, computed
fresh, for the dashboard and reports) and :func:`build_batch_traceability` (every batch,
materialised into the ``batch_traceability`` table with list/struct columns). Reports count
as in the statistics: the read model's counted cases (``pv_counted_case``,
:mod:`warehouse.queries.read_model`), every drug role, suspect/interacting ones flagged.
"""

from __future__ import annotations

import duckdb

from warehouse.queries.read_model import install

__all__ = ["BATCH_TRACEABILITY_SQL", "batch_traceability_record", "build_batch_traceability"]

# ``{only}`` restricts every part to one batch (``batch_id = $batch_id``) or to none (``TRUE``).
BATCH_TRACEABILITY_SQL = """
WITH
delivered AS (
    SELECT batch_id, sum(quantity) AS units_delivered, count(*) AS deliveries,
           count(DISTINCT patient_key) AS patients, min(delivered_at)::DATE AS first_delivery,
           max(delivered_at)::DATE AS last_delivery
    FROM delivery WHERE {only} GROUP BY batch_id
),
by_region AS (
    SELECT batch_id,
           list(struct_pack(region := region, country := country, units := units, deliveries := deliveries,
                            pharmacies := pharmacies) ORDER BY units DESC, region) AS regions,
           count(*) AS n_regions
    FROM (SELECT batch_id, region, any_value(country) AS country, sum(quantity) AS units, count(*) AS deliveries,
                 count(DISTINCT pharmacy_id) AS pharmacies
          FROM delivery WHERE {only} GROUP BY batch_id, region)
    GROUP BY batch_id
),
by_pharmacy AS (
    SELECT batch_id,
           list(struct_pack(pharmacy_id := pharmacy_id, region := region, units := units,
                            first_delivery := first_delivery, last_delivery := last_delivery)
                ORDER BY units DESC, pharmacy_id) AS pharmacies,
           count(*) AS n_pharmacies
    FROM (SELECT batch_id, pharmacy_id, any_value(region) AS region, sum(quantity) AS units,
                 min(delivered_at)::DATE AS first_delivery, max(delivered_at)::DATE AS last_delivery
          FROM delivery WHERE {only} GROUP BY batch_id, pharmacy_id)
    GROUP BY batch_id
),
route AS (
    SELECT batch_id,
           list(struct_pack(event_time := event_time, event_type := event_type, biz_step := biz_step,
                            disposition := disposition, role := role,
                            location := coalesce(biz_location, read_point),
                            source_location := source_location, destination_location := destination_location,
                            consignment_id := consignment_id, region := region, quantity := quantity,
                            min_temp_c := min_temp_c, max_temp_c := max_temp_c, event_id := epcis_event_id)
                ORDER BY event_time, event_id) AS route,
           sum(quantity) FILTER (WHERE biz_step = 'shipping' AND role IN ('object', 'child', 'output')) AS units_shipped,
           count(DISTINCT consignment_id) AS consignments
    FROM supply_event WHERE {only} GROUP BY batch_id
),
excursions AS (
    SELECT batch_id,
           list(struct_pack(event_id := event_id, event_time := event_time, biz_step := biz_step,
                            consignment_id := consignment_id, region := region, min_temp_c := min_temp_c,
                            max_temp_c := max_temp_c, storage_min_c := storage_min_c, storage_max_c := storage_max_c,
                            readings_out_of_range := readings_out_of_range,
                            first_out_of_range_at := first_out_of_range_at, peak_at := peak_at,
                            last_out_of_range_at := last_out_of_range_at, duration_minutes := duration_minutes)
                ORDER BY event_time, event_id) AS excursions,
           count(*) AS n_excursions, max(max_temp_c) AS max_excursion_temp_c
    FROM cold_chain_excursion WHERE {only} GROUP BY batch_id
),
linked AS (
    SELECT l.batch_id, l.method, c.case_id,
           bool_or(d.role IN ('suspect', 'interacting')) AS as_suspect
    FROM case_batch_link l
    JOIN pv_counted_case(NULL) c ON c.case_id = l.case_id AND c.version = l.version
    JOIN case_drug d ON d.case_id = l.case_id AND d.version = l.version AND d.drug_seq = l.drug_seq
    WHERE l.batch_id IS NOT NULL AND {only_l}
    GROUP BY ALL
),
by_method AS (
    SELECT batch_id,
           list(struct_pack(method := method, reports := reports, suspect_reports := suspect_reports,
                            case_ids := case_ids) ORDER BY method) AS linked_reports
    FROM (SELECT batch_id, method, count(*) AS reports, count(*) FILTER (WHERE as_suspect) AS suspect_reports,
                 list(case_id ORDER BY case_id) AS case_ids
          FROM linked GROUP BY batch_id, method)
    GROUP BY batch_id
),
cases AS (
    SELECT batch_id, count(DISTINCT case_id) AS linked_cases,
           count(DISTINCT case_id) FILTER (WHERE as_suspect) AS linked_suspect_cases
    FROM linked GROUP BY batch_id
)
SELECT b.batch_id, b.lot_number, b.product_id, p.name AS product_name, p.ingredient, p.form, p.strength,
       p.gtin, p.nmpa_drug_code, p.manufacturer_id, m.name AS manufacturer_name, b.site,
       b.manufactured_on, b.released_on, b.expiry_on, coalesce(b.recall_status, 'none') AS recall_status,
       p.storage_min_c, p.storage_max_c,
       b.units_released, r.units_shipped, coalesce(d.units_delivered, 0) AS units_delivered,
       coalesce(d.deliveries, 0) AS deliveries, coalesce(d.patients, 0) AS patients,
       d.first_delivery, d.last_delivery,
       coalesce(g.n_regions, 0) AS n_regions, coalesce(g.regions, []) AS regions,
       coalesce(ph.n_pharmacies, 0) AS n_pharmacies, coalesce(ph.pharmacies, []) AS pharmacies,
       coalesce(r.consignments, 0) AS consignments, coalesce(r.route, []) AS route,
       coalesce(x.n_excursions, 0) AS n_excursions, x.max_excursion_temp_c, coalesce(x.excursions, []) AS excursions,
       coalesce(k.linked_cases, 0) AS linked_cases, coalesce(k.linked_suspect_cases, 0) AS linked_suspect_cases,
       round(1e4 * k.linked_suspect_cases / nullif(d.units_delivered, 0), 2) AS suspect_cases_per_10k_packs,
       coalesce(bm.linked_reports, []) AS linked_reports
FROM batch b
JOIN product p USING (product_id)
LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
LEFT JOIN delivered d USING (batch_id)
LEFT JOIN by_region g USING (batch_id)
LEFT JOIN by_pharmacy ph USING (batch_id)
LEFT JOIN route r USING (batch_id)
LEFT JOIN excursions x USING (batch_id)
LEFT JOIN cases k USING (batch_id)
LEFT JOIN by_method bm USING (batch_id)
WHERE {only_b}
ORDER BY b.batch_id
"""


def _sql(batch_id: str | None) -> str:
    if batch_id is None:
        return BATCH_TRACEABILITY_SQL.format(only="TRUE", only_l="TRUE", only_b="TRUE")
    return BATCH_TRACEABILITY_SQL.format(
        only="batch_id = $batch_id", only_l="l.batch_id = $batch_id", only_b="b.batch_id = $batch_id"
    )


def batch_traceability_record(con: duckdb.DuckDBPyConnection, batch_id: str) -> dict:
    """The traceability record of one batch as a dict (lists of dicts for regions, pharmacies,
    route, excursions and linked reports). Raises ``KeyError`` for an unknown batch."""
    cur = install(con).execute(_sql(batch_id), {"batch_id": batch_id})
    row = cur.fetchone()
    if row is None:
        raise KeyError(f"unknown batch {batch_id!r}")
    return dict(zip([c[0] for c in cur.description], row))


def build_batch_traceability(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Replace ``batch_traceability`` with one row per batch; return summary counts."""
    install(con)
    con.execute("DELETE FROM batch_traceability")
    con.execute(f"INSERT INTO batch_traceability BY NAME ({_sql(None)})")
    (batches, delivered, with_excursions, recalled, with_cases) = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE units_delivered > 0), count(*) FILTER (WHERE n_excursions > 0), "
        "count(*) FILTER (WHERE recall_status <> 'none'), count(*) FILTER (WHERE linked_cases > 0) "
        "FROM batch_traceability"
    ).fetchone()
    return {
        "batches": batches,
        "batches_delivered": delivered,
        "batches_with_excursions": with_excursions,
        "batches_recalled_or_quarantined": recalled,
        "batches_with_linked_cases": with_cases,
    }

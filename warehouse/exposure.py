"""Exposure denominators from the delivery and medication logs.

Definitions (used in every report that quotes a rate):
- *packs delivered*: sum of ``delivery.quantity`` in the week (ISO week, Monday start) of
  ``delivered_at``; the primary denominator for batch rates ("per 10,000 packs delivered").
- *patients exposed*: distinct pseudonymous patients with a delivery in that week.
- *person-weeks*: patient-weeks of use as logged by patients: each medication-log week with
  at least one dose taken counts one person-week for the delivery's batch; weeks logged with
  no dose taken do not count. Deliveries with no log contribute packs but no person-time.
"""

from __future__ import annotations

import duckdb

EXPOSURE_WEEKLY_SQL = """
CREATE OR REPLACE TABLE exposure_weekly AS
WITH packs AS (
    SELECT product_id, batch_id, region, date_trunc('week', delivered_at::DATE) AS week,
           sum(quantity) AS packs_delivered, count(DISTINCT patient_key) AS patients_exposed
    FROM delivery GROUP BY ALL
),
use AS (
    SELECT d.product_id, d.batch_id, d.region, date_trunc('week', m.week_start) AS week,
           count(*) FILTER (WHERE m.doses_taken > 0) AS person_weeks
    FROM medication_log m JOIN delivery d USING (delivery_id)
    GROUP BY ALL
)
SELECT product_id, batch_id, region, week,
       coalesce(p.packs_delivered, 0)::BIGINT AS packs_delivered,
       coalesce(p.patients_exposed, 0)::BIGINT AS patients_exposed,
       coalesce(u.person_weeks, 0)::BIGINT AS person_weeks
FROM packs p FULL OUTER JOIN use u USING (product_id, batch_id, region, week)
ORDER BY product_id, batch_id, region, week
"""


def build_exposure(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """(Re)build ``exposure_weekly``: one row per product, batch, region and week."""
    con.execute(EXPOSURE_WEEKLY_SQL)
    rows, packs, person_weeks = con.sql(
        "SELECT count(*), coalesce(sum(packs_delivered), 0), coalesce(sum(person_weeks), 0) FROM exposure_weekly"
    ).fetchone()
    return {"rows": rows, "packs_delivered": int(packs), "person_weeks": int(person_weeks)}

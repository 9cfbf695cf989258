"""Exposure denominators from the delivery and medication logs.

Definitions (used in every report that quotes a rate):
- *packs delivered*: sum of ``delivery.quantity`` in the week (ISO week, Monday start) of
  ``delivered_at``; the primary denominator for batch rates ("per 10,000 packs delivered").
- *patients exposed*: distinct pseudonymous patients with a delivery in that week.
- *person-weeks*: patient-weeks of use as logged by patients: each medication-log week with
  at least one dose taken counts one person-week for the delivery's batch; weeks logged with
  no dose taken do not count. Deliveries with no log contribute packs but no person-time.
- *week*: the Monday (a DATE) of the ISO week of the delivery's UTC date (``delivered_at`` is a
  timestamp with offset; taking the UTC date makes the week independent of the session time
  zone of whoever runs the query).

Exposure window used by the batch statistics (``warehouse.queries.batch_inputs``,
``signals.baseline``): a delivered pack is *at risk* from its delivery onwards, with no end —
a report is attributed to the batch of the pack the patient received, however long after
delivery it came; so a batch's exposure is simply its packs delivered (by the data lock point,
or by each weekly look).  For sequential looks, a pack delivered ``k`` weeks before the look
counts with weight ``F(k)``, the share of reports received within ``k`` weeks of the start
date (reporting-delay adjustment, ``signals.baseline.reported_exposure``).  Person-weeks
are kept for rates per time on treatment, but the batch tests use packs: every pack delivered
is known, whereas medication logs cover only patients who log.
"""

from __future__ import annotations

import duckdb

EXPOSURE_WEEKLY_SQL = """
CREATE OR REPLACE TABLE exposure_weekly AS
WITH packs AS (
    SELECT product_id, batch_id, region, date_trunc('week', (delivered_at AT TIME ZONE 'UTC')::DATE)::DATE AS week,
           sum(quantity) AS packs_delivered, count(DISTINCT patient_key) AS patients_exposed
    FROM delivery GROUP BY ALL
),
use AS (
    SELECT d.product_id, d.batch_id, d.region, date_trunc('week', m.week_start)::DATE AS week,
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

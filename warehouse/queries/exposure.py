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
import ibis

from warehouse.engine.engines import DuckDBEngine, Engine

#: The warehouse tables :func:`exposure_weekly` reads (what a Spark engine must be given).
EXPOSURE_TABLES = ("delivery", "medication_log")

_KEYS = ["product_id", "batch_id", "region", "week"]


def exposure_weekly(engine: Engine) -> ibis.Table:
    """One row per product, batch, region and week: packs delivered, patients exposed, person-weeks
    (definitions above), sorted by the keys. The engine computes in UTC, so ``delivered_at``'s date
    is its UTC date whatever the session; weeks are ``truncate("W")`` (Monday) on both engines."""
    d = engine.table("delivery")
    week = d.delivered_at.date().truncate("W")
    packs = d.group_by(d.product_id, d.batch_id, d.region, week=week).aggregate(
        packs_delivered=d.quantity.sum(), patients_exposed=d.patient_key.nunique()
    )
    m = engine.table("medication_log").select("delivery_id", "week_start", "doses_taken")
    j = m.join(d.select("delivery_id", "product_id", "batch_id", "region"), "delivery_id")
    use = j.group_by(j.product_id, j.batch_id, j.region, week=j.week_start.truncate("W")).aggregate(
        person_weeks=j.count(where=j.doses_taken > 0)
    )
    use = use.rename({f"{k}_u": k for k in _KEYS})
    both = packs.outer_join(use, [packs[k] == use[f"{k}_u"] for k in _KEYS])
    return both.select(
        **{k: ibis.coalesce(both[k], both[f"{k}_u"]) for k in _KEYS},
        packs_delivered=both.packs_delivered.fill_null(0).cast("int64"),
        patients_exposed=both.patients_exposed.fill_null(0).cast("int64"),
        person_weeks=both.person_weeks.fill_null(0).cast("int64"),
    ).order_by(_KEYS)


def build_exposure(con: duckdb.DuckDBPyConnection, engine: Engine | None = None) -> dict[str, int]:
    """(Re)build ``exposure_weekly`` in the warehouse: one row per product, batch, region and week,
    computed by ``engine`` (given :data:`EXPOSURE_TABLES`), else by DuckDB on ``con``."""
    (engine or DuckDBEngine(con)).store("exposure_weekly", exposure_weekly, con, "exposure_weekly", EXPOSURE_TABLES)
    rows, packs, person_weeks = con.sql(
        "SELECT count(*), coalesce(sum(packs_delivered), 0), coalesce(sum(person_weeks), 0) FROM exposure_weekly"
    ).fetchone()
    return {"rows": rows, "packs_delivered": int(packs), "person_weeks": int(person_weeks)}

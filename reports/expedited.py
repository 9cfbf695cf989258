"""The expedited-reporting clock: for each serious case, its due date under a jurisdiction's rule and whether it is overdue.

Day 0 is the date the case was first received (its first version's ``received_on``: PV Trace treats
a received case as meeting the minimum criteria — reporter, patient, reaction, product). The due
date is day 0 + the jurisdiction's days (0 for "immediately"). The clock is read *at the data lock
point*: PV Trace keeps no record of submissions made outside it, so a case whose due date has
passed at the DLP is flagged ``overdue`` unless it is listed as submitted; the report says so. A
monthly E2B batch file is, by construction, too late for a 15-day clock for most of the month's
cases: the clock makes that visible instead of hiding it.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import polars as pl

from reports.jurisdictions import Jurisdiction

CLOCK_COLUMNS = [
    "jurisdiction",
    "case_id",
    "country",
    "day0",
    "fatal",
    "seriousness",
    "outcome",
    "products",
    "lots",
    "reactions",
    "days_allowed",
    "due_date",
    "days_left_at_dlp",
    "status",
    "rule",
]


def expedited_clock(
    cases: pl.DataFrame, jurisdiction: Jurisdiction, dlp: dt.date, submitted: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """Rows of :data:`CLOCK_COLUMNS`, sorted by due date then case id.

    ``cases`` is :func:`warehouse.queries.report_queries.expedited_cases`. ``status`` is ``submitted``,
    ``overdue`` (due date before the DLP, not submitted), ``due today`` or ``due`` (still open).
    Cases without an individual clock under the rule (e.g. non-serious in the US) are left out.
    """
    rows = []
    for c in cases.sort("initial_received", "case_id").to_dicts():
        days = jurisdiction.clock.days_for(bool(c["fatal"]), True)
        if days is None:
            continue
        due = c["initial_received"] + dt.timedelta(days=days)
        left = (due - dlp).days
        status = (
            "submitted" if c["case_id"] in submitted else "overdue" if left < 0 else "due today" if left == 0 else "due"
        )
        rows.append(
            {
                "jurisdiction": jurisdiction.code.upper(),
                "case_id": c["case_id"],
                "country": c["country"],
                "day0": c["initial_received"],
                "fatal": bool(c["fatal"]),
                "seriousness": c["seriousness"] or "",
                "outcome": c["outcome"],
                "products": c["products"],
                "lots": c["lots"] or "",
                "reactions": c["reactions"],
                "days_allowed": days,
                "due_date": due,
                "days_left_at_dlp": left,
                "status": status,
                "rule": "fatal" if c["fatal"] and days != jurisdiction.clock.serious_days else "serious",
            }
        )
    schema = {
        "jurisdiction": pl.String,
        "case_id": pl.String,
        "country": pl.String,
        "day0": pl.Date,
        "fatal": pl.Boolean,
        "seriousness": pl.String,
        "outcome": pl.String,
        "products": pl.String,
        "lots": pl.String,
        "reactions": pl.String,
        "days_allowed": pl.Int64,
        "due_date": pl.Date,
        "days_left_at_dlp": pl.Int64,
        "status": pl.String,
        "rule": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("due_date", "case_id")


def write_clock_csv(clock: pl.DataFrame, path: Path) -> Path:
    """The clock as a CSV table (UTF-8, ISO dates, one row per case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CLOCK_COLUMNS)
        for row in clock.iter_rows(named=True):
            w.writerow(
                [
                    row[c].isoformat()
                    if isinstance(row[c], dt.date)
                    else ("true" if row[c] is True else "false" if row[c] is False else row[c])
                    for c in CLOCK_COLUMNS
                ]
            )
    return path

"""One UTC day of deliveries and case versions from the inbox, by the warehouse loaders' own rules.

A daily partition of the lake (``assets/lake.py``) lands the rows of its days — deliveries by the
UTC day of ``delivered_at``, case versions by ``received_on`` — and accounts for every input row
of those days: loaded, or quarantined with its reason. The rules are the warehouse loaders', called
here, not copied:

* **deliveries**: :func:`warehouse.inputs.platform.deliveries.load_deliveries` runs on the
  warehouse connection inside a transaction that is **rolled back** (the warehouse is left as it
  was); the rows of the days are read from its ``delivery`` and ``quarantine`` tables before the
  rollback. Its rules that cross days — a ``delivery_id`` re-sent (the last one wins), the same pack
  dispensed twice (the first delivery stands), a batch's deliveries past its released units (greedy
  in delivery order) — therefore see the whole inbox, exactly as in the warehouse: a day landed
  here is the warehouse's load restricted to that day, and landing every day equals landing the
  warehouse's whole table (the tests check it).
* **case versions**: the loader's reader :func:`warehouse.inputs.platform.cases.read_case_files`
  (parse, field and plausibility rules per line, bad lines quarantined with their line number),
  then the inbox's "last line wins" per ``(case_id, version)``
  (:func:`warehouse.inputs.inbox.dedupe_last_wins`, the rule ``load_cases`` applies); patients are
  pseudonymised with the warehouse's salt.

Which day a row belongs to: its own date (``delivered_at`` as the loader casts it, in UTC;
``received_on``). A row that has none — a malformed line, a timestamp that does not parse, a case
line that is not JSON — belongs to the first day of its file (the earliest dated row of the same
file: a daily feed's file holds one day), or, in a file with no dated row, to the inbox's first day.
So every row read is in exactly one day; a file rejected whole (empty, no header) has no row and is
reported by the warehouse's manifest, not here.

Cost: the inbox is read (and deliveries resolved) whole for each landing, as the warehouse loaders
do; a backfill lands its whole range from one read (``assets/lake.py`` runs a range as one run).
Resolving only the new day's rows against the state of the earlier days (the packs already
dispensed, each batch's units delivered so far) is what would make a day's landing cost a day's
rows; it needs the loader to take that state as an input, which it does not today.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import dedupe_last_wins, quarantine_frame, superseded_rows
from warehouse.inputs.platform.cases import read_case_files
from warehouse.inputs.platform.deliveries import DELIVERY_COLUMNS, load_deliveries
from warehouse.pseudonym import pseudonymise

__all__ = ["DayRows", "case_version_days", "delivery_days"]

_DELIVERED_AT = DELIVERY_COLUMNS.index("delivered_at")


@dataclass(frozen=True)
class DayRows:
    """The rows of some days: ``loaded`` (the lake's columns) and ``quarantined`` (with ``day``),
    and ``read`` = rows read per day over the whole inbox (loaded + quarantined, every day)."""

    loaded: pl.DataFrame
    quarantined: pl.DataFrame
    read: dict[dt.date, int]

    def accounted(self, day: dt.date) -> tuple[int, int, int]:
        """(read, loaded, quarantined) of one day; read = loaded + quarantined by construction."""
        loaded = int((self.loaded["_day"] == day).sum()) if self.loaded.height else 0
        quarantined = int((self.quarantined["day"] == day).sum()) if self.quarantined.height else 0
        return self.read.get(day, 0), loaded, quarantined


def _date_undated(frame: pl.DataFrame, dated_first: pl.DataFrame) -> pl.DataFrame:
    """``day`` for the rows without one: the first day of their file, else the inbox's first day."""
    first_overall = dated_first["first_day"].min() if dated_first.height else None
    return (
        frame.join(dated_first, on="source_file", how="left")
        .with_columns(pl.coalesce("day", "first_day", pl.lit(first_overall, dtype=pl.Date)).alias("day"))
        .drop("first_day")
    )


def _raw_delivered_at(raw: str | None) -> str | None:
    """The ``delivered_at`` text of a redacted raw delivery row (a CSV line of DELIVERY_COLUMNS)."""
    if raw is None:
        return None
    fields = next(csv.reader([raw]), [])
    return fields[_DELIVERED_AT] if len(fields) == len(DELIVERY_COLUMNS) else None


def delivery_days(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str, days: list[dt.date]) -> DayRows:
    """The deliveries of ``days`` as the warehouse loader resolves them (module doc), from ``con``
    (the warehouse, with its reference data and packs loaded; left unchanged)."""
    days = sorted(set(days))
    con.execute("BEGIN TRANSACTION")
    try:
        load_deliveries(con, inbox, salt)
        loaded = con.execute(
            "SELECT delivery_id, delivered_at, pack_code, batch_id, product_id, patient_key, region, quantity::BIGINT "
            "AS quantity, (delivered_at AT TIME ZONE 'UTC')::DATE AS _day FROM delivery "
            "WHERE (delivered_at AT TIME ZONE 'UTC')::DATE IN $days ORDER BY delivered_at, delivery_id",
            {"days": days},
        ).pl()
        per_day = con.sql(
            "SELECT source_file, (delivered_at AT TIME ZONE 'UTC')::DATE AS day, count(*) AS n FROM delivery GROUP BY ALL"
        ).pl()
        # rows the loader quarantined: a few per file (bad rows), dated by their own timestamp when it parses
        quarantined = con.sql(
            "SELECT source_file, line, record_key, reason, detail, raw FROM quarantine WHERE stage = 'deliveries' "
            "AND NOT starts_with(coalesce(detail, ''), 'whole file:') ORDER BY source_file, line"
        ).pl()
        texts = pl.DataFrame(
            {"_t": [_raw_delivered_at(r) for r in quarantined["raw"]]}, schema={"_t": pl.String}
        ).to_arrow()
        con.register("_q_at", texts)
        q_day = con.sql("SELECT (try_cast(_t AS TIMESTAMPTZ) AT TIME ZONE 'UTC')::DATE AS day FROM _q_at").pl()
        con.unregister("_q_at")
        rows_read = con.sql(
            "SELECT coalesce(sum(rows_read), 0) FROM load_manifest WHERE kind = 'deliveries'"
        ).fetchone()[0]
    finally:
        con.execute("ROLLBACK")
    quarantined = quarantined.with_columns(q_day["day"])
    first = pl.concat(
        [
            per_day.select("source_file", "day"),
            quarantined.filter(pl.col("day").is_not_null()).select("source_file", "day"),
        ]
    )
    quarantined = _date_undated(quarantined, first.group_by("source_file").agg(pl.col("day").min().alias("first_day")))
    read = _per_day(per_day, quarantined)
    _check_accounted("deliveries", read, int(rows_read))
    return DayRows(
        loaded=loaded,
        quarantined=quarantined.filter(pl.col("day").is_in(days)).select("day", *quarantine_frame([]).columns),
        read=read,
    )


def _check_accounted(what: str, read: dict, rows_read: int) -> None:
    """Every row the loader read is in exactly one day (loaded or quarantined): else a clear error."""
    undated = read.get(None, 0)
    if undated or sum(read.values()) != rows_read:
        raise ValueError(
            f"{what}: {rows_read} rows read by the loader, {sum(read.values())} assigned to a day ({undated} without one)"
        )


def _per_day(loaded_per_day: pl.DataFrame, quarantined: pl.DataFrame) -> dict[dt.date, int]:
    counts = pl.concat(
        [
            loaded_per_day.select("day", pl.col("n").cast(pl.Int64)),
            quarantined.group_by("day").len("n").cast({"n": pl.Int64}),
        ]
    )
    return {d: int(n) for d, n in counts.group_by("day").agg(pl.col("n").sum()).iter_rows()}


def case_version_days(inbox: Path, salt: str, days: list[dt.date]) -> DayRows:
    """The case versions received on ``days``, by the case loader's reader and its last-line-wins rule (module doc)."""
    days = sorted(set(days))
    cases, _drugs, _reactions, rejected, _files, accounts = read_case_files(inbox, salt)
    kept, superseded = dedupe_last_wins(cases, ["case_id", "version"])
    quarantined = pl.concat(
        [
            rejected.with_columns(pl.lit(None, dtype=pl.Date).alias("day")),
            superseded_rows(superseded, "case_id", "source_file", "_line").with_columns(
                pl.format("{} v{}", superseded["case_id"], superseded["version"]).alias("record_key"),
                superseded["received_on"].alias("day"),
            ),
        ]
    ).filter(~pl.col("detail").fill_null("").str.starts_with("whole file"))
    dated = cases.select("source_file", pl.col("received_on").alias("day"))
    quarantined = _date_undated(quarantined, dated.group_by("source_file").agg(pl.col("day").min().alias("first_day")))
    per_day = kept.group_by(pl.col("received_on").alias("day")).len("n").with_columns(pl.lit("").alias("source_file"))
    loaded = kept.filter(pl.col("received_on").is_in(days)).select(
        "case_id",
        pl.col("version").cast(pl.Int64),
        "received_on",
        pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"),
        # the inbox format has no nullification of a case: every version stands until a later one
        pl.lit(False).alias("nullified"),
        pl.col("received_on").alias("_day"),
    )
    read = _per_day(per_day, quarantined)
    _check_accounted("cases", read, sum(a.rows_read for a in accounts))
    return DayRows(
        loaded=loaded,
        quarantined=quarantined.filter(pl.col("day").is_in(days)).select("day", *quarantine_frame([]).columns),
        read=read,
    )

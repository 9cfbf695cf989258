"""PV Trace's inputs at scale: Delta tables partitioned for incremental, idempotent updates.

Tables under one root (each a Delta table, :mod:`warehouse.lake.delta`):

=================  =========================  ==============================================================
table              partitioned by             rows
=================  =========================  ==============================================================
``deliveries``     ``delivered_on`` (UTC day)  one per delivery (the warehouse's ``delivery`` columns)
``packs``          ``code_bucket``,            one per pack code; bucket = :mod:`warehouse.lake.buckets` of it;
                   ``commissioned_in``         period (UTC day by default) of ``commissioned_at``
``case_versions``  ``case_bucket``             one per (case_id, version); bucket of the case id
``delivery_daily`` ``day``                     packs and deliveries per product, batch, region, day — additive
``exposure_weekly````week`` (Monday)           packs delivered and distinct patients per product, batch,
                                               region, ISO week (``warehouse.queries.exposure``'s definitions)
``case_latest``    ``case_bucket``             the latest version of every case
``<stage>_``       ``day``                     what a daily landing (:mod:`warehouse.lake.daily`) quarantined,
``quarantine``                                 stage ``deliveries`` or ``cases``, with the warehouse's reasons
=================  =========================  ==============================================================

Packs: a day's newly commissioned codes fall in every code bucket, so bucketing by code alone
would rewrite the whole table every day; partitioned by bucket *and* commissioning period they add
new partitions (a period already present is merged: the current month, for ``pack_period="month"``),
and a lookup by code (:meth:`Lake.lookup_packs`) still prunes to its bucket (the first partition
column). A code sent again with another commissioning period lands in another partition: like a
delivery moved to another day, it must be landed as a replacement of both.

Daily landing (``days=`` of :meth:`Lake.land_deliveries` / :meth:`Lake.land_case_versions`, used
by the Dagster daily partitions): the rows of those days *replace* what the lake held for them.

Incremental update (:meth:`Lake.land_deliveries`, :meth:`Lake.land_packs`,
:meth:`Lake.land_case_versions`): new rows are merged into the partitions they touch — the
existing rows of those partitions plus the new ones, a row with the same natural key
(``delivery_id``; ``pack_code``; ``case_id, version``) replaced by the newer — and only those
partitions are rewritten (Delta overwrite by predicate). Then the derived tables of the affected
partitions are recomputed:

* *additive* counts are merged: ``delivery_daily`` is recomputed only for the days landed, and a
  week's ``packs_delivered`` is the sum of its days' daily counts (the other days are not read);
* *non-additive* figures are recomputed from the raw rows of the affected partition:
  ``patients_exposed`` (distinct patients) from the week's delivery partitions, and
  ``case_latest`` (the latest version of each case) per affected case bucket.

A row's partition is part of its identity: a correction that moves a delivery to another UTC
day would leave the old row in its old day (the merge reads only the partitions landed); such a
correction must be landed as a replacement of both days' rows. Re-landing the same rows changes nothing (idempotent); :meth:`Lake.rebuild` recomputes every
derived partition from the raw tables, and the tests check it equals the incremental result.
Not here: duplicate detection (``warehouse.linkage``: candidate pairs cross any partitioning by
case; at scale they would be blocked by patient key), person-weeks from medication logs.

The landing runs on DuckDB over the Arrow datasets of the snapshots (one machine, bounded by the
partitions touched); Spark reads the same tables with :func:`warehouse.lake.delta.spark_read`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from warehouse.lake import delta
from warehouse.lake.buckets import bucket_of, duckdb_bucket

__all__ = ["Lake", "Landed"]

DELIVERY_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("delivered_at", pa.timestamp("us", tz="UTC")),
        ("pack_code", pa.string()),
        ("batch_id", pa.string()),
        ("product_id", pa.string()),
        ("patient_key", pa.string()),
        ("region", pa.string()),
        ("quantity", pa.int64()),
    ]
)
PACK_SCHEMA = pa.schema(
    [
        ("pack_code", pa.string()),
        ("code_system", pa.string()),
        ("batch_id", pa.string()),
        ("gtin", pa.string()),
        ("commissioned_at", pa.timestamp("us", tz="UTC")),
    ]
)
#: the packs' second partition level, the commissioning period ("day" at national scale, "month"
#: for a small lake; None: by code bucket alone, where every landing rewrites each bucket it touches)
PACK_PERIODS = ("day", "week", "month", None)
CASE_SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("version", pa.int64()),
        ("received_on", pa.date32()),
        ("patient_key", pa.string()),
        ("nullified", pa.bool_()),
    ]
)


#: the daily landings' quarantine tables: ``deliveries_quarantine`` and ``cases_quarantine``, by day
QUARANTINE_STAGES = ("deliveries", "cases")
QUARANTINE_SCHEMA = pa.schema(
    [
        ("day", pa.date32()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("record_key", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
    ]
)


@dataclass(frozen=True)
class Landed:
    """What one landing call did: rows received, partitions rewritten per table."""

    rows: int
    partitions: dict[str, int]


def _within(found: list, days: list | None, what: str) -> list:
    """The partitions to write: ``found`` (those the rows touch), or ``days`` when given, which must
    hold every row's day (a daily partition's landing writes its own days only)."""
    if days is None:
        return found
    days = sorted(set(days))
    outside = sorted(set(found) - set(days))
    if outside:
        raise ValueError(f"{what}: row(s) of day(s) {[str(d) for d in outside[:5]]} outside the days landed")
    return days


def _typed(rows, schema: pa.Schema, what: str) -> pa.Table:
    table = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")
    table = table.select(schema.names)
    try:
        table = table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{what}: a column does not have the expected type: {exc}") from exc
    for name in schema.names[:1]:  # the natural key's first column may not be null
        if table[name].null_count:
            raise ValueError(f"{what}: {table[name].null_count} row(s) without {name}")
    return table


class Lake:
    """The lake under ``root``: ``pack_buckets`` / ``case_buckets`` hash buckets (fixed for a lake's life)."""

    def __init__(
        self, root: str | Path, pack_buckets: int = 64, case_buckets: int = 64, pack_period: str | None = "day"
    ):
        if pack_period not in PACK_PERIODS:
            raise ValueError(f"pack_period must be one of {PACK_PERIODS}, got {pack_period!r}")
        self.root = Path(root)
        self.pack_buckets = pack_buckets
        self.case_buckets = case_buckets
        self.pack_period = pack_period
        self.root.mkdir(parents=True, exist_ok=True)

    def uri(self, table: str) -> str:
        return str(self.root / table)

    # ---- reading ----------------------------------------------------------------------------
    def read(self, table: str, where: str = "") -> pl.DataFrame:
        """The current snapshot of ``table`` (optionally filtered by a DuckDB ``where``), sorted."""
        if not delta.exists(self.uri(table)):
            raise ValueError(f"the lake has no table {table!r} yet")
        con = self._con({table: table})
        return con.sql(f"SELECT * FROM {table} {('WHERE ' + where) if where else ''} ORDER BY ALL").pl()

    def _con(self, tables: dict[str, str], partitions: dict[str, dict] | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with ``tables`` ({name: lake table}) registered; ``partitions``
        ({name: {partition column: values}}) limits a table to the files of those partitions."""
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            if delta.exists(self.uri(table)):
                con.register(name, delta.dataset(self.uri(table), (partitions or {}).get(name)))
        return con

    # ---- deliveries -------------------------------------------------------------------------
    def land_deliveries(self, rows: pa.Table | pl.DataFrame, days: list[dt.date] | None = None) -> Landed:
        """Merge deliveries into their days' partitions, then refresh the derived counts of those days/weeks.

        With ``days`` (a daily partition's landing): the partitions of ``days`` are *replaced* by
        ``rows`` (every row must lie in one of them; a day without rows is emptied), so landing a
        day again with the same rows changes nothing and a row the inbox no longer loads leaves."""
        new = _typed(rows, DELIVERY_SCHEMA, "deliveries")
        con = self._con({})
        con.register("new", new)
        con.execute(
            "CREATE TEMP TABLE landed AS SELECT *, (delivered_at AT TIME ZONE 'UTC')::DATE AS delivered_on FROM new"
        )
        found = [r[0] for r in con.sql("SELECT DISTINCT delivered_on FROM landed ORDER BY 1").fetchall()]
        replace = days is not None
        days = _within(found, days, "deliveries")
        if not days:
            return Landed(0, {})
        merged = self._merge(con, "deliveries", "landed", "delivered_on", days, ["delivery_id"], keep_old=not replace)
        delta.write_partitions(self.uri("deliveries"), merged, "delivered_on", days)
        return Landed(new.num_rows, {"deliveries": len(days), **self._refresh_counts(days)})

    def _merge(
        self,
        con,
        table: str,
        landed: str,
        part: str,
        values: list,
        key: list[str],
        keep_old: bool | str = True,
        params: dict | None = None,
        prune: dict[str, list] | None = None,
    ) -> pa.Table:
        """Existing rows of ``table``'s partitions ``values`` plus the landed rows; per natural key
        the landed row wins (the last one of the landed rows, if the key repeats within them).
        ``keep_old``: False keeps none of the existing rows (the partitions are replaced); a SQL
        predicate keeps only the existing rows matching it (its named ``params`` bound). Only the
        files of partitions ``part IN values`` (and ``prune``, {partition column: values}) are read."""
        cols = ", ".join(f'"{c}"' for c in con.sql(f"SELECT * FROM {landed} LIMIT 0").columns)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _landed_pos AS SELECT {cols}, 1 AS _src, row_number() OVER () AS _pos "
            f"FROM {landed}"
        )
        union, bound = "SELECT * FROM _landed_pos", {}
        if keep_old is not False and delta.exists(self.uri(table)):
            con.register("_old", delta.dataset(self.uri(table), {part: values, **(prune or {})}))
            also = f" AND ({keep_old})" if isinstance(keep_old, str) else ""
            union = f"SELECT {cols}, 0 AS _src, 0 AS _pos FROM _old WHERE {part} IN $values{also} UNION ALL {union}"
            bound = {"values": values, **(params or {})}
        keys = ", ".join(key)
        return con.execute(
            f"SELECT {cols} FROM ({union}) "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _src DESC, _pos DESC) = 1 ORDER BY {part}, {keys}",
            bound or None,
        ).to_arrow_table()

    def _refresh_counts(self, days: list[dt.date]) -> dict[str, int]:
        """delivery_daily for ``days`` (from their delivery partitions), then exposure_weekly for
        their weeks: packs summed from the daily counts (additive), distinct patients recounted
        from the week's delivery partitions (not additive)."""
        con = self._con({"deliveries": "deliveries"}, {"deliveries": {"delivered_on": days}})
        daily = con.execute(
            "SELECT product_id, batch_id, region, delivered_on AS day, sum(quantity)::BIGINT AS packs_delivered, "
            "count(*)::BIGINT AS deliveries FROM deliveries WHERE delivered_on IN ? GROUP BY ALL ORDER BY ALL",
            [days],
        ).to_arrow_table()
        delta.write_partitions(self.uri("delivery_daily"), daily, "day", days)
        weeks = sorted({d - dt.timedelta(days=d.weekday()) for d in days})
        week_days = [w + dt.timedelta(days=i) for w in weeks for i in range(7)]
        con = self._con(
            {"deliveries": "deliveries", "daily": "delivery_daily"},
            {"deliveries": {"delivered_on": week_days}, "daily": {"day": week_days}},
        )
        weekly = con.execute(
            """
            WITH packs AS (  -- additive: the week's daily counts
                SELECT product_id, batch_id, region, date_trunc('week', day)::DATE AS week,
                       sum(packs_delivered)::BIGINT AS packs_delivered
                FROM daily WHERE day IN $days GROUP BY ALL
            ), patients AS (  -- not additive: distinct patients over the week's deliveries
                SELECT product_id, batch_id, region, date_trunc('week', delivered_on)::DATE AS week,
                       count(DISTINCT patient_key)::BIGINT AS patients_exposed
                FROM deliveries WHERE delivered_on IN $days GROUP BY ALL
            )
            SELECT p.product_id, p.batch_id, p.region, p.week, p.packs_delivered, q.patients_exposed
            FROM packs p JOIN patients q ON p.product_id = q.product_id AND p.batch_id = q.batch_id
             AND p.region IS NOT DISTINCT FROM q.region AND p.week = q.week
            ORDER BY ALL
            """,
            {"days": week_days},
        ).to_arrow_table()
        delta.write_partitions(self.uri("exposure_weekly"), weekly, "week", weeks)
        return {"delivery_daily": len(days), "exposure_weekly": len(weeks)}

    # ---- packs ------------------------------------------------------------------------------
    def land_packs(self, rows: pa.Table | pl.DataFrame) -> Landed:
        """Merge pack codes into their (code bucket, commissioning period) partitions: a day's new
        codes write new partitions (or the current period's), never the whole table; a code sent
        again with the same commissioning period replaces its row (re-landing changes nothing)."""
        new = _typed(rows, PACK_SCHEMA, "packs")
        if new["commissioned_at"].null_count:
            raise ValueError(f"packs: {new['commissioned_at'].null_count} row(s) without commissioned_at")
        con = self._con({})
        con.register("new", new)
        period = (
            f", date_trunc('{self.pack_period}', commissioned_at AT TIME ZONE 'UTC')::DATE AS commissioned_in"
            if self.pack_period
            else ""
        )
        con.execute(
            f"CREATE TEMP TABLE landed AS SELECT *, {duckdb_bucket('pack_code', self.pack_buckets)} AS code_bucket"
            f"{period} FROM new"
        )
        cols = self.pack_partitioning
        values = [[r[0] for r in con.sql(f"SELECT DISTINCT {c} FROM landed ORDER BY 1").fetchall()] for c in cols]
        if not values[0]:
            return Landed(0, {})
        # the partitions written: every (bucket, period) pair of the landed buckets and periods (a day's
        # codes: every bucket × that day); their existing rows are read by partition pruning and merged
        merged = self._merge(
            con,
            "packs",
            "landed",
            "code_bucket",
            values[0],
            ["pack_code"],
            "commissioned_in IN $periods" if len(cols) > 1 else True,
            {"periods": values[1]} if len(cols) > 1 else None,
            {"commissioned_in": values[1]} if len(cols) > 1 else None,
        )
        delta.write_partitions(self.uri("packs"), merged, cols, values)
        return Landed(new.num_rows, {"packs": len(values[0]) * (len(values[1]) if len(cols) > 1 else 1)})

    @property
    def pack_partitioning(self) -> list[str]:
        return ["code_bucket", "commissioned_in"] if self.pack_period else ["code_bucket"]

    def lookup_packs(self, codes: list[str]) -> pl.DataFrame:
        """The packs of ``codes``: only the partitions of the codes' buckets are read (every
        commissioning period of those buckets; the bucket is the first partition column)."""
        if not delta.exists(self.uri("packs")):
            raise ValueError("the lake has no table 'packs' yet")
        keys = pl.Series("pack_code", codes, dtype=pl.String)
        buckets = sorted(set(bucket_of(keys, self.pack_buckets).to_list())) or [-1]
        con = self._con({"packs": "packs"}, {"packs": {"code_bucket": buckets}})
        con.register("_codes", keys.to_frame().to_arrow())
        return con.execute(
            "SELECT * FROM packs WHERE code_bucket IN $buckets AND pack_code IN (SELECT pack_code FROM _codes) "
            "ORDER BY pack_code",
            {"buckets": buckets},
        ).pl()

    # ---- case versions ----------------------------------------------------------------------
    def land_case_versions(self, rows: pa.Table | pl.DataFrame, days: list[dt.date] | None = None) -> Landed:
        """Merge case versions into their case buckets, then recompute the latest version of
        every case of those buckets (a new version of an old case changes its latest row).

        With ``days`` (a daily partition's landing, by ``received_on``): the versions received on
        ``days`` are *replaced* by ``rows`` (every row must be received on one of them) in every
        bucket that holds or receives one, so re-landing a day changes nothing and a version the
        inbox no longer loads leaves; versions received on other days are kept."""
        new = _typed(rows, CASE_SCHEMA, "case versions")
        con = self._con({})
        con.register("new", new)
        con.execute(
            f"CREATE TEMP TABLE landed AS SELECT *, {duckdb_bucket('case_id', self.case_buckets)} AS case_bucket FROM new"
        )
        buckets = [r[0] for r in con.sql("SELECT DISTINCT case_bucket FROM landed ORDER BY 1").fetchall()]
        keep_old: bool | str = True
        if days is not None:
            found = [r[0] for r in con.sql("SELECT DISTINCT received_on FROM landed ORDER BY 1").fetchall()]
            days = _within(found, days, "case versions")
            keep_old = "received_on IS NULL OR received_on NOT IN $days"
            if delta.exists(self.uri("case_versions")):  # the buckets that held a version of those days
                old = self._con({"versions": "case_versions"})
                held = old.execute("SELECT DISTINCT case_bucket FROM versions WHERE received_on IN ?", [days])
                buckets = sorted({*buckets, *(r[0] for r in held.fetchall())})
        if not buckets:
            return Landed(0, {})
        merged = self._merge(
            con,
            "case_versions",
            "landed",
            "case_bucket",
            buckets,
            ["case_id", "version"],
            keep_old,
            {"days": days} if days is not None else None,
        )
        delta.write_partitions(self.uri("case_versions"), merged, "case_bucket", buckets)
        return Landed(new.num_rows, {"case_versions": len(buckets), **self._refresh_latest(buckets)})

    # ---- quarantine of a daily landing ------------------------------------------------------------
    def land_quarantine(self, stage: str, rows: pa.Table | pl.DataFrame, days: list[dt.date]) -> Landed:
        """Replace the quarantined rows of ``days`` in ``<stage>_quarantine`` (partitioned by ``day``):
        what a daily landing did not load, with the reason (redacted raw rows, as in the warehouse)."""
        if stage not in QUARANTINE_STAGES:
            raise ValueError(f"stage must be one of {QUARANTINE_STAGES}, got {stage!r}")
        table = _typed(rows, QUARANTINE_SCHEMA, f"{stage} quarantine") if len(rows) else QUARANTINE_SCHEMA.empty_table()
        days = _within(sorted(set(table["day"].to_pylist())), days, f"{stage} quarantine")
        if days:
            delta.write_partitions(self.uri(f"{stage}_quarantine"), table, "day", days)
        return Landed(table.num_rows, {f"{stage}_quarantine": len(days)})

    def _refresh_latest(self, buckets: list[int]) -> dict[str, int]:
        con = self._con({"versions": "case_versions"}, {"versions": {"case_bucket": buckets}})
        latest = con.execute(
            "SELECT * FROM versions WHERE case_bucket IN ? "
            "QUALIFY row_number() OVER (PARTITION BY case_id ORDER BY version DESC) = 1 ORDER BY case_bucket, case_id",
            [buckets],
        ).to_arrow_table()
        delta.write_partitions(self.uri("case_latest"), latest, "case_bucket", buckets)
        return {"case_latest": len(buckets)}

    # ---- full recompute -----------------------------------------------------------------------
    def rebuild(self) -> dict[str, int]:
        """Recompute every derived partition from the raw tables (the reference the incremental
        path must equal; also the repair after a change of definitions)."""
        out: dict[str, int] = {}
        if delta.exists(self.uri("deliveries")):
            con = self._con({"deliveries": "deliveries"})
            days = [r[0] for r in con.sql("SELECT DISTINCT delivered_on FROM deliveries ORDER BY 1").fetchall()]
            out.update(self._refresh_counts(days) if days else {})
        if delta.exists(self.uri("case_versions")):
            con = self._con({"versions": "case_versions"})
            buckets = [r[0] for r in con.sql("SELECT DISTINCT case_bucket FROM versions ORDER BY 1").fetchall()]
            out.update(self._refresh_latest(buckets) if buckets else {})
        return out

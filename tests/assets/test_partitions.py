"""Daily partitions of the lake (assets/lake.py): a day lands the warehouse loaders' rows of that day,
every row accounted for; re-running a day changes nothing; a backfill of every day equals landing the
warehouse's whole load (the full rebuild)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from assets import ingestion
from assets.lake import DAILY, LAKE_ASSETS, daily_landing_job, daily_landing_schedule, default_lake
from assets.resources import default_resources
from sample_data import corruption
from sample_data.world import generate_world
from warehouse.inputs.namespaces import inbox_case_sql
from warehouse.lake.daily import case_version_days, delivery_days
from warehouse.lake.store import Lake
from warehouse.schema import connect

CLOCK = "2026-11-01T00:00:00+00:00"
TABLES = ["deliveries", "delivery_daily", "exposure_weekly", "case_versions", "case_latest"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitions")
    inbox = root / "inbox"
    generate_world(inbox, seed=7, scale=0.02)
    # bad rows the day must account for: malformed lines (no date: their file's first day), a bad quantity,
    # a row without delivery_id, a non-UTF-8 case line, a truncated case file, an empty delivery file
    for damage in (
        corruption.short_row,
        corruption.quantity_fraction,
        corruption.blank_delivery_id,
        corruption.non_utf8_case,
        corruption.truncated_jsonl,
        corruption.empty_csv,
    ):
        damage(inbox)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PVTRACE_CLOCK", CLOCK)
        res = default_resources(inbox=str(inbox), warehouse=str(root / "wh.duckdb"), output=str(root / "out"))
        # the warehouse's whole load: its reference data and packs resolve the days; its tables are the reference
        dg.materialize(
            [ingestion.reference_data, ingestion.packs, ingestion.deliveries, ingestion.case_reports],
            resources=res,
            raise_on_error=True,
        )
        yield root, res, mp


def _full_lake(root) -> Lake:
    """The warehouse's whole load landed at once (the full rebuild the partitions must equal)."""
    lake = Lake(root / "full_lake")
    if not (root / "full_lake" / "deliveries").exists():
        with connect(str(root / "wh.duckdb"), read_only=True) as con:
            lake.land_deliveries(
                con.sql(
                    "SELECT delivery_id, delivered_at, pack_code, batch_id, product_id, patient_key, region, quantity "
                    "FROM delivery"
                ).to_arrow_table()
            )
            lake.land_case_versions(
                con.sql(
                    "SELECT case_id, version, received_on, patient_key, false AS nullified FROM case_report "
                    f"WHERE {inbox_case_sql()}"
                ).to_arrow_table()
            )
    return lake


def _warehouse(root, sql: str) -> list:
    with connect(str(root / "wh.duckdb"), read_only=True) as con:
        return con.sql(sql).fetchall()


def _materialize(res, lake_path, **kwargs):
    result = dg.materialize(LAKE_ASSETS, resources={**res, "lake": default_lake(str(lake_path))}, **kwargs)
    assert result.success
    return {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}


def _snapshot(lake: Lake) -> dict[str, pl.DataFrame]:
    return {t: lake.read(t) for t in TABLES}


def test_three_days_land_what_the_warehouse_loads_and_a_rerun_changes_nothing(world):
    root, res, _ = world
    first_day = _warehouse(root, "SELECT min(delivered_at AT TIME ZONE 'UTC')::DATE FROM delivery")[0][0]
    # the busiest day of case receipt (and its next day): cases and deliveries both land
    busy = _warehouse(
        root,
        f"SELECT received_on FROM case_report WHERE {inbox_case_sql()} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )[0][0]
    days = [first_day, busy, busy + dt.timedelta(days=1)]
    lake = Lake(root / "lake3")
    meta = {}
    for day in days:
        meta[day] = _materialize(res, lake.root, partition_key=day.isoformat())
    full = _full_lake(root)
    where = "delivered_on IN ('" + "', '".join(d.isoformat() for d in days) + "')"
    assert_frame_equal(lake.read("deliveries"), full.read("deliveries", where))
    assert_frame_equal(lake.read("delivery_daily"), full.read("delivery_daily", where.replace("delivered_on", "day")))
    received = where.replace("delivered_on", "received_on")
    assert_frame_equal(lake.read("case_versions"), full.read("case_versions", received))

    # every row of a day accounted for: read = loaded + quarantined, and the day's quarantine is in the lake
    for day in days:
        (row,) = meta[day]["lake_deliveries"]["per_day"].data
        assert row["read"] == row["loaded"] + row["quarantined"] > 0
        assert row["loaded"] == lake.read("deliveries", f"delivered_on = '{day}'").height
        assert row["quarantined"] == lake.read("deliveries_quarantine", f"day = '{day}'").height
    # the damaged rows sit in the first day (the first file's first day): malformed lines included
    q = lake.read("deliveries_quarantine", f"day = '{first_day}'")
    assert {"wrong_field_count", "bad_quantity", "missing_key"} <= set(q["reason"])
    assert q["raw"].drop_nulls().str.contains("pseudonym:").all()  # no raw patient reference kept

    # re-running a day: the same snapshot (a new Delta version, the same rows)
    before = _snapshot(lake)
    version = DeltaTable(lake.uri("deliveries")).version()
    again = _materialize(res, lake.root, partition_key=days[0].isoformat())
    assert DeltaTable(lake.uri("deliveries")).version() > version
    for table, frame in _snapshot(lake).items():
        assert_frame_equal(frame, before[table])
    assert again["lake_deliveries"]["per_day"].data == meta[days[0]]["lake_deliveries"]["per_day"].data


def test_a_failed_day_is_repaired_by_running_it_again(world, monkeypatch):
    """A day that fails after its deliveries partition was written (here: the quarantine write)
    leaves each table at a whole version; running the day again gives the clean landing."""
    root, res, _ = world
    day = _warehouse(root, "SELECT min(delivered_at AT TIME ZONE 'UTC')::DATE FROM delivery")[0][0]
    lake = Lake(root / "lake_failed")

    def broken(self, stage, rows, days):
        raise OSError("object store unavailable")

    with monkeypatch.context() as mp:
        mp.setattr(Lake, "land_quarantine", broken)
        result = dg.materialize(
            LAKE_ASSETS,
            partition_key=day.isoformat(),
            resources={**res, "lake": default_lake(str(lake.root))},
            raise_on_error=False,
        )
    assert not result.success
    # the deliveries partition is the whole day or absent, never part of it
    assert lake.read("deliveries").height in (0, _full_lake(root).read("deliveries", f"delivered_on = '{day}'").height)
    _materialize(res, lake.root, partition_key=day.isoformat())
    assert_frame_equal(lake.read("deliveries"), _full_lake(root).read("deliveries", f"delivered_on = '{day}'"))
    assert lake.read("deliveries_quarantine").height > 0


def test_a_backfill_of_a_range_equals_the_full_rebuild(world):
    root, res, _ = world
    # four whole ISO weeks from the world's first delivery day (a Monday): the weeks' exposure is complete
    start = _warehouse(root, "SELECT min(delivered_at AT TIME ZONE 'UTC')::DATE FROM delivery")[0][0]
    assert start.weekday() == 0
    end = start + dt.timedelta(weeks=4, days=-1)
    lake = Lake(root / "lake_range")
    meta = _materialize(
        res,
        lake.root,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    )
    full = _full_lake(root)
    rng = f"BETWEEN '{start}' AND '{end}'"
    for table, column in [
        ("deliveries", "delivered_on"),
        ("delivery_daily", "day"),
        ("exposure_weekly", "week"),
        ("case_versions", "received_on"),
    ]:
        expected = full.read(table, f"{column} {rng}")
        assert expected.height > 0
        assert_frame_equal(lake.read(table), expected)
    assert meta["lake_deliveries"]["rows_loaded"].value == full.read("deliveries", f"delivered_on {rng}").height
    # case_latest: for the cases whose every version was received in the range, the full rebuild's latest row
    whole = (
        full.read("case_versions")
        .group_by("case_id")
        .agg(pl.col("received_on").max())
        .filter(pl.col("received_on") <= end)["case_id"]
    )
    assert whole.len() > 0
    assert_frame_equal(
        lake.read("case_latest").filter(pl.col("case_id").is_in(whole.implode())),
        full.read("case_latest").filter(pl.col("case_id").is_in(whole.implode())),
    )
    assert lake.read("case_latest").height == lake.read("case_versions")["case_id"].n_unique()


def test_every_row_of_the_inbox_is_in_exactly_one_day_with_the_warehouse_reason(world):
    """All days at once (the functions the partitions call): read = the warehouse manifest's rows read,
    loaded = its table, quarantined = its quarantine rows, reason by reason."""
    root, res, _ = world
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(365 * 8)]
    salt = res["warehouse"].pseudonym_salt()
    inbox = root / "inbox"
    with connect(str(root / "wh.duckdb")) as con:
        rows = {"deliveries": delivery_days(con, inbox, salt, days)}
        assert con.sql("SELECT count(*) FROM delivery").fetchone()[0] > 0  # the rolled-back load left it as it was
    rows["cases"] = case_version_days(inbox, salt, days)
    for stage, kind in (("deliveries", "deliveries"), ("cases", "cases")):
        r = rows[stage]
        read, loaded, quarantined = _warehouse(
            root,
            f"SELECT sum(rows_read), sum(rows_loaded), sum(rows_quarantined) FROM load_manifest WHERE kind = '{kind}'",
        )[0]
        assert sum(r.read.values()) == read and r.loaded.height == loaded and r.quarantined.height == quarantined
        assert all(sum(r.accounted(d)[1:]) == r.accounted(d)[0] for d in r.read)
        reasons = dict(
            _warehouse(
                root,
                f"SELECT reason, count(*) FROM quarantine WHERE stage = '{stage}' "
                "AND NOT starts_with(coalesce(detail, ''), 'whole file:') GROUP BY 1",
            )
        )
        assert dict(r.quarantined.group_by("reason").len().iter_rows()) == reasons
        assert r.quarantined["day"].null_count() == 0


def test_the_daily_job_and_schedule_land_the_day_just_ended():
    from assets.definitions import defs

    assert defs.resolve_job_def(daily_landing_job.name).partitions_def == DAILY
    schedule = defs.get_schedule_def(daily_landing_schedule.name)
    assert (
        DAILY.timezone == "UTC" and schedule.cron_schedule == "0 1 * * *" and schedule.job_name == "daily_landing_job"
    )
    # at 01:00 UTC on 3 March the last complete day is 2 March
    assert DAILY.get_partition_keys(current_time=dt.datetime(2026, 3, 3, 1, 0, tzinfo=dt.UTC))[-1] == "2026-03-02"
    assert DAILY.get_partition_keys(current_time=dt.datetime(2026, 3, 3, 0, 59, tzinfo=dt.UTC))[-1] == "2026-03-01"

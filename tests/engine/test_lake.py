"""The lake (warehouse.lake): Delta tables landed incrementally equal a full recompute, re-runs change
nothing, only the touched partitions are rewritten, and DuckDB and Spark read the same snapshot."""

from __future__ import annotations

import datetime as dt
import random
from types import SimpleNamespace

import duckdb
import polars as pl
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from warehouse.lake import delta
from warehouse.lake.buckets import bucket_of
from warehouse.lake.store import Lake
from warehouse.queries.exposure import build_exposure
from warehouse.schema import connect

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # a Monday


def _deliveries(n: int = 600, days: int = 10, seed: int = 5) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        product = rng.choice(["P1", "P2", "P3"])
        # 23:30 UTC and 00:30 UTC land on different days: the UTC date decides
        at = START + dt.timedelta(days=rng.randrange(days), minutes=rng.choice([30, 600, 1410]))
        rows.append(
            {
                "delivery_id": f"D{i:05d}",
                "delivered_at": at,
                "pack_code": f"01{rng.randrange(10**12):012d}21S{i}",
                "batch_id": f"{product}-B{rng.randrange(3)}",
                "product_id": product,
                "patient_key": f"K{rng.randrange(120)}",
                "region": rng.choice(["north", "south", None]),
                "quantity": rng.randrange(1, 4),
            }
        )
    return pl.DataFrame(rows).with_columns(pl.col("delivered_at").dt.convert_time_zone("UTC"))


def _day(frame: pl.DataFrame) -> pl.Series:
    return frame["delivered_at"].dt.date()


def _cases() -> pl.DataFrame:
    rows = [
        {"case_id": f"C{i}", "version": v, "received_on": dt.date(2026, 3, 1) + dt.timedelta(days=i % 9 + v),
         "patient_key": f"K{i % 50}", "nullified": v == 3 and i % 2 == 0}
        for i in range(80)
        for v in range(1, 2 + i % 3)
    ]  # fmt: skip
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def deliveries():
    return _deliveries()


@pytest.fixture(scope="module")
def landed(tmp_path_factory, deliveries):
    """One lake landed day by day in shuffled order, a day landed twice, and a correction."""
    lake = Lake(tmp_path_factory.mktemp("incremental"), pack_buckets=8, case_buckets=4)
    days = sorted(set(_day(deliveries).to_list()))
    random.Random(1).shuffle(days)
    for day in days + days[:2]:  # the first two days again: a re-run
        lake.land_deliveries(deliveries.filter(_day(deliveries) == day))
    lake.land_deliveries(_correction(deliveries))
    cases = _cases()
    lake.land_case_versions(cases.filter(pl.col("version") == 1))
    lake.land_case_versions(cases.filter(pl.col("version") > 1))
    lake.land_case_versions(cases.filter(pl.col("version") > 1))  # a re-run
    lake.land_packs(_packs(deliveries))
    return lake


def _packs(deliveries: pl.DataFrame) -> pl.DataFrame:
    """A pack per delivered code, commissioned on one of four days before the deliveries."""
    return deliveries.select(
        "pack_code",
        pl.lit("gs1").alias("code_system"),
        "batch_id",
        pl.lit(None, pl.String).alias("gtin"),
        (pl.lit(START) - pl.duration(days=pl.int_range(pl.len()) % 4 + 1)).alias("commissioned_at"),
    )


def _correction(deliveries: pl.DataFrame) -> pl.DataFrame:
    """Three deliveries sent again with another quantity and patient (same day): the new row wins."""
    return deliveries.head(3).with_columns(quantity=pl.lit(9, pl.Int64), patient_key=pl.lit("K999"))


@pytest.fixture(scope="module")
def full(tmp_path_factory, deliveries):
    lake = Lake(tmp_path_factory.mktemp("full"), pack_buckets=8, case_buckets=4)
    lake.land_deliveries(deliveries)
    lake.land_deliveries(_correction(deliveries))
    lake.land_case_versions(_cases())
    return lake


def test_incremental_landing_equals_landing_everything_at_once(landed, full):
    for table in ("deliveries", "delivery_daily", "exposure_weekly", "case_versions", "case_latest"):
        assert_frame_equal(landed.read(table), full.read(table), check_exact=True)
    assert landed.read("deliveries").height == 600
    assert landed.read("deliveries").filter(pl.col("patient_key") == "K999")["quantity"].to_list() == [9, 9, 9]


def test_rebuild_from_the_raw_tables_changes_nothing(landed):
    before = {t: landed.read(t) for t in ("delivery_daily", "exposure_weekly", "case_latest")}
    landed.rebuild()
    for table, frame in before.items():
        assert_frame_equal(landed.read(table), frame, check_exact=True)


def test_weekly_exposure_is_the_warehouse_definition(landed, deliveries, tmp_path):
    """packs delivered and distinct patients per product, batch, region, week: as
    warehouse.queries.exposure computes them from the same deliveries."""
    con = connect(str(tmp_path / "w.duckdb"))
    frame = pl.concat(
        [deliveries.filter(~pl.col("delivery_id").is_in(["D00000", "D00001", "D00002"])), _correction(deliveries)]
    )
    con.register("_d", frame.to_arrow())
    con.execute(
        "INSERT INTO delivery (delivery_id, delivered_at, pack_code, batch_id, product_id, patient_key, region, quantity) "
        "SELECT delivery_id, delivered_at, pack_code, batch_id, product_id, patient_key, region, quantity FROM _d"
    )
    build_exposure(con)
    want = con.sql(
        "SELECT product_id, batch_id, region, week, packs_delivered, patients_exposed FROM exposure_weekly ORDER BY ALL"
    ).pl()
    assert_frame_equal(landed.read("exposure_weekly"), want, check_dtypes=False)
    assert want.height > 20 and want["region"].null_count() > 0


def test_latest_case_version_per_case(landed):
    latest = landed.read("case_latest")
    want = _cases().group_by("case_id").agg(pl.col("version").max())
    assert latest.height == want.height == 80
    assert dict(latest.select("case_id", "version").iter_rows()) == dict(want.iter_rows())


def test_landing_a_day_rewrites_only_that_day(tmp_path, deliveries):
    lake = Lake(tmp_path, pack_buckets=8)
    days = sorted(set(_day(deliveries).to_list()))
    lake.land_deliveries(deliveries.filter(_day(deliveries) < days[-1]))
    before = set(DeltaTable(lake.uri("deliveries")).file_uris())
    weekly_before = lake.read("exposure_weekly")
    landed = lake.land_deliveries(deliveries.filter(_day(deliveries) == days[-1]))
    after = set(DeltaTable(lake.uri("deliveries")).file_uris())
    assert landed.partitions == {"deliveries": 1, "delivery_daily": 1, "exposure_weekly": 1}
    assert before <= after and all(f"delivered_on={days[-1].isoformat()}" in f for f in after - before)
    last_week = days[-1] - dt.timedelta(days=days[-1].weekday())
    assert_frame_equal(
        lake.read("exposure_weekly").filter(pl.col("week") < last_week),
        weekly_before.filter(pl.col("week") < last_week),
    )
    version = DeltaTable(lake.uri("deliveries")).version()
    again = lake.land_deliveries(deliveries.filter(_day(deliveries) == days[-1]))
    assert again.rows > 0 and DeltaTable(lake.uri("deliveries")).version() == version + 1
    assert lake.read("deliveries").height == deliveries.height


def test_packs_are_partitioned_by_code_bucket_and_commissioning_day(landed, deliveries):
    packs = landed.read("packs")
    assert packs.height == deliveries["pack_code"].n_unique()
    assert (packs["code_bucket"] == bucket_of(packs["pack_code"], 8)).all()
    assert packs["code_bucket"].n_unique() == 8
    assert (packs["commissioned_in"] == packs["commissioned_at"].dt.date()).all()
    # a lookup by code reads the partitions of its bucket only (every commissioning day of that bucket)
    codes = packs["pack_code"].head(3).to_list()
    assert_frame_equal(landed.lookup_packs(codes), packs.filter(pl.col("pack_code").is_in(codes)).sort("pack_code"))
    dataset = delta.dataset(landed.uri("packs"))
    bucket = int(bucket_of(pl.Series([codes[0]]), 8)[0])
    pruned = list(dataset.get_fragments(filter=pc.field("code_bucket") == bucket))
    assert 0 < len(pruned) < len(list(dataset.get_fragments())) / 4
    assert all(f"code_bucket={bucket}/" in f.path for f in pruned)


@pytest.mark.parametrize(("period", "rewritten"), [("day", False), (None, True)])
def test_a_day_of_new_packs_writes_new_files_only(tmp_path, deliveries, period, rewritten):
    """The new layout: a day's commissioned packs add files and remove none; by code bucket alone (the
    layout before), the same day rewrites every bucket's file, i.e. the whole table."""
    packs = _packs(deliveries)
    day = pl.col("commissioned_at").dt.date()
    last = packs["commissioned_at"].dt.date().max()
    lake = Lake(tmp_path, pack_buckets=8, pack_period=period)
    lake.land_packs(packs.filter(day < last))
    before = set(DeltaTable(lake.uri("packs")).file_uris())
    lake.land_packs(packs.filter(day == last))
    after = set(DeltaTable(lake.uri("packs")).file_uris())
    assert (not before <= after) is rewritten
    if not rewritten:
        assert all(f"commissioned_in={last}" in f for f in after - before)
    snapshot = lake.read("packs")
    assert snapshot.height == packs.height
    lake.land_packs(packs.filter(day == last))  # a re-run: the same rows
    assert_frame_equal(lake.read("packs"), snapshot)
    with pytest.raises(ValueError, match="without commissioned_at"):
        lake.land_packs(packs.head(2).with_columns(commissioned_at=None))


def test_bad_input_is_refused_with_the_reason(tmp_path, deliveries):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="missing column"):
        lake.land_deliveries(deliveries.drop("quantity"))
    with pytest.raises(ValueError, match="without delivery_id"):
        lake.land_deliveries(deliveries.with_columns(delivery_id=pl.lit(None, pl.String)))
    with pytest.raises(ValueError, match="no table"):
        lake.read("deliveries")


def test_a_table_whose_files_are_not_its_rows_is_refused():
    for protocol in (
        SimpleNamespace(min_reader_version=3, reader_features=["deletionVectors"]),
        SimpleNamespace(min_reader_version=2, reader_features=None),
    ):
        with pytest.raises(ValueError, match="column mapping|deletionVectors"):
            delta.check_plain_parquet(SimpleNamespace(protocol=lambda p=protocol: p))
    delta.check_plain_parquet(
        SimpleNamespace(protocol=lambda: SimpleNamespace(min_reader_version=1, reader_features=None))
    )


def test_duckdb_reads_the_snapshot_not_the_overwritten_files(landed):
    con = duckdb.connect()
    con.register("d", delta.dataset(landed.uri("deliveries")))
    assert con.sql("SELECT count(*), count(DISTINCT delivery_id) FROM d").fetchone() == (600, 600)


@pytest.mark.spark
def test_spark_reads_the_same_snapshot(landed, spark):
    for table in ("deliveries", "exposure_weekly"):
        got = pl.from_arrow(delta.spark_read(spark, landed.uri(table)).toArrow())
        want = landed.read(table)
        assert_frame_equal(got.select(want.columns).sort(want.columns), want.sort(want.columns), check_dtypes=False)

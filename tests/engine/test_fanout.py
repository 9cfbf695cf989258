"""The statistics fanned out over product buckets equal the single-process call (warehouse.engine.fanout).

The inputs are a small random world with planted excess batches (so rows are flagged and
streams cross), cases linked to a batch without exposure (they belong to the onset family but
have no row) and products of both routes. Equality is exact: every per-group computation sees the
same rows in the same order, and the family-wide steps run once over everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from signals.batch_detection import heterogeneity_by_level as single_heterogeneity
from signals.batch_detection import sequential_streams as single_sequential
from signals.scoring import score_pairs as single_score_pairs
from warehouse.engine import fanout
from warehouse.engine.fanout import FanOut
from warehouse.lake.buckets import bucket_of, duckdb_bucket, spark_bucket

PTS = ["Hypersensitivity", "Drug ineffective", "Headache", "Nausea", "Pyrexia", "Injection site reaction"]
SOC = {"Hypersensitivity": "Immune", "Drug ineffective": "General", "Headache": "Nervous", "Nausea": "GI"}
DLP = dt.date(2026, 6, 28)


def _world(seed: int = 7, n_products: int = 12):
    rng = np.random.default_rng(seed)
    start = dt.date(2026, 1, 5)
    cases, expo, packs, units, routes = [], [], [], [], {}
    case_no = 0
    for p in range(n_products):
        product = f"P{p:03d}"
        routes[product] = "oral" if p % 2 else "subcutaneous"
        n_batches = int(rng.integers(1, 7))
        for b in range(n_batches):
            batch = f"{product}-B{b}"
            first = int(rng.integers(0, 8))
            weekly = rng.integers(20, 200, size=20 - first)
            for w, q in enumerate(weekly):
                packs.append((product, batch, start + dt.timedelta(weeks=first + w), float(q)))
            expo.append((product, batch, float(weekly.sum())))
            units.append((batch, float(weekly.sum() * 1.2)))
            excess = 6.0 if (p % 4 == 0 and b == 0) else 1.0
            for pt in PTS:
                rate = 0.002 * excess if pt in ("Hypersensitivity", "Headache") else 0.0008
                for _ in range(int(rng.poisson(rate * weekly.sum()))):
                    case_no += 1
                    begin = start + dt.timedelta(days=int(7 * first + rng.integers(0, 7 * len(weekly))))
                    onset = int(rng.integers(0, 20)) if rng.random() < 0.8 else None
                    received = begin + dt.timedelta(days=int(rng.integers(1, 40)))
                    cases.append((f"C{case_no}", product, batch, pt, SOC.get(pt, "Other"), received, begin, onset))
        # a case linked to a batch with no exposure (delivered outside the logs)
        case_no += 1
        cases.append((f"C{case_no}", product, f"{product}-X", "Headache", "Nervous", DLP, DLP, 3))
    cases_f = pl.DataFrame(
        cases,
        schema={
            "case_id": pl.String,
            "product": pl.String,
            "batch": pl.String,
            "pt": pl.String,
            "soc": pl.String,
            "received_on": pl.Date,
            "start_date": pl.Date,
            "onset_days": pl.Int64,
        },
        orient="row",
    ).filter(pl.col("received_on") <= DLP)
    expo_f = pl.DataFrame(expo, schema={"product": pl.String, "batch": pl.String, "exposure": pl.Float64}, orient="row")
    packs_f = pl.DataFrame(
        packs, schema={"product": pl.String, "batch": pl.String, "week": pl.Date, "packs": pl.Float64}, orient="row"
    )
    units_f = pl.DataFrame(units, schema={"batch": pl.String, "units_released": pl.Float64}, orient="row")
    return cases_f, expo_f, packs_f, units_f, routes


def _pairs(seed: int = 3, drugs: int = 40, events: int = 30) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    table = rng.poisson(rng.gamma(0.6, 2.0, size=(drugs, events)))
    table[0, 0] += 25  # a planted pair
    n = int(table.sum())
    rows = [
        (f"D{d}", f"E{e}", int(table[d, e]), int(table[d].sum()), int(table[:, e].sum()), n)
        for d in range(drugs)
        for e in range(events)
        if table[d, e] > 0
    ]
    counts = pl.DataFrame(
        rows,
        schema={
            "drug": pl.String,
            "event": pl.String,
            "n11": pl.Int64,
            "n1_": pl.Int64,
            "n_1": pl.Int64,
            "n": pl.Int64,
        },
        orient="row",
    )
    return counts.with_columns(e=pl.col("n1_") * pl.col("n_1") / pl.col("n"))


@pytest.fixture(scope="module")
def world():
    return _world()


def _check_heterogeneity(world, fan):
    cases, expo, *_ = world
    want = single_heterogeneity(cases, expo)
    got = fanout.heterogeneity_by_level(cases, expo, fan)
    assert set(got) == set(want)
    for level in want:
        assert_frame_equal(got[level][0], want[level][0], check_exact=True)
        assert_frame_equal(got[level][1], want[level][1], check_exact=True)
    assert want["pt"][0]["flagged"].sum() > 0  # the planted batches are found: the comparison is not vacuous


def _check_sequential(world, fan):
    cases, _, packs, units, routes = world
    want = single_sequential(packs, cases, routes, units, DLP)
    got = fanout.sequential_streams(packs, cases, routes, units, DLP, fan)
    assert_frame_equal(got, want, check_exact=True)
    assert want["signalled"].sum() > 0


def _check_pairs(fan):
    counts = _pairs()
    want = single_score_pairs(counts, prior="fit", min_count=1, fdr=True)
    got = fanout.score_pairs(counts, min_count=1, fan=fan)
    assert got.prior == want.prior
    assert_frame_equal(got.scored, want.scored, check_exact=True)
    assert want.scored["fdr_signal"].sum() > 0


def test_buckets_are_md5_prefixes_and_agree_with_duckdb():
    keys = ["P001", "P002", "ñ-product", "P001"]
    want = [int(hashlib.md5(k.encode()).hexdigest()[:8], 16) % 7 for k in keys]
    assert bucket_of(pl.Series(keys + [None]), 7).to_list() == want + [0]
    con = duckdb.connect()
    sql = f"SELECT {duckdb_bucket('k', 7)} FROM (SELECT unnest(?) AS k, generate_subscripts(?, 1) AS i) ORDER BY i"
    assert [r[0] for r in con.execute(sql, [keys, keys]).fetchall()] == want


def test_configuration_is_validated():
    assert FanOut.from_env({}) == FanOut()
    assert FanOut.from_env({"PVTRACE_FANOUT": "Process", "PVTRACE_FANOUT_BUCKETS": "4"}).mode == "process"
    with pytest.raises(ValueError, match="mode"):
        FanOut.from_env({"PVTRACE_FANOUT": "threads"})
    with pytest.raises(ValueError, match="buckets"):
        FanOut(buckets=0)


@pytest.mark.parametrize("buckets", [1, 3, 64])
def test_bucket_by_bucket_equals_the_single_call(world, buckets):
    fan = FanOut(mode="buckets", buckets=buckets)
    _check_heterogeneity(world, fan)
    _check_sequential(world, fan)
    _check_pairs(fan)


def test_process_pool_equals_the_single_call(world):
    # one pool start (spawned workers import polars and scipy: seconds); the bucket functions of
    # the other statistics are checked in process by the tests above and on Spark below
    _check_heterogeneity(world, FanOut(mode="process", buckets=4, workers=2))


def test_no_input_gives_what_the_single_call_gives(world):
    cases, expo, packs, units, routes = world
    fan = FanOut(mode="buckets", buckets=4)
    got = fanout.heterogeneity_by_level(cases.head(0), expo, fan)
    want = single_heterogeneity(cases.head(0), expo)
    for level in want:
        assert_frame_equal(got[level][0], want[level][0])
        assert got[level][1] is want[level][1] is None
    assert fanout.sequential_streams(packs.head(0), cases, routes, units, DLP, fan).height == 0


@pytest.mark.spark
def test_spark_bucket_is_the_python_bucket(spark):
    from pyspark.sql import functions as F

    keys = ["P001", "P002", "ñ-product", "Z" * 40]
    df = spark.createDataFrame([(k,) for k in keys], "k string")
    got = {r.k: r.b for r in df.select("k", spark_bucket(F.col("k"), 11).alias("b")).collect()}
    assert got == dict(zip(keys, bucket_of(pl.Series(keys), 11).to_list()))


@pytest.mark.spark
def test_spark_grouped_arrow_udfs_equal_the_single_call(world, spark):
    fan = FanOut(mode="spark", buckets=2, spark=spark)
    _check_heterogeneity(world, fan)
    _check_sequential(world, fan)
    _check_pairs(fan)

"""The count-level operating-characteristics study (issue 14): a tiny run, only claims that must hold."""

import numpy as np
import polars as pl
import pytest

from signals.study import Scenario, StudyDesign, operating_characteristics, simulate
from signals.study.methods import METHODS, apply_all, oracle_sprt, siblings_msprt

REQUIRED = [
    "scenario",
    "rate_ratio",
    "exposure",
    "method",
    "detected_share",
    "median_delay_days",
    "p90_delay_days",
    "oracle_median_delay_days",
    "false_alarm_rate",
]


@pytest.fixture(scope="module")
def tiny():
    sc = [Scenario(1.0, 10_000), Scenario(10.0, 10_000), Scenario(10.0, 10_000, "consignment")]
    return operating_characteristics(replicates=30, seed=3, scenarios=sc, null_multiplier=2)


def test_columns_and_rows(tiny):
    assert set(REQUIRED) <= set(tiny.columns)
    assert tiny.height == 3 * len(METHODS)
    assert set(tiny["method"]) == set(METHODS)
    assert tiny.filter(pl.col("rate_ratio") == 1)["replicates"].unique().to_list() == [60]
    for c in ("detected_share", "false_alarm_rate", "oracle_detected_share"):
        v = tiny[c].drop_nans().drop_nulls()
        assert ((v >= 0) & (v <= 1)).all(), c


def test_null_detected_share_is_the_false_alarm_rate(tiny):
    null = tiny.filter(pl.col("rate_ratio") == 1)
    np.testing.assert_allclose(null["detected_share"].to_numpy(), null["false_alarm_rate"].to_numpy())
    # no oracle under the null, no delays
    assert null["oracle_median_delay_days"].is_nan().all()
    # every row of an exposure carries that exposure's null false-alarm rate
    fa = dict(zip(null["method"], null["false_alarm_rate"]))
    for row in tiny.filter(pl.col("rate_ratio") > 1).iter_rows(named=True):
        assert row["false_alarm_rate"] == fa[row["method"]]


def test_strong_defect_is_found_quickly_by_sequential_methods(tiny):
    strong = tiny.filter((pl.col("rate_ratio") == 10) & (pl.col("onset") == "first_delivery"))
    o = strong["oracle_median_delay_days"][0]
    assert strong["oracle_detected_share"][0] == 1.0 and 0 < o <= 70
    for m in ("maxsprt_group", "maxsprt_continuous"):
        r = strong.filter(pl.col("method") == m).row(0, named=True)
        assert r["detected_share"] >= 0.9
        assert r["median_delay_days"] <= 2 * o
    # delays are whole weeks from the defect's start (weekly cut-offs)
    d = tiny["median_delay_days"].drop_nans().to_numpy()
    assert (d % 7 == 0).all() and (d > 0).all()


def test_oracle_spends_at_most_alpha_under_the_null():
    """The calibrated oracle's LLR crosses under H0 at about alpha (checked on many null paths)."""
    design = StudyDesign(alpha_family=0.05, streams_per_product=1)  # alpha 0.05: cheap to check
    d = simulate(Scenario(3.0, 2000), 4000, np.random.default_rng(5), design)
    # replace the defective counts by null counts: same lam0, the oracle's H1 kept
    rng = np.random.default_rng(6)
    null_counts = rng.poisson(np.broadcast_to(d.lam0, d.counts.shape)).astype(float)
    d0 = type(d)(d.design, d.scenario, d.packs, d.delay_pmf, d.lam0, d.lam1, null_counts, d.other, d.onset_day)
    share = float((oracle_sprt(d0, np.random.default_rng(7)) >= 0).mean())
    assert share == pytest.approx(0.05, abs=0.015)
    assert float((siblings_msprt(d0) >= 0).mean()) <= 0.05 + 0.015  # Ville


def test_no_look_ahead():
    """Counts after a look cannot change that look's alarms: truncating the future changes nothing."""
    d = simulate(Scenario(5.0, 10_000), 40, np.random.default_rng(9))
    full = apply_all(d)
    cut = d.start + 20  # keep 20 weeks of the batch's life, then wipe the future
    c2 = d.counts.copy()
    c2[:, :, cut:] = 0
    o2 = d.other.copy()
    o2[:, cut:] = 0
    d2 = type(d)(d.design, d.scenario, d.packs, d.delay_pmf, d.lam0, d.lam1, c2, o2, d.onset_day)
    part = apply_all(d2)
    for m in METHODS:
        a, b = full[m], part[m]
        early = (a >= 0) & (a < 20)
        np.testing.assert_array_equal(a[early], b[early], err_msg=m)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate_ratio"):
        Scenario(0.5, 100)
    with pytest.raises(ValueError, match="onset"):
        Scenario(2.0, 100, "sometime")
    with pytest.raises(ValueError, match="replicates"):
        operating_characteristics(replicates=0)

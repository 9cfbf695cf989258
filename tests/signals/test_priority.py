"""The signal priority score (issue 14 item 4): hand-computed cases, monotonicity, input validation."""

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from signals.priority import (
    COMPONENTS,
    DEFAULT_THRESHOLD,
    WEIGHTS,
    batch_families,
    priority_scores,
    validate_threshold,
)


def row(**kw):
    base = {
        "n11": 4,
        "expected": 2.0,
        "batch_tests": 0,
        "n_cases": 4,
        "n_serious": 0,
        "n_recent": 0,
        "n_hcp": 0,
        "completeness": 0.0,
    }
    base.update(kw)
    return base


def score(*rows):
    return priority_scores(pl.DataFrame(list(rows), schema_overrides={"expected": pl.Float64}))


def test_weights_sum_to_one_and_default_threshold_is_a_share():
    assert math.isclose(sum(WEIGHTS.values()), 1.0)
    assert 0 < DEFAULT_THRESHOLD < 1


def test_hand_computed_without_strength():
    # IC025 of 1 report at E = 2 is < 0: no strength; the rest by hand
    out = score(row(n11=1, expected=2.0, batch_tests=1, n_serious=2, n_recent=1, n_hcp=3, completeness=0.5)).row(
        0, named=True
    )
    assert out["priority_strength"] == 0.0
    assert out["priority_batch"] == 0.5
    assert out["priority_seriousness"] == 0.5
    assert out["priority_recency"] == 0.25
    assert out["priority_completeness"] == 0.5
    assert out["priority_reporter"] == 0.75
    assert out["priority"] == pytest.approx(0.25 * 0.5 + 0.15 * 0.5 + 0.10 * 0.25 + 0.10 * 0.5 + 0.10 * 0.75)


def test_hand_computed_strength_from_an_independent_gamma_quantile():
    # 7 reports where 0.5 were expected: IC025 = log2 of the 2.5 % quantile of Gamma(7.5, rate 1)
    ic025 = math.log2(stats.gamma.ppf(0.025, a=7.5, scale=1.0))
    out = score(row(n11=7, expected=0.5, n_cases=7, n_serious=7, n_recent=7, n_hcp=7, completeness=1.0, batch_tests=2))
    expected_strength = ic025 / (ic025 + 1)
    assert out["priority_strength"][0] == pytest.approx(expected_strength, abs=1e-6)
    assert out["priority"][0] == pytest.approx(0.30 * expected_strength + 0.70, abs=1e-6)


def test_no_case_and_no_expected_give_documented_zeros():
    out = score(row(n11=0, expected=None, n_cases=0, completeness=None)).row(0, named=True)
    assert all(out[f"priority_{c}"] == 0.0 for c in COMPONENTS)
    assert out["priority"] == 0.0


def test_empty_frame():
    frame = pl.DataFrame(schema=dict.fromkeys(row(), pl.Int64) | {"expected": pl.Float64, "completeness": pl.Float64})
    assert priority_scores(frame).height == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"n11": -1}, "non-negative integers"),
        ({"n_cases": 2.5}, "non-negative integers"),
        ({"n_serious": 5}, "cannot exceed n_cases"),
        ({"n_hcp": None}, "finite count"),
        ({"expected": float("nan")}, "expected"),
        ({"expected": -1.0}, "expected"),
        ({"completeness": 1.5}, "completeness"),
        ({"batch_tests": 3}, "at most 2"),
    ],
)
def test_rejects_impossible_inputs(bad, match):
    with pytest.raises(ValueError, match=match):
        score(row(**bad))


def test_rejects_missing_columns():
    with pytest.raises(ValueError, match="lack column"):
        priority_scores(pl.DataFrame({"n11": [1]}))


def test_threshold_validation():
    assert validate_threshold("0.55") == 0.55
    for bad in ("x", -0.1, 1.01, None, float("nan")):
        with pytest.raises(ValueError, match="priority threshold"):
            validate_threshold(bad)


def test_batch_families():
    assert batch_families(None) == 0
    assert batch_families(["evans", "ema_sdr"]) == 0
    assert batch_families(["batch_exact", "batch_eb"]) == 1
    assert batch_families(["batch_eb", "maxsprt_group"]) == 2


counts = st.integers(min_value=0, max_value=60)


@st.composite
def evidence(draw):
    n = draw(st.integers(min_value=0, max_value=60))
    return row(
        n11=draw(counts),
        expected=draw(st.floats(min_value=0.0, max_value=50.0)),
        batch_tests=draw(st.integers(min_value=0, max_value=2)),
        n_cases=n,
        n_serious=draw(st.integers(min_value=0, max_value=n)),
        n_recent=draw(st.integers(min_value=0, max_value=n)),
        n_hcp=draw(st.integers(min_value=0, max_value=n)),
        completeness=draw(st.floats(min_value=0.0, max_value=1.0)),
    )


@settings(max_examples=150, deadline=None)
@given(evidence(), st.integers(min_value=1, max_value=20))
def test_stronger_evidence_never_lowers_the_score(base, k):
    """More reports at the same E, a lower E, another batch-test family, a serious / recent / HCP case in
    place of another, a more complete report: each gives a score ≥ the base's, and the score stays in [0, 1]."""
    stronger = [
        {**base, "n11": base["n11"] + k},
        {**base, "expected": base["expected"] / (1 + k)},
        {**base, "batch_tests": min(2, base["batch_tests"] + 1)},
        {**base, "n_serious": min(base["n_cases"], base["n_serious"] + k)},
        {**base, "n_recent": min(base["n_cases"], base["n_recent"] + k)},
        {**base, "n_hcp": min(base["n_cases"], base["n_hcp"] + k)},
        {**base, "completeness": min(1.0, base["completeness"] + k / 20)},
    ]
    out = score(base, *stronger)["priority"].to_list()
    assert all(0.0 <= p <= 1.0 for p in out)
    assert all(p >= out[0] for p in out[1:])

"""Reporting-delay-adjusted exposure and the leave-one-out baseline (signals.baseline)."""

import numpy as np
import pytest

from signals.baseline import leave_one_out_expected, reported_exposure, reporting_delay_pmf


def test_delay_pmf_lumps_long_lags_and_ignores_missing():
    pmf = reporting_delay_pmf([0, 0, 1, 3, 100, np.nan, -2], max_lag=3)
    np.testing.assert_allclose(pmf, [0.4, 0.2, 0.0, 0.4])
    np.testing.assert_allclose(reporting_delay_pmf([], max_lag=2), [1.0, 0.0, 0.0])


def test_reported_exposure_is_cumulative_convolution():
    packs = np.array([[10.0, 0, 5, 0], [0, 4, 0, 0]])
    pmf = np.array([0.5, 0.3, 0.2])
    got = reported_exposure(packs, pmf)
    want = np.cumsum(np.stack([np.convolve(r, pmf)[:4] for r in packs]), axis=1)
    np.testing.assert_allclose(got, want)
    # with no delay it is the cumulative packs; long after delivery every pack counts fully
    np.testing.assert_allclose(reported_exposure(packs, [1.0]), np.cumsum(packs, axis=1))
    assert got[0, -1] == pytest.approx(10 + 5 * 0.8)


def test_leave_one_out_excludes_the_batch_under_test():
    E = np.array([[100.0, 200.0], [300.0, 600.0], [0.0, 200.0]])  # three batches of one product
    C = np.array([[0.0, 50.0], [3.0, 6.0], [0.0, 2.0]])
    mu = leave_one_out_expected(E, C, np.zeros(3, dtype=int), pseudo_cases=0.0)
    # batch 0 at look 1: rest has 8 reports on 800 exposure -> 0.01 * 200
    assert mu[0, 1] == pytest.approx(2.0)
    # its own 50 reports never raise its baseline; they do raise the others'
    assert mu[1, 1] == pytest.approx((50 + 2) / 400 * 600)
    assert np.isnan(mu[2, 0])  # no exposure yet: no look
    one = leave_one_out_expected(E, C, np.zeros(3, dtype=int), pseudo_cases=1.0)
    assert one[0, 1] == pytest.approx(9 / 800 * 200)


def test_leave_one_out_needs_another_batch():
    mu = leave_one_out_expected(np.array([[5.0, 10.0]]), np.array([[1.0, 2.0]]), np.array([0]))
    assert np.isnan(mu).all()
    with pytest.raises(ValueError):
        leave_one_out_expected(np.ones((2, 3)), np.ones((2, 2)), np.zeros(2, dtype=int))


def test_baseline_inputs_validated():
    import numpy as np
    import pytest

    from signals.baseline import leave_one_out_expected, reported_exposure, reporting_delay_pmf

    with pytest.raises(ValueError, match="packs"):
        reported_exposure([[1.0, np.nan]], [1.0])
    with pytest.raises(ValueError, match="packs"):
        reported_exposure([[1.0, -2.0]], [1.0])
    with pytest.raises(ValueError, match="delay_pmf"):
        reported_exposure([[1.0, 2.0]], [0.8, 0.8])
    with pytest.raises(ValueError, match="finite"):
        leave_one_out_expected([[1.0], [2.0]], [[np.inf], [0.0]], [0, 0])
    with pytest.raises(ValueError, match="pseudo_cases"):
        leave_one_out_expected([[1.0], [2.0]], [[1.0], [0.0]], [0, 0], pseudo_cases=-1)
    with pytest.raises(ValueError, match="max_lag"):
        reporting_delay_pmf([1, 2], max_lag=2.5)

"""Odd input to the multiplicity and MGPS helpers (issue 14, item 5): a clear ValueError or a
documented null, never a silent wrong number."""

import warnings

import numpy as np
import pytest

from signals import mgps
from signals.multiplicity import benjamini_hochberg, fisher_one_sided


def test_fisher_rejects_impossible_tables():
    # scipy returns p = 0 for a table that cannot occur
    with pytest.raises(ValueError, match="impossible"):
        fisher_one_sided(5, 3, 10, 20)  # n11 > n1_
    with pytest.raises(ValueError, match="impossible"):
        fisher_one_sided(0, 15, 15, 20)  # n11 < n1_ + n_1 - n
    with pytest.raises(ValueError, match="impossible"):
        fisher_one_sided(1, 30, 2, 20)  # margin > n
    with pytest.raises(ValueError, match="integers"):
        fisher_one_sided(1.5, 3, 10, 20)
    with pytest.raises(ValueError, match="integers"):
        fisher_one_sided(np.nan, 3, 10, 20)
    assert fisher_one_sided([0, 3], [3, 3], [10, 10], [20, 20])[0] == pytest.approx(1.0)


def test_bh_rejects_p_outside_unit_interval():
    # BH used to return q < 0 for p < 0
    for bad in (-0.2, 1.5, np.inf):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            benjamini_hochberg([0.01, bad])
    with pytest.raises(ValueError, match="alpha"):
        benjamini_hochberg([0.01], alpha=1.5)
    _, q = benjamini_hochberg([0.01, np.nan])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.01)


def test_eb_scores_zero_expected_is_nan_without_warning():
    # n >= 1 with E = 0 is undefined (documented NaN), never a RuntimeWarning; n = 0 with E = 0 is the prior
    # itself (tests/signals/test_mgps.py)
    pr = mgps.GammaMixturePrior(0.2, 0.1, 2.0, 4.0, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = mgps.eb_scores([1, 0, 3], [0.0, 0.0, 1.2], pr)
    assert np.isnan(s.ebgm[0]) and np.isnan(s.eb05[0]) and np.isnan(s.q[0])
    assert np.isfinite(s.ebgm[2]) and np.isfinite(s.eb05[2])


def test_heterogeneity_options_validated():
    import polars as pl

    from signals.batch_heterogeneity import (
        batch_overdispersion,
        batch_rate_tests,
        funnel_limits,
        tarone_benjamini_hochberg,
    )

    df = pl.DataFrame({"product": "P", "event": "E", "batch": ["a", "b"], "cases": [1, 2], "exposure": [10.0, 20.0]})
    with pytest.raises(ValueError, match="ci_level"):
        batch_rate_tests(df, ci_level=1.5)
    with pytest.raises(ValueError, match="min_batches_eb"):
        batch_rate_tests(df, min_batches_eb=0)
    with pytest.raises(ValueError, match="grid_points"):
        funnel_limits(df, grid_points=0)
    with pytest.raises(ValueError, match="max_iter"):
        batch_overdispersion(df, max_iter=0)
    with pytest.raises(ValueError, match="alpha"):
        tarone_benjamini_hochberg(np.array([0.1]), np.array([0.01]), alpha=0)


def test_llr_of_non_counts_is_nan():
    from signals.sequential import maxsprt_poisson_llr

    out = maxsprt_poisson_llr([-1.0, 3.0, np.inf, 3.0], [1.0, -1.0, 1.0, 1.0])
    assert np.isnan(out[:3]).all() and out[3] == pytest.approx(3 * np.log(3) - 2)

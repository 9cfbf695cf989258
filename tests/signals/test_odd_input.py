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
    # E = 0 is undefined (documented NaN), never a RuntimeWarning
    pr = mgps.GammaMixturePrior(0.2, 0.1, 2.0, 4.0, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = mgps.eb_scores([1, 0, 3], [0.0, 0.0, 1.2], pr)
    assert np.isnan(s.ebgm[:2]).all() and np.isnan(s.eb05[:2]).all() and np.isnan(s.q[:2]).all()
    assert np.isfinite(s.ebgm[2]) and np.isfinite(s.eb05[2])

"""Disproportionality measures checked against independent hand computations.

References are computed here with plain math, scipy.stats.contingency and
statsmodels' Table2x2 — never by calling signals.disproportionality again.
"""

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.stats import contingency
from statsmodels.stats.contingency_tables import Table2x2

from signals.disproportionality import SCORE_COLUMNS, Z975, score

Z = stats.norm.ppf(0.975)


def frame(rows):
    """rows of (a, b, c, d) -> counts frame."""
    return pl.DataFrame(
        {
            "drug": [f"D{i}" for i in range(len(rows))],
            "event": [f"E{i}" for i in range(len(rows))],
            "n11": [a for a, b, c, d in rows],
            "n1_": [a + b for a, b, c, d in rows],
            "n_1": [a + c for a, b, c, d in rows],
            "n": [a + b + c + d for a, b, c, d in rows],
        }
    )


def test_exact_z():
    assert pytest.approx(1.959963984540054, abs=1e-15) == Z975


@pytest.mark.parametrize(
    "a,b,c,d", [(10, 90, 20, 880), (3, 5, 7, 1000), (1, 1, 1, 1), (50, 50, 50, 50), (7, 13, 200, 99_780)]
)
def test_against_independent_computation(a, b, c, d):
    out = score(frame([(a, b, c, d)])).row(0, named=True)
    n = a + b + c + d
    # PRR by hand
    prr = (a / (a + b)) / (c / (c + d))
    se = math.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
    assert out["prr"] == pytest.approx(prr, rel=1e-12)
    assert out["prr_lo95"] == pytest.approx(math.exp(math.log(prr) - Z * se), rel=1e-12)
    assert out["prr_hi95"] == pytest.approx(math.exp(math.log(prr) + Z * se), rel=1e-12)
    # ROR and Woolf CI: statsmodels Table2x2
    t = Table2x2(np.array([[a, b], [c, d]], dtype=float))
    lo, hi = t.oddsratio_confint(alpha=0.05)
    assert out["ror"] == pytest.approx(t.oddsratio, rel=1e-12)
    assert out["ror_lo95"] == pytest.approx(lo, rel=1e-9)
    assert out["ror_hi95"] == pytest.approx(hi, rel=1e-9)
    # chi2: scipy.stats.contingency, with and without Yates
    obs = np.array([[a, b], [c, d]])
    assert out["chi2"] == pytest.approx(contingency.chi2_contingency(obs, correction=False)[0], rel=1e-10)
    yates = contingency.chi2_contingency(obs, correction=True)[0]
    # scipy caps the correction at |O-E| (never flips sign); the brief's formula caps at 0
    hand_y = n * max(abs(a * d - b * c) - n / 2, 0) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    assert out["chi2_yates"] == pytest.approx(hand_y, rel=1e-12, abs=1e-12)
    if abs(a * d - b * c) > n / 2:
        assert out["chi2_yates"] == pytest.approx(yates, rel=1e-10)
    # IC: WHO-UMC shrinkage form, quantiles of Gamma(a+1/2, rate E+1/2) via scipy.stats.gamma
    e = (a + b) * (a + c) / n
    assert out["ic"] == pytest.approx(math.log2((a + 0.5) / (e + 0.5)), rel=1e-12)
    g = stats.gamma(a + 0.5, scale=1 / (e + 0.5))
    assert out["ic025"] == pytest.approx(math.log2(g.ppf(0.025)), rel=1e-9, abs=1e-12)
    assert out["ic975"] == pytest.approx(math.log2(g.ppf(0.975)), rel=1e-9, abs=1e-12)


def test_known_numbers():
    # a=10,b=90,c=20,d=880: PRR = 0.1/(20/900) = 4.5 ; ROR = 8800/1800 = 4.888...
    out = score(frame([(10, 90, 20, 880)])).row(0, named=True)
    assert out["prr"] == pytest.approx(4.5, rel=1e-14)
    assert out["ror"] == pytest.approx(8800 / 1800, rel=1e-14)
    # chi2 = 1000*(8800-1800)^2/(100*900*30*970)
    assert out["chi2"] == pytest.approx(1000 * 7000**2 / (100 * 900 * 30 * 970), rel=1e-14)
    assert out["chi2_yates"] == pytest.approx(1000 * (7000 - 500) ** 2 / (100 * 900 * 30 * 970), rel=1e-14)


def test_nulls_on_zero_cells_never_inf_or_nan():
    rows = [
        (5, 10, 0, 100),  # c = 0: PRR and ROR undefined
        (5, 0, 10, 100),  # b = 0: ROR undefined, PRR defined, PRR CI defined
        (5, 10, 10, 0),  # d = 0: ROR = 0 ... its CI undefined
        (0, 10, 10, 100),  # a = 0: ratios 0, bounds undefined
        (0, 0, 0, 10),  # no drug, no event
        (3, 0, 0, 0),  # everything in one cell
    ]
    out = score(frame(rows))
    for col in SCORE_COLUMNS:
        s = out[col]
        assert not s.is_nan().any(), col
        assert not s.is_infinite().any(), col
    r = out.to_dicts()
    assert r[0]["prr"] is None and r[0]["prr_lo95"] is None and r[0]["ror"] is None and r[0]["ror_hi95"] is None
    assert r[1]["ror"] is None and r[1]["ror_lo95"] is None
    assert r[1]["prr"] == pytest.approx((5 / 5) / (10 / 110))
    # b = 0 -> 1/a - 1/(a+b) = 0, variance still defined
    assert r[1]["prr_lo95"] == pytest.approx(math.exp(math.log(11) - Z * math.sqrt(1 / 10 - 1 / 110)))
    assert r[2]["ror"] == 0.0 and r[2]["ror_lo95"] is None
    assert r[3]["prr"] == 0.0 and r[3]["ror"] == 0.0
    assert r[3]["prr_lo95"] is None and r[3]["ror_hi95"] is None
    assert r[4]["prr"] is None and r[4]["chi2"] is None and r[4]["chi2_yates"] is None
    assert r[5]["chi2"] is None and r[5]["ror"] is None and r[5]["prr"] is None
    # IC stays defined for zero counts (that is the point of shrinkage)
    assert r[3]["ic"] == pytest.approx(math.log2(0.5 / (10 * 10 / 120 + 0.5)))
    assert r[3]["ic025"] is not None and r[3]["ic025"] < r[3]["ic"] < r[3]["ic975"]


def test_n11_zero_ic_quantiles():
    out = score(frame([(0, 5, 5, 90)])).row(0, named=True)
    e = 5 * 5 / 100
    g = stats.gamma(0.5, scale=1 / (e + 0.5))
    assert out["ic025"] == pytest.approx(math.log2(g.ppf(0.025)), rel=1e-9)
    assert out["ic975"] == pytest.approx(math.log2(g.ppf(0.975)), rel=1e-9)


def test_given_expected_count_used_for_ic_only():
    f = frame([(4, 6, 10, 80)]).with_columns(e=pl.lit(2.5))
    out = score(f).row(0, named=True)
    assert out["ic"] == pytest.approx(math.log2(4.5 / 3.0))
    assert out["prr"] == pytest.approx((4 / 10) / (10 / 90))


def test_keeps_columns_and_order_and_ties():
    rows = [(3, 7, 5, 85), (1, 1, 1, 1), (3, 7, 5, 85), (0, 1, 2, 3)]
    f = frame(rows).with_columns(extra=pl.Series(["w", "x", "y", "z"]))
    out = score(f)
    assert out.columns[: len(f.columns)] == f.columns
    assert out["extra"].to_list() == ["w", "x", "y", "z"]
    assert out.height == 4
    # identical tables (ties) give identical scores
    assert out.row(0)[len(f.columns) :] == out.row(2)[len(f.columns) :]
    assert out.select(SCORE_COLUMNS).dtypes == [pl.Float64] * len(SCORE_COLUMNS)


def test_empty_frame():
    out = score(frame([]))
    assert out.height == 0 and set(SCORE_COLUMNS) <= set(out.columns)


def test_impossible_table_raises():
    f = pl.DataFrame({"drug": ["x"], "event": ["y"], "n11": [5], "n1_": [3], "n_1": [10], "n": [100]})
    with pytest.raises(ValueError, match="impossible"):
        score(f)
    with pytest.raises(ValueError, match="missing"):
        score(f.drop("n"))


# ---------------------------------------------------------------- multiplicity
def test_fisher_one_sided_matches_scipy_fisher_exact():
    from signals.multiplicity import fisher_one_sided

    tables = [(10, 90, 20, 880), (3, 5, 7, 1000), (0, 4, 6, 50), (2, 2, 2, 2)]
    a, b, c, d = (np.array(x) for x in zip(*tables))
    p = fisher_one_sided(a, a + b, a + c, a + b + c + d)
    for (ai, bi, ci, di), pi in zip(tables, p):
        assert pi == pytest.approx(stats.fisher_exact([[ai, bi], [ci, di]], alternative="greater").pvalue, rel=1e-9)
    mid = fisher_one_sided(a, a + b, a + c, a + b + c + d, mid_p=True)
    hg = stats.hypergeom(110 + 890, 100, 30)
    assert mid[0] == pytest.approx(hg.sf(10) + 0.5 * hg.pmf(10), rel=1e-12)


def test_benjamini_hochberg_by_hand():
    from signals.multiplicity import add_fdr, benjamini_hochberg

    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    rej, q = benjamini_hochberg(p, alpha=0.05)
    # sorted p: .005 .01 .03 .04 (m=4) -> q = min over k>=i of p_k*m/k
    assert q[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert rej.tolist() == [True, True, True, True, False] and np.isnan(q[4])
    out = add_fdr(frame([(10, 90, 20, 880), (1, 9, 99, 891)]))
    assert out["fdr_signal"].to_list() == [True, False]

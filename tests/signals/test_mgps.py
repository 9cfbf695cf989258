"""MGPS against FDA openEBGM's published CAERS results and independent integration.

Published numbers (openEBGM vignettes, Canida & Ihrie 2017, R Journal 9(2);
CRAN openEBGM inst/doc/x3_hyperParameterVignette.html and
x4_posteriorCalculationVignette.html), all from
``processRaw(caers, stratify = FALSE, zeroes = FALSE)``: 17189 pairs,
distinct-report counts, E = N_v1·N_v2/N_tot.
"""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate, optimize, stats

from signals import mgps
from signals.disproportionality import score

CAERS = Path("/work/shared/data/caers/caers_2012_dietary_supplements.csv")

# autoHyper(processed, squashed = FALSE): nlminb estimate and its minimum -LL
PUB_FULL = (3.25596617, 0.39998845, 2.02374464, 1.90612821, 0.06530723)
PUB_FULL_NEGLL = 4162.456
# autoHyper(squashed2) in the posterior vignette: theta_hat used for Qn/EBGM/quantiles
PUB_THETA_HAT = (3.25379064, 0.39988801, 2.02613219, 1.90808279, 0.06534557)
# head(processed) rows: var1, var2, N, E, Qn, ebgm, QUANT_05, QUANT_95 (scores rounded to 2 dp)
PUB_ROWS = [
    ("1-PHENYLALANINE", "HEART RATE INCREASED", 1, 0.0360548272, 0.2819736, 2.23, 0.49, 13.85),
    ("11 UNSPECIFIED VITAMINS", "ASTHMA", 1, 0.0038736591, 0.3409652, 2.58, 0.52, 15.78),
    ("11 UNSPECIFIED VITAMINS", "CARDIAC FUNCTION TEST", 1, 0.0002979738, 0.3482316, 2.63, 0.52, 16.02),
    ("11 UNSPECIFIED VITAMINS", "CHEST PAIN", 1, 0.0360548272, 0.2819736, 2.23, 0.49, 13.85),
    ("11 UNSPECIFIED VITAMINS", "DYSPNOEA", 1, 0.0765792610, 0.2226354, 1.92, 0.47, 11.77),
    ("11 UNSPECIFIED VITAMINS", "HYPERSENSITIVITY", 1, 0.0527413588, 0.2556668, 2.09, 0.48, 12.95),
    ("REUMOFAN PLUS", "WEIGHT INCREASED", 16, 0.40643623, None, 23.26, 15.68, 33.48),
    ("HYDROXYCUT REGULAR RAPID RELEASE CAPLETS", "EMOTIONAL DISTRESS", 19, 0.89690107, None, 16.78, 11.65, 23.55),
    ("REUMOFAN PLUS", "IMMOBILE", 6, 0.07866508, None, 18.28, 10.16, 30.83),
    ("HYDROXYCUT HARDCORE CAPSULES", "CARDIO-RESPIRATORY DISTRESS", 8, 0.30482718, None, 15.25, 9.00, 24.52),
    ("HYDROXYCUT REGULAR RAPID RELEASE CAPLETS", "INJURY", 11, 0.56317044, None, 14.28, 8.98, 21.78),
]


@pytest.fixture(scope="module")
def caers_counts():
    if not CAERS.exists():
        pytest.skip("CAERS sample not available")
    raw = pl.read_csv(CAERS)  # columns id, var1 (product), var2 (event), strat1 (sex)
    from signals.stratification import contingency_counts

    return contingency_counts(raw, report_col="id", drug_col="var1", event_col="var2")


@pytest.fixture(scope="module")
def full_fit(caers_counts):
    return mgps.fit_prior(caers_counts["n11"], caers_counts["e"], squash_data=False)


def test_caers_counts_match_processraw(caers_counts):
    c = caers_counts
    assert c.height == 17189
    assert c["n"][0] == 3356
    for v1, v2, n, e, *_ in PUB_ROWS:
        row = c.filter((pl.col("drug") == v1) & (pl.col("event") == v2)).row(0, named=True)
        assert row["n11"] == n
        assert row["e"] == pytest.approx(e, rel=1e-7)


def test_likelihood_equals_openebgm_at_their_estimate(caers_counts):
    nll = mgps.neg_loglik(PUB_FULL, caers_counts["n11"], caers_counts["e"])
    assert nll == pytest.approx(PUB_FULL_NEGLL, abs=5e-4)


def test_fit_reproduces_openebgm_full_data(full_fit):
    # openEBGM's own three starts agree only to ~1e-4 relative (alpha1 has SE 2.3)
    assert full_fit.theta == pytest.approx(np.array(PUB_FULL), rel=5e-4)
    assert -full_fit.loglik <= PUB_FULL_NEGLL + 1e-3
    assert full_fit.converged and full_fit.n_agree >= 2 and not full_fit.at_bound
    assert full_fit.n_pairs == 17189


def test_squashed_fit_close_to_full(caers_counts, full_fit):
    sq = mgps.fit_prior(caers_counts["n11"], caers_counts["e"], squash_data=True)
    assert sq.squashed_points < 2000
    assert sq.theta == pytest.approx(full_fit.theta, rel=1e-3)


def test_posterior_scores_match_openebgm(caers_counts):
    prior = mgps.GammaMixturePrior(*PUB_THETA_HAT)
    c = caers_counts
    s = mgps.eb_scores(c["n11"].to_numpy(), c["e"].to_numpy(), prior)
    scored = c.with_columns(q=s.q, ebgm=s.ebgm, eb05=s.eb05, eb95=s.eb95)
    for v1, v2, _n, _e, qn, g, lo, hi in PUB_ROWS:
        row = scored.filter((pl.col("drug") == v1) & (pl.col("event") == v2)).row(0, named=True)
        if qn is not None:
            assert row["q"] == pytest.approx(qn, abs=1e-7)
        assert row["ebgm"] == pytest.approx(g, abs=0.005 + 1e-9)
        # quantBisect stops at tolerance 0.5e-2 before rounding to 2 dp: +-0.01
        assert row["eb05"] == pytest.approx(lo, abs=0.01 + 1e-9)
        assert row["eb95"] == pytest.approx(hi, abs=0.01 + 1e-9)
    # "suspicious <- processed[processed$QUANT_05 >= 2, ]" -> 131 of 17189
    assert int((scored["eb05"] >= 2).sum()) == 131


def _posterior_pdf(x, n, e, pr):
    q = mgps.posterior_weight(n, e, pr)
    return q * stats.gamma.pdf(x, pr.alpha1 + n, scale=1 / (pr.beta1 + e)) + (1 - q) * stats.gamma.pdf(
        x, pr.alpha2 + n, scale=1 / (pr.beta2 + e)
    )


@pytest.mark.parametrize("n,e", [(1, 0.0003), (1, 0.5), (3, 2.0), (6, 0.0787), (40, 12.5), (0, 1.0), (250, 240.0)])
def test_ebgm_and_quantiles_against_quadrature(n, e):
    pr = mgps.GammaMixturePrior(*PUB_THETA_HAT)
    # E[ln lambda] by adaptive quadrature of the posterior density
    # integrate over the posterior's bulk (outside it the mass is < 1e-15), split at the modes
    comps = [stats.gamma(pr.alpha1 + n, scale=1 / (pr.beta1 + e)), stats.gamma(pr.alpha2 + n, scale=1 / (pr.beta2 + e))]
    top = max(c.isf(1e-16) for c in comps)
    modes = sorted(max(c.args[0] - 1, 0) * c.kwds["scale"] for c in comps)
    pts = [m for m in modes if 0 < m < top]
    mlog = integrate.quad(
        lambda x: np.log(x) * _posterior_pdf(x, n, e, pr), 0, top, points=pts, limit=500, epsabs=1e-14
    )[0]
    assert mgps.ebgm(n, e, pr) == pytest.approx(np.exp(mlog), rel=1e-6)
    for q in (0.05, 0.95, 0.5):

        def cdf(x, q=q):
            inner = [m for m in pts if m < x]
            return (
                integrate.quad(
                    lambda t: _posterior_pdf(t, n, e, pr), 0, x, points=inner or None, limit=500, epsabs=1e-15
                )[0]
                - q
            )

        ref = optimize.brentq(cdf, 1e-12, top, xtol=1e-15, rtol=1e-13)
        assert float(mgps.quantile(n, e, pr, q)) == pytest.approx(ref, rel=1e-6)


def test_quantile_monte_carlo_loose():
    pr = mgps.GammaMixturePrior(*PUB_THETA_HAT)
    rng = np.random.default_rng(7)
    n, e = 2, 0.3
    q = mgps.posterior_weight(n, e, pr)
    m = 400_000
    comp = rng.random(m) < q
    draws = np.where(
        comp, rng.gamma(pr.alpha1 + n, 1 / (pr.beta1 + e), m), rng.gamma(pr.alpha2 + n, 1 / (pr.beta2 + e), m)
    )
    assert float(mgps.quantile(n, e, pr, 0.05)) == pytest.approx(np.quantile(draws, 0.05), rel=0.02)
    assert float(mgps.ebgm(n, e, pr)) == pytest.approx(np.exp(np.log(draws).mean()), rel=0.01)


def test_eb_scores_agree_with_scalar_functions():
    pr = mgps.GammaMixturePrior(0.2, 0.1, 2.0, 4.0, 1 / 3)
    n = np.array([0, 1, 1, 2, 5, 5, 100])
    e = np.array([0.1, 0.01, 0.01, 3.0, 0.2, 0.2, 80.0])
    s = mgps.eb_scores(n, e, pr)
    np.testing.assert_allclose(s.ebgm, mgps.ebgm(n, e, pr), rtol=1e-12)
    np.testing.assert_allclose(s.eb05, mgps.quantile(n, e, pr, 0.05), rtol=1e-12)
    np.testing.assert_allclose(s.eb95, mgps.quantile(n, e, pr, 0.95), rtol=1e-12)
    assert np.all(s.eb05 < s.ebgm) and np.all(s.ebgm < s.eb95)


@pytest.mark.parametrize("k", [0, 2])
def test_analytic_gradient(k, caers_counts):
    c = caers_counts.filter(pl.col("n11") >= k + 1)
    n, e = c["n11"].to_numpy().astype(float), c["e"].to_numpy()
    x = np.log(np.array([3.0, 0.4, 2.0, 1.9, 0.07 / 0.93]))

    def f(x):
        return mgps._negll_and_grad(x, mgps._points(n, e, np.ones_like(n)), k)

    g = f(x)[1]
    h = 1e-5  # central differences (forward ones are too coarse here)
    num = [(f(x + h * u)[0] - f(x - h * u)[0]) / (2 * h) for u in np.eye(5)]
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-5)


def test_min_count_two_fits(caers_counts):
    c = caers_counts
    pr = mgps.fit_prior(c["n11"], c["e"], min_count=2, squash_data=True)
    assert pr.converged and pr.n_pairs == int((c["n11"] >= 2).sum())


def test_non_convergence_raises_with_what_was_tried(caers_counts):
    with pytest.raises(mgps.MGPSFitError, match=r"start \(0\.2, 0\.1"):
        mgps.fit_prior(caers_counts["n11"], caers_counts["e"], max_iter=2)
    with pytest.raises(ValueError, match="no pairs"):
        mgps.fit_prior([0, 0], [1.0, 1.0])


def test_homogeneous_data_does_not_crash():
    rng = np.random.default_rng(1)
    e = rng.uniform(0.5, 20, 3000)
    n = rng.poisson(e)  # lambda == 1 everywhere
    pr = mgps.fit_prior(n, e)
    g = mgps.ebgm(n[n > 0], e[n > 0], pr)
    assert np.all(np.isfinite(g)) and np.median(g) == pytest.approx(1.0, abs=0.15)
    # exactly n == E
    e2 = np.repeat(np.arange(1.0, 11.0), 50)
    pr2 = mgps.fit_prior(e2, e2)
    assert np.isfinite(pr2.loglik)
    assert np.all(np.isfinite(mgps.quantile(e2, e2, pr2, 0.05)))


def test_score_with_prior(caers_counts):
    c = caers_counts.head(500)
    pr = mgps.GammaMixturePrior(*PUB_THETA_HAT)
    out = score(c, prior=pr)
    np.testing.assert_allclose(
        out["ebgm"].to_numpy(), mgps.ebgm(c["n11"].to_numpy(), c["e"].to_numpy(), pr), rtol=1e-12
    )
    fitted = score(caers_counts, prior="fit")
    assert fitted["eb05"].null_count() == 0 and int((fitted["eb05"] >= 2).sum()) == pytest.approx(131, abs=3)
    with pytest.raises(ValueError):
        score(c, prior="bogus")


def test_prior_validation():
    with pytest.raises(ValueError):
        mgps.GammaMixturePrior(alpha1=-1, beta1=1, alpha2=1, beta2=1, p=0.5)
    pr = mgps.GammaMixturePrior(alpha1=1, beta1=1, alpha2=2, beta2=2, p=0.3)
    assert pr.theta.tolist() == [1, 1, 2, 2, 0.3]


def test_no_count_without_expectation_is_a_null_without_warning():
    """n ≥ 1 with E = 0 has zero likelihood under N ~ Poisson(λE): every figure is NaN (null), and no warning."""
    import warnings

    pr = mgps.GammaMixturePrior(0.2, 0.1, 2.0, 4.0, 1 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = mgps.eb_scores(np.array([1.0, 0.0, 3.0]), np.array([0.0, 0.0, 1.5]), pr)
    assert np.isnan([s.ebgm[0], s.eb05[0], s.eb95[0], s.q[0]]).all()
    # n = 0, E = 0: nothing observed, nothing expected: the posterior is the prior
    assert s.q[1] == pytest.approx(pr.p) and np.isfinite([s.ebgm[1], s.eb05[1], s.eb95[1]]).all()
    assert np.isfinite([s.ebgm[2], s.eb05[2], s.eb95[2]]).all() and s.eb05[2] < s.ebgm[2] < s.eb95[2]

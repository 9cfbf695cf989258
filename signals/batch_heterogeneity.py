"""Batch heterogeneity: does one batch of a product report more than the product's other batches?

PV Trace knows the real exposure of every batch (packs delivered or person-time, from the
delivery logs), so a batch's reporting *rate* is observed, not guessed.  This module compares,
within each (product, event) group, every batch with the rest of that product:

* :func:`batch_rate_tests` — exact conditional test (binomial given the group total), exact
  conditional rate-ratio CI, empirical-Bayes Poisson–gamma shrunken rate ratio, and
  Benjamini–Hochberg q-values;
* :func:`batch_overdispersion` — intercept-only negative-binomial model across the batches of a
  group (log-exposure offset): dispersion, standardised residuals, NB tail p-values;
* :func:`funnel_limits` — funnel-plot data with exact Poisson control limits (Spiegelhalter 2005);
* :func:`onset_comparison` — time-to-onset of a batch's cases vs the rest of the product
  (medians, one-sided Kolmogorov–Smirnov and Mann–Whitney U);
* :func:`batch_heterogeneity` — all of the above joined per batch, with a configurable ``flagged``.

Input (``frame``): one row per (``product``, ``event``, ``batch``) with ``cases`` (reports of that
event linked to that batch, integer >= 0) and ``exposure`` (> 0, finite).  Extra columns are
kept by :func:`batch_rate_tests`.  Events may be PTs or SOCs; the caller decides.  Every batch of
the product that had exposure should appear, also with ``cases == 0`` — batches left out are
invisible to the comparison.

Everything is vectorised over all groups at once (group sums with ``np.bincount`` on a dense
group index).  Values that are undefined (a product with one batch, a group with no case, an
unbounded upper limit) are returned as null, never inf/NaN.

Pure statistics: polars/numpy/scipy/statsmodels only, no I/O.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special, stats

__all__ = [
    "FlagRule",
    "batch_rate_tests",
    "batch_overdispersion",
    "funnel_limits",
    "onset_comparison",
    "batch_heterogeneity",
    "benjamini_hochberg",
    "tarone_benjamini_hochberg",
    "family_multiplicity",
]

GROUP_KEYS = ["product", "event"]
BATCH_KEYS = ["product", "event", "batch"]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Groups:
    """Sorted frame plus the dense group index and per-row group totals (all numpy)."""

    frame: pl.DataFrame  # sorted by product, event, batch
    gid: np.ndarray  # dense (product, event) index per row, 0..n_groups-1
    n_groups: int
    y: np.ndarray  # cases, float64
    x: np.ndarray  # exposure, float64
    n_batches: np.ndarray  # per row: batches in its group
    cases_total: np.ndarray  # per row: N, group total of cases
    exposure_total: np.ndarray  # per row: X, group total of exposure


def _dense_group_index(sorted_frame: pl.DataFrame, keys: list[str]) -> np.ndarray:
    """0-based index that increments whenever any key changes in a frame sorted by ``keys``."""
    if sorted_frame.height == 0:
        return np.zeros(0, dtype=np.int64)
    change = pl.lit(False)
    for k in keys:
        change = change | (pl.col(k) != pl.col(k).shift(1)).fill_null(True)
    return sorted_frame.select(change.cast(pl.Int64).cum_sum() - 1).to_series().to_numpy().astype(np.int64)


def _prepare(frame: pl.DataFrame) -> _Groups:
    missing = [c for c in [*BATCH_KEYS, "cases", "exposure"] if c not in frame.columns]
    if missing:
        raise ValueError(f"batch frame lacks column(s) {missing}; needs {BATCH_KEYS + ['cases', 'exposure']}")
    for k in BATCH_KEYS:
        if frame[k].null_count():
            raise ValueError(f"column {k!r} has {frame[k].null_count()} null value(s)")
    expo = frame["exposure"].cast(pl.Float64)
    bad_x = ~(expo.is_finite().fill_null(False) & (expo > 0).fill_null(False))
    if bad_x.any():
        example = frame.filter(bad_x).head(3).select([*BATCH_KEYS, "exposure"]).to_dicts()
        raise ValueError(
            f"exposure must be finite and > 0 for every batch; {int(bad_x.sum())} row(s) are not, "
            f"e.g. {example}. A batch with no exposure cannot have a rate: drop it upstream "
            "(and quarantine any case linked to it)."
        )
    cases = frame["cases"].cast(pl.Float64)
    # polars orders NaN above every number and NaN == NaN: test finiteness explicitly
    bad_y = ~(cases.is_finite() & (cases >= 0) & (cases == cases.floor())).fill_null(False)
    if bad_y.any():
        example = frame.filter(bad_y).head(3).select([*BATCH_KEYS, "cases"]).to_dicts()
        raise ValueError(
            f"cases must be finite non-negative integers; {int(bad_y.sum())} row(s) are not, e.g. {example}"
        )
    f = frame.sort(BATCH_KEYS, maintain_order=True)
    if f.height > 1:
        same = pl.lit(True)
        for k in BATCH_KEYS:
            same = same & (pl.col(k) == pl.col(k).shift(1)).fill_null(False)
        dup = f.select(same.any()).item()
        if dup:
            raise ValueError("duplicate (product, event, batch) rows; aggregate cases/exposure first")
    gid = _dense_group_index(f, GROUP_KEYS)
    n_groups = int(gid.max()) + 1 if gid.size else 0
    y = f["cases"].cast(pl.Float64).to_numpy()
    x = f["exposure"].cast(pl.Float64).to_numpy()
    nb = np.bincount(gid, minlength=n_groups)
    N = np.bincount(gid, weights=y, minlength=n_groups)
    X = np.bincount(gid, weights=x, minlength=n_groups)
    return _Groups(f, gid, n_groups, y, x, nb[gid].astype(np.int64), N[gid], X[gid])


def _col(values: np.ndarray, valid: np.ndarray | None = None, name: str = "") -> pl.Series:
    """Float64 series with null wherever ``valid`` is False or the value is not finite."""
    v = np.array(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if valid is not None:
        bad |= ~np.asarray(valid, dtype=bool)
    v[bad] = np.nan
    return pl.Series(name, v).fill_nan(None)


# --------------------------------------------------------------------------------------------
# 6. Multiple testing
# --------------------------------------------------------------------------------------------
def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg (1995) q-values over the non-NaN entries of ``p``; NaN stays NaN.

    q_(i) = min_{j >= i} m p_(j) / j, computed with
    ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``.  Rejecting q < Q controls the
    false discovery rate at Q for independent or positively dependent tests (Benjamini &
    Hochberg 1995; Benjamini & Yekutieli 2001).  With discrete (exact) p-values it is conservative.
    A p-value outside [0, 1] (or infinite) is a bug upstream: ``ValueError``.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1] (NaN = no test)")
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def tarone_benjamini_hochberg(p: np.ndarray, p_min: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """BH q-values over Tarone's subset of discrete tests that *can* reach significance (Gilbert 2005).

    An exact test of a sparse group (e.g. one batch among ten, two reports in all) cannot give a
    small p-value whatever the data: its smallest attainable p-value ``p_min`` is large.
    Counting such tests in a multiplicity correction only costs power (Tarone 1990, Biometrics
    46:515-522).  Gilbert (2005, J R Stat Soc C 54:143-158) applies BH to Tarone's subset:
    K = the smallest integer with ``m(K) = #{i : p_min_i <= alpha / K} <= K``, then BH over the
    ``m(K)`` tests with ``p_min <= alpha / K``, which controls the FDR at ``alpha``.  Tests
    outside the subset get NaN (they cannot be rejected at ``alpha``).  The q-values are only
    meaningful against the same ``alpha`` the subset was chosen for.
    """
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    p = np.asarray(p, dtype=np.float64)
    p_min = np.asarray(p_min, dtype=np.float64)
    if p.shape != p_min.shape:
        raise ValueError("p and p_min must have the same shape")
    ok = np.isfinite(p) & np.isfinite(p_min)
    q = np.full(p.shape, np.nan)
    m = int(ok.sum())
    if m == 0:
        return q
    pm = np.sort(p_min[ok])
    Ks = np.arange(1, m + 1)
    counts = np.searchsorted(pm, alpha / Ks, side="right")
    K = int(Ks[np.argmax(counts <= Ks)])
    subset = ok & (p_min <= alpha / K)
    if subset.any():
        q[subset] = benjamini_hochberg(p[subset])
    return q


# --------------------------------------------------------------------------------------------
# 1 + 2. Exact conditional test and empirical-Bayes shrinkage
# --------------------------------------------------------------------------------------------
def _exact_conditional(y, x, N, X, defined, ci_level):
    """Exact one-sided p-value and conditional CI for the rate ratio batch vs rest (see caller)."""
    p, rr_lo, rr_hi = (np.full(y.shape, np.nan) for _ in range(3))
    d = np.flatnonzero(defined)
    y, x, N, X = y[d], x[d], N[d], X[d]
    a = 1.0 - ci_level
    with np.errstate(divide="ignore", invalid="ignore"):
        p[d] = stats.binom.sf(y - 1, N, x / X)
        # Clopper–Pearson limits for the binomial proportion y/N
        p_lo = np.where(y > 0, special.betaincinv(y, N - y + 1, a / 2), 0.0)
        p_hi = np.where(y < N, special.betaincinv(y + 1, N - y, 1 - a / 2), 1.0)
        odds_to_rr = (X - x) / x
        rr_lo[d] = p_lo / (1 - p_lo) * odds_to_rr
        rr_hi[d] = np.where(y < N, p_hi / (1 - p_hi) * odds_to_rr, np.nan)
    return p, rr_lo, rr_hi


def _attainable_p_min(x, X, N, defined):
    """Smallest attainable p-value of the exact conditional test, pi^N with pi = x / X (all N
    reports in the batch); NaN where the test is not defined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, (x / X) ** N, np.nan)


def _eb_prior_shape(g: _Groups, prior_shape_max: float, min_batches: int):
    """Per-group Poisson–gamma prior shape alpha (prior mean = pooled rate) and how it was chosen.

    Method of moments of Clayton & Kaldor (1987) in the exposure-weighted form of Marshall (1991):
        m  = N / X                                 (pooled rate; prior mean = alpha / beta)
        s2 = sum_b x_b (y_b/x_b - m)^2 / X         (exposure-weighted variance of batch rates)
        A  = s2 - m / xbar,  xbar = X / n_batches  (between-batch variance of the true rates)
        alpha = m^2 / A,  beta = m / A.
    Fallback (documented choice): when there are fewer than ``min_batches`` batches, or A <= 0
    (no overdispersion visible), or m^2/A > ``prior_shape_max``, alpha = ``prior_shape_max``:
    the prior's coefficient of variation never drops below 1/sqrt(prior_shape_max) (20% for the
    default 25).  A moment estimate from ~10 sparse batches is noisy and truncating A at zero
    would claim total shrinkage, i.e. zero-width intervals at exactly 1.
    """
    k = g.n_groups
    nb_g = np.bincount(g.gid, minlength=k)
    N_g = np.bincount(g.gid, weights=g.y, minlength=k)
    X_g = np.bincount(g.gid, weights=g.x, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_g = N_g / X_g
        r = g.y / g.x
        s2_g = np.bincount(g.gid, weights=g.x * (r - m_g[g.gid]) ** 2, minlength=k) / X_g
        A_g = s2_g - m_g / (X_g / nb_g)
        alpha_mom = m_g**2 / A_g
    method = np.full(k, "mom", dtype=object)
    alpha = alpha_mom.copy()
    few = nb_g < min_batches
    no_od = ~few & ~(A_g > 0)
    capped = ~few & (A_g > 0) & ~(alpha_mom <= prior_shape_max)
    method[few] = "fallback_few_batches"
    method[no_od] = "fallback_no_overdispersion"
    method[capped] = "capped"
    alpha[few | no_od | capped] = prior_shape_max
    undefined = (nb_g < 2) | (N_g <= 0)
    method[nb_g < 2] = "undefined_single_batch"
    method[(nb_g >= 2) & (N_g <= 0)] = "undefined_no_cases"
    alpha[undefined] = np.nan
    return alpha, method, undefined


def batch_rate_tests(
    frame: pl.DataFrame,
    *,
    ci_level: float = 0.95,
    cred_level: float = 0.90,
    prior_shape_max: float = 25.0,
    min_batches_eb: int = 3,
    discrete_fdr_alpha: float | None = None,
) -> pl.DataFrame:
    """Exact conditional test, conditional rate-ratio CI, EB shrunken rate ratio, BH q-values.

    For batch b of a (product, event) group with ``y`` cases and exposure ``x``, group totals
    N = sum cases and X = sum exposure, rest = the product's other batches:

    **Exact conditional test** (Breslow & Day 1987, vol. II §7.x "comparison of two rates";
    Ulm 1990 for exact Poisson limits).  Conditional on N, under H0 (equal rates) the batch count
    is ``K ~ Binomial(N, pi)`` with pi = x / X.  One-sided p-value (batch reports *more*):
        p_exact = P(K >= y) = binom.sf(y - 1, N, pi).
    Rate ratio batch vs rest: rr = (y / x) / ((N - y) / (X - x)).  Its exact conditional CI
    (``ci_level``, two-sided, default 95%) transforms the Clopper–Pearson interval [p_L, p_U] of
    the proportion y / N:  RR = p / (1 - p) * (X - x) / x.  Note: one-sided p < (1-ci_level)/2
    iff rr_lo > 1.  Null when undefined: one batch only, or N = 0 (p, rr, CI); y = N (rr and
    rr_hi, the interval is unbounded above); y = N - y = 0.

    **Empirical-Bayes shrunken rate ratio** (Clayton & Kaldor 1987; Marshall 1991).
    rate_b ~ Gamma(alpha, beta) across the product's batches with prior mean the pooled rate
    m = N / X (beta = alpha / m); alpha by method of moments (see ``_eb_prior_shape``: fewer than
    ``min_batches_eb`` batches or no overdispersion -> alpha = ``prior_shape_max``).  Posterior
    rate_b | y ~ Gamma(alpha + y, beta + x), so the ratio to the pooled rate is
        RR_b / m ~ Gamma(shape = alpha + y, rate = alpha + e),   e = m x = expected cases,
        rr_shrunk = (alpha + y) / (alpha + e),
    with an equal-tailed ``cred_level`` credible interval (default **90%**: rr_shrunk_lo is the
    5th posterior percentile, the "EB05" convention of DuMouchel 1999).  It is a plug-in EB
    interval: the uncertainty in alpha and m is ignored, so it is somewhat too narrow
    (Laird & Louis 1987).

    **Multiple testing**: q_exact = Benjamini–Hochberg over every batch with a defined p_exact
    (groups with >= 2 batches and >= 1 case; groups with N = 0 have a degenerate conditional
    test and are not counted as tests).  With ``discrete_fdr_alpha`` set, q_exact is instead
    :func:`tarone_benjamini_hochberg` at that level, with the smallest attainable p-value of each
    conditional test ``p_min = pi^N`` (all N reports in the batch): tests that cannot reach
    significance do not dilute the others.

    Returns the input (sorted by product, event, batch; extra columns kept) plus: n_batches,
    cases_total, exposure_total, rate, rate_rest, expected (N pi), rr, rr_lo, rr_hi, p_exact,
    q_exact, eb_alpha, eb_method, rr_shrunk, rr_shrunk_lo, rr_shrunk_hi.  Rates are per unit of
    ``exposure``.
    """
    for name, v in (("ci_level", ci_level), ("cred_level", cred_level)):
        if not (0 < v < 1):
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    if not (prior_shape_max > 0 and np.isfinite(prior_shape_max)):
        raise ValueError(f"prior_shape_max must be a positive number, got {prior_shape_max!r}")
    if not (min_batches_eb >= 2 and int(min_batches_eb) == min_batches_eb):
        raise ValueError(f"min_batches_eb must be an integer >= 2, got {min_batches_eb!r}")
    if discrete_fdr_alpha is not None and not (0 < discrete_fdr_alpha < 1):
        raise ValueError(f"discrete_fdr_alpha must be in (0, 1), got {discrete_fdr_alpha!r}")
    g = _prepare(frame)
    y, x, N, X, nb = g.y, g.x, g.cases_total, g.exposure_total, g.n_batches
    defined = (nb >= 2) & (N > 0)
    x_rest, y_rest = X - x, N - y
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = y / x
        rate_rest = y_rest / x_rest
        rr = rate / rate_rest
    p, rr_lo, rr_hi = _exact_conditional(y, x, N, X, defined, ci_level)
    if discrete_fdr_alpha is None:
        q = benjamini_hochberg(p)
    else:
        q = tarone_benjamini_hochberg(p, _attainable_p_min(x, X, N, defined), discrete_fdr_alpha)

    alpha_g, method_g, _ = _eb_prior_shape(g, prior_shape_max, min_batches_eb)
    a_eb = alpha_g[g.gid]
    e = np.where(nb >= 2, N * x / X, np.nan)  # expected cases under the pooled rate
    rr_s, rr_s_lo, rr_s_hi = (np.full(y.shape, np.nan) for _ in range(3))
    d = np.flatnonzero(defined)
    shape, rate_post = a_eb[d] + y[d], a_eb[d] + e[d]
    tail = (1 - cred_level) / 2
    rr_s[d] = shape / rate_post
    rr_s_lo[d] = special.gammaincinv(shape, tail) / rate_post
    rr_s_hi[d] = special.gammainccinv(shape, tail) / rate_post
    method = pl.Series("eb_method", method_g.astype(str), dtype=pl.String).gather(g.gid)

    return g.frame.with_columns(
        pl.Series("n_batches", nb, dtype=pl.Int64),
        pl.Series("cases_total", N).cast(pl.Int64),
        pl.Series("exposure_total", X),
        _col(rate, name="rate"),
        _col(rate_rest, nb >= 2, "rate_rest"),
        _col(e, nb >= 2, "expected"),
        _col(rr, defined & (y_rest > 0), "rr"),
        _col(rr_lo, defined, "rr_lo"),
        _col(rr_hi, defined, "rr_hi"),
        _col(p, defined, "p_exact"),
        _col(q, defined, "q_exact"),
        _col(a_eb, defined, "eb_alpha"),
        method,
        _col(rr_s, defined, "rr_shrunk"),
        _col(rr_s_lo, defined, "rr_shrunk_lo"),
        _col(rr_s_hi, defined, "rr_shrunk_hi"),
    )


# --------------------------------------------------------------------------------------------
# 3. Overdispersion across batches: negative binomial, intercept only, log-exposure offset
# --------------------------------------------------------------------------------------------
def _nb_loglik(y, mu, theta, gid, k):
    """Per-group NB2 log-likelihood, theta = 1/alpha (var = mu + mu^2/theta)."""
    ll = (
        special.gammaln(y + theta)
        - special.gammaln(theta)
        - special.gammaln(y + 1)
        + theta * np.log(theta / (theta + mu))
        + special.xlogy(y, mu / (theta + mu))
    )
    return np.bincount(gid, weights=ll, minlength=k)


_ALPHA_GRID = 10.0 ** np.arange(-3.0, 3.01, 0.5)
#: an NB fit replaces the Poisson model only if it raises the log-likelihood by more than this:
#: NB2 log-likelihoods near alpha = 0 carry ~1e-7 of rounding (lgamma(y + 1/alpha) - lgamma(1/alpha)),
#: and a gain of 1e-6 is a likelihood-ratio chi-square of 2e-6 -- statistically nothing
_LL_GAIN_MIN = 1e-6


def _profile_grid_start(y, x, gid, k, grid=_ALPHA_GRID, b_iter=12):
    """Best alpha of ``grid`` on the NB2 profile log-likelihood of each group, NaN where none
    beats the Poisson likelihood.  For each grid alpha, b0 is profiled out by Fisher scoring
    (``b_iter`` steps from log(N/X); the b0 score sum (y - mu)/(1 + alpha mu) is monotone)."""
    N = np.bincount(gid, weights=y, minlength=k)
    X = np.bincount(gid, weights=x, minlength=k)
    b_pois = np.log(N / X)
    mu_p = x * np.exp(b_pois)[gid]
    best = np.bincount(gid, weights=special.xlogy(y, mu_p) - mu_p - special.gammaln(y + 1), minlength=k)
    best = best + _LL_GAIN_MIN
    out = np.full(k, np.nan)
    logx = np.log(x)
    for a in grid:
        b = b_pois.copy()
        for _ in range(b_iter):
            mu = np.exp(b[gid] + logx)
            U = np.bincount(gid, weights=(y - mu) / (1 + a * mu), minlength=k)
            I = np.bincount(gid, weights=mu / (1 + a * mu), minlength=k)
            b = b + U / I
        ll = _nb_loglik(y, np.exp(b[gid] + logx), 1.0 / a, gid, k)
        better = ll > best
        out[better] = a
        best = np.where(better, ll, best)
    return out


def _fit_nb_vectorized(y, x, gid, k, *, max_iter=200, tol=1e-7):
    """ML fit of y_b ~ NB2(mu_b = x_b exp(b0), alpha) for every group at once.

    Alternates a Fisher-scoring step for b0 with a damped Newton step for phi = log(theta),
    theta = 1 / alpha (b0 and alpha are orthogonal in the NB2 information, Lawless 1987), each
    vectorised over the groups still iterating.  Starts (Dean & Lawless 1989): the score for
    alpha at alpha = 0 is  T = 1/2 sum[(y - mu0)^2 - y]  with mu0 the Poisson fit.  T > 0 means
    the likelihood rises away from alpha = 0 and the moment estimate starts Newton.  T <= 0 only
    says alpha = 0 is a *local* maximum: the profile likelihood can still peak higher at some
    alpha > 0 (e.g. cases [0, 5, 45], exposures [1873.7, 1036.2, 17837.5]: alpha = 1.011, as
    MASS::glm.nb and statsmodels).  Those groups are started from the best point of a coarse
    grid of the profile likelihood (:func:`_profile_grid_start`) when it beats the Poisson
    likelihood, and the fitted NB is kept only if its likelihood is above the Poisson one.
    Returns per-group (b0, alpha, status) with status 'negbin', 'no_overdispersion' (the ML
    alpha is 0 and T <= 0), 'alpha_at_boundary' (alpha -> 0 although T > 0) or 'not_converged'.
    """
    N = np.bincount(gid, weights=y, minlength=k)
    X = np.bincount(gid, weights=x, minlength=k)
    with np.errstate(divide="ignore"):
        b0 = np.log(N / X)
    mu0 = x * np.exp(b0)[gid]
    T = np.bincount(gid, weights=(y - mu0) ** 2 - y, minlength=k)
    S2 = np.bincount(gid, weights=mu0**2, minlength=k)
    status = np.full(k, "negbin", dtype=object)
    status[~(T > 0)] = "no_overdispersion"
    alpha = np.zeros(k)
    # moment start: E[(y - mu)^2 - y] = alpha mu^2
    phi = np.full(k, np.nan)
    pos = T > 0
    phi[pos] = -np.log(np.maximum(T[pos] / S2[pos], 1e-4))
    # T <= 0: an interior maximum is still possible; start from the profile-likelihood grid
    nonpos = np.flatnonzero(~pos)
    if nonpos.size:
        sub = np.isin(gid, nonpos)
        remap0 = np.full(k, -1)
        remap0[nonpos] = np.arange(nonpos.size)
        a_start = _profile_grid_start(y[sub], x[sub], remap0[gid[sub]], nonpos.size)
        got = np.isfinite(a_start)
        phi[nonpos[got]] = -np.log(a_start[got])
    active = np.isfinite(phi)
    groups = np.flatnonzero(active)
    # restrict the work arrays to rows of active groups
    rows = np.flatnonzero(active[gid])
    remap = np.full(k, -1)
    remap[groups] = np.arange(groups.size)
    gy, gx, gg = y[rows], x[rows], remap[gid[rows]]
    kk = groups.size
    b = b0[groups].copy()
    ph = phi[groups].copy()
    done = np.zeros(kk, bool)
    boundary = np.zeros(kk, bool)
    logx = np.log(gx)
    for _n_iter in range(1, max_iter + 1):
        # work only on the rows of groups still iterating (rows are contiguous per group)
        rr = np.flatnonzero(~done[gg])
        if rr.size == 0:
            break
        cg, cy, clx = gg[rr], gy[rr], logx[rr]
        it = ~done
        theta = np.exp(ph)
        th = theta[cg]
        mu = np.exp(b[cg] + clx)
        U = np.bincount(cg, weights=(cy - mu) / (1 + mu / th), minlength=kk)
        I = np.bincount(cg, weights=mu / (1 + mu / th), minlength=kk)
        with np.errstate(divide="ignore", invalid="ignore"):
            db = np.where(it, U / I, 0.0)
        b = b + db
        mu = np.exp(b[cg] + clx)
        l_t = np.bincount(
            cg,
            weights=special.digamma(cy + th) - special.digamma(th) + np.log(th / (th + mu)) + (mu - cy) / (th + mu),
            minlength=kk,
        )
        l_tt = np.bincount(
            cg,
            weights=special.polygamma(1, cy + th)
            - special.polygamma(1, th)
            + 1 / th
            - 1 / (th + mu)
            - (mu - cy) / (th + mu) ** 2,
            minlength=kk,
        )
        g1 = theta * l_t  # d l / d phi
        g2 = theta * l_t + theta**2 * l_tt  # d2 l / d phi2
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(g2 < 0, -g1 / g2, np.sign(g1))  # Newton where concave, else unit ascent
        step = np.where(it, np.clip(np.nan_to_num(step), -2.0, 2.0), 0.0)
        # step halving on the log-likelihood in phi (b fixed), only for groups that got worse
        ll0 = _nb_loglik(cy, mu, th, cg, kk)
        tol_ll = 1e-10 * (1 + np.abs(ll0))
        check = it.copy()
        for _h in range(30):
            rows_c = check[cg]
            ll1 = _nb_loglik(cy[rows_c], mu[rows_c], np.exp(ph + step)[cg[rows_c]], cg[rows_c], kk)
            worse = check & ~(ll1 >= ll0 - tol_ll)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
            check = worse
        ph = ph + step
        boundary |= it & (ph > np.log(1e8))  # theta -> inf: alpha -> 0
        # converged when the steps are below tol, or below 1e-6 of the standard error of phi
        # (1/sqrt(-g2)): for large theta the digamma differences in g1 cancel to ~1e-10 noise
        # and phi is only determined to within that noise (and statistically very loosely)
        se_scale = np.sqrt(np.maximum(-g2, 0.0))
        conv = ((np.abs(step) < tol) | (np.abs(step) * se_scale < 1e-6)) & (np.abs(db) < tol)
        done |= conv | boundary
    alpha_active = np.exp(-ph)
    st = np.where(done, "negbin", "not_converged").astype(object)
    st[boundary] = "alpha_at_boundary"
    # keep an NB fit only where it beats the Poisson model (alpha = 0 at its own ML b0)
    mu_nb = np.exp(b[gg] + logx)
    ll_nb = _nb_loglik(gy, mu_nb, np.exp(ph)[gg], gg, kk)
    mu_p = gx * (N[groups] / X[groups])[gg]
    ll_p = np.bincount(gg, weights=special.xlogy(gy, mu_p) - mu_p - special.gammaln(gy + 1), minlength=kk)
    worse = (st == "negbin") & ~(ll_nb > ll_p + _LL_GAIN_MIN)
    st[worse] = "alpha_at_boundary"
    st[(st != "negbin") & ~(T[groups] > 0)] = "no_overdispersion"
    status[groups] = st
    alpha[groups] = np.where(st == "negbin", alpha_active, 0.0)
    b0[groups] = np.where(st == "negbin", b, b0[groups])
    return b0, alpha, status


def _fit_nb_statsmodels(y, x, gid, k, fit_groups, max_iter=200):
    """Reference engine: one ``statsmodels`` NegativeBinomial (NB2, ML alpha) fit per group."""
    import statsmodels.api as sm

    N = np.bincount(gid, weights=y, minlength=k)
    X = np.bincount(gid, weights=x, minlength=k)
    with np.errstate(divide="ignore"):
        b0 = np.log(N / X)
    alpha = np.zeros(k)
    status = np.full(k, "no_overdispersion", dtype=object)
    order = np.argsort(gid, kind="stable")
    bounds = np.searchsorted(gid[order], np.arange(k + 1))
    for j in np.flatnonzero(fit_groups):
        idx = order[bounds[j] : bounds[j + 1]]
        yy, xx = y[idx], x[idx]
        mu0 = xx * N[j] / X[j]
        score = float(np.sum((yy - mu0) ** 2 - yy))  # Dean & Lawless T (x2)
        ll_pois = float(np.sum(special.xlogy(yy, mu0) - mu0 - special.gammaln(yy + 1)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sm.NegativeBinomial(yy, np.ones((yy.size, 1)), offset=np.log(xx), loglike_method="nb2").fit(
                    start_params=[b0[j], 0.1], disp=0, maxiter=max_iter
                )
            a = float(res.params[-1])
            # labels as the vectorised engine: NB only where it beats the Poisson likelihood
            beats = np.isfinite(res.llf) and res.llf > ll_pois + _LL_GAIN_MIN
            if res.mle_retvals.get("converged", False) and np.isfinite(a) and a >= 1e-8 and beats:
                status[j], alpha[j], b0[j] = "negbin", a, float(res.params[0])
            elif score <= 0 and not beats:
                status[j] = "no_overdispersion"
            elif not res.mle_retvals.get("converged", False) or not np.isfinite(a):
                status[j] = "not_converged"
            else:
                status[j] = "alpha_at_boundary"
        except Exception as exc:
            status[j] = f"error: {type(exc).__name__}"
    return b0, alpha, status


def batch_overdispersion(frame: pl.DataFrame, *, engine: str = "vectorized", max_iter: int = 200) -> pl.DataFrame:
    """Negative-binomial model of the batch counts of each (product, event) group.

    Model (intercept only, log link, log-exposure offset; NB2, Cameron & Trivedi 2013 §3.3):
        y_b ~ NB(mu_b, alpha),  log mu_b = log x_b + b0,  Var y_b = mu_b + alpha mu_b^2,
    fitted by maximum likelihood for b0 and alpha (``nb_alpha``, the dispersion; 0 = Poisson).
    Per batch: Pearson residual (y - mu) / sqrt(mu + alpha mu^2); deviance residual
    sign(y - mu) sqrt(2 [y log(y/mu) - (y + 1/alpha) log((1 + alpha y)/(1 + alpha mu))]);
    one-sided tail ``p_nb`` = P(Y >= y) under the fitted NB, ``q_nb`` its BH q-value.  The batch
    is part of its own fit (not leave-one-out), so a single outlying batch inflates alpha and
    its own p_nb is conservative — this is a dispersion-aware *screen*, the exact test is in
    :func:`batch_rate_tests`.

    Fallback to Poisson (mu_b = x_b N / X, alpha = 0) with the reason in ``fit_note`` when the
    ML alpha is 0 (no alpha > 0 raises the likelihood and the score statistic for
    overdispersion T = sum[(y - mu)^2 - y] <= 0, Dean & Lawless 1989: 'no_overdispersion' --
    T <= 0 alone is not enough, the profile likelihood can peak at alpha > 0), alpha tends to
    0 although T > 0 ('alpha_at_boundary') or the fit fails
    ('not_converged', 'error: ...').  Groups with one batch or no case are not fitted
    (``model`` null, note 'single_batch' / 'no_cases').

    ``engine="vectorized"`` (default) solves all groups at once (alternating Fisher scoring for
    b0 / damped Newton for log(1/alpha)); ``engine="statsmodels"`` loops one
    ``statsmodels.discrete.NegativeBinomial`` fit per group — same model, ~1000x slower, kept as
    the reference (the tests check both agree).  ``max_iter`` bounds either solver's
    iterations; groups that hit it are 'not_converged' and get the Poisson model.
    """
    g = _prepare(frame)
    k, gid, y, x = g.n_groups, g.gid, g.y, g.x
    nb_g = np.bincount(gid, minlength=k)
    N_g = np.bincount(gid, weights=y, minlength=k)
    fit = (nb_g >= 2) & (N_g > 0)
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if engine == "vectorized":
        sub = fit[gid]
        b0, alpha, status = np.full(k, np.nan), np.zeros(k), np.full(k, "", dtype=object)
        if sub.any():
            grp = np.flatnonzero(fit)
            remap = np.full(k, -1)
            remap[grp] = np.arange(grp.size)
            b_s, a_s, s_s = _fit_nb_vectorized(y[sub], x[sub], remap[gid[sub]], grp.size, max_iter=max_iter)
            b0[grp], alpha[grp], status[grp] = b_s, a_s, s_s
    elif engine == "statsmodels":
        b0, alpha, status = _fit_nb_statsmodels(y, x, gid, k, fit, max_iter)
    else:
        raise ValueError(f"engine must be 'vectorized' or 'statsmodels', not {engine!r}")
    status = status.astype(object)
    status[(nb_g < 2)] = "single_batch"
    status[(nb_g >= 2) & (N_g <= 0)] = "no_cases"
    model = np.where(fit, np.where(status == "negbin", "negbin", "poisson"), "")

    a = alpha[gid]
    ok = fit[gid]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mu = x * np.exp(b0[gid])
        var = mu + a * mu**2
        pearson = (y - mu) / np.sqrt(var)
        pois_dev = 2 * (special.xlogy(y, y / mu) - (y - mu))
        th = 1 / a
        nb_dev = 2 * (special.xlogy(y, y / mu) - (y + th) * np.log((1 + a * y) / (1 + a * mu)))
        dev = np.where(a > 0, nb_dev, pois_dev)
        deviance = np.sign(y - mu) * np.sqrt(np.maximum(dev, 0.0))
        p_nb = np.where(a > 0, stats.nbinom.sf(y - 1, th, 1 / (1 + a * mu)), stats.poisson.sf(y - 1, mu))
    p_nb = np.where(ok, p_nb, np.nan)
    q_nb = benjamini_hochberg(p_nb)
    notes = status[gid]
    return g.frame.select(*BATCH_KEYS, "cases", "exposure").with_columns(
        pl.Series("model", model[gid].astype(str), dtype=pl.String).replace("", None),
        pl.Series("fit_note", notes.astype(str), dtype=pl.String),
        _col(a, model[gid] == "negbin", "nb_alpha"),
        _col(mu, ok, "expected_nb"),
        _col(pearson, ok, "resid_pearson"),
        _col(deviance, ok, "resid_deviance"),
        _col(p_nb, ok, "p_nb"),
        _col(q_nb, ok, "q_nb"),
    )


# --------------------------------------------------------------------------------------------
# 4. Funnel plot
# --------------------------------------------------------------------------------------------
_FUNNEL_P = {"lo998": 0.001, "lo95": 0.025, "hi95": 0.975, "hi998": 0.999}


def _poisson_cdf(r: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(Y <= r), Y ~ Poisson(lam), via the regularised upper incomplete gamma Q(r + 1, lam)."""
    with np.errstate(invalid="ignore"):
        return np.where(r < 0, 0.0, special.gammaincc(np.maximum(r, 0) + 1, lam))


def _poisson_ppf(p: float, lam: np.ndarray) -> np.ndarray:
    """Smallest integer r with P(Y <= r) >= p — same values as ``scipy.stats.poisson.ppf``
    (checked on 1e6 rates in 6e-6..8e3), ~5x faster: Cornish–Fisher start, then vectorised unit
    steps on the entries not yet settled (usually 1–2 steps)."""
    lam = np.asarray(lam, dtype=np.float64)
    z = stats.norm.ppf(p)
    r = np.maximum(np.floor(lam + z * np.sqrt(lam) + (z * z - 1) / 6), 0.0)
    r[lam == 0] = 0.0
    idx = np.flatnonzero(lam > 0)
    while idx.size:  # step up while F(r) < p
        up = _poisson_cdf(r[idx], lam[idx]) < p
        idx = idx[up]
        r[idx] += 1
    idx = np.flatnonzero((lam > 0) & (r > 0))
    while idx.size:  # step down while F(r - 1) >= p
        down = _poisson_cdf(r[idx] - 1, lam[idx]) >= p
        idx = idx[down]
        r[idx] -= 1
        idx = idx[r[idx] > 0]
    return r


def _poisson_limit(p: float, lam: np.ndarray, interpolate: bool) -> np.ndarray:
    """Exact Poisson control limit for counts at probability p (Spiegelhalter 2005, App. A.1).

    r_p = smallest r with F(r) >= p (``poisson.ppf``).  With ``interpolate`` the step is
    smoothed as in Spiegelhalter: y_p = r_p - (F(r_p) - p) / (F(r_p) - F(r_p - 1)), clipped
    at 0, so the funnel is a smooth curve rather than a staircase.
    """
    r = _poisson_ppf(p, lam)
    if not interpolate:
        return r
    F_r = _poisson_cdf(r, lam)
    pmf = F_r - _poisson_cdf(r - 1, lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        yp = r - np.where(pmf > 0, (F_r - p) / pmf, 0.0)
    return np.maximum(yp, 0.0)


def funnel_limits(
    frame: pl.DataFrame, *, grid_points: int = 50, interpolate: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Funnel-plot data: batch rate vs exposure with exact Poisson limits around the pooled rate.

    Spiegelhalter DJ (2005) "Funnel plots for comparing institutional performance", Stat Med
    24:1185–1202.  Target = the product-event pooled rate theta0 = N / X.  For exposure x the
    count under H0 is Poisson(theta0 x); the limits on the rate scale are y_p / x with y_p the
    (interpolated, see ``_poisson_limit``) Poisson quantile at p = 0.025/0.975 (95%) and
    0.001/0.999 (99.8%).  ``interpolate=False`` gives the plain ``poisson.ppf`` staircase.

    Returns ``(per_batch, grid)``.  per_batch: product, event, batch, cases, exposure, rate,
    target_rate, lo95, hi95, lo998, hi998 (rates), above_95, above_998, below_95, below_998
    (observed count beyond the count limit); null limits for single-batch groups.  grid: for
    every group with >= 2 batches and >= 1 case, ``grid_points`` exposures geometrically spaced
    from half the smallest to 1.2x the largest batch exposure, with target_rate and the same four
    limits — the smooth funnel to draw.  Groups with no case have target 0 and are omitted.

    Caveat: as in Spiegelhalter's paper the target is treated as known.  With few cases in the
    group it is estimated mostly from the batch being judged (2 cases both in one batch of ten
    already fall above the 99.8% limit), so for sparse groups read ``p_exact`` of
    :func:`batch_rate_tests`, which conditions on the group total; the funnel is for display.
    """
    if isinstance(grid_points, bool) or int(grid_points) != grid_points or not (2 <= grid_points <= 10_000):
        raise ValueError(f"grid_points must be an integer in [2, 10000], got {grid_points!r}")
    g = _prepare(frame)
    y, x, N, X, nb = g.y, g.x, g.cases_total, g.exposure_total, g.n_batches
    ok = nb >= 2
    theta0 = N / X
    lam = theta0 * x
    cols = []
    flags = {}
    for name, p in _FUNNEL_P.items():
        cnt = _poisson_limit(p, lam, interpolate)
        cols.append(_col(cnt / x, ok, name))
        flags[name] = cnt
    out = g.frame.select(*BATCH_KEYS, "cases", "exposure").with_columns(
        _col(y / x, name="rate"),
        _col(theta0, ok, "target_rate"),
        *cols,
    )
    okS = pl.Series(ok)
    out = out.with_columns(
        pl.Series("above_95", y > flags["hi95"]).zip_with(okS, pl.Series([None], dtype=pl.Boolean)),
        pl.Series("above_998", y > flags["hi998"]).zip_with(okS, pl.Series([None], dtype=pl.Boolean)),
        pl.Series("below_95", y < flags["lo95"]).zip_with(okS, pl.Series([None], dtype=pl.Boolean)),
        pl.Series("below_998", y < flags["lo998"]).zip_with(okS, pl.Series([None], dtype=pl.Boolean)),
    )

    # smooth grid per group
    k = g.n_groups
    nb_g = np.bincount(g.gid, minlength=k)
    N_g = np.bincount(g.gid, weights=y, minlength=k)
    X_g = np.bincount(g.gid, weights=x, minlength=k)
    xmin = np.full(k, np.inf)
    xmax = np.zeros(k)
    np.minimum.at(xmin, g.gid, x)
    np.maximum.at(xmax, g.gid, x)
    sel = np.flatnonzero((nb_g >= 2) & (N_g > 0))
    first = np.searchsorted(g.gid, sel)  # first row of each selected group (frame is sorted)
    t = np.linspace(0.0, 1.0, grid_points)
    lo, hi = np.log(xmin[sel] / 2), np.log(xmax[sel] * 1.2)
    ex = np.exp(lo[:, None] + (hi - lo)[:, None] * t[None, :]).ravel()
    th = np.repeat(N_g[sel] / X_g[sel], grid_points)
    lam_g = th * ex
    keys = g.frame.select(GROUP_KEYS)[np.repeat(first, grid_points)] if sel.size else g.frame.select(GROUP_KEYS).head(0)
    grid = keys.with_columns(
        pl.Series("exposure", ex),
        pl.Series("target_rate", th),
        *[pl.Series(n, _poisson_limit(p, lam_g, interpolate) / ex) for n, p in _FUNNEL_P.items()],
    )
    return out, grid


# --------------------------------------------------------------------------------------------
# 5. Time to onset, batch vs rest
# --------------------------------------------------------------------------------------------
def onset_comparison(cases_frame: pl.DataFrame) -> pl.DataFrame:
    """Time-to-onset of each batch's cases vs the rest of the product, per (product, event).

    Input: one row per case with product, event, batch, onset_days (>= 0; null rows are
    dropped).  Quality defects often show as *short* onset, so the tests are one-sided
    (batch shorter):

    * Mann–Whitney U (Mann & Whitney 1947): U = R_b - n_b (n_b + 1) / 2 with R_b the sum of the
      batch's mid-ranks in the pooled group sample; normal approximation with tie correction
      and continuity correction, identical to ``scipy.stats.mannwhitneyu(batch, rest,
      alternative='less', method='asymptotic')``.
    * Kolmogorov–Smirnov two-sample (Smirnov 1939): D+ = max_t [F_batch(t) - F_rest(t)]
      (evaluated at the batch's own tie-block ends, O(n)), p-value by Hodges' (1958) eq. 5.3
      approximation, identical to ``scipy.stats.ks_2samp(batch, rest, alternative='greater',
      method='asymp')``.

    Both p-values are asymptotic: they are approximations for very small samples (scipy's
    default would use the exact distributions there).  Null when the batch or the rest has no
    case, or all onsets in the group are tied (MWU).

    Returns product, event, batch, n_onset, n_onset_rest (cases with onset), median_batch, median_rest, ks_stat, p_ks,
    mwu_u, p_mwu, q_mwu (BH over defined p_mwu).
    """
    missing = [c for c in [*BATCH_KEYS, "onset_days"] if c not in cases_frame.columns]
    if missing:
        raise ValueError(f"cases frame lacks column(s) {missing}")
    f = cases_frame.select(*BATCH_KEYS, pl.col("onset_days").cast(pl.Float64)).drop_nulls()
    if (f["onset_days"] < 0).any() or not f["onset_days"].is_finite().all():
        raise ValueError("onset_days must be finite and >= 0")
    f = f.sort([*BATCH_KEYS, "onset_days"])
    f = f.with_columns(
        _g=pl.struct(GROUP_KEYS).rank("dense").cast(pl.Int64) - 1,
        _b=pl.struct(BATCH_KEYS).rank("dense").cast(pl.Int64) - 1,
    ).with_columns(
        _rank_avg=pl.col("onset_days").rank("average").over("_g"),
        _le_all=pl.col("onset_days").rank("max").over("_g"),  # count of group onsets <= v
        _lt_all=pl.col("onset_days").rank("min").over("_g") - 1,  # count < v
        _le_b=pl.col("onset_days").rank("max").over("_b"),
        _lt_b=pl.col("onset_days").rank("min").over("_b") - 1,
        _n=pl.len().over("_g"),
        _nb=pl.len().over("_b"),
    )
    ties = (
        f.group_by("_g", "onset_days")
        .len()
        .group_by("_g")
        .agg(_tie=((pl.col("len").cast(pl.Float64) ** 3) - pl.col("len")).sum())
    )
    per = (
        f.group_by(*BATCH_KEYS, "_g", "_b")
        .agg(
            n_batch=pl.len(),
            n_group=pl.col("_n").first(),
            median_batch=pl.col("onset_days").median(),
            _R=pl.col("_rank_avg").sum(),
            _dplus=(
                pl.col("_le_b") / pl.col("_nb") - (pl.col("_le_all") - pl.col("_le_b")) / (pl.col("_n") - pl.col("_nb"))
            ).max(),
        )
        .join(ties, on="_g", how="left")
        .sort(BATCH_KEYS)
    )
    # median of the rest: pair each case with every *other* batch of its group
    batches = per.select("_g", "_b")
    rest_median = (
        f.select("_g", _case_b="_b", v="onset_days")
        .join(batches, on="_g")
        .filter(pl.col("_case_b") != pl.col("_b"))
        .group_by("_b")
        .agg(median_rest=pl.col("v").median())
    )
    per = per.join(rest_median, on="_b", how="left")

    n1 = per["n_batch"].cast(pl.Float64).to_numpy()
    n = per["n_group"].cast(pl.Float64).to_numpy()
    n2 = n - n1
    R = per["_R"].to_numpy()
    tie = per["_tie"].to_numpy()
    ok = (n1 > 0) & (n2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        U1 = R - n1 * (n1 + 1) / 2
        U2 = n1 * n2 - U1
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))))
        z = (U2 - n1 * n2 / 2 - 0.5) / s
        p_mwu = np.where(ok & (s > 0), stats.norm.sf(z), np.nan)
        p_mwu = np.clip(p_mwu, 0, 1)
        d = np.clip(per["_dplus"].to_numpy(), 0, 1)
        m_, n_ = np.maximum(n1, n2), np.minimum(n1, n2)
        en = m_ * n_ / (m_ + n_)
        zk = np.sqrt(en) * d
        p_ks = np.clip(np.exp(-2 * zk**2 - 2 * zk * (m_ + 2 * n_) / np.sqrt(m_ * n_ * (m_ + n_)) / 3.0), 0, 1)
    q_mwu = benjamini_hochberg(np.where(ok & (s > 0), p_mwu, np.nan))
    return per.select(
        *BATCH_KEYS,
        pl.col("n_batch").cast(pl.Int64).alias("n_onset"),
        pl.Series("n_onset_rest", n2).cast(pl.Int64),
        "median_batch",
        pl.when(pl.Series(ok)).then(pl.col("median_rest")).alias("median_rest"),
        _col(d, ok, "ks_stat"),
        _col(p_ks, ok, "p_ks"),
        _col(U1, ok, "mwu_u"),
        _col(p_mwu, ok & (s > 0), "p_mwu"),
        _col(q_mwu, ok & (s > 0), "q_mwu"),
    )


# --------------------------------------------------------------------------------------------
# Everything, per batch, with a flag
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlagRule:
    """When a batch is ``flagged`` by :func:`batch_heterogeneity`.

    flagged = q_exact < q_max  and  rr_shrunk_lo > rr_shrunk_lo_min  and  cases >= min_cases
    (and, if ``onset_q_max`` is set and onset data were given, additionally q_mwu < onset_q_max).
    With ``discrete_fdr`` q_exact is the Tarone-subset BH of :func:`tarone_benjamini_hochberg`
    at ``q_max`` (Gilbert 2005): for scans over every PT, where most groups are too sparse to
    ever reach significance.
    Defaults: BH FDR 5% on the exact test, the EB05 (5th posterior percentile of the shrunken
    rate ratio) above 1, and at least 3 reports — the exact test alone can fire on a single
    batch of a huge product with a tiny excess; the shrinkage and the case floor keep those quiet.
    """

    q_max: float = 0.05
    rr_shrunk_lo_min: float = 1.0
    min_cases: int = 3
    onset_q_max: float | None = None
    discrete_fdr: bool = False


def batch_heterogeneity(
    frame: pl.DataFrame,
    onsets: pl.DataFrame | None = None,
    *,
    rule: FlagRule = FlagRule(),
    with_overdispersion: bool = True,
    with_funnel: bool = True,
    **rate_kwargs,
) -> pl.DataFrame:
    """All batch statistics joined per (product, event, batch), with a boolean ``flagged``.

    Columns of :func:`batch_rate_tests`, then (if requested) of :func:`batch_overdispersion`
    (model, fit_note, nb_alpha, expected_nb, resid_pearson, resid_deviance, p_nb, q_nb), of
    :func:`funnel_limits` per batch (target_rate, lo95, hi95, lo998, hi998, above_95, above_998,
    below_95, below_998) and of :func:`onset_comparison` (null where the batch had no onset data),
    and ``flagged`` by ``rule`` (see :class:`FlagRule`).  ``rate_kwargs`` go to
    :func:`batch_rate_tests`.
    """
    if rule.discrete_fdr:
        rate_kwargs = {"discrete_fdr_alpha": rule.q_max, **rate_kwargs}
    out = batch_rate_tests(frame, **rate_kwargs)
    # every per-batch function returns the rows in the same order (sorted by product, event,
    # batch; duplicates rejected), so their columns are stacked side by side — a join on three
    # string keys would cost ~1 GB more at 3 M rows
    if with_overdispersion:
        od = batch_overdispersion(frame)
        out = out.hstack(od.drop(*BATCH_KEYS, "cases", "exposure"))
    if with_funnel:
        fb, _ = funnel_limits(frame, grid_points=2)
        out = out.hstack(fb.drop(*BATCH_KEYS, "cases", "exposure", "rate"))
    if onsets is not None:
        oc = onset_comparison(onsets)
        out = out.join(oc, on=BATCH_KEYS, how="left", maintain_order="left")
    return out.with_columns(flagged=_flag(rule, onsets is not None))


def _flag(rule: FlagRule, with_onset: bool) -> pl.Expr:
    """The ``flagged`` column of :func:`batch_heterogeneity` (see :class:`FlagRule`)."""
    flag = (
        (pl.col("q_exact") < rule.q_max)
        & (pl.col("rr_shrunk_lo") > rule.rr_shrunk_lo_min)
        & (pl.col("cases") >= rule.min_cases)
    )
    if rule.onset_q_max is not None and with_onset:
        flag = flag & (pl.col("q_mwu") < rule.onset_q_max)
    return flag.fill_null(False)


def family_multiplicity(
    scored: pl.DataFrame,
    *,
    rule: FlagRule = FlagRule(),
    with_onset: bool = True,
    more_p_mwu: np.ndarray | None = None,
) -> pl.DataFrame:
    """Recompute the family-wide columns of stacked :func:`batch_heterogeneity` results.

    Every statistic of :func:`batch_heterogeneity` is computed within one (product, event)
    group except the multiplicity corrections, which run over *all* tests of the call:
    ``q_exact`` (BH, or with ``rule.discrete_fdr`` the Tarone-subset BH at ``rule.q_max`` with
    the attainable ``p_min = (exposure / exposure_total) ** cases_total``), ``q_nb`` (BH over
    ``p_nb``), ``q_mwu`` (BH over ``p_mwu``) and so ``flagged``.  When the groups are scored in
    disjoint parts (a fan-out over product buckets) and the parts stacked, this function
    recomputes those columns over the whole family, giving the values one call over every group
    would give.  ``more_p_mwu``: p_mwu of onset comparisons that belong to the family but have
    no row in ``scored`` (cases of a batch without exposure).  Columns absent from ``scored``
    are left absent; the row order is kept.  Assumes the q-values were computed with the
    defaults of ``rule`` (no ``discrete_fdr_alpha`` passed separately).
    """
    cols = []
    if "p_exact" in scored.columns:
        p = scored["p_exact"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if rule.discrete_fdr:
            defined = ~np.isnan(p)
            x = scored["exposure"].cast(pl.Float64).to_numpy()
            X = scored["exposure_total"].cast(pl.Float64).to_numpy()
            N = scored["cases_total"].cast(pl.Float64).to_numpy()
            q = tarone_benjamini_hochberg(p, _attainable_p_min(x, X, N, defined), rule.q_max)
        else:
            q = benjamini_hochberg(p)
        cols.append(_col(q, ~np.isnan(p), "q_exact"))
    if "p_nb" in scored.columns:
        p = scored["p_nb"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        cols.append(_col(benjamini_hochberg(p), ~np.isnan(p), "q_nb"))
    if "p_mwu" in scored.columns:
        p = scored["p_mwu"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        extra = np.asarray(more_p_mwu if more_p_mwu is not None else [], dtype=np.float64)
        q = benjamini_hochberg(np.concatenate([p, extra[~np.isnan(extra)]]))[: p.size]
        cols.append(_col(q, ~np.isnan(p), "q_mwu"))
    out = scored.with_columns(cols)
    if "flagged" in out.columns:
        out = out.with_columns(flagged=_flag(rule, with_onset and "q_mwu" in out.columns))
    return out

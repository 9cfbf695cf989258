"""Exact Poisson MaxSPRT: critical values, operating characteristics and a vectorised monitor.

The maximized sequential probability ratio test (MaxSPRT) of Kulldorff, Davis, Kolczak,
Lewis, Lieu & Platt (2011), *A Maximized Sequential Probability Ratio Test for Drug and
Vaccine Safety Surveillance*, Sequential Analysis 30:58-78, monitors a count ``c`` of
adverse events against the count ``mu`` expected under H0 (relative risk 1) with the
one-sided Poisson log-likelihood ratio

    LLR(c, mu) = c * ln(c / mu) - (c - mu)    if c > mu,   else 0,

and signals the first time ``LLR >= CV`` (and ``c >= M``, Kulldorff & Silva 2015).
Surveillance ends when ``mu`` reaches the planned length ``T`` (expected events under
H0).  The flat boundary ``CV`` is chosen so that the probability of ever signalling under
H0 equals ``alpha``; everything here is computed exactly from the Poisson process (no
simulation, no asymptotics), following the algorithms of the R package *Sequential*
(Silva & Kulldorff; functions ``CV.Poisson``, ``Performance.Poisson``, ``CV.G.Poisson``).

Continuous monitoring (Kulldorff et al. 2011, section 3)
    The LLR jumps up at each event and decays between events, so the test can only cross
    its boundary at an event.  With ``k`` events it is crossed while ``mu <= mu_k``, where
    ``mu_k < k`` solves ``k ln(k/mu_k) - (k - mu_k) = CV``; in closed form
    ``mu_k = -k * W0(-exp(-1 - CV/k))`` (W0 the principal Lambert-W branch).  The
    ``mu_k`` increase with ``k``; H0 is rejected iff ``N(mu_k) >= k`` for some ``k >= M``
    with ``mu_k < T``, or ``N(T) >= k_max`` for the first ``k_max`` with ``mu_k >= T``.
    The distribution of the count among paths that have not signalled is carried from
    boundary time to boundary time with independent Poisson increments; the absorbed mass
    summed over all steps is the type I error (or the power under RR != 1).

Group sequential monitoring (Kulldorff & Silva 2015; R ``CV.G.Poisson``)
    Tests only at looks with cumulative expected counts ``mu_1 < ... < mu_n = T``.  At look
    ``i`` H0 is rejected iff ``N(mu_i) >= a_i``, ``a_i = max(M, min{c : LLR(c, mu_i) >=
    CV})``; the same forward recursion over counts at the looks gives alpha.  Alpha is then
    a step function of CV, so the returned CV is the smallest one with alpha <= nominal.

Pure numpy/scipy; no I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "maxsprt_poisson_llr",
    "maxsprt_poisson_cv",
    "maxsprt_poisson_alpha",
    "maxsprt_poisson_performance",
    "maxsprt_poisson_group_cv",
    "maxsprt_poisson_group_performance",
    "maxsprt_poisson_monitor",
    "MaxSPRTPerformance",
    "MaxSPRTMonitorResult",
]

# Poisson kernels are truncated where the remaining tail is below ~1e-25: far below the
# 1e-8 alpha precision the R package aims for, and far below double rounding of alpha.
_KERNEL_SD = 10.0
_KERNEL_PAD = 22
# lower-tail mass of the not-yet-signalled count distribution dropped at each step (the sum
# over all steps stays < 1e-24, far below any alpha)
_TRIM_MASS = 1e-30


# --------------------------------------------------------------------------------------
# log-likelihood ratio
# --------------------------------------------------------------------------------------
def maxsprt_poisson_llr(observed, expected):
    """One-sided Poisson log-likelihood ratio of the MaxSPRT (Kulldorff et al. 2011, eq. 2).

    ``LLR(c, mu) = c ln(c/mu) - (c - mu)`` when ``c > mu`` and 0 otherwise (in particular
    0 for ``c = 0``).  Vectorised with numpy broadcasting: scalars in give a ``float``,
    arrays in give an ``ndarray``.  NaN inputs propagate as NaN; a negative or infinite
    count or expected count is not a count and gives NaN too (documented null).
    """
    c = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(np.isfinite(c) & (c >= 0), c, np.nan)
        mu = np.where(np.isfinite(mu) & (mu >= 0), mu, np.nan)
        above = c > mu
        safe_c = np.where(above, c, 1.0)
        safe_mu = np.where(above, mu, 1.0)
        val = safe_c * np.log(safe_c / safe_mu) - (safe_c - safe_mu)
        out = np.where(above, val, 0.0)
        out = np.where(np.isnan(c) | np.isnan(mu), np.nan, out)
    if out.ndim == 0:
        return float(out)
    return out


# --------------------------------------------------------------------------------------
# Poisson helpers
# --------------------------------------------------------------------------------------
def _pois_kernel(lam: float) -> tuple[np.ndarray, np.ndarray]:
    """pmf[j] = P(X=j), j < L, and tail[m] = P(X >= m), m <= L (tail[L] = 0), X~Pois(lam).

    Truncated where the remaining tail is negligible (< ~1e-25); tails are reverse
    cumulative sums of positive terms, so small tails keep full relative precision (no
    ``1 - cdf`` cancellation).
    """
    L = int(lam + _KERNEL_SD * math.sqrt(lam) + _KERNEL_PAD)
    j = np.arange(L, dtype=float)
    if lam > 0:
        pmf = np.exp(j * math.log(lam) - lam - special.gammaln(j + 1.0))
    else:
        pmf = np.zeros(L)
        pmf[0] = 1.0
    tail = np.empty(L + 1)
    tail[L] = 0.0
    tail[:L] = np.cumsum(pmf[::-1])[::-1]
    return pmf, tail


def _pois_kernels(lams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise :func:`_pois_kernel` for many means at once (common truncation length)."""
    lmax = float(np.max(lams))
    L = int(lmax + _KERNEL_SD * math.sqrt(lmax) + _KERNEL_PAD)
    j = np.arange(L, dtype=float)
    pmfs = np.exp(j[None, :] * np.log(lams)[:, None] - lams[:, None] - special.gammaln(j + 1.0)[None, :])
    tails = np.zeros((len(lams), L + 1))
    tails[:, :L] = np.cumsum(pmfs[:, ::-1], axis=1)[:, ::-1]
    return pmfs, tails


def _boundary_times(cv: float, kmax: int) -> np.ndarray:
    """mu_k (k = 1..kmax): expected count at which k events stop crossing LLR = cv.

    Smaller root of ``k ln(k/mu) - (k - mu) = cv``: ``mu_k = -k W0(-exp(-1 - cv/k))``
    (R Sequential computes the same product-log by series + Newton), polished by Newton
    steps on the defining equation.
    """
    k = np.arange(1, kmax + 1, dtype=float)
    # clip at the branch point -1/e: for cv/k below rounding, exp(-1 - cv/k) may round past it
    w = special.lambertw(np.maximum(-np.exp(-1.0 - cv / k), -math.exp(-1.0)), 0).real
    mu = -k * w
    for _ in range(2):
        f = k * np.log(k / mu) - (k - mu) - cv
        fp = 1.0 - k / mu
        step = np.where(np.abs(fp) > 1e-8, f / np.where(fp == 0, 1.0, fp), 0.0)
        mu = np.clip(mu - step, mu * 0.5, k)
    return mu


def _boundary_times_until(cv: float, T: float) -> np.ndarray:
    """Boundary times mu_1..mu_K with mu_K >= T (K the first such index)."""
    kmax = int(T + 2.0 * math.sqrt(2.0 * cv * max(T, 1.0)) + 2.0 * cv + 10)
    for _ in range(8):
        mu = _boundary_times(cv, kmax)
        if not np.isfinite(mu).all():
            raise ValueError(f"boundary times undefined for cv={cv!r}")
        if mu[-1] >= T:
            K = int(np.searchsorted(mu, T, side="left")) + 1
            return mu[:K]
        kmax *= 2
    raise RuntimeError(f"boundary times did not reach T={T!r} (cv={cv!r})")


# --------------------------------------------------------------------------------------
# continuous MaxSPRT
# --------------------------------------------------------------------------------------
def _trim_index(p: np.ndarray, head: int = 64) -> int:
    """Number of leading entries of ``p`` whose cumulative mass stays below ``_TRIM_MASS``.

    ``searchsorted(cumsum(p), _TRIM_MASS)``, from the cumulative sums of a prefix that grows
    fourfold until its mass reaches the threshold: the same prefix sums, so the same index, and
    the tail below 1e-30 is short next to ``p`` (a full cumulative sum per step was most of a
    step's cost at large T)."""
    n = len(p)
    while True:
        c = np.cumsum(p[:head])
        if head >= n or c[-1] >= _TRIM_MASS:
            return int(np.searchsorted(c, _TRIM_MASS))
        head *= 4


def _continuous_path(cv: float, T: float, M: int, rr: float = 1.0, with_time: bool = True) -> tuple[float, float]:
    """Exact P(signal) and E[signal time ; signal] for continuous Poisson MaxSPRT.

    Kulldorff et al. (2011) / R ``Performance.Poisson`` recursion, with D = 0.  Events arrive
    as a Poisson process of rate ``rr`` per unit of H0-expected count.  ``p`` holds the
    probability of k events (and no signal yet) at the current boundary time.  The time of
    a signal in an interval is the m-th arrival after its start, a Gamma(m, rr) time, so
    ``E[tau_m ; tau_m <= d] = (m/rr) P(Pois(rr d) >= m+1)`` gives the expected time exactly.
    Returns (power, E[time * 1{signal}]) with times in expected-count units.

    ``cv = 0``: LLR >= 0 always holds, so the test signals at the M-th event if it comes by T:
    power = P(Pois(rr T) >= M) and E[tau_M ; tau_M <= T] = (M / rr) P(Pois(rr T) >= M + 1).
    ``with_time=False``: the type I error alone, as the critical-value search needs it (the
    recursion's expected time is then skipped and NaN; the closed forms still give it).
    """
    if cv == 0.0:
        lam = rr * T
        return float(stats.poisson.sf(M - 1, lam)), float(M / rr * stats.poisson.sf(M, lam))
    mu = _boundary_times_until(cv, T)
    imax = len(mu)  # first k with mu_k >= T (1-based)
    if imax <= M:
        # no boundary time for k >= M before T: signal iff the M-th event arrives by T
        lam = rr * T
        return float(stats.poisson.sf(M - 1, lam)), float(M / rr * stats.poisson.sf(M, lam))

    lam = rr * mu[M - 1]
    p = stats.poisson.pmf(np.arange(M), lam)
    base = 0  # p[j] is the probability of base + j counts (lower tail trimmed, see below)
    power = float(stats.poisson.sf(M - 1, lam))
    etime = float(M / rr * stats.poisson.sf(M, lam))

    # steps i = M+1..imax: from mu_{i-1} to mu_i (to T for the last one, where the
    # imax-th event signals if it arrives by T); all Poisson kernels built in one go
    t0 = mu[M - 1 : imax - 1]
    t1 = np.append(mu[M : imax - 1], T)
    pmfs, tails = _pois_kernels(rr * (t1 - t0))
    L = pmfs.shape[1]
    r_all = np.arange(imax + 2, dtype=float) / rr
    for s, i in enumerate(range(M + 1, imax + 1)):
        # p: counts base..i-2 without signal at t0[s]; a path with k counts signals in this
        # step iff it gets r = i - k >= 2 more arrivals (tail[r]); only k >= i-(L-1) can
        n = len(p)
        k0 = max(base, i - (L - 1))
        tail = tails[s]
        if k0 < base + n:
            pk = p[k0 - base :]
            hi = i - k0
            absorbed = float(pk @ tail[hi:1:-1])  # tail[r] for r = i-k0 .. 2
            power += absorbed
            # E[t0 + tau_r ; tau_r <= d] = t0 P(X>=r) + (r/rr) P(X>=r+1)
            if with_time:
                etime += t0[s] * absorbed + float((pk * r_all[hi:1:-1]) @ tail[hi + 1 : 2 : -1])
        if i < imax:
            q = np.convolve(p, pmfs[s, : i - base])
            if len(q) < i - base:
                q = np.concatenate([q, np.zeros(i - base - len(q))])
            p = q[: i - base]
            # drop the lower tail once its mass is below 1e-30: those paths are far below the
            # boundary and cannot signal for many steps; keeps each step O(sqrt(T)) not O(T)
            cut = _trim_index(p)
            if cut > 0:
                p = p[cut:]
                base += cut
    return power, (etime if with_time else math.nan)


#: Largest T (expected events under H0) for which the continuous-boundary type I error is
#: computed exactly: the recursion has one step per boundary time, ~T steps of ~25 us
#: (0.15 s per evaluation at T = 5000, ~1 s for a critical value).  Beyond it, see
#: :func:`_alpha_continuous`.
_T_EXACT_MAX = 5000.0


def _ou_increment(cv: float, log_ratio: float) -> float:
    """Pickands/OU approximation of the extra crossing probability over log(T/T0).

    For large expected counts LLR(N(t), t) ~ Z(t)^2 / 2 with Z(t) = (N(t) - t) / sqrt(t) and
    Z(e^s) a stationary Ornstein-Uhlenbeck process with correlation exp(-|s|/2); the one-sided
    crossing rate of level c = sqrt(2 cv) per unit of s is (1/2) c phi(c) (Pickands 1969;
    Siegmund 1985, *Sequential Analysis*, ch. 4) = (1/2) sqrt(cv / pi) exp(-cv).
    """
    return 0.5 * math.sqrt(cv / math.pi) * math.exp(-cv) * log_ratio


def _alpha_continuous(cv: float, T: float, M: int, t_exact_max: float = _T_EXACT_MAX) -> float:
    """Type I error of the continuous MaxSPRT: exact for T <= ``t_exact_max``, else calibrated
    asymptotic extrapolation.

    For T > T0 = ``t_exact_max``:  alpha(cv, T) = alpha(cv, T0) + kappa * I(cv, log(T / T0)),
    with I the OU crossing increment of :func:`_ou_increment` and kappa the ratio of the exact
    increment over [T0/4, T0] to I(cv, log 4) (kappa ~ 0.8-0.9: the Poisson process is not yet
    Gaussian and the level is finite; the ratio is flat in T: 0.8145 over [2000, 5000] and
    0.8154 over [2000, 20000] at cv = 4.5).  Cost: two exact evaluations, whatever T.
    Accuracy against the exact recursion where both run: T0 = 5000 -> T = 20,000, alpha within
    -0.09 % .. +0.12 % .. -0.23 % (cv 5 / 3.5 / 8), the critical value within 7e-4 (4.69156 vs
    exact 4.69224); T0 = 1000 -> 8000 within 1 %.  The error grows slowly with log(T / T0) and
    is mostly an underestimate (CV a little low, i.e. very slightly anticonservative).
    """
    if t_exact_max >= T:
        return _continuous_path(cv, T, M, with_time=False)[0]
    if cv == 0.0:
        return float(stats.poisson.sf(M - 1, T))
    t0 = float(t_exact_max)
    a0 = _continuous_path(cv, t0, M, with_time=False)[0]
    a1 = _continuous_path(cv, t0 / 4.0, M, with_time=False)[0]
    ref = _ou_increment(cv, math.log(4.0))
    kappa = (a0 - a1) / ref if ref > 0 else 1.0
    return min(1.0, a0 + kappa * _ou_increment(cv, math.log(T / t0)))


def _check_cv(cv) -> float:
    try:
        c = float(cv)
    except (TypeError, ValueError):
        raise ValueError(f"cv must be a number, got {cv!r}") from None
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"cv (critical value of the LLR) must be finite and >= 0, got {cv!r}")
    return c


def _check_T(T) -> float:
    try:
        t = float(T)
    except (TypeError, ValueError):
        raise ValueError(f"expected_total must be a number, got {T!r}") from None
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"expected_total must be a positive finite number, got {T!r}")
    return t


def _check_M(M) -> int:
    """min_events as an int: integers (or integral floats) >= 1 only -- never truncated."""
    if isinstance(M, bool) or not isinstance(M, (int, float, np.integer, np.floating)):
        raise ValueError(f"min_events must be a positive integer, got {M!r}")
    if not (math.isfinite(M) and M >= 1 and int(M) == M):
        raise ValueError(f"min_events must be a positive integer, got {M!r}")
    return int(M)


def _check_rr(rr) -> float:
    r = float(rr)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"rr must be a positive finite number, got {rr!r}")
    return r


def maxsprt_poisson_alpha(cv: float, expected_total: float, min_events: int = 1) -> float:
    """Type I error of continuous Poisson MaxSPRT with flat boundary ``cv``.

    Probability under H0 that ``LLR(N(t), t) >= cv`` with ``N(t) >= min_events`` for some
    ``t <= expected_total`` (Kulldorff et al. 2011; R Sequential's ``Perror_I``).  Exact for
    ``expected_total <= 5000``; beyond, the calibrated asymptotic route of
    :func:`_alpha_continuous` (bounded time).  ``cv = 0`` gives ``P(N(T) >= min_events)``;
    a negative or NaN ``cv`` is a ``ValueError``.
    """
    return _alpha_continuous(_check_cv(cv), _check_T(expected_total), _check_M(min_events))


def _check_common(T: float, alpha: float, M: int) -> None:
    _check_T(T)
    if not (1e-7 <= alpha <= 0.5):
        raise ValueError(f"alpha must be in [1e-7, 0.5], got {alpha!r}")
    _check_M(M)


def _solve_decreasing(fun, target: float, start: float, tol: float = 1e-12) -> float:
    """Root of continuous decreasing ``fun(cv) = target`` on cv > 0.

    Works on ``g = log fun - log target``, which is close to linear in cv with slope near -1
    (alpha ~ exp(-cv) for flat LLR boundaries), by secant steps safeguarded by bisection
    inside the bracket found so far; typically 4-6 evaluations of ``fun``.
    """

    def g(cv):
        return math.log(max(fun(cv), 1e-300)) - math.log(target)

    lo, hi = 0.0, math.inf  # g(lo) > 0 > g(hi)
    x0, g0 = start, g(start)
    if g0 == 0:
        return x0
    if g0 > 0:
        lo = x0
    else:
        hi = x0
    x1 = max(x0 + g0, 0.5 * x0)  # slope -1 first guess
    for _ in range(200):
        g1 = g(x1)
        if g1 == 0:
            return x1
        if g1 > 0:
            lo = max(lo, x1)
        else:
            hi = min(hi, x1)
        if g1 != g0:
            x2 = x1 - g1 * (x1 - x0) / (g1 - g0)
        else:
            x2 = math.nan
        if not (lo < x2 < hi) or not math.isfinite(x2):
            if math.isinf(hi):
                x2 = 2.0 * max(lo, 0.25)
            elif lo == 0.0 and g1 < 0 and x1 < 1e-12:
                raise ValueError("no critical value reaches the requested alpha")
            else:
                x2 = 0.5 * (lo + hi)
        if abs(x2 - x1) <= tol * max(1.0, abs(x2)):
            return x2
        x0, g0, x1 = x1, g1, x2
    raise RuntimeError("critical value search did not converge")


@functools.lru_cache(maxsize=4096)
def _cv_cached(T: float, M: int, alpha: float) -> float:
    _check_common(T, alpha, M)
    p_max = float(stats.poisson.sf(M - 1, T))  # alpha when only "M events by T" matters
    if p_max < alpha:
        raise ValueError(
            f"no critical value: P(N(T) >= M) = {p_max:.4g} < alpha for T={T}, M={M}; "
            "the test cannot reach this alpha (R Sequential: 'Does not have solution')"
        )
    # starting guess: a fit to R Sequential's tabled CVs (M=1, alpha=0.05), shifted for alpha
    lt = math.log(max(T, 0.5))
    start = 2.854 + 0.283 * lt - 0.0107 * lt * lt + math.log(0.05 / alpha) - 0.1 * (M - 1)
    return _solve_decreasing(lambda cv: _alpha_continuous(cv, T, M), alpha, max(start, 0.3))


def maxsprt_poisson_cv(expected_total: float, alpha: float = 0.05, min_events: int = 1) -> float:
    """Critical value (flat LLR boundary) of the continuous Poisson MaxSPRT.

    Kulldorff, Davis, Kolczak, Lewis, Lieu & Platt (2011), Sequential Analysis 30:58-78;
    minimum events to signal ``M`` from Kulldorff & Silva (2015).  Equals R Sequential's
    ``CV.Poisson(SampleSize=expected_total, D=0, M=min_events, alpha=alpha)``
    (e.g. 3.4679 for T=10, M=1, alpha=0.05).

    Exact: the type I error ``P_H0(exists k >= M: N(mu_k) >= k, mu_k < T, or N(T) >= k_max)``
    with boundary times ``mu_k`` solving ``k ln(k/mu_k) - (k - mu_k) = CV`` is evaluated by
    the forward Poisson recursion over ``k`` (see the module docstring), and ``CV`` is solved
    by Brent's method on ``log alpha(CV) = log alpha`` to ~1e-12.  Cached by (T, M, alpha).

    For ``expected_total > 5000`` the type I error comes from the calibrated asymptotic route
    of :func:`_alpha_continuous` (exact at T0 = 5000 plus an Ornstein-Uhlenbeck crossing
    increment): bounded time (~2 s whatever T, e.g. 1e9) and memory; the CV at T = 20,000
    is within 1e-3 of the exact one.

    Raises ``ValueError`` when ``P(N(T) >= M) < alpha`` (no boundary can spend that alpha),
    for a non-integer ``min_events`` or a T/alpha out of range.
    """
    T = _check_T(expected_total)
    M = _check_M(min_events)
    _check_common(T, float(alpha), M)
    return _cv_cached(T, M, float(alpha))


@dataclass(frozen=True)
class MaxSPRTPerformance:
    """Operating characteristics under a relative risk (R ``Performance.Poisson`` outputs).

    power: P(reject H0); expected_signal_time: E[time of signal | signal];
    expected_sample_size: E[min(time of signal, T)]; times in H0-expected-count units.
    """

    power: float
    expected_signal_time: float
    expected_sample_size: float


def maxsprt_poisson_performance(
    expected_total: float, cv: float, min_events: int = 1, rr: float = 2.0
) -> MaxSPRTPerformance:
    """Exact power, expected time to signal and expected length of surveillance.

    As R Sequential's ``Performance.Poisson(SampleSize=T, D=0, M, cv, RR)``: events are a
    Poisson process with intensity ``rr`` per H0-expected event; the same boundary-time
    recursion as :func:`maxsprt_poisson_cv` gives the absorbed (signal) probability, and
    signal times are Gamma arrival times within each interval, integrated in closed form.
    With ``rr=1`` the power is the type I error.  ``cv = 0`` has the closed form of
    :func:`_continuous_path`.  Exact only: ``expected_total`` above 5000 is a ``ValueError``
    (use :func:`maxsprt_poisson_alpha` for the type I error at large T).
    """
    T = _check_T(expected_total)
    cv = _check_cv(cv)
    M = _check_M(min_events)
    rr = _check_rr(rr)
    if T > _T_EXACT_MAX and cv > 0:
        raise ValueError(
            f"exact performance is computed for expected_total <= {_T_EXACT_MAX:g} only, got {T:g} "
            "(one recursion step per boundary time)"
        )
    power, etime = _continuous_path(cv, T, M, rr)
    est = etime / power if power > 0 else float("nan")
    return MaxSPRTPerformance(float(power), float(est), float(etime + (1.0 - power) * T))


# --------------------------------------------------------------------------------------
# group sequential MaxSPRT
# --------------------------------------------------------------------------------------
def _group_thresholds(cv: float, mu: np.ndarray, M: int) -> np.ndarray:
    """a_i = max(M, smallest integer c with LLR(c, mu_i) >= cv) at each look."""
    if cv <= 0:
        return np.full(mu.shape, M, dtype=np.int64)
    # continuous root c* > mu of c ln(c/mu) - c + mu = cv: c* = mu exp(1 + W0((cv/mu - 1)/e))
    cstar = mu * np.exp(1.0 + special.lambertw((cv / mu - 1.0) / math.e, 0).real)
    a = np.maximum(np.ceil(cstar).astype(np.int64), 0)
    # guard against rounding of the closed form: make a exactly the smallest integer
    for _ in range(3):
        down = (a > 0) & (maxsprt_poisson_llr(np.maximum(a - 1, 0), mu) >= cv)
        a = a - down
        up = maxsprt_poisson_llr(a, mu) < cv
        a = a + up
    return np.maximum(a, M)


def _pois_window(lam: float) -> tuple[int, np.ndarray]:
    """(lo, pmf) with pmf[j] = P(X = lo + j), X ~ Pois(lam), over lam -/+ ``_KERNEL_SD`` sd
    (the mass outside is < ~1e-23): memory O(sqrt(lam)) whatever lam."""
    sd = math.sqrt(lam)
    lo = max(0, int(lam - _KERNEL_SD * sd - _KERNEL_PAD))
    hi = int(lam + _KERNEL_SD * sd + _KERNEL_PAD)
    j = np.arange(lo, hi + 1, dtype=float)
    if lam <= 0:
        return 0, np.ones(1)
    return lo, np.exp(j * math.log(lam) - lam - special.gammaln(j + 1.0))


def _group_kernels(mu: np.ndarray, rr: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per look, the increment window of :func:`_pois_window` and its tail ``P(X >= lo + r)``.

    They depend on the looks only (not on the critical value), so a CV search builds them
    once; equally spaced looks share one kernel.  ``tail`` is the reverse cumulative sum of the
    window (full relative precision in the small upper tail) with a trailing 0."""
    out, cache, prev = [], {}, 0.0
    for m in mu:
        lam = rr * (m - prev)
        kernel = cache.get(lam)
        if kernel is None:
            lo, pmf = _pois_window(lam)
            kernel = cache[lam] = (lo, pmf, np.append(np.cumsum(pmf[::-1])[::-1], 0.0))
        out.append(kernel)
        prev = m
    return out


def _group_path(
    cv: float,
    mu: np.ndarray,
    M: int,
    rr: float = 1.0,
    early_stop: float | None = None,
    kernels: list | None = None,
) -> tuple[float, float]:
    """Exact P(signal) and E[signal look time ; signal] for group sequential MaxSPRT.

    Forward recursion over the count distribution of not-yet-signalled paths at each look
    (R Sequential ``CV.G.Poisson`` / ``Performance.G.Poisson``), increments Pois(rr * dmu).
    The count distribution and the increment kernels are kept on windows where their mass is
    > ~1e-25 (lower tail trimmed, kernel mean -/+ 10 sd), so time and memory grow with
    sqrt(T) per look, not T: T = 1e6 with 52 looks is a fraction of a second.  The absorbed
    mass at a look is ``sum_k p_k P(X >= a_i - k)`` with the window's tail (1 below the
    window, 0 above it: errors < ~1e-23).  ``kernels``: :func:`_group_kernels` of (mu, rr),
    passed by a caller that evaluates many critical values on the same looks.
    """
    if kernels is None:
        kernels = _group_kernels(mu, rr)
    a = _group_thresholds(cv, mu, M).tolist()
    p = np.ones(1)  # p[j]: probability of base + j counts and no signal yet
    base = 0
    power = 0.0
    etime = 0.0
    for i in range(len(mu)):
        lo, pmf, tailw = kernels[i]
        n, L = len(p), len(pmf)
        keep = a[i] - base - lo  # arrivals p[0] still needs to signal, minus lo
        # p[j] signals with P(X >= keep - j + lo): 1 for j >= keep, tailw[keep - j] for
        # keep - L <= j < keep (tailw[L] = 0), 0 below -- sliced, not gathered
        j1 = min(max(keep, 0), n)
        j0 = min(max(keep - L, 0), n)
        absorbed = float(p[j1:].sum())
        if j1 > j0:
            absorbed += float(p[j0:j1] @ tailw[keep - j1 + 1 : keep - j0 + 1][::-1])
        if keep <= 0:  # q[j] is base + lo + j counts; keep counts < a_i
            p = np.zeros(1)
        else:
            q = _convolve(p, pmf[:keep])[:keep]
            base += lo
            cut = min(_trim_index(q), len(q) - 1)
            p, base = q[cut:], base + cut
        power += absorbed
        etime += float(mu[i]) * absorbed
        if early_stop is not None and power > early_stop:
            break
    return power, etime


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full convolution; FFT when both are long (error ~1e-16 of the largest term)."""
    if min(len(a), len(b)) > 500:
        from scipy.signal import fftconvolve

        return np.maximum(fftconvolve(a, b), 0.0)
    return np.convolve(a, b)


def _looks_from(expected_total, looks, group_sizes) -> np.ndarray:
    if group_sizes is not None:
        g = np.asarray(group_sizes, dtype=float)
        if g.ndim != 1 or len(g) == 0 or np.any(~np.isfinite(g)) or np.any(g <= 0):
            raise ValueError("group_sizes must be a non-empty 1-D sequence of positive numbers")
        mu = np.cumsum(g)
        if expected_total is not None and not math.isclose(mu[-1], expected_total, rel_tol=1e-9):
            raise ValueError("group_sizes must sum to expected_total")
        return mu
    if (
        looks is None
        or isinstance(looks, bool)
        or not isinstance(looks, (int, np.integer, float))
        or not math.isfinite(looks)
        or int(looks) != looks
        or looks < 1
    ):
        raise ValueError(f"give looks (a positive integer) or group_sizes, got looks={looks!r}")
    if int(looks) > 100_000:
        raise ValueError(f"looks must be <= 100,000, got {looks!r}")
    T = _check_T(expected_total)
    mu = T / looks * np.arange(1, int(looks) + 1)
    mu[-1] = T
    return mu


def _group_solve(mu: np.ndarray, M: int, alpha: float) -> float:
    T = float(mu[-1])
    _check_common(T, alpha, M)
    # R CV.G.Poisson: when even "M events by T" has probability <= alpha, any boundary
    # keeps alpha; it returns LLR(M, T), the boundary that signals as soon as M events occur.
    if stats.poisson.sf(0, T) < alpha or stats.poisson.sf(M - 1, T) <= alpha:
        return float(maxsprt_poisson_llr(M, T))
    kernels = _group_kernels(mu, 1.0)

    def fun(cv: float, stop: float) -> float:
        return _group_path(cv, mu, M, early_stop=stop, kernels=kernels)[0]

    # alpha(cv) is a left-continuous non-increasing step function that only jumps at
    # attained values v = LLR(c, mu_i) (at cv = v, c events at look i still reject); the
    # answer is the jump where it falls to <= alpha.  1) Bracket it, [lo, hi) with
    # alpha(lo) > alpha >= alpha(hi), by safeguarded secant steps on log alpha(cv) (close to
    # linear, slope ~ -1) until the bracket holds few jumps; 2) bisect over those jumps.
    lt = math.log(max(T, 0.5))
    x = max(0.3, 2.854 + 0.283 * lt - 0.0107 * lt * lt + math.log(0.05 / alpha) - 0.1 * (M - 1))
    lo, hi = 0.0, math.inf
    a_lo = _group_thresholds(lo, mu, M)
    a_hi = None
    x0 = g0 = None
    side = 0  # +1 / -1: the side the last points fell on (two in a row -> bisect)
    for _ in range(200):
        # early stop far above alpha: the sign is exact, the log only needs to be roughly right
        g = math.log(max(fun(x, 50.0 * alpha), 1e-300)) - math.log(alpha)
        if g > 0:
            lo, a_lo = x, _group_thresholds(x, mu, M)
        else:
            hi, a_hi = x, _group_thresholds(x, mu, M)
        if a_hi is not None and ((a_hi - a_lo).sum() <= _GROUP_JUMPS_ENUMERATED or hi - lo <= 1e-12 * max(1.0, hi)):
            break
        x_new = x - g * (x - x0) / (g - g0) if x0 is not None and g != g0 else x + g  # slope -1 first
        if math.isinf(hi):
            x_new = max(x_new, 1.5 * x)
        elif not (lo < x_new < hi) or not math.isfinite(x_new) or (side == (1 if g > 0 else -1)):
            x_new = 0.5 * (lo + hi)
        side = 0 if side == (1 if g > 0 else -1) else (1 if g > 0 else -1)
        x0, g0, x = x, g, x_new
    # the jumps in [lo, hi): at look i, count c (a_lo <= c < a_hi) stops rejecting above LLR(c, mu_i)
    n_jumps = a_hi - a_lo
    looks = np.repeat(np.arange(len(mu)), n_jumps)
    counts = a_lo[looks] + np.arange(len(looks)) - np.repeat(np.cumsum(n_jumps) - n_jumps, n_jumps)
    jumps = maxsprt_poisson_llr(counts, mu[looks]) if len(looks) else np.array([lo])
    order = np.argsort(jumps, kind="stable")
    vals = jumps[order]
    # vals[0] lies in the interval of lo (alpha > nominal); find the last jump with alpha > nominal
    i_true, i_false = 0, len(vals)  # alpha(vals[i_true]) > alpha; alpha(vals[i_false] or hi) <= alpha
    while i_false - i_true > 1:
        mid = (i_true + i_false) // 2
        if fun(float(vals[mid]), alpha) > alpha:
            i_true = mid
        else:
            i_false = mid
    k = order[i_true]
    jump = float(np.max(maxsprt_poisson_llr(counts[k : k + 1], mu[looks[k : k + 1]]))) if len(looks) else lo
    jump = max(jump, lo)
    # smallest CV with alpha <= nominal is just above the jump (LLR >= CV rejects on equality)
    return jump + 1e-9 * max(1.0, jump)


#: the CV search of :func:`_group_solve` bisects over the jumps of alpha(cv) once its bracket
#: holds at most this many
_GROUP_JUMPS_ENUMERATED = 32


#: Above this T the group CV is computed at the same information fractions scaled to this T:
#: with a fixed look schedule the Poisson recursion converges to its Gaussian limit (the
#: group-sequential boundary of the standardised counts) as T grows -- for 52 equal looks at
#: alpha = 0.05 the exact CV is 3.16955 at T = 1e4, 3.19363 at 1e5 and 3.19381 at 1e6, so the
#: CV used above 1e6 is within ~2e-5 of the exact one (slightly anticonservative, by < 1e-5 in
#: alpha).  Exact at 1e6 takes ~5 s; above it the time would keep growing with sqrt(T).
_GROUP_T_EXACT_MAX = 1e6


@functools.lru_cache(maxsize=1024)
def _group_cv_cached(mu_key: tuple, M: int, alpha: float) -> float:
    mu = np.asarray(mu_key, dtype=float)
    if mu[-1] > _GROUP_T_EXACT_MAX:
        mu = mu * (_GROUP_T_EXACT_MAX / mu[-1])
    return _group_solve(mu, M, alpha)


def maxsprt_poisson_group_cv(
    expected_total: float | None = None,
    looks: int | None = None,
    alpha: float = 0.05,
    min_events: int = 1,
    group_sizes: Sequence[float] | None = None,
) -> float:
    """Critical value of the group-sequential Poisson MaxSPRT, computed exactly.

    Looks at cumulative H0-expected counts ``mu_1 < ... < mu_n = T``: either ``looks``
    equally spaced looks (R Sequential ``CV.G.Poisson(SampleSize=T, alpha, Looks, M)``) or
    arbitrary positive per-look increments ``group_sizes`` (the ``GroupSizes`` form of older
    ``CV.G.Poisson`` versions), e.g. weekly expected counts (at most 100,000 looks).  At look i H0 is rejected iff
    ``N(mu_i) >= a_i = max(M, min{c : c ln(c/mu_i) - (c - mu_i) >= CV})``; the type I error is
    the forward recursion of the Poisson count distribution over looks (Kulldorff & Silva
    2015).  As alpha(CV) is a step function, the result is the smallest CV giving alpha <=
    nominal: an attained LLR value plus 1e-9 relative (R returns it + ~1e-6).  When
    ``P(N(T) >= M) <= alpha`` every CV works and, as R, ``LLR(M, T)`` is returned.
    Time and memory grow with sqrt(T) per look (windowed recursion); above T = 1e6 the CV
    is that of the same look fractions at T = 1e6 (Gaussian limit, see
    ``_GROUP_T_EXACT_MAX``: within ~2e-5 of exact).
    """
    mu = _looks_from(expected_total, looks, group_sizes)
    M = _check_M(min_events)
    _check_common(float(mu[-1]), float(alpha), M)
    key = tuple(np.round(mu, 12).tolist())
    return _group_cv_cached(key, M, float(alpha))


def maxsprt_poisson_group_performance(
    cv: float,
    expected_total: float | None = None,
    looks: int | None = None,
    min_events: int = 1,
    rr: float = 1.0,
    group_sizes: Sequence[float] | None = None,
) -> MaxSPRTPerformance:
    """Exact power / expected signal look time of group-sequential MaxSPRT (R
    ``Performance.G.Poisson``-style); with ``rr=1`` the power is the achieved alpha.
    ``cv`` must be finite and >= 0, ``min_events`` a positive integer, ``rr`` > 0
    (``ValueError`` otherwise); windowed recursion, time ~ looks x sqrt(T)."""
    cv = _check_cv(cv)
    M = _check_M(min_events)
    rr = _check_rr(rr)
    mu = _looks_from(expected_total, looks, group_sizes)
    power, etime = _group_path(cv, mu, M, rr)
    est = etime / power if power > 0 else float("nan")
    return MaxSPRTPerformance(float(power), float(est), float(etime + (1.0 - power) * mu[-1]))


# --------------------------------------------------------------------------------------
# vectorised monitor
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaxSPRTMonitorResult:
    """Per-stream outcome of :func:`maxsprt_poisson_monitor`.

    first_look: index of the first look with a signal, -1 if none (int64, shape (S,)).
    llr: LLR at that look; for streams without a signal the LLR at their last tested look
    (NaN if no look was testable).  cv: critical value applied to each stream (NaN where
    the stream's T is missing/non-positive).  T_used: the rounded T the CV was computed for.
    """

    first_look: np.ndarray
    llr: np.ndarray
    cv: np.ndarray
    T_used: np.ndarray

    @property
    def signalled(self) -> np.ndarray:
        return self.first_look >= 0


def _round_T_up(T: np.ndarray, per_decade: int) -> np.ndarray:
    """Round T up onto a log grid of ``per_decade`` points per decade.

    CV increases with T, so the CV of the rounded-up T is conservative for the stream; with
    50 points a decade T moves by < 4.7 %, which moves CV by < ~0.02.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.ceil(np.log10(T) * per_decade - 1e-9)
        return np.round(10.0 ** (e / per_decade), 12)


def _cv_for_monitor(T: float, M: int, alpha: float) -> float:
    try:
        return maxsprt_poisson_cv(T, alpha, M)
    except ValueError:
        # too little expected information to spend alpha: any boundary is valid (alpha is
        # at most P(N(T) >= M) < alpha); LLR(M, T) signals as soon as M events occur.
        _check_common(T, alpha, M)
        return float(maxsprt_poisson_llr(M, T))


def maxsprt_poisson_monitor(
    observed,
    expected,
    expected_total,
    alpha: float = 0.05,
    min_events: int = 1,
    t_grid_per_decade: int | None = 50,
    boundary: str = "continuous",
    planned_looks: int = 52,
) -> MaxSPRTMonitorResult:
    """Run continuous-boundary Poisson MaxSPRT over many streams at once.

    ``observed`` and ``expected`` are (streams x looks) arrays of *cumulative* observed and
    H0-expected counts at each look (e.g. weekly); ``expected_total`` is each stream's
    planned surveillance length T (scalar or shape (streams,)).  A stream signals at the first
    look with ``LLR(c, mu) >= CV(T, M, alpha)`` and ``c >= M`` (Kulldorff et al. 2011), where
    ``LLR = c ln(c/mu) - (c - mu)`` for ``c > mu``.  Looks whose expected count exceeds T
    (surveillance over) or is missing are not tested.

    Critical values come from :func:`maxsprt_poisson_cv` (continuous monitoring; testing at
    discrete looks with it is conservative) and are computed once per distinct rounded
    (T, M, alpha): T is rounded *up* onto a log grid with ``t_grid_per_decade`` points per
    decade (conservative, < 4.7 % in T at the default 50); pass ``None`` for exact T (one
    CV per distinct T value).  Streams where even ``P(N(T) >= M) < alpha`` get
    ``CV = LLR(M, T)``: alpha is then safe for any boundary, so they signal on M events.

    ``boundary="group"`` uses instead the group-sequential critical value of
    :func:`maxsprt_poisson_group_cv` for ``planned_looks`` equally spaced looks up to T
    (Kulldorff & Silva 2015): smaller than the continuous CV because alpha is spent only at
    the looks.  The signalling rule is the same (``LLR >= CV`` and ``c >= M`` at a look, which
    is ``c >= a_i`` of the group design); alpha is exact when the looks fall at the planned
    expected counts and approximate when the real increments are uneven (e.g. weekly
    deliveries), so the continuous boundary is the one that is valid for any look schedule.

    Bounded time and memory whatever the counts (large T use the asymptotic routes of
    :func:`maxsprt_poisson_cv` / :func:`maxsprt_poisson_group_cv`).  Negative or infinite
    counts, a non-integer ``min_events`` or alpha outside [1e-7, 0.5] raise ``ValueError``.
    """
    if boundary not in ("continuous", "group"):
        raise ValueError(f"boundary must be 'continuous' or 'group', got {boundary!r}")
    obs = np.asarray(observed, dtype=float)
    exp_ = np.asarray(expected, dtype=float)
    if obs.ndim == 1:
        obs = obs[None, :]
    if exp_.ndim == 1:
        exp_ = exp_[None, :]
    if obs.shape != exp_.shape:
        raise ValueError(f"observed {obs.shape} and expected {exp_.shape} differ in shape")
    for name, arr in (("observed", obs), ("expected", exp_)):
        if np.isinf(arr).any() or (arr < 0).any():
            raise ValueError(f"{name} counts must be >= 0 and finite (NaN = look not testable)")
    S, _ = obs.shape
    T = np.broadcast_to(np.asarray(expected_total, dtype=float), (S,)).copy()
    M = _check_M(min_events)
    if not (1e-7 <= float(alpha) <= 0.5):
        raise ValueError(f"alpha must be in [1e-7, 0.5], got {alpha!r}")

    valid_T = np.isfinite(T) & (T > 0)
    T_used = np.full(S, np.nan)
    if t_grid_per_decade:
        T_used[valid_T] = _round_T_up(T[valid_T], int(t_grid_per_decade))
    else:
        T_used[valid_T] = T[valid_T]
    cv = np.full(S, np.nan)
    uniq, inv = np.unique(T_used[valid_T], return_inverse=True)
    if boundary == "group":
        cv_uniq = np.array(
            [
                maxsprt_poisson_group_cv(float(t), looks=int(planned_looks), alpha=float(alpha), min_events=M)
                for t in uniq
            ]
        )
    else:
        cv_uniq = np.array([_cv_for_monitor(float(t), M, float(alpha)) for t in uniq])
    cv[valid_T] = cv_uniq[inv]

    llr = maxsprt_poisson_llr(obs, exp_)
    testable = np.isfinite(llr) & (exp_ > 0) & (exp_ <= T[:, None] * (1 + 1e-9))
    testable &= valid_T[:, None]
    hit = testable & (obs >= M) & (llr >= cv[:, None])
    any_hit = hit.any(axis=1)
    first = np.where(any_hit, hit.argmax(axis=1), -1).astype(np.int64)

    # last tested look, for the LLR reported by streams that did not signal
    n_looks = testable.shape[1]
    last = np.where(testable.any(axis=1), n_looks - 1 - testable[:, ::-1].argmax(axis=1), -1)
    at = np.where(any_hit, first, last)
    rows = np.arange(S)
    llr_out = np.where(at >= 0, llr[rows, np.maximum(at, 0)], np.nan)
    return MaxSPRTMonitorResult(first, llr_out, cv, T_used)

"""Multi-item Gamma-Poisson Shrinker (MGPS): prior fit and empirical-Bayes scores.

Model (DuMouchel, 1999)
-----------------------
For a drug–event pair with observed count N and expected count E,
N | λ ~ Poisson(λE) and λ ~ p·Gamma(α1, β1) + (1−p)·Gamma(α2, β2)
(shape α, *rate* β).  Marginally N is a two-component negative-binomial
mixture, NB(n; α, r) with size α and success probability r = β/(β+E):

    f(n) = p·NB(n; α1, β1/(β1+E)) + (1−p)·NB(n; α2, β2/(β2+E)).

Prior fit: :func:`fit_prior` maximises the likelihood over pairs with
n ≥ n* (``min_count``), each component truncated at n* as FDA's openEBGM
defines it (``negLL``/``negLLsquash``; Canida & Ihrie, 2017; DuMouchel &
Pregibon, 2001):

    L = Π_i [ p·NB_1(n_i)/(1 − F_1(n*−1)) + (1−p)·NB_2(n_i)/(1 − F_2(n*−1)) ]^{w_i}

with w_i the weight of a squashed point (DuMouchel & Pregibon, 2001).

Posterior: λ | N=n ~ Q·Gamma(α1+n, β1+E) + (1−Q)·Gamma(α2+n, β2+E), where
Q = p·NB_1(n) / f(n) uses the *untruncated* component likelihoods.
EBGM = exp(E[ln λ | n]) = exp(Q·(ψ(α1+n) − ln(β1+E)) + (1−Q)·(ψ(α2+n) − ln(β2+E)));
EB05/EB95 are the 5 %/95 % posterior quantiles (DuMouchel, 1999, eq. 11ff).

References
----------
DuMouchel W (1999). Bayesian data mining in large frequency tables, with an
application to the FDA spontaneous reporting system. Am Stat 53(3):177–190.
DuMouchel W, Pregibon D (2001). Empirical Bayes screening for multi-item
associations. Proc. KDD '01, 67–76.
Canida T, Ihrie J (2017). openEBGM: An R implementation of the Gamma-Poisson
Shrinker data mining model. The R Journal 9(2):499–519.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy import optimize, special
from threadpoolctl import threadpool_limits

__all__ = [
    "GammaMixturePrior",
    "MGPSFitError",
    "EBScores",
    "DEFAULT_STARTS",
    "squash",
    "neg_loglik",
    "fit_prior",
    "posterior_weight",
    "ebgm",
    "quantile",
    "eb_scores",
]


@dataclass(frozen=True, slots=True)
class GammaMixturePrior:
    """Two-component gamma mixture prior for λ (shape α, rate β, weight p of
    component 1).  The optional fields describe how it was fitted."""

    alpha1: float
    beta1: float
    alpha2: float
    beta2: float
    p: float
    loglik: float | None = None
    n_pairs: int | None = None
    converged: bool | None = None
    method: str | None = None
    #: starting points whose optimisation converged, and how many of them
    #: reached the best log-likelihood (a cross-check, as openEBGM's autoHyper)
    n_converged: int | None = None
    n_agree: int | None = None
    #: True if an estimate sits on a parameter bound (e.g. homogeneous data,
    #: where the MLE is a point mass and α, β run to the bound together)
    at_bound: bool = False
    squashed_points: int | None = None

    def __post_init__(self):
        for k in ("alpha1", "beta1", "alpha2", "beta2"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"GammaMixturePrior.{k} must be a positive number, got {v!r}")
        if not (0.0 <= self.p <= 1.0):
            raise ValueError(f"GammaMixturePrior.p must lie in [0, 1], got {self.p!r}")

    @property
    def theta(self) -> np.ndarray:
        """(α1, β1, α2, β2, p) as an array (openEBGM's ``theta_hat`` order)."""
        return np.array([self.alpha1, self.beta1, self.alpha2, self.beta2, self.p])


class MGPSFitError(RuntimeError):
    """Raised when no starting point gives a converged maximum-likelihood fit."""


@dataclass(frozen=True, slots=True)
class EBScores:
    ebgm: np.ndarray
    eb05: np.ndarray
    eb95: np.ndarray
    q: np.ndarray = field(repr=False)


#: starting points (α1, β1, α2, β2, p): DuMouchel (1999)'s default first, then
#: the set used in the openEBGM vignettes, then a flatter one
DEFAULT_STARTS: tuple[tuple[float, float, float, float, float], ...] = (
    (0.2, 0.1, 2.0, 4.0, 1 / 3),
    (0.1, 0.1, 10.0, 10.0, 0.2),
    (0.3, 0.5, 6.0, 6.0, 0.5),
    (0.5, 0.3, 12.0, 12.0, 0.8),
    (0.2, 0.2, 5.0, 5.0, 0.4),
    (1.0, 1.0, 2.0, 2.0, 0.3),
)

# distinct (n, E) rows above which EB05 and EB95 are solved on two threads
_PARALLEL_ROWS = 20_000

# bounds of the optimisation (log α, log β in [1e-5, 1e5]; logit p in ±20)
_LOG_LO, _LOG_HI = np.log(1e-5), np.log(1e5)
_LOGIT = 20.0


# --------------------------------------------------------------------------- helpers
def _per_count(n: np.ndarray, fn, *args) -> tuple:
    """fn(n_unique, *args) gathered back to every row: special functions of α + n depend on the count only, and
    a table of millions of pairs holds a few hundred distinct counts."""
    u, inv = np.unique(n, return_inverse=True)
    return tuple(np.asarray(v)[inv] for v in fn(u, *args))


def _distinct(n: np.ndarray, e: np.ndarray):
    """The distinct (n, E) rows and, per input row, the index of its distinct row (one sort on both keys)."""
    order = np.lexsort((e, n))
    ns, es = n[order], e[order]
    first = np.empty(ns.size, dtype=bool)
    first[:1] = True
    np.not_equal(ns[1:], ns[:-1], out=first[1:])
    first[1:] |= es[1:] != es[:-1]
    inv = np.empty(ns.size, dtype=np.int64)
    inv[order] = np.cumsum(first) - 1
    return ns[first], es[first], inv


# --------------------------------------------------------------------------- squashing
def squash(n, e, weights=None, rel_width: float = 0.01):
    """Data squashing (DuMouchel & Pregibon, 2001) for the prior fit.

    Points with the same count n whose expected counts lie in the same
    log-E bin of width ``rel_width`` (≈ 1 % relative) are merged into one
    super-point (n, mean E, total weight).  The likelihood changes by far less
    than its sampling error while the number of points drops from millions to
    tens of thousands.  Returns (n, e, w) arrays.
    """
    n = np.asarray(n, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    w = np.ones_like(n) if weights is None else np.asarray(weights, dtype=np.float64)
    df = pl.DataFrame({"n": n, "e": e, "w": w}).with_columns(b=(pl.col("e").log() / rel_width).floor().cast(pl.Int64))
    out = (
        df.group_by("n", "b")
        .agg(e=(pl.col("e") * pl.col("w")).sum() / pl.col("w").sum(), w=pl.col("w").sum())
        .sort("n", "e")
    )
    return out["n"].to_numpy(), out["e"].to_numpy(), out["w"].to_numpy()


# --------------------------------------------------------------------------- likelihood
class _Points(NamedTuple):
    """The data of a likelihood evaluation, with what does not depend on θ computed once: log Γ(n+1),
    xlogy(n, E), and the distinct counts (special functions of α + n are evaluated on those only)."""

    n: np.ndarray
    e: np.ndarray
    w: np.ndarray
    lgam_n1: np.ndarray
    xl: np.ndarray
    counts: np.ndarray
    inv: np.ndarray


def _points(n, e, w) -> _Points:
    counts, inv = np.unique(n, return_inverse=True)
    return _Points(n, e, w, special.gammaln(n + 1), special.xlogy(n, e), counts, inv)


def _component(d: _Points, alpha, beta, k):
    """Truncated log-density g = log NB − log(1 − F(k)) and its gradient wrt
    (α, β).  k = min_count − 1 (k < 0: no truncation)."""
    n, e = d.n, d.e
    lbe = np.log(beta + e)
    lr = np.log(beta) - lbe  # log r
    g = special.gammaln(alpha + d.counts)[d.inv] - special.gammaln(alpha) - d.lgam_n1 + alpha * lr + d.xl - n * lbe
    da = special.digamma(alpha + d.counts)[d.inv] - special.digamma(alpha) + lr
    db = (alpha * e / beta - n) / (beta + e)
    if k >= 0:
        r = np.exp(lr)
        if k == 0:
            # 1 − F(0) = 1 − r^α
            ra = np.exp(alpha * lr)
            t = -np.expm1(alpha * lr)
            dFa = ra * lr
            dFb = alpha * ra * e / (beta * (beta + e))
        else:
            t = special.betaincc(alpha, k + 1.0, r)
            dFr = np.exp((alpha - 1) * np.log(r) + k * np.log1p(-r) - special.betaln(alpha, k + 1.0))
            dFb = dFr * e / (beta + e) ** 2
            h = 1e-6 * alpha
            dFa = (special.betainc(alpha + h, k + 1.0, r) - special.betainc(alpha - h, k + 1.0, r)) / (2 * h)
        t = np.maximum(t, 1e-300)
        g = g - np.log(t)
        da = da + dFa / t
        db = db + dFb / t
    return g, da, db


def _negll_and_grad(x, d: _Points, k):
    w = d.w
    a1, b1, a2, b2 = np.exp(x[:4])
    p = special.expit(x[4])
    g1, da1, db1 = _component(d, a1, b1, k)
    g2, da2, db2 = _component(d, a2, b2, k)
    l1 = np.log(p) + g1
    l2 = np.log1p(-p) + g2
    ll = np.logaddexp(l1, l2)
    w1 = np.exp(l1 - ll)
    w2 = 1.0 - w1
    f = -np.sum(w * ll)
    if not np.isfinite(f):
        return np.inf, np.zeros(5)
    grad = -np.array(
        [
            np.sum(w * w1 * da1) * a1,
            np.sum(w * w1 * db1) * b1,
            np.sum(w * w2 * da2) * a2,
            np.sum(w * w2 * db2) * b2,
            # d/dlogit p of log(p e^g1 + (1-p) e^g2) = (w1/p − w2/(1−p))·p(1−p)
            np.sum(w * (w1 * (1 - p) - w2 * p)),
        ]
    )
    return f, grad


def neg_loglik(theta, n, e, weights=None, min_count: int = 1) -> float:
    """Negative log-likelihood of θ = (α1, β1, α2, β2, p), truncated at
    ``min_count`` exactly as openEBGM's ``negLL``/``negLLsquash`` (full
    normalising constants, natural log).  ``min_count=0`` gives the untruncated
    ``negLLzero`` form."""
    n = np.asarray(n, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    w = np.ones_like(n) if weights is None else np.asarray(weights, dtype=np.float64)
    a1, b1, a2, b2, p = (float(v) for v in theta)
    x = np.array([np.log(a1), np.log(b1), np.log(a2), np.log(b2), special.logit(p)])
    return float(_negll_and_grad(x, _points(n, e, w), min_count - 1)[0])


def _n_agree(tried, best_ll) -> int:
    """Converged starts whose log-likelihood is within 1e-3 of the best."""
    return sum(
        1 for _, msg, ll in tried if msg.startswith("converged") and ll is not None and abs(ll - best_ll) <= 1e-3
    )


def fit_prior(
    n,
    e,
    min_count: int = 1,
    *,
    squash_data: bool | None = None,
    squash_width: float = 0.01,
    starts=DEFAULT_STARTS,
    max_iter: int = 2000,
    min_agree: int = 2,
) -> GammaMixturePrior:
    """Maximum-likelihood gamma-mixture prior (DuMouchel, 1999) over pairs
    with n ≥ ``min_count``, using openEBGM's truncated likelihood.

    Each start in ``starts`` is optimised by bounded L-BFGS-B on
    (log α1, log β1, log α2, log β2, logit p) with the analytic gradient;
    the converged run with the largest likelihood wins.  Starts are tried
    in order until ``min_agree`` converged runs agree (to 1e-3 in
    log-likelihood) on the best value, or all have been tried.  Squashing is used
    automatically above 20 000 pairs (``squash_data=None``).  The result is
    labelled so that p ≤ ½ (component 1 is the minority component).

    Raises
    ------
    ValueError
        No usable pairs (after ``n ≥ min_count`` and finite E > 0).
    MGPSFitError
        No start converged; the message lists every start and its outcome.
    """
    n = np.asarray(n, dtype=np.float64).ravel()
    e = np.asarray(e, dtype=np.float64).ravel()
    if n.shape != e.shape:
        raise ValueError("n and e must have the same length")
    if min_count < 1:
        raise ValueError("min_count must be >= 1 (zero counts are not used)")
    keep = np.isfinite(n) & np.isfinite(e) & (e > 0) & (n >= min_count)
    n_pairs = int(keep.sum())
    if n_pairs == 0:
        raise ValueError(f"fit_prior: no pairs with n >= {min_count} and finite E > 0")
    n, e = n[keep], e[keep]
    if squash_data is None:
        squash_data = n_pairs > 20_000
    if squash_data:
        n, e, w = squash(n, e, rel_width=squash_width)
    else:
        w = np.ones_like(n)
    data = _points(n, e, w)
    k = min_count - 1
    bounds = [(_LOG_LO, _LOG_HI)] * 4 + [(-_LOGIT, _LOGIT)]
    # scale the objective so that L-BFGS-B tolerances mean the same at any size
    scale = 1.0 / max(float(w.sum()), 1.0)

    def obj(x):
        f, g = _negll_and_grad(x, data, k)
        return f * scale, g * scale

    tried = []
    best = None
    # one BLAS thread: L-BFGS-B's linear algebra is 5x5, and OpenBLAS threads spinning on it cost more CPU than
    # the likelihood itself (3x the fit's wall time on a busy machine)
    with threadpool_limits(limits=1, user_api="blas"):
        for s in starts:
            # stop once two converged starts agree on the best likelihood (the
            # cross-check openEBGM's autoHyper asks for); the rest would repeat it
            if best is not None and _n_agree(tried, -best.fun / scale) >= min_agree:
                break
            a1, b1, a2, b2, p = s
            x0 = np.clip(
                np.array([np.log(a1), np.log(b1), np.log(a2), np.log(b2), special.logit(p)]),
                [b[0] for b in bounds],
                [b[1] for b in bounds],
            )
            try:
                res = optimize.minimize(
                    obj,
                    x0,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-8},
                )
            except (FloatingPointError, ValueError) as exc:  # pragma: no cover - defensive
                tried.append((s, f"error: {exc}", None))
                continue
            # L-BFGS-B may end "ABNORMAL" (line search cannot improve) at the
            # optimum when the objective is flat to rounding; accept such a stop if
            # the projected gradient of the per-point objective is ~0
            pg = np.asarray(res.jac, dtype=float).copy()
            at_lo = res.x <= np.array([b[0] for b in bounds]) + 1e-10
            at_hi = res.x >= np.array([b[1] for b in bounds]) - 1e-10
            pg[(at_lo & (pg > 0)) | (at_hi & (pg < 0))] = 0.0
            ok = np.isfinite(res.fun) and (bool(res.success) or float(np.max(np.abs(pg))) <= 1e-6)
            # L-BFGS-B stops on a relative-reduction test; a converged interior
            # point must also have a small projected gradient
            ll = -res.fun / scale if np.isfinite(res.fun) else None
            tried.append((s, ("converged" if ok else f"failed: {res.message}") + f" after {res.nit} it", ll))
            if ok and (best is None or res.fun < best.fun):
                best = res
    converged = [t for t in tried if t[1].startswith("converged")]
    if best is None:
        lines = "\n".join(f"  start {s}: {msg}; loglik={ll}" for s, msg, ll in tried)
        raise MGPSFitError(
            f"MGPS prior fit did not converge from any of {len(tried)} starting points "
            f"(L-BFGS-B, bounded, max_iter={max_iter}, {n_pairs} pairs, "
            f"{'squashed to ' + str(n.size) + ' points' if squash_data else 'unsquashed'}):\n{lines}"
        )
    best_ll = -best.fun / scale
    n_agree = _n_agree(tried, best_ll)
    a1, b1, a2, b2 = np.exp(best.x[:4])
    p = float(special.expit(best.x[4]))
    at_bound = bool(
        np.any(np.isclose(best.x[:4], _LOG_LO) | np.isclose(best.x[:4], _LOG_HI)) or abs(best.x[4]) >= _LOGIT - 1e-6
    )
    if p > 0.5:  # label switching: make component 1 the minority one
        a1, b1, a2, b2, p = a2, b2, a1, b1, 1.0 - p
    return GammaMixturePrior(
        float(a1),
        float(b1),
        float(a2),
        float(b2),
        p,
        loglik=float(best_ll),
        n_pairs=n_pairs,
        converged=True,
        method="L-BFGS-B" + (" (squashed)" if squash_data else ""),
        n_converged=len(converged),
        n_agree=n_agree,
        at_bound=at_bound,
        squashed_points=int(n.size) if squash_data else None,
    )


# --------------------------------------------------------------------------- posterior
def _prep(n, e):
    n = np.asarray(n, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    n, e = np.broadcast_arrays(n, e)
    return n, e


def _log_nb_parts(n, e, prior: GammaMixturePrior):
    """(log NB_1(n), log NB_2(n)) per row, the log-gamma terms evaluated once per distinct count."""
    g1, g2, g0 = _per_count(
        n, lambda u: (special.gammaln(prior.alpha1 + u), special.gammaln(prior.alpha2 + u), special.gammaln(u + 1))
    )
    xl = special.xlogy(n, e)
    out = []
    for alpha, beta, ga in ((prior.alpha1, prior.beta1, g1), (prior.alpha2, prior.beta2, g2)):
        lbe = np.log(beta + e)
        out.append(ga - special.gammaln(alpha) - g0 + alpha * (np.log(beta) - lbe) + xl - n * lbe)
    return out


def posterior_weight(n, e, prior: GammaMixturePrior) -> np.ndarray:
    """Q_n: posterior probability that λ came from component 1, from the
    untruncated component likelihoods (openEBGM ``Qn``)."""
    n, e = _prep(n, e)
    if n.size == 0:
        return np.empty(n.shape)
    l1, l2 = _log_nb_parts(n.ravel(), e.ravel(), prior)
    with np.errstate(divide="ignore"):
        return special.expit(np.log(prior.p) - np.log1p(-prior.p) + l1 - l2).reshape(n.shape)


def _usable(n, e) -> np.ndarray:
    """Rows the model can score: finite n ≥ 0 and E ≥ 0, and E > 0 when n > 0 (N ~ Poisson(λE) cannot be
    positive when E = 0: the likelihood is 0 and the posterior undefined)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(n) & np.isfinite(e) & (n >= 0) & ((e > 0) | ((e == 0) & (n == 0)))


def ebgm(n, e, prior: GammaMixturePrior) -> np.ndarray:
    """Empirical Bayes geometric mean exp(E[ln λ | n]) (DuMouchel, 1999); NaN where :func:`_usable` is false."""
    return eb_scores(n, e, prior, quantiles=False).ebgm


def _component_terms(n, prior: GammaMixturePrior, probs) -> dict:
    """Per-count terms of the two posterior components Gamma(α_i + n, β_i + E), evaluated on the distinct counts:
    digamma (EBGM), −log Γ (densities) and the standard gamma quantiles G⁻¹(α_i + n, p) (the bracket of the
    mixture quantile, divided by the rate per row)."""

    def terms(u):
        s1, s2 = prior.alpha1 + u, prior.alpha2 + u
        out = [special.digamma(s1), special.digamma(s2), -special.gammaln(s1), -special.gammaln(s2)]
        for prob in probs:
            out += [special.gammaincinv(s1, prob), special.gammaincinv(s2, prob)]
        return out

    vals = _per_count(n, terms)
    out = {"psi1": vals[0], "psi2": vals[1], "c1": vals[2], "c2": vals[3]}
    for i, prob in enumerate(probs):
        out[prob] = (vals[4 + 2 * i], vals[5 + 2 * i])
    return out


def _mixture_quantile(q, s1, r1, s2, r2, prob, g1, g2, c1, c2, rtol=1e-12, max_iter=100):
    """Vectorised root of F(x) = q·P(s1, r1·x) + (1−q)·P(s2, r2·x) = prob (P the regularised lower incomplete gamma).

    ``g_i`` = P⁻¹(s_i, prob), so the component quantiles g_i/r_i bracket the root; ``c_i`` = −log Γ(s_i).
    Halley's method on u = ln x (the CDF is close to a logistic curve in ln x) from the q-weighted mean of the
    log component quantiles, with dF/du = Σ w_i·exp(s_i·ln(r_i x) − r_i x + c_i) and
    d²F/du² = Σ w_i·(s_i − r_i x)·(that term); a step leaving the bracket is replaced by its geometric midpoint,
    and a row stops once the step, or the O(h³) error bound after it, is below ``rtol``.
    """
    x1 = g1 / r1
    x2 = g2 / r2
    lo = np.log(np.minimum(x1, x2))
    hi = np.log(np.maximum(x1, x2))
    u = q * np.log(x1) + (1 - q) * np.log(x2)
    # a component with negligible weight: its quantile is the answer to ~1e-15
    u = np.where(q >= 1 - 1e-15, np.log(x1), np.where(q <= 1e-15, np.log(x2), u))
    active = np.flatnonzero((hi - lo > rtol) & (q > 1e-15) & (q < 1 - 1e-15))
    lr1 = np.log(r1)
    lr2 = np.log(r2)
    for _ in range(max_iter):
        if active.size == 0:
            break
        ua, qa = u[active], q[active]
        a1, b1, a2, b2 = s1[active], r1[active], s2[active], r2[active]
        xa = np.exp(ua)
        y1, y2 = b1 * xa, b2 * xa
        F = qa * special.gammainc(a1, y1) + (1 - qa) * special.gammainc(a2, y2) - prob
        d1 = qa * np.exp(c1[active] + a1 * (lr1[active] + ua) - y1)
        d2 = (1 - qa) * np.exp(c2[active] + a2 * (lr2[active] + ua) - y2)
        dF = d1 + d2
        d2F = d1 * (a1 - y1) + d2 * (a2 - y2)
        below = F < 0
        lo_a = np.where(below, ua, lo[active])
        hi_a = np.where(below, hi[active], ua)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = F / dF
            halley = newton / (1 - 0.5 * newton * d2F / dF)
            # Halley where its correction is moderate, Newton otherwise
            step = np.where(np.abs(halley - newton) <= 0.5 * np.abs(newton), halley, newton)
            un = ua - step
        bad = ~np.isfinite(un) | (un < lo_a) | (un > hi_a)
        un = np.where(bad, 0.5 * (lo_a + hi_a), un)
        # the error after a Halley step h is ~K·h³, K of the order of (F''/F')² + F'''/F', at most
        # (F''/F')² + max(s_i, r_i·x) + 1 here (log-derivatives of the gamma densities in u): a row whose bound is
        # below rtol stops now, without the confirming evaluation it would otherwise need
        with np.errstate(invalid="ignore", over="ignore"):
            k = (d2F / dF) ** 2 + np.maximum(np.maximum(a1, a2), np.maximum(y1, y2)) + 1.0
            settled = ~bad & (k * np.abs(step) ** 3 <= rtol) & (np.abs(halley - newton) <= 0.5 * np.abs(newton))
        done = (np.abs(un - ua) <= rtol) | (hi_a - lo_a <= rtol) | (F == 0) | settled
        u[active] = un
        lo[active], hi[active] = lo_a, hi_a
        active = active[~done]
    return np.exp(u)


def quantile(n, e, prior: GammaMixturePrior, q: float) -> np.ndarray:
    """The ``q`` quantile (0 < q < 1) of the posterior of λ given n, E.
    EB05 = quantile(..., 0.05), EB95 = quantile(..., 0.95).  Accurate to
    ~1e-12 relative (safeguarded Halley on the exact mixture CDF); NaN where
    the posterior is undefined (see :func:`eb_scores`)."""
    if not 0 < q < 1:
        raise ValueError("q must be strictly between 0 and 1")
    return eb_scores(n, e, prior, lower=q, upper=None).eb05


def eb_scores(
    n, e, prior: GammaMixturePrior, lower: float = 0.05, upper: float | None = 0.95, *, quantiles: bool = True
) -> EBScores:
    """EBGM, EB05 and EB95 (and Q) for many pairs at once.

    Null (NaN, no warning) where the posterior is undefined: n or E not finite or negative, and n ≥ 1 with
    E = 0 (no count can be observed when nothing is expected). n = 0 with E = 0 gives the prior's figures.
    The special functions of α_i + n are evaluated once per distinct count, and the rest once per distinct
    (n, E): large tables repeat the same small counts and margins.
    """
    n, e = _prep(n, e)
    shape = n.shape
    n, e = n.ravel(), e.ravel()
    idx = np.flatnonzero(_usable(n, e))
    out = [np.full(n.shape, np.nan) for _ in range(4)]
    if idx.size:
        un, ue, inv = _distinct(n[idx], e[idx])
        probs = [p for p in (lower, upper) if p is not None] if quantiles else []
        t = _component_terms(un, prior, probs)
        w = posterior_weight(un, ue, prior)
        s1, r1 = prior.alpha1 + un, prior.beta1 + ue
        s2, r2 = prior.alpha2 + un, prior.beta2 + ue
        g = np.exp(w * (t["psi1"] - np.log(r1)) + (1 - w) * (t["psi2"] - np.log(r2)))
        vals = [g, None, None, w]

        def solve(prob):
            return _mixture_quantile(w, s1, r1, s2, r2, prob, *t[prob], t["c1"], t["c2"])

        if len(probs) > 1 and un.size >= _PARALLEL_ROWS:
            # the special functions release the GIL: the two quantiles on two threads
            with ThreadPoolExecutor(max_workers=len(probs)) as pool:
                vals[1 : 1 + len(probs)] = list(pool.map(solve, probs))
        else:
            vals[1 : 1 + len(probs)] = [solve(prob) for prob in probs]
        for o, v in zip(out, vals):
            if v is not None:
                o[idx] = v[inv]
    return EBScores(*(o.reshape(shape) for o in out))

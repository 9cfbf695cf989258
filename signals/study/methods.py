"""The detection methods applied sequentially to simulated counts, with no look-ahead.

Every method sees, at the end of week ``w`` of the batch's life, only what was known then:
reports *received* by that week (the batch's and its siblings'), packs delivered by then, the
reporting-delay distribution from history (:attr:`ScenarioData.delay_pmf`), and the batches
that existed.  Each returns the index of the first look with an alert per replicate (-1 =
never), computed for all replicates at once.  The production code is called wherever it exists
(:mod:`signals.baseline`, :mod:`signals.sequential`, :mod:`signals.batch_heterogeneity`,
:mod:`signals.disproportionality`, :mod:`signals.rules`), so the study measures the product.

Per-stream alpha: the product's family-wise 5 % split over its streams (Bonferroni, as
:mod:`signals.batch_surveillance`); every batch method uses ``design.alpha_stream`` and at least
``design.min_events`` reports (M = 3, as production); the one-look tests (exact, NB) are
applied at that level at *every* look -- they have no sequential error control, which is
what the false-alarm column measures.

Methods
-------
``maxsprt_continuous`` / ``maxsprt_group``
    Poisson MaxSPRT (Kulldorff et al. 2011) on the leave-one-out, delay-adjusted expected
    count of :func:`signals.baseline.leave_one_out_expected`, T = units released x the siblings'
    rate known at the batch's release (no final-data T), continuous or 52-look group CV.
``exact_vs_rest``, ``eb_shrinkage``, ``nb_overdispersion``, ``funnel``
    :func:`signals.batch_heterogeneity.batch_rate_tests` / ``batch_overdispersion`` /
    ``funnel_limits`` on the cumulative counts and delay-adjusted exposures of all batches at
    each look: p_exact < alpha; EB05 of the shrunken rate ratio > 1; p_nb < alpha; above the
    99.8 % funnel limit.
``product_evans``, ``product_ema_sdr``, ``product_who_umc``
    Product-level disproportionality rules of :mod:`signals.rules` on the product's cumulative
    counts (all batches) against the database; a *new* signal (not firing at the previous
    look) counts as the alert.
``siblings_msprt`` (new, issue 14 item 2)
    Batch-vs-siblings mixture SPRT, see :func:`siblings_msprt`.
``oracle``
    Wald's SPRT of the true intensity (rate ratio, base rate, onset, delays all known) against
    the null, boundary ln(1/alpha): the physical limit (see :func:`oracle_sprt`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from signals.baseline import leave_one_out_expected, reported_exposure
from signals.batch_heterogeneity import batch_overdispersion, batch_rate_tests, funnel_limits
from signals.disproportionality import score
from signals.rules import apply_rules
from signals.sequential import maxsprt_poisson_monitor
from signals.study.scenarios import ScenarioData

__all__ = [
    "METHODS",
    "BATCH_METHODS",
    "PRODUCT_METHODS",
    "first_alarm",
    "oracle_sprt",
    "siblings_msprt",
    "maxsprt",
    "heterogeneity_scan",
    "product_rules",
    "apply_all",
]

BATCH_METHODS = (
    "maxsprt_continuous",
    "maxsprt_group",
    "exact_vs_rest",
    "eb_shrinkage",
    "nb_overdispersion",
    "funnel",
    "siblings_msprt",
)
PRODUCT_METHODS = ("product_evans", "product_ema_sdr", "product_who_umc")
METHODS = (*BATCH_METHODS, *PRODUCT_METHODS)

#: rate ratios of the siblings mixture and their prior weights: the alternatives a quality
#: defect plausibly has (half the weight on 3-10, the range the study's goal is about)
MIXTURE_RR = np.array([1.5, 2.0, 3.0, 5.0, 10.0, 20.0])
MIXTURE_WEIGHTS = np.array([0.1, 0.15, 0.25, 0.25, 0.15, 0.1])


def first_alarm(alarm: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 where none."""
    a = np.asarray(alarm, dtype=bool)
    return np.where(a.any(axis=-1), a.argmax(axis=-1), -1).astype(np.int64)


def _cumulative(d: ScenarioData):
    """Cumulative received counts (R, B, G) and delay-adjusted exposures (B, G)."""
    C = np.cumsum(d.counts, axis=2)
    E = reported_exposure(d.packs, d.delay_pmf)
    return C, E


def _looks(d: ScenarioData) -> np.ndarray:
    return np.arange(d.start, d.start + d.design.horizon_weeks)


# ------------------------------------------------------------------------------------ oracle
def oracle_sprt(d: ScenarioData, rng: np.random.Generator | None = None, calibration_paths: int = 0) -> np.ndarray:
    """Wald's SPRT of H1: intensity lam1 vs H0: lam0 on the batch under test, calibrated to
    spend exactly the per-stream alpha over the batch's life.

    LLR at look w: ``sum_{g <= w} [y_g ln(lam1_g/lam0_g) - (lam1_g - lam0_g)]``, the log
    likelihood ratio of the two simple hypotheses (Wald 1947).  It knows everything the methods
    must estimate (rate ratio, base rate, onset, reporting delays).  Boundary h: the (1 -
    alpha) quantile of max_w LLR_w under H0, from ``calibration_paths`` simulated null paths
    (default max(40,000, 50/alpha)), capped at Wald's ln(1/alpha) (Ville's inequality: the
    likelihood ratio is an H0-martingale, so crossing 1/alpha has probability <= alpha whatever
    the horizon).  Calibrating spends the alpha Wald's bound leaves unused (overshoot, finite
    horizon), so the oracle is the fastest test at that false-alarm level: the physical limit.
    Weeks before the onset (lam1 == lam0) add nothing.  Undefined (all -1) at rate ratio 1.
    """
    R = d.counts.shape[0]
    if d.scenario.rate_ratio == 1:
        return np.full(R, -1, dtype=np.int64)
    b = d.design.n_batches - 1
    s, W = d.start, d.design.horizon_weeks
    lam0, lam1 = d.lam0[b, s : s + W], d.lam1[b, s : s + W]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(lam0 > 0, np.log(lam1 / lam0), 0.0)
    alpha = d.design.alpha_stream
    h = float(np.log(1.0 / alpha))
    n_cal = int(calibration_paths) or int(max(40_000, 50 / alpha))
    rng = rng or np.random.default_rng(0)
    best = np.empty(0)
    for chunk in range(0, n_cal, 10_000):
        y0 = rng.poisson(np.broadcast_to(lam0, (min(10_000, n_cal - chunk), W)))
        best = np.append(best, np.cumsum(y0 * w - (lam1 - lam0), axis=1).max(axis=1))
    h = min(h, float(np.quantile(best, 1.0 - alpha, method="higher")) + 1e-9)
    llr = np.cumsum(d.counts[:, b, s : s + W] * w[None, :] - (lam1 - lam0)[None, :], axis=1)
    return first_alarm(llr >= h)


# ----------------------------------------------------------------------- batch vs siblings
def siblings_msprt(
    d: ScenarioData, rr_grid: np.ndarray = MIXTURE_RR, weights: np.ndarray = MIXTURE_WEIGHTS
) -> np.ndarray:
    """Batch-vs-siblings mixture SPRT: conditional on each week's total of the product's reports.

    Under H0 every batch of the product reports at the same rate per delay-adjusted pack, so,
    given the week's total ``n_g`` of received reports of the batch (``y_g``) and its siblings,
    ``y_g ~ Binomial(n_g, pi_g)`` with ``pi_g = dE_b(g) / (dE_b(g) + dE_rest(g))``, dE the
    week's increment of delay-adjusted exposure (packs delivered convolved with the historical
    delay pmf) -- the unknown base rate cancels (Cox 1958 conditioning; the binomial form of
    the exact batch-vs-rest test, applied week by week).  Under "the batch reports RR times
    more" the cell probability is ``theta_g = RR pi_g / (RR pi_g + 1 - pi_g)``.  The product over
    weeks of the binomial likelihood ratios is an H0-martingale for each RR, and so is any
    mixture over RR (Robbins 1970; Johari et al. 2022 "always valid p-values"): alarm when

        sum_j w_j prod_g (theta_gj/pi_g)^y_g ((1-theta_gj)/(1-pi_g))^(n_g-y_g) >= 1/alpha

    and y >= M reports; Ville's inequality bounds the false alarms by alpha with any number of
    looks, no planned length T, and no estimate of the base rate to go wrong.  The mixture
    (``rr_grid``, ``weights``; default 1.5-20 with most weight on 3-10) pays ln(1/w_j) nats
    against an oracle that knows RR.
    """
    design = d.design
    b = design.n_batches - 1
    dE = np.diff(reported_exposure(d.packs, d.delay_pmf), axis=1, prepend=0.0)
    dEb, dEr = dE[b], dE[:b].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.where(dEb > 0, dEb / (dEb + dEr), 0.0)
    y = d.counts[:, b, :]
    n = d.counts.sum(axis=1)
    rr = np.asarray(rr_grid, dtype=float)[:, None]
    theta = rr * pi[None, :] / (rr * pi[None, :] + 1.0 - pi[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        lt = np.where(pi > 0, np.log(theta / pi), 0.0)  # (J, G)
        lf = np.where(pi > 0, np.log((1 - theta) / (1 - pi)), 0.0)
    s = d.start
    yy, nn = y[:, s:], n[:, s:]
    # per RR: cumulative log LR, (R, J, W)
    llr = np.cumsum(yy[:, None, :] * lt[None, :, s:] + (nn - yy)[:, None, :] * lf[None, :, s:], axis=2)
    wts = np.asarray(weights, dtype=float)
    m = llr.max(axis=1)
    log_mix = m + np.log(np.einsum("j,rjw->rw", wts / wts.sum(), np.exp(llr - m[:, None, :])))
    cum_y = np.cumsum(yy, axis=1)
    W = design.horizon_weeks
    return first_alarm((log_mix[:, :W] >= np.log(1.0 / design.alpha_stream)) & (cum_y[:, :W] >= design.min_events))


# -------------------------------------------------------------------------------- MaxSPRT
def maxsprt(d: ScenarioData, boundary: str = "continuous") -> np.ndarray:
    """Poisson MaxSPRT of production (see the module docstring), no look-ahead."""
    design = d.design
    C, E = _cumulative(d)
    R, B, _ = C.shape
    looks = _looks(d)
    Cl = C[:, :, looks].reshape(R * B, -1)
    El = np.broadcast_to(E[None, :, looks], (R, B, len(looks))).reshape(R * B, -1)
    grp = np.repeat(np.arange(R), B)
    mu = leave_one_out_expected(El, Cl, grp, pseudo_cases=1.0).reshape(R, B, -1)[:, B - 1]
    obs = C[:, B - 1, looks]
    # T at release: every released pack delivered and reported, at the siblings' rate then
    s = d.start
    rate_then = (C[:, : B - 1, s].sum(axis=1) + 1.0) / E[: B - 1, s].sum()
    T = np.maximum(rate_then * d.packs[B - 1].sum(), 0.5)
    res = maxsprt_poisson_monitor(
        np.where(np.isfinite(mu), obs, np.nan),
        np.where(np.isfinite(mu), mu, np.nan),
        T,
        alpha=design.alpha_stream,
        min_events=design.min_events,
        boundary=boundary,
        planned_looks=52,
    )
    return res.first_look


# ---------------------------------------------------------------------- heterogeneity scan
def heterogeneity_scan(d: ScenarioData) -> dict[str, np.ndarray]:
    """First alarm of the batch-vs-rest statistics of :mod:`signals.batch_heterogeneity`.

    At each look, one (product, event) group per replicate with every batch's cumulative
    received reports and delay-adjusted exposure; only looks where the batch under test has at
    least M reports are evaluated (no method may alert below M).
    """
    design = d.design
    C, E = _cumulative(d)
    R, B, _ = C.shape
    looks = _looks(d)
    W = len(looks)
    test_c = C[:, B - 1, looks]  # (R, W)
    rr_i, ww_i = np.nonzero(test_c >= design.min_events)
    out = {m: np.full(R, -1, dtype=np.int64) for m in ("exact_vs_rest", "eb_shrinkage", "nb_overdispersion", "funnel")}
    if rr_i.size == 0:
        return out
    n = rr_i.size
    gid = np.repeat(np.arange(n), B)
    bat = np.tile(np.arange(B), n)
    cases = C[np.repeat(rr_i, B), bat, looks[np.repeat(ww_i, B)]]
    expo = E[bat, looks[np.repeat(ww_i, B)]]
    frame = pl.DataFrame(
        {
            "product": pl.Series(np.zeros(n * B, dtype=np.int64)),
            "event": pl.Series(gid),
            "batch": pl.Series(bat),
            "cases": cases,
            "exposure": expo,
        }
    )
    a = design.alpha_stream
    rt = batch_rate_tests(frame).filter(pl.col("batch") == B - 1)
    od = batch_overdispersion(frame).filter(pl.col("batch") == B - 1)
    fb, _ = funnel_limits(frame, grid_points=2)
    fb = fb.filter(pl.col("batch") == B - 1)
    flags = {
        "exact_vs_rest": (rt["p_exact"] < a).fill_null(False).to_numpy(),
        "eb_shrinkage": (rt["rr_shrunk_lo"] > 1.0).fill_null(False).to_numpy(),
        "nb_overdispersion": (od["p_nb"] < a).fill_null(False).to_numpy(),
        "funnel": fb["above_998"].fill_null(False).to_numpy(),
    }
    for m, f in flags.items():
        grid = np.zeros((R, W), dtype=bool)
        grid[rr_i, ww_i] = f  # rows come back sorted by event = the order of (rr_i, ww_i)
        out[m] = first_alarm(grid)
    return out


# ------------------------------------------------------------------------- product level
def product_rules(d: ScenarioData) -> dict[str, np.ndarray]:
    """First *new* product-level signal (Evans PRR, EMA ROR, WHO IC025) during the batch's life.

    The product's cumulative reports of the event (all batches) and of other events against a
    database whose other products report the event at the same share (null background).
    """
    design = d.design
    R = d.counts.shape[0]
    g = np.arange(d.start - 1, d.start + design.horizon_weeks)  # one look before the batch
    a = np.cumsum(d.counts.sum(axis=1), axis=1)[:, g]
    other = np.cumsum(d.other, axis=1)[:, g]
    db_total = design.database_reports_per_week * (g + 1.0)
    db_event = design.database_event_share * db_total
    n11 = a.ravel()
    n1_ = (a + other).ravel()
    n_1 = (a + db_event[None, :]).ravel()
    nn = (a + other + db_total[None, :]).ravel()
    counts = pl.DataFrame(
        {"drug": np.zeros(n11.size, dtype=np.int64), "event": np.arange(n11.size), "n11": n11, "n1_": n1_}
    ).with_columns(pl.Series("n_1", n_1), pl.Series("n", nn))
    rules = ["evans", "ema_sdr", "who_umc"]
    fired = apply_rules(score(counts), rules=rules)
    out = {}
    for r in rules:
        f = fired[r].fill_null(False).to_numpy().reshape(R, len(g))
        new = f[:, 1:] & ~f[:, :-1]
        out[f"product_{r}"] = first_alarm(new)
    return out


def apply_all(d: ScenarioData, oracle_seed: int = 0) -> dict[str, np.ndarray]:
    """First alarm look per replicate for every method and the oracle."""
    out = {
        "maxsprt_continuous": maxsprt(d, "continuous"),
        "maxsprt_group": maxsprt(d, "group"),
        **heterogeneity_scan(d),
        "siblings_msprt": siblings_msprt(d),
        **product_rules(d),
        "oracle": oracle_sprt(d, np.random.default_rng(oracle_seed)),
    }
    return out

"""Expected counts for batch surveillance: reporting-delay-adjusted exposure and a leave-one-out baseline.

A batch monitored from its release is compared with the *other* batches of its product.  At a
weekly look ``w`` the observed count is the reports linked to the batch that were *received* by
``w``; what the other batches tell us is a rate per pack delivered.  Two corrections make the
expected count honest:

1. **Reporting delay.**  A pack delivered last week has had little time to produce a received
   report, while the other batches' packs are mostly "fully reported".  Comparing received
   reports with raw packs would make every new batch look safe.  Each pack delivered in week
   ``d`` therefore counts at look ``w`` with weight ``F(w - d)``, the probability that a report
   from it has been received within ``w - d`` weeks of delivery (:func:`reporting_delay_pmf`,
   estimated from the delivery/start-to-received lags of all counted reports).  This is the
   delay-adjusted exposure of nowcasting (e.g. Lawless 1994, *Adjustments for reporting delays
   and the prediction of occurred but not reported events*, Can J Stat 22:15-31), used here as
   a denominator.
2. **Leave-one-out baseline.**  The product's rate for the event at look ``w`` is estimated from
   every *other* batch of the product up to ``w`` (delay-adjusted exposure as in 1), excluding
   the batch under test so that a defect cannot raise its own baseline:

       rate0(w) = (C_rest(w) + k) / E_rest(w),     expected(w) = rate0(w) * E_batch(w)

   with ``k = pseudo_cases`` (default 1) a one-event guard: with few or no reports in the
   other batches the raw estimate is near 0 and the MaxSPRT would read any report as a huge
   excess; the guard errs towards a *larger* expected count (fewer alarms), and its weight
   vanishes once the other batches have reports.  Looks where the rest has no exposure are
   undefined (NaN), so the first batch of a new product is tested only once another exists.

Everything is vectorised over streams x weeks (numpy); no I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reporting_delay_pmf", "reported_exposure", "leave_one_out_expected"]


def reporting_delay_pmf(lag_weeks, max_lag: int = 52) -> np.ndarray:
    """Empirical pmf of whole-week reporting lags 0..max_lag (longer lags lumped into the last bin).

    ``lag_weeks``: non-negative lags (received week - delivery/start week) of counted reports;
    NaN and negative values are ignored (documented: they are not lags).  ``max_lag`` must be a
    non-negative integer <= 10,000.  With no usable lag the pmf is all mass at lag 0 (no
    delay adjustment).
    """
    if isinstance(max_lag, bool) or int(max_lag) != max_lag or not (0 <= max_lag <= 10_000):
        raise ValueError(f"max_lag must be an integer in [0, 10000], got {max_lag!r}")
    max_lag = int(max_lag)
    lags = np.asarray(lag_weeks, dtype=float)
    lags = lags[np.isfinite(lags) & (lags >= 0)]
    pmf = np.zeros(max_lag + 1)
    if lags.size == 0:
        pmf[0] = 1.0
        return pmf
    idx = np.minimum(np.floor(lags).astype(np.int64), max_lag)
    pmf += np.bincount(idx, minlength=max_lag + 1)
    return pmf / pmf.sum()


def reported_exposure(packs, delay_pmf) -> np.ndarray:
    """Cumulative delay-adjusted exposure ``E[b, w] = sum_{d <= w} packs[b, d] * F(w - d)``.

    ``packs``: (batches x weeks) packs delivered per week; ``delay_pmf``: pmf of the reporting
    lag in weeks (F its cumulative sum).  Equals the cumulative sum over weeks of ``packs``
    convolved with the pmf; computed lag by lag, O(B * W * L).
    """
    x = np.asarray(packs, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    pmf = np.asarray(delay_pmf, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("packs must be a (batches x weeks) array of finite non-negative numbers")
    if pmf.ndim != 1 or not np.isfinite(pmf).all() or (pmf < 0).any() or pmf.sum() > 1 + 1e-9:
        raise ValueError("delay_pmf must be a 1-D array of probabilities summing to at most 1")
    W = x.shape[1]
    flow = np.zeros_like(x)
    for k in range(min(len(pmf), W)):
        if pmf[k]:
            flow[:, k:] += pmf[k] * x[:, : W - k]
    return np.cumsum(flow, axis=1)


def leave_one_out_expected(exposure, cases, group, pseudo_cases: float = 1.0) -> np.ndarray:
    """Expected cumulative counts per stream from the other streams of its group (see module doc).

    ``exposure`` and ``cases``: (streams x looks) cumulative delay-adjusted exposure and
    cumulative received reports of each stream (one stream = one batch for one event);
    ``group``: (streams,) integer id of the (product, event) the stream belongs to — every batch
    of the product must be a stream of the group, also with no reports.  Returns
    ``rate0 * exposure`` with ``rate0 = (C_group - C_s + pseudo_cases) / (E_group - E_s)``; NaN
    where the rest has no exposure or the stream has none yet.
    """
    E = np.asarray(exposure, dtype=float)
    C = np.asarray(cases, dtype=float)
    g = np.asarray(group, dtype=np.int64)
    if E.shape != C.shape or E.ndim != 2 or g.shape != (E.shape[0],):
        raise ValueError("exposure and cases must be (streams x looks) and group (streams,)")
    if not (np.isfinite(E).all() and np.isfinite(C).all()) or (E < 0).any() or (C < 0).any():
        raise ValueError("exposure and cases must be finite and >= 0")
    if g.size and g.min() < 0:
        raise ValueError("group ids must be >= 0")
    if not (np.isfinite(pseudo_cases) and pseudo_cases >= 0):
        raise ValueError(f"pseudo_cases must be finite and >= 0, got {pseudo_cases!r}")
    n_groups = int(g.max()) + 1 if g.size else 0
    E_g = np.zeros((n_groups, E.shape[1]))
    C_g = np.zeros((n_groups, E.shape[1]))
    np.add.at(E_g, g, E)
    np.add.at(C_g, g, C)
    E_rest = E_g[g] - E
    C_rest = C_g[g] - C
    with np.errstate(divide="ignore", invalid="ignore"):
        rate0 = (C_rest + pseudo_cases) / E_rest
        out = rate0 * E
    # relative tolerance: the rest's exposure is a difference of float sums
    out[~(E_rest > 1e-9 * np.maximum(E_g[g], 1.0)) | ~(E > 0)] = np.nan
    return out

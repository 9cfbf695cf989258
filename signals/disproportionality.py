"""Frequentist and shrinkage disproportionality measures for drug–event pairs.

For each drug–event pair the report counts form a 2×2 table::

                 event     not event
    drug          a            b          a + b = n1_
    not drug      c            d          c + d = n − n1_
                a + c = n_1                n

with a = n11, b = n1_ − a, c = n_1 − a, d = n − a − b − c (all counts of
distinct reports).  Every measure here is a vectorised function of these four
cells (plus the expected count E); :func:`score` adds them all to a polars frame.

Conventions
-----------
* A ratio, a bound, or a χ² whose formula divides by zero or takes the log of
  zero is **null** (never ±inf, NaN or a substitute number).  A ratio whose
  value is exactly 0 (a = 0 with a non-zero denominator) is reported as 0.0,
  but its log-scale confidence bounds (which need 1/a) are null.
* z is the exact standard-normal 0.975 quantile (1.959963984540054), not 1.96.

References
----------
Evans SJW, Waller PC, Davis S (2001). Use of proportional reporting ratios
(PRRs) for signal generation from spontaneous adverse drug reaction reports.
Pharmacoepidemiol Drug Saf 10:483–486.
van Puijenbroek EP et al. (2002). A comparison of measures of
disproportionality for signal detection in spontaneous reporting systems for
adverse drug reactions. Pharmacoepidemiol Drug Saf 11:3–10.
Rothman KJ, Lanes S, Sacks ST (2004). The reporting odds ratio and its
advantages over the proportional reporting ratio. Pharmacoepidemiol Drug Saf
13:519–523.
Norén GN, Hopstadius J, Bate A (2013). Shrinkage observed-to-expected ratios
for robust and transparent large-scale pattern discovery. Stat Methods Med
Res 22:57–69.
DuMouchel W (1999). Bayesian data mining in large frequency tables, with an
application to the FDA spontaneous reporting system. Am Stat 53:177–190.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special, stats

__all__ = [
    "Z975",
    "SCORE_COLUMNS",
    "EB_COLUMNS",
    "TwoByTwo",
    "two_by_two",
    "prr",
    "ror",
    "chi_square",
    "information_component",
    "score",
]

#: exact 97.5 % standard-normal quantile used for every 95 % interval here
Z975: float = float(stats.norm.ppf(0.975))

SCORE_COLUMNS: tuple[str, ...] = (
    "prr",
    "prr_lo95",
    "prr_hi95",
    "chi2",
    "chi2_yates",
    "ror",
    "ror_lo95",
    "ror_hi95",
    "ic",
    "ic025",
    "ic975",
)
EB_COLUMNS: tuple[str, ...] = ("ebgm", "eb05", "eb95")

_REQUIRED = ("drug", "event", "n11", "n1_", "n_1", "n")


@dataclass(frozen=True, slots=True)
class TwoByTwo:
    """The four cells of the per-pair 2×2 tables, as float64 arrays."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.a + self.b + self.c + self.d


def two_by_two(n11, n1_, n_1, n) -> TwoByTwo:
    """Cells a, b, c, d from report counts; raises on an impossible table.

    A negative cell (e.g. n11 > n1_) is a counting bug upstream, never a
    statistic: it is refused with the number of offending rows.
    """
    a = np.asarray(n11, dtype=np.float64)
    r = np.asarray(n1_, dtype=np.float64)
    k = np.asarray(n_1, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    b, c = r - a, k - a
    d = t - a - b - c
    bad = ~((a >= 0) & (b >= 0) & (c >= 0) & (d >= 0))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} row(s) give an impossible 2x2 table "
            "(need 0 <= n11 <= n1_, n11 <= n_1, n1_ + n_1 - n11 <= n, no nulls)"
        )
    return TwoByTwo(a, b, c, d)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den with NaN wherever den == 0 (NaN becomes null in :func:`score`)."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _log_ci(point: np.ndarray, var_log: np.ndarray, z: float):
    """exp(ln point ± z·√var) with NaN where the point is 0/undefined or var is."""
    ok = np.isfinite(point) & (point > 0) & np.isfinite(var_log) & (var_log >= 0)
    lo = np.full(point.shape, np.nan)
    hi = np.full(point.shape, np.nan)
    lp = np.log(point, where=ok, out=np.zeros(point.shape))
    half = z * np.sqrt(np.where(ok, var_log, 0.0))
    lo[ok] = np.exp(lp[ok] - half[ok])
    hi[ok] = np.exp(lp[ok] + half[ok])
    return lo, hi


def prr(t: TwoByTwo, z: float = Z975):
    """Proportional reporting ratio with its 95 % CI (Evans et al., 2001).

    PRR = [a/(a+b)] / [c/(c+d)];
    CI = exp(ln PRR ± z·√(1/a − 1/(a+b) + 1/c − 1/(c+d))).
    Null when c = 0, a+b = 0 or c+d = 0; bounds also null when a = 0.
    """
    point = _safe_div(_safe_div(t.a, t.a + t.b), _safe_div(t.c, t.c + t.d))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = 1 / t.a - 1 / (t.a + t.b) + 1 / t.c - 1 / (t.c + t.d)
    lo, hi = _log_ci(point, var, z)
    return point, lo, hi


def ror(t: TwoByTwo, z: float = Z975):
    """Reporting odds ratio ad/(bc) with Woolf CI √(1/a+1/b+1/c+1/d)
    (Rothman et al., 2004; van Puijenbroek et al., 2002).

    Null when b = 0 or c = 0; bounds also null when a = 0 or d = 0.
    """
    point = _safe_div(t.a * t.d, t.b * t.c)
    with np.errstate(divide="ignore"):
        var = 1 / t.a + 1 / t.b + 1 / t.c + 1 / t.d
    lo, hi = _log_ci(point, var, z)
    return point, lo, hi


def chi_square(t: TwoByTwo):
    """Pearson χ² (1 df) and Yates-corrected χ² of the 2×2 table.

    χ² = n(ad − bc)² / [(a+b)(c+d)(a+c)(b+d)];
    χ²_Yates = n·max(|ad − bc| − n/2, 0)² / [same]  (Yates, 1934).
    Null when a margin is 0.
    """
    n = t.n
    den = (t.a + t.b) * (t.c + t.d) * (t.a + t.c) * (t.b + t.d)
    diff = t.a * t.d - t.b * t.c
    chi2 = _safe_div(n * diff * diff, den)
    corr = np.maximum(np.abs(diff) - n / 2.0, 0.0)
    return chi2, _safe_div(n * corr * corr, den)


def information_component(n11, e, lower: float = 0.025, upper: float = 0.975):
    """Shrunk information component and its credibility interval
    (Norén et al., 2013, WHO-UMC form).

    IC = log2((n11 + ½)/(E + ½)); the interval is log2 of the `lower`/`upper`
    quantiles of Gamma(shape n11 + ½, rate E + ½).  Null where E is missing,
    negative, or non-finite.
    """
    a = np.asarray(n11, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    ok = np.isfinite(e) & (e >= 0) & np.isfinite(a)
    shape = a + 0.5
    rate = np.where(ok, e, 0.0) + 0.5
    ic = np.where(ok, np.log2(shape / rate), np.nan)
    lo = np.full(a.shape, np.nan)
    hi = np.full(a.shape, np.nan)
    if ok.any():
        # the gamma quantiles depend on the count only (rate scales them): once per distinct count
        counts, inv = np.unique(shape[ok], return_inverse=True)
        r = rate[ok]
        lo[ok] = np.log2(special.gammaincinv(counts, lower)[inv] / r)
        hi[ok] = np.log2(special.gammaincinv(counts, upper)[inv] / r)
    return ic, lo, hi


def _col(arr: np.ndarray, name: str) -> pl.Series:
    """float64 Series with NaN/±inf turned into null."""
    arr = np.where(np.isfinite(arr), arr, np.nan)
    return pl.Series(name, arr, dtype=pl.Float64, nan_to_null=True)


def score(counts: pl.DataFrame, prior=None) -> pl.DataFrame:
    """Score every drug–event pair with the standard disproportionality battery.

    Parameters
    ----------
    counts
        One row per pair with columns ``drug, event, n11, n1_, n_1, n``
        (distinct-report counts: both, drug, event, all) and optionally ``e``
        (expected count, e.g. stratified; default E = n1_·n_1/n).  Other
        columns are kept; row order is preserved.
    prior
        ``None`` (no empirical-Bayes columns), a
        :class:`signals.mgps.GammaMixturePrior`, or ``"fit"`` to fit one by
        maximum likelihood on these pairs with :func:`signals.mgps.fit_prior`.

    Returns
    -------
    polars.DataFrame
        The input plus ``prr, prr_lo95, prr_hi95, chi2, chi2_yates, ror,
        ror_lo95, ror_hi95, ic, ic025, ic975`` and, with a prior, ``ebgm, eb05,
        eb95`` (DuMouchel, 1999).  Undefined values are null.
    """
    missing = [c for c in _REQUIRED if c not in counts.columns]
    if missing:
        raise ValueError(f"score(): missing input column(s) {missing}")
    t = two_by_two(
        counts["n11"].to_numpy(),
        counts["n1_"].to_numpy(),
        counts["n_1"].to_numpy(),
        counts["n"].to_numpy(),
    )
    if "e" in counts.columns:
        e = counts["e"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    else:
        e = _safe_div((t.a + t.b) * (t.a + t.c), t.n)

    p, p_lo, p_hi = prr(t)
    chi2, chi2_y = chi_square(t)
    r, r_lo, r_hi = ror(t)
    ic, ic_lo, ic_hi = information_component(t.a, e)
    cols = dict(zip(SCORE_COLUMNS, (p, p_lo, p_hi, chi2, chi2_y, r, r_lo, r_hi, ic, ic_lo, ic_hi)))

    if prior is not None:
        from signals import mgps  # local: keeps the frequentist path import-light

        if isinstance(prior, str):
            if prior != "fit":
                raise ValueError(f"prior must be None, 'fit' or a GammaMixturePrior, got {prior!r}")
            prior = mgps.fit_prior(t.a, e)
        eb = mgps.eb_scores(t.a, e, prior)
        cols.update(ebgm=eb.ebgm, eb05=eb.eb05, eb95=eb.eb95)

    return counts.with_columns([_col(v, k) for k, v in cols.items()])

"""Exact p-values for disproportionality and false-discovery-rate control.

One-sided Fisher exact test of "more reports with the event than expected":
under independence with fixed margins, A = n11 ~ Hypergeometric(population n,
successes n1_, draws n_1), and

    p       = P(A ≥ a)                     (Fisher, 1935)
    mid-p   = P(A > a) + ½·P(A = a)        (Lancaster, 1961)

Benjamini–Hochberg (1995) step-up adjustment via
``statsmodels.stats.multitest.multipletests(method="fdr_bh")``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["fisher_one_sided", "benjamini_hochberg", "add_fdr"]


def _counts(name: str, v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if not np.isfinite(a).all() or (a < 0).any() or (a != np.floor(a)).any():
        raise ValueError(f"{name} must be finite non-negative integers")
    return a.astype(np.int64)


def fisher_one_sided(n11, n1_, n_1, n, mid_p: bool = False) -> np.ndarray:
    """Vectorised upper-tail Fisher exact p-value (or mid-p) per pair.

    Every table must be possible: integer counts with ``n1_ <= n``, ``n_1 <= n`` and
    ``max(0, n1_ + n_1 - n) <= n11 <= min(n1_, n_1)``; otherwise ``ValueError`` (scipy would
    return p = 0 for a table that cannot occur).
    """
    a, r, c, t = (_counts(k, v) for k, v in (("n11", n11), ("n1_", n1_), ("n_1", n_1), ("n", n)))
    a, r, c, t = np.broadcast_arrays(a, r, c, t)
    bad = (r > t) | (c > t) | (a > np.minimum(r, c)) | (a < r + c - t)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(
            f"impossible 2x2 table(s): {int(bad.sum())}, e.g. n11={a.ravel()[i]}, n1_={r.ravel()[i]}, "
            f"n_1={c.ravel()[i]}, n={t.ravel()[i]}"
        )
    hg = stats.hypergeom(t, r, c)
    if mid_p:
        return np.clip(hg.sf(a) + 0.5 * hg.pmf(a), 0.0, 1.0)
    return np.clip(hg.sf(a - 1), 0.0, 1.0)


def benjamini_hochberg(p, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(reject, q-values) by Benjamini & Hochberg (1995); nulls/NaN are left
    out of the family and come back as (False, NaN).  p outside [0, 1] (or
    infinite) raises ``ValueError``: it is a bug upstream, and BH would return q < 0."""
    p = np.asarray(p, dtype=np.float64)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1] (NaN = no test)")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    reject = np.zeros(p.shape, dtype=bool)
    q = np.full(p.shape, np.nan)
    if ok.any():
        r, qv, _, _ = multipletests(p[ok], alpha=alpha, method="fdr_bh")
        reject[ok], q[ok] = r, qv
    return reject, q


def add_fdr(counts: pl.DataFrame, alpha: float = 0.05, mid_p: bool = True, p_col: str = "p_fisher") -> pl.DataFrame:
    """Add ``p_col`` (one-sided Fisher mid-p by default), ``q_bh`` and
    ``fdr_signal`` (BH-rejected at ``alpha``) over all rows of ``counts``."""
    p = fisher_one_sided(
        counts["n11"].to_numpy(),
        counts["n1_"].to_numpy(),
        counts["n_1"].to_numpy(),
        counts["n"].to_numpy(),
        mid_p=mid_p,
    )
    reject, q = benjamini_hochberg(p, alpha)
    return counts.with_columns(
        pl.Series(p_col, p, dtype=pl.Float64, nan_to_null=True),
        pl.Series("q_bh", q, dtype=pl.Float64, nan_to_null=True),
        pl.Series("fdr_signal", reject),
    )

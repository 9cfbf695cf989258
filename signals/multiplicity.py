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


def fisher_one_sided(n11, n1_, n_1, n, mid_p: bool = False) -> np.ndarray:
    """Vectorised upper-tail Fisher exact p-value (or mid-p) per pair."""
    a = np.asarray(n11, dtype=np.int64)
    hg = stats.hypergeom(
        np.asarray(n, dtype=np.int64), np.asarray(n1_, dtype=np.int64), np.asarray(n_1, dtype=np.int64)
    )
    if mid_p:
        return np.clip(hg.sf(a) + 0.5 * hg.pmf(a), 0.0, 1.0)
    return np.clip(hg.sf(a - 1), 0.0, 1.0)


def benjamini_hochberg(p, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(reject, q-values) by Benjamini & Hochberg (1995); nulls/NaN are left
    out of the family and come back as (False, NaN)."""
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p)
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

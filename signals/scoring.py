"""Score → prior → rules: the one entry point detection, the evaluation replay and the eRMR export call.

:func:`score_pairs` takes drug–event contingency counts (``drug, event, n11, n1_, n_1, n`` and
optionally a stratified ``e``; see :mod:`signals.stratification`) and returns them with

1. the MGPS prior (DuMouchel 1999) — fitted by maximum likelihood on these pairs
   (``prior="fit"``, :func:`signals.mgps.fit_prior` with ``min_count``), given, or none;
2. the disproportionality battery (:func:`signals.disproportionality.score`: PRR, ROR, χ², IC
   and, with a prior, EBGM/EB05/EB95);
3. optionally the one-sided Fisher mid-p with Benjamini–Hochberg q-values over all pairs
   (:func:`signals.multiplicity.add_fdr`);
4. the regulator rules (:func:`signals.rules.apply_rules`: one boolean column per rule and
   ``rules_fired``).

Pure: arrays and frames in, frames out; nothing of the project outside ``signals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from signals.disproportionality import score
from signals.mgps import GammaMixturePrior, fit_prior
from signals.multiplicity import add_fdr
from signals.rules import RuleThresholds, apply_rules

__all__ = ["FIGURE_SIG_DIGITS", "ScoredPairs", "fit_pairs_prior", "round_figures", "round_figures_expr", "score_pairs"]


@dataclass(frozen=True)
class ScoredPairs:
    """The scored pairs and the MGPS prior behind their EBGM columns (``None`` without one)."""

    scored: pl.DataFrame
    prior: GammaMixturePrior | None


def fit_pairs_prior(counts: pl.DataFrame, min_count: int = 1) -> GammaMixturePrior:
    """DuMouchel's gamma-mixture prior fitted on the pairs' ``n11`` and (stratified) ``e``
    (:func:`signals.mgps.fit_prior`, pairs with n11 ≥ ``min_count``)."""
    missing = [c for c in ("n11", "e") if c not in counts.columns]
    if missing:
        raise ValueError(f"fitting a prior needs column(s) {missing}")
    return fit_prior(counts["n11"].to_numpy(), counts["e"].to_numpy(), min_count=min_count)


def score_pairs(
    counts: pl.DataFrame,
    *,
    prior: GammaMixturePrior | str | None = "fit",
    min_count: int = 1,
    fdr: bool = False,
    rules: Sequence[str] | None = None,
    thresholds: RuleThresholds | None = None,
) -> ScoredPairs:
    """Score every pair, then apply the rules (module doc).

    ``prior``: ``"fit"`` (fit DuMouchel's gamma mixture on these pairs' n11 and e, pairs with
    n11 ≥ ``min_count``), a fitted :class:`signals.mgps.GammaMixturePrior`, or ``None`` (no
    empirical-Bayes columns). ``fdr``: add ``p_fisher`` and ``q_bh``. ``rules`` /
    ``thresholds``: as :func:`signals.rules.apply_rules` (default: every rule, default thresholds).
    Raises ``ValueError`` for missing count columns or an unknown ``prior`` string.
    """
    if isinstance(prior, str):
        if prior != "fit":
            raise ValueError(f"prior must be 'fit', a GammaMixturePrior or None, got {prior!r}")
        prior = fit_pairs_prior(counts, min_count=min_count)
    scored = score(counts, prior=prior)
    if fdr:
        scored = add_fdr(scored)
    return ScoredPairs(apply_rules(scored, rules=rules, thresholds=thresholds), prior)


# ---- register figures -----------------------------------------------------------------------
#: Statistics quoted with each signal in the register (and so in reports and alerts) are kept to
#: this many significant digits: DuckDB's parallel float sums are not bit-reproducible, and a
#: last-bit change must not make an unchanged signal look changed (a new alert hash).
FIGURE_SIG_DIGITS = 6


def round_figures(values: pl.Series) -> pl.Series:
    """The one rounding rule for register figures: ``FIGURE_SIG_DIGITS`` significant digits,
    halves away from zero (polars ``round_sig_figs``); nulls stay null."""
    return values.round_sig_figs(FIGURE_SIG_DIGITS)


def round_figures_expr(column: str) -> pl.Expr:
    """:func:`round_figures` as an expression, for a frame's float column."""
    return pl.col(column).round_sig_figs(FIGURE_SIG_DIGITS)

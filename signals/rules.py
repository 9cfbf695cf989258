"""Named signal-detection rules used by regulators and monitoring centres.

Each rule is a stable string name, a set of required score columns, and a
boolean criterion over a scored frame (see :func:`signals.disproportionality.score`).
:func:`apply_rules` adds one boolean column per rule (named exactly as the
rule) and a list column ``rules_fired``.

Rules and references
--------------------
``evans``     PRR ≥ 2, χ² ≥ 4 and n11 ≥ 3 (Evans, Waller & Davis, 2001).
``ema_sdr``   ROR lower 95 % bound > 1 with n11 ≥ 5, or n11 ≥ 3 for products
              under additional monitoring (EMA, Screening for adverse reactions
              in EudraVigilance, EMA/849944/2016; Candore et al., 2015).
``who_umc``   IC025 > 0 (Norén et al., 2013; Bate et al., 1998).
``fda_mgps``  EB05 ≥ 2 (Szarfman, Machado & O'Neill, 2002; DuMouchel, 1999).

Null metrics
------------
A row whose metric is null (e.g. PRR undefined because c = 0) does **not**
fire that rule (the column is False).  A rule whose input columns are absent
from the frame (e.g. ``fda_mgps`` scored without a prior) yields an all-null
column when evaluated by default, meaning "not evaluated", and raises if it
was asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

__all__ = ["RuleThresholds", "Rule", "RULES", "RULE_NAMES", "apply_rules"]


@dataclass(frozen=True, slots=True)
class RuleThresholds:
    """Configurable thresholds; defaults are the published ones."""

    evans_prr: float = 2.0
    evans_chi2: float = 4.0
    evans_n: int = 3
    #: "chi2" (Pearson, as in Evans 2001) or "chi2_yates" (MHRA practice)
    evans_chi2_column: str = "chi2"
    ema_ror_lo: float = 1.0
    ema_n: int = 5
    ema_n_additional_monitoring: int = 3
    who_ic025: float = 0.0
    fda_eb05: float = 2.0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    description: str
    required: Callable[[RuleThresholds], tuple[str, ...]]
    criterion: Callable[[RuleThresholds, Sequence[str]], pl.Expr]


def _evans(th: RuleThresholds, cols: Sequence[str]) -> pl.Expr:
    return (
        (pl.col("prr") >= th.evans_prr)
        & (pl.col(th.evans_chi2_column) >= th.evans_chi2)
        & (pl.col("n11") >= th.evans_n)
    )


def _ema(th: RuleThresholds, cols: Sequence[str]) -> pl.Expr:
    if "additional_monitoring" in cols:
        am = pl.col("additional_monitoring").fill_null(False)
        n_min = pl.when(am).then(th.ema_n_additional_monitoring).otherwise(th.ema_n)
    else:
        n_min = pl.lit(th.ema_n)
    return (pl.col("ror_lo95") > th.ema_ror_lo) & (pl.col("n11") >= n_min)


def _who(th: RuleThresholds, cols: Sequence[str]) -> pl.Expr:
    return pl.col("ic025") > th.who_ic025


def _fda(th: RuleThresholds, cols: Sequence[str]) -> pl.Expr:
    return pl.col("eb05") >= th.fda_eb05


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "evans", "PRR >= 2, chi2 >= 4, n >= 3 (Evans 2001)", lambda th: ("prr", th.evans_chi2_column, "n11"), _evans
        ),
        Rule(
            "ema_sdr",
            "ROR lower 95% > 1, n >= 5 (n >= 3 under additional monitoring) (EMA)",
            lambda th: ("ror_lo95", "n11"),
            _ema,
        ),
        Rule("who_umc", "IC025 > 0 (WHO-UMC, Noren 2013)", lambda th: ("ic025",), _who),
        Rule("fda_mgps", "EB05 >= 2 (FDA MGPS, Szarfman 2002)", lambda th: ("eb05",), _fda),
    )
}
RULE_NAMES: tuple[str, ...] = tuple(RULES)


def apply_rules(
    scored: pl.DataFrame,
    rules: Sequence[str] | None = None,
    thresholds: RuleThresholds | None = None,
) -> pl.DataFrame:
    """Add one boolean column per rule (named as the rule) and ``rules_fired``.

    ``rules_fired`` is a list of the rule names that are True on the row, in
    the order of ``rules`` (default: all of :data:`RULE_NAMES`).
    """
    th = thresholds or RuleThresholds()
    explicit = rules is not None
    names = list(rules) if explicit else list(RULE_NAMES)
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; known: {list(RULE_NAMES)}")
    cols = scored.columns
    exprs = []
    for name in names:
        rule = RULES[name]
        missing = [c for c in rule.required(th) if c not in cols]
        if missing:
            if explicit:
                raise ValueError(f"rule {name!r} needs column(s) {missing}")
            exprs.append(pl.lit(None, dtype=pl.Boolean).alias(name))
        else:
            exprs.append(rule.criterion(th, cols).fill_null(False).alias(name))
    out = scored.with_columns(exprs)
    # rules_fired through a bitmask and a 2^k-row lookup table: building a
    # list per row with concat_list/drop_nulls is ~10x slower at millions of rows
    mask = (
        pl.sum_horizontal([pl.col(n).fill_null(False).cast(pl.UInt32) * (1 << i) for i, n in enumerate(names)])
        if names
        else pl.lit(0, dtype=pl.UInt32)
    )
    lookup = pl.DataFrame(
        {
            "_mask": pl.Series(range(1 << len(names)), dtype=pl.UInt32),
            "rules_fired": [[n for i, n in enumerate(names) if m >> i & 1] for m in range(1 << len(names))],
        },
        schema={"_mask": pl.UInt32, "rules_fired": pl.List(pl.String)},
    )
    return (
        out.with_columns(mask.cast(pl.UInt32).alias("_mask"))
        .join(lookup, on="_mask", how="left", maintain_order="left")
        .drop("_mask")
    )

"""Operating characteristics of every method against the oracle, over a grid of scenarios.

:func:`operating_characteristics` simulates each scenario of :func:`default_scenarios`
(rate ratio x batch size x onset), applies every method of :mod:`signals.study.methods`, and
summarises per (scenario, method):

* ``detected_share``: share of replicates with an alert after the defect started (for rate
  ratio 1: the share with any alert, i.e. the false-alarm share);
* ``median_delay_days`` / ``p90_delay_days``: quantiles over *all* replicates of the days from
  the defect's start to the first alert at a weekly cut-off, a miss counting as never -- so the
  median is null when fewer than half the replicates are detected (p90: fewer than 90 %), and
  methods with different detection shares compare fairly;
* ``oracle_median_delay_days`` / ``oracle_p90_delay_days`` / ``oracle_detected_share``: the same
  for Wald's SPRT that knows the truth (:func:`signals.study.methods.oracle_sprt`), on the same
  replicates; ``delay_ratio`` = median / oracle median;
* ``false_alarm_rate``: alerts per stream over the batch's life (78 weeks) under the null at the
  same batch size (from the rate-ratio-1 scenario, run with ``null_multiplier`` times more
  replicates), with ``false_alarm_ci_hi`` its exact one-sided 95 % upper bound (Clopper-Pearson)
  and ``nominal_alpha`` the per-stream alpha;
* ``pre_onset_alarm_share``: alerts before the defect started (consignment onset): false alarms
  that stopped the test before it could detect.

Pure numpy/polars/scipy; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl
from scipy import special

from signals.study.methods import METHODS, apply_all
from signals.study.scenarios import ONSETS, Scenario, StudyDesign, simulate

__all__ = ["default_scenarios", "operating_characteristics", "summarise", "RATE_RATIOS", "EXPOSURES"]

RATE_RATIOS = (1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: packs delivered per batch: small, medium (the goal's "medium exposure"), large
EXPOSURES = (500, 2000, 10000, 50000)
COLUMNS = [
    "scenario",
    "onset",
    "rate_ratio",
    "exposure",
    "method",
    "replicates",
    "detected_share",
    "median_delay_days",
    "p90_delay_days",
    "oracle_median_delay_days",
    "oracle_p90_delay_days",
    "oracle_detected_share",
    "delay_ratio",
    "false_alarm_rate",
    "false_alarm_ci_hi",
    "nominal_alpha",
    "pre_onset_alarm_share",
]


def default_scenarios(
    rate_ratios: Iterable[float] = RATE_RATIOS, exposures: Iterable[int] = EXPOSURES, onsets: Iterable[str] = ONSETS
) -> list[Scenario]:
    """Every (rate ratio, exposure, onset); the null (rate ratio 1) once per exposure."""
    out = []
    for x in exposures:
        for rr in rate_ratios:
            for o in onsets:
                if rr == 1 and o != ONSETS[0]:
                    continue
                out.append(Scenario(float(rr), int(x), o))
    return out


def _delays(first: np.ndarray, onset_day: int) -> tuple[np.ndarray, np.ndarray]:
    """(delay in days with +inf for a miss, pre-onset alarm mask) from first-alarm looks."""
    alarm_day = 7.0 * (first + 1)
    pre = (first >= 0) & (alarm_day <= onset_day)
    delay = np.where((first >= 0) & ~pre, alarm_day - onset_day, np.inf)
    return delay, pre


def _quantile(delay: np.ndarray, q: float) -> float:
    """Quantile counting misses as +inf; null (NaN) if it falls on a miss."""
    v = float(np.quantile(delay, q, method="inverted_cdf"))
    return v if np.isfinite(v) else float("nan")


def summarise(scenario: Scenario, firsts: dict[str, np.ndarray], onset_day: int) -> list[dict]:
    """One row per method for one simulated scenario (false-alarm columns filled later)."""
    o_delay, _ = _delays(firsts["oracle"], onset_day)
    null = scenario.rate_ratio == 1
    o_med = float("nan") if null else _quantile(o_delay, 0.5)
    rows = []
    for m in METHODS:
        delay, pre = _delays(firsts[m], onset_day)
        med = _quantile(delay, 0.5)
        rows.append(
            {
                "scenario": scenario.name,
                "onset": scenario.onset,
                "rate_ratio": scenario.rate_ratio,
                "exposure": scenario.exposure,
                "method": m,
                "replicates": int(delay.size),
                "detected_share": float(np.isfinite(delay).mean()),
                "median_delay_days": med,
                "p90_delay_days": _quantile(delay, 0.9),
                "oracle_median_delay_days": o_med,
                "oracle_p90_delay_days": float("nan") if null else _quantile(o_delay, 0.9),
                "oracle_detected_share": float("nan") if null else float(np.isfinite(o_delay).mean()),
                "delay_ratio": med / o_med if (o_med and np.isfinite(o_med) and o_med > 0) else float("nan"),
                "pre_onset_alarm_share": float(pre.mean()),
            }
        )
    return rows


def _upper_cp(k: int, n: int, level: float = 0.95) -> float:
    """Exact one-sided Clopper-Pearson upper bound for a binomial proportion."""
    return 1.0 if k >= n else float(special.betaincinv(k + 1, n - k, level))


def operating_characteristics(
    replicates: int = 200,
    seed: int = 14,
    scenarios: list[Scenario] | None = None,
    design: StudyDesign | None = None,
    null_multiplier: int = 5,
    progress=None,
) -> pl.DataFrame:
    """Simulate every scenario and summarise each method against the oracle (see module doc).

    ``replicates`` per scenario (the null scenarios get ``null_multiplier`` times as many, to
    see false-alarm rates near the per-stream alpha); independent streams from ``seed``
    (numpy ``SeedSequence.spawn``), so a scenario's result does not depend on which others run.
    ``progress``: optional callable receiving one line per scenario.
    """
    if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    if isinstance(null_multiplier, bool) or int(null_multiplier) != null_multiplier or null_multiplier < 1:
        raise ValueError(f"null_multiplier must be a positive integer, got {null_multiplier!r}")
    design = design or StudyDesign()
    scenarios = default_scenarios() if scenarios is None else list(scenarios)
    seeds = np.random.SeedSequence(int(seed)).spawn(len(scenarios))
    rows: list[dict] = []
    fa: dict[int, dict[str, tuple[int, int]]] = {}
    for sc, ss in zip(scenarios, seeds):
        n = int(replicates) * (int(null_multiplier) if sc.rate_ratio == 1 else 1)
        data = simulate(sc, n, np.random.default_rng(ss), design)
        firsts = apply_all(data, oracle_seed=int(ss.generate_state(1)[0]))
        rows += summarise(sc, firsts, data.onset_day)
        if sc.rate_ratio == 1:
            fa[sc.exposure] = {m: (int((firsts[m] >= 0).sum()), n) for m in METHODS}
        if progress is not None:
            progress(f"{sc.name}: {n} replicates")
    out = []
    for r in rows:
        k, n = fa.get(r["exposure"], {}).get(r["method"], (None, None))
        r["false_alarm_rate"] = float("nan") if n is None else k / n
        r["false_alarm_ci_hi"] = float("nan") if n is None else _upper_cp(k, n)
        r["nominal_alpha"] = design.alpha_stream
        out.append(r)
    return pl.DataFrame(out).select(COLUMNS)

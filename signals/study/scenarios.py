"""Count-level worlds for the operating-characteristics study: one product, its batches, weekly counts.

A *scenario* is one (rate ratio, batch size, onset) cell; it is simulated ``R`` times at once
(numpy arrays replicates x batches x weeks).  Everything is at the level of weekly counts of
*received* reports of one event (group) of interest, so thousands of replicates take seconds.

The product (defaults of :class:`StudyDesign`)
    ``n_siblings`` = 7 earlier batches of the same size, released every 8 weeks, then the batch
    under test.  Each batch is delivered along a gamma-shaped delivery curve (shape 2, scale 3
    weeks: half delivered by ~5 weeks, the last packs after ~20).  Every delivered pack yields
    reports of the event at ``base_rate`` per pack (1 per 1,000 packs; a quality-defect event
    group such as lack of efficacy or hypersensitivity), received after a reporting delay that
    is lognormal in weeks (median 4 weeks, sigma 1: 10 % of reports arrive after 14 weeks,
    1 % after 40): the long right tail of spontaneous reporting (e.g. Brown et al. 2007 report
    medians of weeks and tails of years for spontaneous reports).

The defect
    ``onset="first_delivery"``: every pack of the batch under test reports ``rate_ratio`` times
    the base rate.  ``onset="consignment"``: only the packs delivered in delivery weeks
    ``consignment_weeks`` (4 to 7, ~30 % of the batch: the consignment after a cold-chain
    excursion) are defective; the defect starts at the first of those weeks.

Counts
    Expected reports received in week g from batch b:
    ``lambda_b(g) = base_rate * sum_d packs_b(d) * rr_b(d) * f(g - d)`` with f the weekly
    reporting-delay pmf; counts are independent Poisson draws.  The product's reports of
    *other* events (for the product-level disproportionality rules) are Poisson with
    ``other_events_ratio`` (19) times the event's null mean, and the rest of the database is a
    deterministic background growing linearly with the same event share (5 %), so product-level
    disproportionality is null unless a batch is defective.

Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["StudyDesign", "Scenario", "ScenarioData", "simulate", "delivery_curve", "reporting_delay_pmf"]

ONSETS = ("first_delivery", "consignment")


@dataclass(frozen=True)
class StudyDesign:
    """Fixed design of the study world (see the module docstring)."""

    n_siblings: int = 7
    sibling_spacing_weeks: int = 8
    horizon_weeks: int = 78  # looks at the end of each week of the batch's life (1.5 years)
    base_rate: float = 1e-3  # reports of the event per pack, null
    delivery_shape: float = 2.0
    delivery_scale_weeks: float = 3.0
    delivery_max_weeks: int = 30
    delay_median_weeks: float = 4.0
    delay_sigma: float = 1.0
    delay_max_weeks: int = 104
    consignment_weeks: tuple[int, int] = (4, 8)  # delivery weeks [4, 8) of the batch are defective
    other_events_ratio: float = 19.0
    database_reports_per_week: float = 2000.0
    database_event_share: float = 0.05
    alpha_family: float = 0.05  # per product
    streams_per_product: int = 40  # 8 batches x 5 events of interest: Bonferroni split
    min_events: int = 3

    @property
    def alpha_stream(self) -> float:
        return self.alpha_family / self.streams_per_product

    @property
    def n_batches(self) -> int:
        return self.n_siblings + 1

    @property
    def test_start_week(self) -> int:
        return self.n_siblings * self.sibling_spacing_weeks

    @property
    def n_weeks(self) -> int:
        return self.test_start_week + self.horizon_weeks


@dataclass(frozen=True)
class Scenario:
    rate_ratio: float
    exposure: int  # packs of the batch under test (and of each sibling)
    onset: str = "first_delivery"

    def __post_init__(self):
        if not (np.isfinite(self.rate_ratio) and self.rate_ratio >= 1):
            raise ValueError(f"rate_ratio must be >= 1, got {self.rate_ratio!r}")
        if not (self.exposure >= 1):
            raise ValueError(f"exposure must be >= 1 pack, got {self.exposure!r}")
        if self.onset not in ONSETS:
            raise ValueError(f"onset must be one of {ONSETS}, got {self.onset!r}")

    @property
    def name(self) -> str:
        return f"{self.onset}/rr{self.rate_ratio:g}/x{self.exposure}"


@dataclass(frozen=True)
class ScenarioData:
    """One scenario's simulated counts and everything a method may know about it.

    Index conventions: batches 0..B-2 are the siblings (released first), B-1 is the batch under
    test; global weeks 0..G-1, the batch under test starts at ``start`` and is looked at the end
    of weeks ``start .. start + W - 1``.
    """

    design: StudyDesign
    scenario: Scenario
    packs: np.ndarray  # (B, G) packs delivered per week, known as delivered
    delay_pmf: np.ndarray  # (L,) weekly reporting-delay pmf (assumed known from history)
    lam0: np.ndarray  # (B, G) null expected received reports per week
    lam1: np.ndarray  # (B, G) true expected received reports per week
    counts: np.ndarray  # (R, B, G) received reports of the event per week
    other: np.ndarray  # (R, G) the product's received reports of other events per week
    onset_day: int  # defect start, days after the test batch's first delivery
    extra: dict = field(default_factory=dict)

    @property
    def start(self) -> int:
        return self.design.test_start_week


def delivery_curve(design: StudyDesign) -> np.ndarray:
    """Share of a batch delivered in each week after release (gamma-shaped, sums to 1)."""
    edges = np.arange(design.delivery_max_weeks + 1, dtype=float)
    cdf = stats.gamma.cdf(edges, design.delivery_shape, scale=design.delivery_scale_weeks)
    w = np.diff(cdf)
    return w / w.sum()


def reporting_delay_pmf(design: StudyDesign) -> np.ndarray:
    """Weekly pmf of the delay from delivery to report receipt (lognormal, truncated, renormalised).

    Week 0 is the delivery week; the pmf is positive at lag 0 so a new batch has exposure at once.
    """
    edges = np.arange(design.delay_max_weeks + 2, dtype=float)
    cdf = stats.lognorm.cdf(edges, design.delay_sigma, scale=design.delay_median_weeks)
    w = np.diff(cdf)
    return w / w.sum()


def _flow(packs_weighted: np.ndarray, pmf: np.ndarray) -> np.ndarray:
    """Expected received (per unit rate) per week: packs convolved with the delay pmf."""
    G = packs_weighted.shape[-1]
    out = np.zeros_like(packs_weighted)
    for k in range(min(len(pmf), G)):
        out[..., k:] += pmf[k] * packs_weighted[..., : G - k]
    return out


def simulate(scenario: Scenario, replicates: int, rng: np.random.Generator, design: StudyDesign = StudyDesign()):
    """Simulate ``replicates`` independent worlds of one scenario (see the module docstring)."""
    if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    R, B, G = int(replicates), design.n_batches, design.n_weeks
    curve = delivery_curve(design)
    packs = np.zeros((B, G))
    for b in range(B):
        s = b * design.sibling_spacing_weeks
        n = min(len(curve), G - s)
        packs[b, s : s + n] = scenario.exposure * curve[:n]
    rr = np.ones((B, G))
    t0 = design.test_start_week
    if scenario.onset == "first_delivery":
        rr[B - 1, t0:] = scenario.rate_ratio
        onset_day = 0
    else:
        a, z = design.consignment_weeks
        rr[B - 1, t0 + a : t0 + z] = scenario.rate_ratio
        onset_day = 7 * a
    pmf = reporting_delay_pmf(design)
    lam0 = design.base_rate * _flow(packs, pmf)
    lam1 = design.base_rate * _flow(packs * rr, pmf)
    counts = rng.poisson(np.broadcast_to(lam1, (R, B, G))).astype(np.float64)
    other = rng.poisson(np.broadcast_to(design.other_events_ratio * lam0.sum(axis=0), (R, G))).astype(np.float64)
    return ScenarioData(design, scenario, packs, pmf, lam0, lam1, counts, other, onset_day)

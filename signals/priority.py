"""Signal priority: one documented score that orders the register, the dashboard, the reports and the alerts.

In the spirit of WHO-UMC's vigiRank (Caster, Juhlin, Watson, Norén, "Improved statistical signal
detection in pharmacovigilance by combining multiple strength-of-evidence aspects in vigiRank",
Drug Saf 2014;37:617–628), which ranks drug–event pairs by a weighted combination of the strength
of disproportionality, the completeness of the reports, their recency, the reporters and other
aspects of the evidence. The *idea* is vigiRank's; the components and the **weights are PV Trace's
own**, chosen by hand so that each component can move the score and none dominates — they are not
vigiRank's fitted coefficients and were not fitted to any reference set of true signals.

Each component is a number in [0, 1], non-decreasing in the evidence it measures:

* **strength** ``c_str = x / (x + 1)`` with ``x = max(IC025, 0)`` and
  ``IC025 = log2(Gamma⁻¹(0.025; n + ½, rate E + ½))`` — the lower 95 % credibility bound of the
  shrunk observed-to-expected ratio (Norén et al., Stat Methods Med Res 2013;22:57–69, the form
  :func:`signals.disproportionality.information_component` computes). ``n`` and ``E`` are the
  signal's own counts: a product/substance signal's reports and stratified expected count, a batch
  signal's cases and the count expected at the product's other batches' rate. ``c_str = ½`` when
  the lower bound of O/E is 2; it rises with ``n`` and falls with ``E``. ``E`` missing: 0.
* **batch concentration** ``c_bat = k / 2``, ``k`` = how many of the two families of batch-level
  tests say one batch stands out for the signal's event: the heterogeneity scan (exact conditional
  test with Tarone–BH q < 0.05 and EB05 > 1: ``batch_exact``/``batch_eb``) and sequential
  monitoring (``maxsprt``/``maxsprt_group``). A batch-level signal counts its own methods; a
  product or substance signal those of the (not refuted or closed) batch signals of its product(s) on
  the same PT (a batch signal found by the scan per SOC counts for itself only).
* **seriousness** ``c_ser = serious cases / cases``.
* **recency** ``c_rec = cases first received in the last``
  :data:`RECENT_DAYS` ``days up to the data lock point / cases``.
* **completeness** ``c_com`` = the mean over the signal's cases of the share of
  :data:`COMPLETENESS_FIELDS` present (age, sex, time to onset, outcome, reporter qualification,
  a batch link) — in the spirit of vigiGrade (Bergvall, Norén, Lindquist, Drug Saf 2014;37:65–77),
  unweighted.
* **reporter qualification** ``c_hcp = cases reported by a health professional / cases``
  (:data:`HCP_QUALIFICATIONS`).

``priority = Σ_k w_k c_k`` with the :data:`WEIGHTS` (sum 1), so ``0 ≤ priority ≤ 1``; a signal with
no case at the data lock point has 0 for every share. The score is a positive combination of
non-decreasing components, so stronger evidence (more cases at the same E, a batch test more,
a serious case instead of a non-serious one, a more complete report, a health professional's
report) never lowers it. Signals at or above :data:`DEFAULT_THRESHOLD` (configurable by the
caller) get full report pages and ride in manufacturer alerts; the rest stay in the tables.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from signals.disproportionality import information_component

__all__ = [
    "COMPLETENESS_FIELDS",
    "COMPONENTS",
    "DEFAULT_THRESHOLD",
    "HCP_QUALIFICATIONS",
    "INPUT_COLUMNS",
    "QUERY_PARAMETERS",
    "RECENT_DAYS",
    "WEIGHTS",
    "batch_families",
    "priority_scores",
    "validate_threshold",
]

#: component → weight (PV Trace's own choice, not vigiRank's fitted weights; they sum to 1)
WEIGHTS: dict[str, float] = {
    "strength": 0.30,
    "batch": 0.25,
    "seriousness": 0.15,
    "recency": 0.10,
    "completeness": 0.10,
    "reporter": 0.10,
}
COMPONENTS = tuple(WEIGHTS)
#: full report pages and alerts for signals at or above this priority (callers may configure another)
DEFAULT_THRESHOLD = 0.4
#: a case is recent when first received within this many days up to the data lock point
RECENT_DAYS = 90
#: the per-case fields whose presence makes a report complete (vigiGrade-like, unweighted)
COMPLETENESS_FIELDS = ("age", "sex", "time_to_onset", "outcome", "reporter_qualification", "batch_link")
#: reporter qualifications counted as health professionals (E2B C.2.r.4 1–3)
HCP_QUALIFICATIONS = ("physician", "pharmacist", "other_hcp")
#: the method names of the two families of batch-level tests
BATCH_TEST_FAMILIES = (("batch_exact", "batch_eb"), ("maxsprt", "maxsprt_group"))

#: the definitions the warehouse query of the inputs (warehouse.queries.priority_inputs) takes
QUERY_PARAMETERS = {
    "recent_days": RECENT_DAYS,
    "hcp_qualifications": HCP_QUALIFICATIONS,
    "test_families": BATCH_TEST_FAMILIES,
    "n_fields": len(COMPLETENESS_FIELDS),
}

#: what :func:`priority_scores` reads: counts (integers ≥ 0), ``expected`` (≥ 0 or null), a mean share
INPUT_COLUMNS = {
    "n11": "the signal's observed count (reports or batch cases) behind its statistic",
    "expected": "its expected count E (null: no strength)",
    "batch_tests": "number of batch-test families (0, 1 or 2) that single out a batch for the event",
    "n_cases": "cases of the signal at the data lock point",
    "n_serious": "of which serious",
    "n_recent": f"of which first received within {RECENT_DAYS} days up to the data lock point",
    "n_hcp": "of which reported by a health professional",
    "completeness": "mean share of COMPLETENESS_FIELDS present per case, in [0, 1] (null when no case)",
}


def batch_families(methods) -> int:
    """How many of the two batch-test families (heterogeneity, sequential) are among ``methods``."""
    found = set(methods or ())
    return sum(bool(found & set(family)) for family in BATCH_TEST_FAMILIES)


def validate_threshold(value) -> float:
    """A priority threshold as a float in [0, 1]; anything else is a ValueError naming the value."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"priority threshold must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"priority threshold must be a number in [0, 1], got {value!r}")
    return t


def _validate(frame: pl.DataFrame) -> None:
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"priority inputs lack column(s) {missing}; expected {list(INPUT_COLUMNS)}")
    for c in ("n11", "n_cases", "n_serious", "n_recent", "n_hcp", "batch_tests"):
        v = frame[c].cast(pl.Float64, strict=False)
        if v.null_count() or not np.all(np.isfinite(v.to_numpy())):
            raise ValueError(f"priority input {c!r} must be a finite count for every row (no null, NaN or inf)")
        arr = v.to_numpy()
        if (arr < 0).any() or (arr != np.floor(arr)).any():
            raise ValueError(f"priority input {c!r} must hold non-negative integers")
    if (frame["batch_tests"].cast(pl.Int64) > len(BATCH_TEST_FAMILIES)).any():
        raise ValueError(f"priority input 'batch_tests' counts test families: at most {len(BATCH_TEST_FAMILIES)}")
    n = frame["n_cases"].cast(pl.Int64)
    for c in ("n_serious", "n_recent", "n_hcp"):
        if (frame[c].cast(pl.Int64) > n).any():
            raise ValueError(f"priority input {c!r} cannot exceed n_cases")
    e = frame["expected"].cast(pl.Float64, strict=False).drop_nulls().to_numpy()
    if (~np.isfinite(e)).any() or (e < 0).any():
        raise ValueError("priority input 'expected' must be finite and ≥ 0 (or null)")
    com = frame["completeness"].cast(pl.Float64, strict=False).drop_nulls().to_numpy()
    if (~np.isfinite(com)).any() or (com < 0).any() or (com > 1).any():
        raise ValueError("priority input 'completeness' must be a share in [0, 1] (or null)")


def priority_scores(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with ``priority_<component>`` for each of :data:`COMPONENTS` and ``priority`` (all in [0, 1]).

    Inputs: :data:`INPUT_COLUMNS` (other columns are kept). Vectorised; a ValueError names a missing
    column or an impossible value (negative or fractional counts, more serious cases than cases, a
    share outside [0, 1], a non-finite or negative E). See the module docstring for the formula."""
    _validate(frame)
    if frame.height == 0:
        return frame.with_columns(
            *(pl.lit(None, dtype=pl.Float64).alias(f"priority_{c}") for c in COMPONENTS),
            pl.lit(None, dtype=pl.Float64).alias("priority"),
        )
    n11 = frame["n11"].cast(pl.Float64).to_numpy()
    e = frame["expected"].cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
    _, ic025, _ = information_component(n11, e)
    x = np.where(np.isfinite(ic025), np.maximum(ic025, 0.0), 0.0)
    n = frame["n_cases"].cast(pl.Float64).to_numpy()
    safe = np.where(n > 0, n, 1.0)

    def share(col: str) -> np.ndarray:
        return np.where(n > 0, frame[col].cast(pl.Float64).to_numpy() / safe, 0.0)

    completeness = frame["completeness"].cast(pl.Float64, strict=False).fill_null(0.0).to_numpy()
    parts = {
        "strength": x / (x + 1.0),
        "batch": frame["batch_tests"].cast(pl.Float64).to_numpy() / len(BATCH_TEST_FAMILIES),
        "seriousness": share("n_serious"),
        "recency": share("n_recent"),
        "completeness": np.where(n > 0, completeness, 0.0),
        "reporter": share("n_hcp"),
    }
    total = sum(WEIGHTS[k] * v for k, v in parts.items())
    return frame.with_columns(
        *(pl.Series(f"priority_{k}", np.round(v, 6)) for k, v in parts.items()),
        pl.Series("priority", np.round(np.clip(total, 0.0, 1.0), 6)),
    )

"""Sequential surveillance of every batch from its release: weekly MaxSPRT looks per batch x event.

One *stream* is one batch of a product and one event (a PT, or a named group of PTs) of
interest.  At each weekly look ``w`` (from the batch's first delivery to the data lock point):

* observed ``c(w)``: distinct reports of the event linked to the batch and received by the end
  of week ``w``;
* expected ``mu(w)``: the leave-one-out, reporting-delay-adjusted baseline of
  :mod:`signals.baseline` — the rate among the product's *other* batches up to ``w`` times the
  batch's delay-adjusted exposure;
* the exact Poisson MaxSPRT of :mod:`signals.sequential` signals at the first look with
  ``LLR(c, mu) >= CV`` and ``c >= M``; the continuous-monitoring CV (valid whatever the look
  schedule) and the group-sequential CV for ``planned_looks`` equally spaced looks are both
  applied, and the look and date of the first crossing are recorded.

Design choices (defaults, see :class:`SurveillanceDesign`):

* ``T`` (surveillance length, expected events under H0): the expected count once every released
  pack of the batch is delivered — ``units_released`` times the product's leave-one-out rate
  *known at the stream's first testable look* (fixed in advance, as the MaxSPRT requires; the
  final rate would be look-ahead).  Looks whose expected count passes T end surveillance.  The
  CV grows only with log T.  Without ``units_released``, T is the expected count accrued by the
  last look.
* ``alpha``: a family-wise false-alarm probability ``alpha_family`` (0.05) per *product*, split
  equally (Bonferroni) over that product's streams (its batches x events of interest).  The
  product is the unit a manufacturer and an assessor review; Bonferroni keeps the chance of any
  false batch alarm for a product over its whole monitored life at or below 5 % (conservative:
  streams are positively dependent and continuous CVs at weekly looks spend less than alpha).
* ``M = 3``: no signal on fewer than three reports (Kulldorff & Silva 2015 recommend M > 1 when
  expected counts are small; one or two reports of a common event are not evidence about a batch).

Pure numpy/polars; no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from signals.baseline import leave_one_out_expected, reported_exposure, reporting_delay_pmf
from signals.sequential import maxsprt_poisson_llr, maxsprt_poisson_monitor

__all__ = [
    "QUALITY_DEFECT_PTS",
    "PARENTERAL_ONLY_PTS",
    "SurveillanceDesign",
    "events_of_interest",
    "monitor_batch_streams",
    "replay_batch_streams",
    "weekly_looks",
]

#: PTs of interest for batch surveillance: the PTs that *name the mechanism* of a batch quality
#: defect, not its every symptom (symptoms are covered by the heterogeneity scan over all PTs,
#: which has no per-stream alpha to spend).  Contaminants and immunogenic impurities
#: (e.g. the 2008 oversulfated-chondroitin heparin lots) -> hypersensitivity / anaphylaxis;
#: loss of potency (degradation, cold-chain excursions, sub-potent lots) -> lack of efficacy;
#: visible defects -> product quality issue.
QUALITY_DEFECT_PTS = (
    "Hypersensitivity",
    "Anaphylactic reaction",
    "Drug ineffective",
    "Therapeutic product effect decreased",
    "Product quality issue",
)
#: ... and for parenteral products: sterility / particulates / formulation -> injection-site
#: reactions; pyrogens (endotoxin) -> fever and chills.
PARENTERAL_ONLY_PTS = ("Injection site reaction", "Injection site erythema", "Pyrexia", "Chills")
_NON_PARENTERAL_ROUTES = {
    "oral",
    "topical",
    "inhalation",
    "nasal",
    "ophthalmic",
    "rectal",
    "vaginal",
    "transdermal",
    "cutaneous",
    "sublingual",
    "buccal",
    "",
}


def events_of_interest(routes: dict[str, str]) -> pl.DataFrame:
    """(product, event) streams per product: :data:`QUALITY_DEFECT_PTS`, plus
    :data:`PARENTERAL_ONLY_PTS` for products given by injection or infusion."""
    rows = []
    for product, route in sorted(routes.items()):
        pts = QUALITY_DEFECT_PTS
        if (route or "").strip().lower() not in _NON_PARENTERAL_ROUTES:
            pts = pts + PARENTERAL_ONLY_PTS
        rows += [(product, pt) for pt in pts]
    return pl.DataFrame(rows, schema={"product": pl.String, "event": pl.String}, orient="row")


@dataclass(frozen=True)
class SurveillanceDesign:
    alpha_family: float = 0.05
    min_events: int = 3
    pseudo_cases: float = 1.0
    planned_looks: int = 52
    min_T: float = 0.5


def weekly_looks(first_week: dt.date, last_day: dt.date) -> list[dt.date]:
    """Mondays from ``first_week``'s Monday to the Monday of ``last_day``'s week."""
    start = first_week - dt.timedelta(days=first_week.weekday())
    end = last_day - dt.timedelta(days=last_day.weekday())
    n = (end - start).days // 7 + 1
    return [start + dt.timedelta(weeks=i) for i in range(max(n, 0))]


def _week_index(col: pl.Expr, start: dt.date) -> pl.Expr:
    monday = col.cast(pl.Date).dt.truncate("1w")
    return ((monday - pl.lit(start)).dt.total_days() // 7).cast(pl.Int64)


def _first_look(mu: np.ndarray, Es: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stream (rows of the looks × streams matrices ``mu`` and ``Es``): whether it has a testable look
    (finite expected count, E > 0), the index of its first (0 when none) and the rate mu/E there (NaN when none)."""
    ok_look = np.isfinite(mu) & (Es > 0)
    has = ok_look.any(axis=1)
    first = np.where(has, ok_look.argmax(axis=1), 0)
    rows_ = np.arange(mu.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(has, mu[rows_, first] / Es[rows_, first], np.nan)
    return has, first, rate


def _stream_units_released(streams: pl.DataFrame, units_released: pl.DataFrame | None, n: int) -> np.ndarray:
    """Units released of each stream's batch, in stream order (``s``); 0 when unknown or not given."""
    if units_released is None:
        return np.zeros(n)
    return (
        streams.join(units_released.select("batch", pl.col("units_released").cast(pl.Float64)), on="batch", how="left")
        .sort("s")["units_released"]
        .fill_null(0.0)
        .to_numpy()
    )


def monitor_batch_streams(
    packs: pl.DataFrame,
    cases: pl.DataFrame,
    events: pl.DataFrame,
    looks: list[dt.date],
    delay_pmf: np.ndarray,
    units_released: pl.DataFrame | None = None,
    design: SurveillanceDesign = SurveillanceDesign(),
    data_lock_point: dt.date | None = None,
) -> pl.DataFrame:
    """Weekly MaxSPRT for every (batch, event of interest) stream; one result row per stream.

    packs: product, batch, week (date), packs — packs delivered per batch and week.
    cases: case_id, product, batch, event, received_on (date) — counted reports (one row per
           case and event; duplicates are removed here).
    events: product, event — the events of interest of each product (streams = every batch of
           the product with packs x every event of the product).
    looks: the Mondays of the weekly looks (look ``i`` uses reports received by the Sunday
           ending that week, or by ``data_lock_point`` if earlier).
    units_released: batch, units_released (for T; optional: without it T is the accrued expected count).

    Returns per stream: product_id, batch_id, pt (the event), first_week, looks (testable looks),
    observed, expected, llr (last look), expected_total (T), alpha, min_events, cv, signalled,
    crossing_look, crossed_on, observed_at_crossing, expected_at_crossing, cv_group,
    signalled_group, crossing_look_group, crossed_on_group.
    """
    if not (0 < design.alpha_family < 1):
        raise ValueError(f"alpha_family must be in (0, 1), got {design.alpha_family!r}")
    arrays = _stream_arrays(packs, cases, events, looks, data_lock_point)
    if arrays is None:
        return pl.DataFrame()
    streams, P, C, look_dates = arrays
    S, W = C.shape
    E = reported_exposure(P, delay_pmf)
    sb = streams["b"].to_numpy()
    Es = E[sb]
    mu = leave_one_out_expected(Es, C, streams["g"].to_numpy(), design.pseudo_cases)

    # T: every released pack delivered, at the leave-one-out rate known at the stream's first
    # testable look (no look-ahead: the final rate is not known when surveillance starts);
    # without units_released, the expected count accrued by the last look (the one use of
    # later data, documented)
    last_mu = np.where(np.isfinite(mu), mu, -np.inf).max(axis=1)
    _, _, final_rate = _first_look(mu, Es)
    ur = _stream_units_released(streams, units_released, S)
    T = np.where(np.isfinite(last_mu), last_mu, np.nan)
    T = np.where(np.isfinite(final_rate) & (ur > 0), final_rate * ur, T)
    T = np.where(np.isfinite(T), np.maximum(T, design.min_T), np.nan)

    # alpha: family-wise per product, Bonferroni over its streams
    n_prod = streams.group_by("product").agg(n=pl.len())
    n_streams = streams.join(n_prod, on="product").sort("s")["n"].to_numpy()
    alpha = np.maximum(design.alpha_family / n_streams, 1e-7)

    obs = np.where(np.isfinite(mu), C, np.nan)
    out = {k: np.full(S, np.nan) for k in ("cv", "llr", "cv_group")}
    first = np.full(S, -1, dtype=np.int64)
    first_g = np.full(S, -1, dtype=np.int64)
    for a in np.unique(alpha):
        rows = np.flatnonzero(alpha == a)
        for name, boundary, fl in (("cv", "continuous", first), ("cv_group", "group", first_g)):
            r = maxsprt_poisson_monitor(
                obs[rows],
                mu[rows],
                T[rows],
                alpha=float(a),
                min_events=design.min_events,
                boundary=boundary,
                planned_looks=design.planned_looks,
            )
            out[name][rows] = r.cv
            fl[rows] = r.first_look
            if boundary == "continuous":
                out["llr"][rows] = r.llr
    idx = np.arange(S)
    at = np.maximum(first, 0)
    testable = np.isfinite(mu) & (mu > 0)
    last_look = np.where(testable.any(axis=1), W - 1 - testable[:, ::-1].argmax(axis=1), -1)
    fin = np.maximum(last_look, 0)

    def dates(f):
        return pl.Series([look_dates[i] if i >= 0 else None for i in f], dtype=pl.Date)

    return streams.select(
        pl.col("product").alias("product_id"),
        pl.col("batch").alias("batch_id"),
        pl.col("event").alias("pt"),
        "first_week",
    ).with_columns(
        pl.Series("looks", testable.sum(axis=1).astype(np.int64)),
        pl.Series("observed", np.where(last_look >= 0, C[idx, fin], C[:, -1])).cast(pl.Int64),
        pl.Series("expected", np.where(last_look >= 0, mu[idx, fin], np.nan)).fill_nan(None),
        pl.Series("llr", out["llr"]).fill_nan(None),
        pl.Series("expected_total", T).fill_nan(None),
        pl.Series("alpha", alpha),
        pl.lit(design.min_events).cast(pl.Int64).alias("min_events"),
        pl.Series("cv", out["cv"]).fill_nan(None),
        pl.Series("signalled", first >= 0),
        _nullable_int("crossing_look", first, first >= 0),
        dates(first).alias("crossed_on"),
        _nullable_int("observed_at_crossing", C[idx, at], first >= 0),
        pl.Series("expected_at_crossing", np.where(first >= 0, mu[idx, at], np.nan)).fill_nan(None),
        pl.Series("cv_group", out["cv_group"]).fill_nan(None),
        pl.Series("signalled_group", first_g >= 0),
        _nullable_int("crossing_look_group", first_g, first_g >= 0),
        dates(first_g).alias("crossed_on_group"),
    )


def _stream_arrays(
    packs: pl.DataFrame, cases: pl.DataFrame, events: pl.DataFrame, looks: list[dt.date], data_lock_point
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, list[dt.date]] | None:
    """Streams (s, b, g, product, batch, event, first_week), packs per batch x week ``P``,
    cumulative received reports per stream x look ``C`` and the look dates; None without streams."""
    if not looks:
        raise ValueError("looks must hold at least one Monday (see weekly_looks)")
    W = len(looks)
    start = looks[0]
    look_dates = [
        min(d + dt.timedelta(days=6), data_lock_point) if data_lock_point else d + dt.timedelta(days=6) for d in looks
    ]
    batches = (
        packs.group_by("product", "batch")
        .agg(first_week=pl.col("week").min().cast(pl.Date))
        .sort("product", "batch")
        .with_row_index("b")
    )
    B = batches.height
    pk = packs.join(batches.select("batch", "b"), on="batch").with_columns(_w=_week_index(pl.col("week"), start))
    pk = pk.filter(pl.col("_w").is_between(0, W - 1))
    P = np.zeros((B, W))
    np.add.at(P, (pk["b"].to_numpy(), pk["_w"].to_numpy()), pk["packs"].cast(pl.Float64).to_numpy())
    streams = (
        batches.join(events.select("product", "event").unique(), on="product")
        .sort("product", "event", "batch")
        .with_row_index("s")
    )
    if streams.height == 0:
        return None
    streams = streams.with_columns(g=pl.struct("product", "event").rank("dense").cast(pl.Int64) - 1)
    cs = (
        cases.select("case_id", "product", "batch", "event", "received_on")
        .unique(["case_id", "batch", "event"])
        .join(streams.select("product", "batch", "event", "s"), on=["product", "batch", "event"])
        .with_columns(_w=_week_index(pl.col("received_on"), start))
        .filter(pl.col("_w") <= W - 1)
        .with_columns(pl.col("_w").clip(0, None))
    )
    C = np.zeros((streams.height, W))
    np.add.at(C, (cs["s"].to_numpy(), cs["_w"].to_numpy()), 1.0)
    return streams, P, np.cumsum(C, axis=1), look_dates


def replay_batch_streams(
    packs: pl.DataFrame,
    cases: pl.DataFrame,
    events: pl.DataFrame,
    looks: list[dt.date],
    units_released: pl.DataFrame | None = None,
    design: SurveillanceDesign = SurveillanceDesign(),
    data_lock_point: dt.date | None = None,
    max_lag_weeks: int = 52,
) -> pl.DataFrame:
    """The weekly MaxSPRT of :func:`monitor_batch_streams` replayed *prospectively*: every look
    decided once, with only what was known on its date (no look-ahead).

    :func:`monitor_batch_streams` is the run of one data lock point: its reporting-delay
    distribution, its stream count (hence each stream's alpha) and its T come from the data
    as of that point, and it re-tests every past look with them.  Asking it "when would this
    batch have been flagged?" therefore uses later data.  Here, at look ``w`` (date ``t_w``):

    * the reporting-delay pmf is estimated from the reports *received by* ``t_w`` (lags in
      whole weeks from the drug's start date, as :func:`signals.baseline.reporting_delay_pmf`);
      the delay-adjusted exposure and the leave-one-out expected count of look ``w`` use it;
    * alpha is ``alpha_family`` over the streams of the product that existed by ``t_w`` (its
      batches with a delivery by then x its events of interest), so it shrinks as batches come;
    * T is fixed at the stream's first testable look from what was known then (units released
      x the leave-one-out rate of that look), as the MaxSPRT requires T fixed in advance;
    * the stream signals at the first look with ``LLR >= CV(T, M, alpha_w)`` and ``c >= M``
      (continuous and group boundaries, as :func:`signals.sequential.maxsprt_poisson_monitor`
      with its T rounding).

    So truncating the data after any date leaves every decision up to that date unchanged.
    ``cases`` must hold ``start_date`` besides the columns :func:`monitor_batch_streams` reads.
    Returns per stream: product_id, batch_id, pt, first_week, expected_total (T),
    signalled, crossed_on, alpha_at_crossing, signalled_group, crossed_on_group.
    """
    if not (0 < design.alpha_family < 1):
        raise ValueError(f"alpha_family must be in (0, 1), got {design.alpha_family!r}")
    if "start_date" not in cases.columns:
        raise ValueError("cases must have a start_date column (the reporting lag runs from it)")
    arrays = _stream_arrays(packs, cases, events, looks, data_lock_point)
    if arrays is None:
        return pl.DataFrame()
    streams, P, C, look_dates = arrays
    S, W = C.shape
    sb = streams["b"].to_numpy()
    g = streams["g"].to_numpy()

    # delay pmf and delay-adjusted exposure of each look, from the reports received by its date
    lag = ((cases["received_on"] - cases["start_date"]).dt.total_days() // 7).to_numpy()
    received = cases["received_on"].cast(pl.Date).to_numpy()
    E = np.zeros(P.shape)
    for w, when in enumerate(look_dates):
        pmf = reporting_delay_pmf(lag[received <= np.datetime64(when)], max_lag_weeks)
        E[:, w] = reported_exposure(P[:, : w + 1], pmf)[:, -1]
    Es = E[sb]
    mu = leave_one_out_expected(Es, C, g, design.pseudo_cases)

    # T fixed at the first testable look; without units released, the expected count so far
    has, first_ok, rate = _first_look(mu, Es)
    rows_ = np.arange(S)
    ur = _stream_units_released(streams, units_released, S)
    fixed_T = np.isfinite(rate) & (ur > 0)
    running = np.fmax.accumulate(np.where(np.isfinite(mu), mu, np.nan), axis=1)
    T_look = np.where(fixed_T[:, None], (rate * ur)[:, None], running)
    T_look = np.where(np.isfinite(T_look), np.maximum(T_look, design.min_T), np.nan)

    # alpha of each look: Bonferroni over the product's streams that existed by then
    first_w = np.array([(d - looks[0]).days // 7 for d in streams["first_week"].to_list()])
    n_events = streams.group_by("product").agg(n=pl.col("event").n_unique())
    per_stream_events = streams.join(n_events, on="product").sort("s")["n"].to_numpy()
    prod_id = streams["product"].rank("dense").cast(pl.Int64).to_numpy() - 1
    first_batch_w = {}
    for pid, b, fw in zip(prod_id, sb, first_w):
        first_batch_w.setdefault(pid, {})[b] = fw
    n_b = np.zeros((prod_id.max() + 1, W))
    for pid, bs in first_batch_w.items():
        for fw in bs.values():
            n_b[pid, max(fw, 0) :] += 1
    alpha = np.maximum(design.alpha_family / np.maximum(n_b[prod_id] * per_stream_events[:, None], 1), 1e-7)

    llr = maxsprt_poisson_llr(C, np.where(np.isfinite(mu), mu, 0.0))
    testable = np.isfinite(mu) & (mu > 0) & np.isfinite(T_look) & (mu <= T_look * (1 + 1e-9))
    # only looks that could cross need a critical value: at least M reports and an excess
    cand = testable & (design.min_events <= C) & np.isfinite(llr) & (llr > 0)
    first = {"continuous": np.full(S, W, dtype=np.int64), "group": np.full(S, W, dtype=np.int64)}
    at_alpha = np.full(S, np.nan)
    rows, cols = np.nonzero(cand)
    if rows.size:
        key = pl.DataFrame({"r": rows, "c": cols, "a": alpha[rows, cols], "T": T_look[rows, cols]})
        for (a, t), part in key.group_by("a", "T", maintain_order=True):
            r, c = part["r"].to_numpy(), part["c"].to_numpy()
            for boundary in ("continuous", "group"):
                res = maxsprt_poisson_monitor(
                    C[r, c][:, None],
                    mu[r, c][:, None],
                    np.full(len(r), float(t)),
                    alpha=float(a),
                    min_events=design.min_events,
                    boundary=boundary,
                    planned_looks=design.planned_looks,
                )
                hit = res.first_look >= 0
                if boundary == "continuous":
                    better = hit & (c < first["continuous"][r])
                    at_alpha[r[better]] = a
                np.minimum.at(first[boundary], r[hit], c[hit])

    def dates(f):
        return pl.Series([look_dates[i] if i < W else None for i in f], dtype=pl.Date)

    T_first = T_look[rows_, first_ok]
    return streams.select(
        pl.col("product").alias("product_id"),
        pl.col("batch").alias("batch_id"),
        pl.col("event").alias("pt"),
        "first_week",
    ).with_columns(
        pl.Series("expected_total", np.where(has, T_first, np.nan)).fill_nan(None),
        pl.Series("signalled", first["continuous"] < W),
        dates(first["continuous"]).alias("crossed_on"),
        pl.Series("alpha_at_crossing", at_alpha).fill_nan(None),
        pl.Series("signalled_group", first["group"] < W),
        dates(first["group"]).alias("crossed_on_group"),
    )


def _nullable_int(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    return pl.Series(name, np.asarray(values).astype(np.int64)).zip_with(
        pl.Series(valid), pl.Series([None], dtype=pl.Int64)
    )

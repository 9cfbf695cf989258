"""Batch detection glue: per-batch frames → heterogeneity and MaxSPRT runs → register rows. Pure polars.

The table I/O (counted case rows, exposure, storage) is :mod:`warehouse.queries.batch_inputs`;
the statistics are :mod:`signals.batch_heterogeneity` (exact conditional test, EB shrinkage,
funnel limits, onset comparison), :mod:`signals.batch_surveillance` (weekly MaxSPRT streams) and
:mod:`signals.baseline` (reporting-delay distribution). This module assembles them the one way
the assets, the register and the evaluation replay share:

* :func:`batch_event_frame`, :func:`onset_frame` — what a batch-vs-rest comparison counts;
* :func:`heterogeneity_by_level` — every batch against its product's other batches, per PT and SOC,
  flagged with :data:`FLAG_RULE`;
* :func:`sequential_streams` — weekly MaxSPRT of every batch × event of interest;
* :func:`batch_detections` — the register rows (level ``batch``) from the flagged rows and the
  crossings, figures rounded by the one register rule (:func:`signals.scoring.round_figures`).
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl

from signals.baseline import reporting_delay_pmf
from signals.batch_heterogeneity import FlagRule, batch_heterogeneity, funnel_limits
from signals.batch_surveillance import SurveillanceDesign, events_of_interest, monitor_batch_streams, weekly_looks
from signals.scoring import round_figures

__all__ = [
    "DESIGN",
    "FLAG_RULE",
    "LEVELS",
    "REGISTER_SCHEMA",
    "batch_detections",
    "batch_event_frame",
    "heterogeneity_by_level",
    "onset_frame",
    "sequential_streams",
    "stream_schedule",
]

LEVELS = ("pt", "soc")
#: flag = BH FDR 5 % on the exact conditional test over Tarone's subset of tests that can reach
#: it (Gilbert 2005), EB05 of the shrunken rate ratio > 1, and >= 3 reports
FLAG_RULE = FlagRule(q_max=0.05, rr_shrunk_lo_min=1.0, min_cases=3, discrete_fdr=True)
DESIGN = SurveillanceDesign()

REGISTER_SCHEMA = {
    "level": pl.String,
    "product_id": pl.String,
    "ingredient": pl.String,
    "pt": pl.String,
    "batch_id": pl.String,
    "methods": pl.List(pl.String),
    "figures": pl.String,
    "detected_on": pl.Date,
}


def batch_event_frame(cases: pl.DataFrame, exposure: pl.DataFrame, level: str) -> pl.DataFrame:
    """(product, event, batch, cases, exposure) for every batch with exposure of every product
    that has at least one counted case of the event — batches with no case appear with 0.

    ``cases``: counted case rows (``case_id, product, batch, pt, soc``, as
    ``warehouse.queries.batch_inputs.batch_case_rows``); ``exposure``: ``product, batch, exposure``.
    Cases linked to a batch without exposure (delivered outside the logs) cannot have a rate and
    are dropped here.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    counts = (
        cases.select("case_id", "product", "batch", pl.col(level).alias("event"))
        .unique()
        .group_by("product", "event", "batch")
        .agg(pl.len().cast(pl.Int64).alias("cases"))
    )
    events = counts.select("product", "event").unique()
    grid = events.join(exposure.select("product", "batch", "exposure"), on="product")
    return (
        grid.join(counts, on=["product", "event", "batch"], how="left")
        .with_columns(pl.col("cases").fill_null(0))
        .select("product", "event", "batch", "cases", "exposure")
        .sort("product", "event", "batch")
    )


def onset_frame(cases: pl.DataFrame, level: str) -> pl.DataFrame:
    """(product, event, batch, onset_days) per counted case with a known time to onset (earliest per case)."""
    return (
        cases.filter(pl.col("onset_days").is_not_null())
        .group_by("case_id", "product", "batch", pl.col(level).alias("event"))
        .agg(pl.col("onset_days").min())
        .select("product", "event", "batch", "onset_days")
    )


def heterogeneity_by_level(
    cases: pl.DataFrame, exposure: pl.DataFrame, with_funnel: bool = True
) -> dict[str, tuple[pl.DataFrame, pl.DataFrame | None]]:
    """Per level (pt, soc): (per-batch statistics with ``flagged``, funnel grid or None)."""
    out = {}
    for level in LEVELS:
        frame = batch_event_frame(cases, exposure, level)
        if frame.height == 0:
            out[level] = (frame, None)
            continue
        scored = batch_heterogeneity(
            frame, onset_frame(cases, level), rule=FLAG_RULE, with_overdispersion=with_funnel, with_funnel=with_funnel
        )
        grid = funnel_limits(frame, grid_points=40)[1] if with_funnel else None
        out[level] = (scored, grid)
    return out


def stream_schedule(packs: pl.DataFrame, cases: pl.DataFrame, dlp: dt.date) -> tuple[list[dt.date], np.ndarray]:
    """The two inputs every stream shares: the weekly looks (first delivery week to the DLP) and
    the reporting-delay distribution, in weeks from start to receipt, of all counted cases."""
    lags = ((cases["received_on"] - cases["start_date"]).dt.total_days() // 7).to_numpy()
    return weekly_looks(packs["week"].min(), dlp), reporting_delay_pmf(lags)


def sequential_streams(
    packs: pl.DataFrame,
    cases: pl.DataFrame,
    routes: dict[str, str],
    units_released: pl.DataFrame,
    dlp: dt.date | None,
    design: SurveillanceDesign = DESIGN,
    schedule: tuple[list[dt.date], np.ndarray] | None = None,
) -> pl.DataFrame:
    """Weekly MaxSPRT of every batch × event of interest, from each batch's first delivery to the DLP.

    ``packs``: packs delivered per (product, batch, week); ``cases``: counted case rows with
    ``received_on`` and ``start_date`` (their difference in weeks is the reporting delay);
    ``routes``: product → route (parenteral products add injection-site PTs of interest).
    ``schedule``: the shared (looks, delay pmf) of :func:`stream_schedule`, computed from these
    frames when not given — a fan-out over product buckets computes it once over all products."""
    if packs.height == 0 or dlp is None:
        return pl.DataFrame()
    looks, delay_pmf = schedule if schedule is not None else stream_schedule(packs, cases, dlp)
    return monitor_batch_streams(
        packs,
        cases.rename({"pt": "event"}),
        events_of_interest(routes),
        looks,
        delay_pmf,
        units_released,
        design,
        dlp,
    )


def _heterogeneity_rows(het: pl.DataFrame, dlp) -> list[dict]:
    rows = []
    for r in het.to_dicts():
        figs = {k: v for k, v in r.items() if k not in ("product_id", "pt", "batch_id")}
        figs.update(n11=r["cases"], e=r["expected"])
        key = (r["product_id"], r["pt"], r["batch_id"])
        rows.append({"key": key, "methods": ["batch_exact", "batch_eb"], "figures": figs, "detected_on": dlp})
    return rows


def _sequential_rows(seq: pl.DataFrame) -> list[dict]:
    rows = []
    for r in seq.to_dicts():
        methods = (["maxsprt"] if r["signalled"] else []) + (["maxsprt_group"] if r["signalled_group"] else [])
        dates = [d for d in (r["crossed_on"] if r["signalled"] else None, r["crossed_on_group"]) if d is not None]
        skip = ("product_id", "pt", "batch_id", "signalled", "signalled_group")
        figs = {"maxsprt_" + k: v for k, v in r.items() if k not in skip}
        figs.setdefault("n11", r["observed"])
        figs.setdefault("e", r["seq_expected"])
        key = (r["product_id"], r["pt"], r["batch_id"])
        rows.append({"key": key, "methods": methods, "figures": figs, "detected_on": min(dates)})
    return rows


def _figures_json(figures: dict) -> str:
    """Floats rounded by the register rule (non-finite → null), dates ISO, keys sorted."""
    names = [k for k, v in figures.items() if isinstance(v, float)]
    rounded = dict(zip(names, round_figures(pl.Series([figures[k] for k in names], dtype=pl.Float64)).to_list()))
    out = {}
    for k, v in figures.items():
        if k in rounded:
            v = rounded[k] if rounded[k] is not None and math.isfinite(rounded[k]) else None
        elif hasattr(v, "isoformat"):
            v = v.isoformat()
        out[k] = v
    return json.dumps(out, sort_keys=True)


def batch_detections(heterogeneity: pl.DataFrame, sequential: pl.DataFrame, dlp) -> pl.DataFrame:
    """Register rows (level 'batch', batch_id set) from the flagged heterogeneity rows and MaxSPRT crossings.

    ``heterogeneity``: flagged rows (``product_id, pt, batch_id, cases, expected`` + the figures);
    ``sequential``: streams that crossed (``signalled`` or ``signalled_group``, ``crossed_on``,
    ``crossed_on_group``, ``observed``, ``seq_expected`` + the figures). Methods: ``batch_exact``
    (Tarone-BH q of the exact conditional test < 0.05) and ``batch_eb`` (EB05 of the shrunken rate
    ratio > 1) — both hold for a flagged row —, ``maxsprt`` (continuous boundary crossed at a
    weekly look) and ``maxsprt_group`` (group-sequential boundary crossed). ``detected_on``: the
    date of the first crossing look for MaxSPRT, the data lock point for heterogeneity; a row
    found by both takes the earlier date.
    """
    merged: dict[tuple, dict] = {}
    for r in _heterogeneity_rows(heterogeneity, dlp) + _sequential_rows(sequential):
        m = merged.setdefault(r["key"], {"methods": [], "figures": {}, "detected_on": r["detected_on"]})
        m["methods"] += [x for x in r["methods"] if x not in m["methods"]]
        m["figures"] = {**r["figures"], **m["figures"]}
        m["detected_on"] = min(m["detected_on"], r["detected_on"])
    rows = [
        {
            "level": "batch",
            "product_id": k[0],
            "ingredient": None,
            "pt": k[1],
            "batch_id": k[2],
            "methods": sorted(m["methods"]),
            "figures": _figures_json(m["figures"]),
            "detected_on": m["detected_on"],
        }
        for k, m in sorted(merged.items())
    ]
    return pl.DataFrame(rows, schema=REGISTER_SCHEMA)

"""Evaluation harness: every detection method replayed on the synthetic world's planted truth.

``pvtrace evaluate`` (assets/cli.py) calls :func:`evaluate`.  For each planted signal and
method it reports the date of the first alert and the detection delay in days from the
signal's start (the defective batch's first delivery; the cold-chain excursion; the product
signal's start), sensitivity per method, and every alert on a clean batch or a negative control.

How each method's first alert date is found (no look-ahead except where stated):

* disproportionality (``evans``, ``ema_sdr``, ``who_umc``, ``fda_mgps``; product level): the
  scores re-run at weekly data cut-offs (each Sunday; counts from reports received by then,
  all cut-offs counted in one SQL statement, ``warehouse.queries.detection_inputs``).  The MGPS prior
  is refitted quarterly and used for the weeks that follow (a fit takes seconds).  For a
  planted signal only a *new* alert counts: a product x PT pair on which any rule already fired
  before the signal started (e.g. injection-site reactions, a labelled ADR of an injectable, flagged
  against all the tablets long before the defective batch existed) is not a detection of it.
* batch heterogeneity (``batch_exact`` + ``batch_eb``: the ``flagged`` rule, PT and SOC level):
  re-run at the same weekly cut-offs (reports received and packs delivered by then).
* MaxSPRT (``maxsprt``: continuous boundary; ``maxsprt_group``: group-sequential boundary):
  :func:`signals.batch_surveillance.replay_batch_streams`, every weekly look decided once with
  only what was known on its date — the reports received and packs delivered by then, the
  reporting-delay distribution estimated from the reports received by then, alpha split over
  the streams (batches x events) that existed by then, T fixed at the stream's first look.
  (The stored ``sequential_monitoring`` run is the data lock point's view: its delay
  distribution, stream count and T come from the final data, which a replay must not use.)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from signals.batch_detection import DESIGN, heterogeneity_by_level
from signals.batch_surveillance import events_of_interest, replay_batch_streams, weekly_looks
from signals.rules import RULE_NAMES
from signals.scoring import fit_pairs_prior, score_pairs
from warehouse.queries.batch_inputs import (
    batch_case_rows,
    batch_exposure,
    batch_units_released,
    product_routes,
    weekly_batch_exposure,
)
from warehouse.queries.detection_inputs import additional_monitoring, report_event_counts_by_cutoff
from warehouse.queries.read_model import data_lock_point

DISPROPORTIONALITY = tuple(RULE_NAMES)
BATCH_METHODS = ("batch_exact+eb", "maxsprt", "maxsprt_group")


def weekly_cutoffs(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every Sunday after ``start`` up to ``end``, and ``end`` itself."""
    first = start + dt.timedelta(days=(6 - start.weekday()) % 7)
    out = []
    d = first
    while d < end:
        out.append(d)
        d += dt.timedelta(weeks=1)
    return out + [end]


def disproportionality_replay(con, cutoffs: list[dt.date], prior_every_months: int = 3) -> pl.DataFrame:
    """cutoff, product, pt, rules_fired (non-empty) at every weekly cut-off, product level.

    The rules read only per-pair statistics, so the cut-offs that share an MGPS prior are scored
    in one :func:`signals.scoring.score_pairs` call.  The prior (DuMouchel's
    gamma mixture, a few seconds a fit) is refitted every ``prior_every_months`` months on that
    cut-off's pairs and used until the next refit, as a production system refits periodically.
    """
    counts = report_event_counts_by_cutoff(con, "product", cutoffs)
    counts = counts.join(additional_monitoring(con, "product"), on="drug", how="left")
    counts = counts.with_columns(
        _period=((pl.col("cutoff").dt.year() * 12 + pl.col("cutoff").dt.month() - 1) // prior_every_months)
    )
    fired = []
    for _, part in counts.partition_by("_period", as_dict=True, maintain_order=True).items():
        first = part.filter(pl.col("cutoff") == part["cutoff"].min())
        scored = score_pairs(part.drop("_period"), prior=fit_pairs_prior(first, min_count=1)).scored
        fired.append(
            scored.filter(pl.col("rules_fired").list.len() > 0).select(
                "cutoff", pl.col("drug").alias("product"), pl.col("event").alias("pt"), "rules_fired"
            )
        )
    return (
        pl.concat(fired)
        if fired
        else pl.DataFrame(
            schema={"cutoff": pl.Date, "product": pl.String, "pt": pl.String, "rules_fired": pl.List(pl.String)}
        )
    )


def heterogeneity_replay(con, cutoffs: list[dt.date]) -> pl.DataFrame:
    """cutoff, level, product, event, batch, cases, expected of every flagged batch at every weekly cut-off."""
    cases = batch_case_rows(con)
    out = []
    for cutoff in cutoffs:
        seen = cases.filter(pl.col("received_on") <= cutoff)
        for level, (scored, _) in heterogeneity_by_level(seen, batch_exposure(con, cutoff), with_funnel=False).items():
            if scored.height and "flagged" in scored.columns:
                out.append(
                    scored.filter("flagged").select(
                        pl.lit(cutoff).alias("cutoff"),
                        pl.lit(level).alias("level"),
                        "product",
                        "event",
                        "batch",
                        pl.col("cases").cast(pl.Int64),
                        pl.col("expected").cast(pl.Float64),
                    )
                )
    return (
        pl.concat(out)
        if out
        else pl.DataFrame(
            schema={
                "cutoff": pl.Date,
                "level": pl.String,
                "product": pl.String,
                "event": pl.String,
                "batch": pl.String,
                "cases": pl.Int64,
                "expected": pl.Float64,
            }
        )
    )


def sequential_replay(con) -> pl.DataFrame:
    """product, batch, pt, crossed_on, crossed_on_group of every stream that crossed a MaxSPRT
    boundary in the prospective replay (no look-ahead; the pipeline's design and inputs)."""
    empty = pl.DataFrame(
        schema={
            "product": pl.String,
            "batch": pl.String,
            "pt": pl.String,
            "crossed_on": pl.Date,
            "crossed_on_group": pl.Date,
        }
    )
    dlp = data_lock_point(con)
    packs = weekly_batch_exposure(con)
    if packs.height == 0 or dlp is None:
        return empty
    replay = replay_batch_streams(
        packs,
        batch_case_rows(con).rename({"pt": "event"}),
        events_of_interest(product_routes(con)),
        weekly_looks(packs["week"].min(), dlp),
        batch_units_released(con),
        DESIGN,
        dlp,
    )
    if replay.height == 0:
        return empty
    return replay.filter(pl.col("signalled") | pl.col("signalled_group")).select(
        pl.col("product_id").alias("product"),
        pl.col("batch_id").alias("batch"),
        "pt",
        "crossed_on",
        "crossed_on_group",
    )


def _first(dates) -> dt.date | None:
    dates = [d for d in dates if d is not None]
    return min(dates) if dates else None


def _disp_first(disp: pl.DataFrame, product, pts, rule=None, since=None) -> dt.date | None:
    """First cut-off at which ``rule`` (any rule if None) fires for product x one of ``pts``.
    With ``since``: only a *new* alert counts — a PT whose pair already fired before
    ``since`` (e.g. a labelled ADR flagged before the defective batch existed) carries no
    news about the planted signal and is skipped, whichever rule fires on it later (the
    register keys a signal by product x PT, so a rule joining an existing signal adds a
    method, not a new signal)."""
    f = disp.filter((pl.col("product") == product) & pl.col("pt").is_in(pts))
    if since is not None:  # a pair in the register before the start (any rule) is not news
        old = set(f.filter(pl.col("cutoff") < since)["pt"].to_list())
        f = f.filter(~pl.col("pt").is_in(sorted(old)))
    if rule:
        f = f.filter(pl.col("rules_fired").list.contains(rule))
    return _first(f["cutoff"].to_list())


def _detection_table(
    truth: dict, disp: pl.DataFrame, het: pl.DataFrame, seq: pl.DataFrame, soc_of: dict
) -> pl.DataFrame:
    """Per planted signal x method: the first alert and the delay from the signal's start."""
    rows = []
    for s in truth["signals"]:
        pts = s.get("pts") or [s["pt"]]
        begins = dt.date.fromisoformat(s["starts_on"][:10])
        batch = s.get("batch_id")
        found = {r: _disp_first(disp, s["product_id"], pts, r, since=begins) for r in DISPROPORTIONALITY}
        found["any disproportionality"] = _first(found.values())
        if batch:
            socs = {soc_of.get(p) for p in pts} - {None}
            h = het.filter(
                (pl.col("batch") == batch)
                & (
                    ((pl.col("level") == "pt") & pl.col("event").is_in(pts))
                    | ((pl.col("level") == "soc") & pl.col("event").is_in(sorted(socs)))
                )
            )
            found["batch_exact+eb"] = _first(h["cutoff"].to_list())
            q = seq.filter((pl.col("batch") == batch) & pl.col("pt").is_in(pts))
            found["maxsprt"] = _first(q["crossed_on"].to_list())
            found["maxsprt_group"] = _first(q["crossed_on_group"].to_list())
        for method, when in found.items():
            rows.append(
                {
                    "signal": s["kind"],
                    "product_id": s["product_id"],
                    "batch_id": batch,
                    "pts": ", ".join(pts),
                    "starts_on": begins,
                    "method": method,
                    "first_alert": when,
                    "delay_days": (when - begins).days if when else None,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "signal": pl.String,
            "product_id": pl.String,
            "batch_id": pl.String,
            "pts": pl.String,
            "starts_on": pl.Date,
            "method": pl.String,
            "first_alert": pl.Date,
            "delay_days": pl.Int64,
        },
    )


def _batch_alerts(het: pl.DataFrame, seq: pl.DataFrame) -> pl.DataFrame:
    """Every batch-level alert (heterogeneity at any cut-off, MaxSPRT crossings) with its first date."""
    return pl.concat(
        [
            het.group_by("product", "event", "batch", "level")
            .agg(pl.col("cutoff").min().alias("first_alert"))
            .select(
                "product",
                pl.col("event").alias("pt"),
                "batch",
                pl.format("batch_exact+eb ({})", "level").alias("method"),
                "first_alert",
            ),
            seq.filter(pl.col("crossed_on").is_not_null()).select(
                "product", "pt", "batch", pl.lit("maxsprt").alias("method"), pl.col("crossed_on").alias("first_alert")
            ),
            seq.filter(pl.col("crossed_on_group").is_not_null()).select(
                "product",
                "pt",
                "batch",
                pl.lit("maxsprt_group").alias("method"),
                pl.col("crossed_on_group").alias("first_alert"),
            ),
        ]
    )


def _false_alerts(truth: dict, disp: pl.DataFrame, batch_alerts: pl.DataFrame, soc_of: dict) -> pl.DataFrame:
    """Alerts on clean batches, on planted batches for other events, and on negative controls."""
    planted_batches = {s["batch_id"] for s in truth["signals"] if s.get("batch_id")}
    false_rows = [
        {"kind": "clean batch", **r} for r in batch_alerts.filter(~pl.col("batch").is_in(planted_batches)).to_dicts()
    ]
    planted_pairs = {(s["batch_id"], p) for s in truth["signals"] if s.get("batch_id") for p in s.get("pts", [])}
    planted_socs = {
        (s["batch_id"], soc_of.get(p)) for s in truth["signals"] if s.get("batch_id") for p in s.get("pts", [])
    }
    false_rows += [
        {"kind": "planted batch, other event", **r}
        for r in batch_alerts.filter(pl.col("batch").is_in(planted_batches)).to_dicts()
        if (r["batch"], r["pt"]) not in planted_pairs and (r["batch"], r["pt"]) not in planted_socs
    ]
    for c in truth.get("negative_controls", []):
        when = _disp_first(disp, c["product_id"], [c["pt"]])
        if when:
            rules = sorted(
                {
                    x
                    for lst in disp.filter((pl.col("product") == c["product_id"]) & (pl.col("pt") == c["pt"]))[
                        "rules_fired"
                    ].to_list()
                    for x in lst
                }
            )
            false_rows.append(
                {
                    "kind": "negative control",
                    "product": c["product_id"],
                    "pt": c["pt"],
                    "batch": None,
                    "method": ", ".join(rules),
                    "first_alert": when,
                }
            )
        nb = batch_alerts.filter((pl.col("product") == c["product_id"]) & (pl.col("pt") == c["pt"]))
        false_rows += [{"kind": "negative control (batch)", **r} for r in nb.to_dicts()]
    return pl.DataFrame(
        false_rows,
        schema={
            "kind": pl.String,
            "product": pl.String,
            "pt": pl.String,
            "batch": pl.String,
            "method": pl.String,
            "first_alert": pl.Date,
        },
    )


#: how a product-level alert relates to the world's truth, most specific first
EXPECTATION_ORDER = ("planted", "known ADR", "indication", "stimulated reporting", "elevated background", "unexpected")
#: a background multiplier from which a product x PT pair is a real (unlabelled) association
ELEVATED_BACKGROUND = 1.5


def product_alerts(disp: pl.DataFrame, truth: dict, background_rates: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every product x PT pair any rule flagged at any cut-off, with its first alert, the rules and
    what the ground truth says it is (:data:`EXPECTATION_ORDER`): a planted signal, a labelled ADR,
    an indication-related event, stimulated reporting, an elevated background (the world's
    drug x event multiplier >= :data:`ELEVATED_BACKGROUND`, from ``background_rates``) or
    unexpected (noise: on a null world, a false alarm)."""
    bg = truth.get("background", {})
    named = [("planted", (s["product_id"], p)) for s in truth["signals"] for p in (s.get("pts") or [s["pt"]])]
    named += [("known ADR", (k["product_id"], k["pt"])) for k in truth.get("known_adrs", [])]
    named += [("indication", (k["product_id"], k["pt"])) for k in bg.get("indication_events", [])]
    named += [("stimulated reporting", (k["product_id"], k["pt"])) for k in bg.get("stimulated_reporting", [])]
    if background_rates is not None and background_rates.height:
        high = background_rates.filter(pl.col("background_multiplier") >= ELEVATED_BACKGROUND)
        named += [("elevated background", (a, b)) for a, b in high.select("product_id", "pt").iter_rows()]
    kind: dict[tuple[str, str], str] = {}
    for k, pair in sorted(named, key=lambda x: EXPECTATION_ORDER.index(x[0])):
        kind.setdefault(pair, k)
    first = (
        disp.group_by("product", "pt")
        .agg(
            first_alert=pl.col("cutoff").min(),
            rules=pl.col("rules_fired")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique()
            .sort()
            .str.join(", "),
        )
        .sort("product", "pt")
    )
    return first.with_columns(
        kind=pl.Series(
            [kind.get((a, b), "unexpected") for a, b in first.select("product", "pt").iter_rows()], dtype=pl.String
        )
    )


def _alerts_by_kind(alerts: pl.DataFrame) -> pl.DataFrame:
    counts = dict(alerts.group_by("kind").len().iter_rows())
    return pl.DataFrame(
        {"kind": list(EXPECTATION_ORDER), "product_pairs": [int(counts.get(k, 0)) for k in EXPECTATION_ORDER]}
    )


def _summary(con, dlp, cutoffs: list[dt.date], truth: dict, false_alerts: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "measure": [
                "data lock point",
                "weekly cut-offs",
                "batches",
                "clean batches with a batch-level alert",
                "negative controls",
                "negative controls with any alert",
            ],
            "value": [
                str(dlp),
                str(len(cutoffs)),
                str(con.sql("SELECT count(*) FROM batch").fetchone()[0]),
                str(false_alerts.filter(pl.col("kind") == "clean batch")["batch"].n_unique()),
                str(len(truth.get("negative_controls", []))),
                str(
                    false_alerts.filter(pl.col("kind").str.starts_with("negative control"))
                    .select("product", "pt")
                    .unique()
                    .height
                ),
            ],
        }
    )


def evaluate(
    con, truth: dict, cutoffs: list[dt.date] | None = None, background_rates: pl.DataFrame | None = None
) -> dict[str, pl.DataFrame]:
    """The evaluation tables: ``detection`` (per planted signal x method), ``sensitivity`` (per
    method), ``false_alerts`` (alerts on clean batches and negative controls),
    ``product_alerts_by_kind`` and ``product_alerts`` (every product-level alert and what the
    truth says it is, see :func:`product_alerts`) and ``summary``."""
    dlp = data_lock_point(con)
    start = dt.date.fromisoformat(
        truth.get("world_start", str(con.sql("SELECT min(received_on) FROM latest_case").fetchone()[0]))
    )
    cutoffs = cutoffs or weekly_cutoffs(start, dlp)
    disp = disproportionality_replay(con, cutoffs)
    het = heterogeneity_replay(con, cutoffs)
    seq = sequential_replay(con)
    soc_of = dict(con.sql("SELECT pt, any_value(soc) FROM case_reaction GROUP BY pt").fetchall())
    detection = _detection_table(truth, disp, het, seq, soc_of)
    sensitivity = (
        detection.group_by("method", maintain_order=True)
        .agg(
            planted=pl.len(),
            detected=pl.col("first_alert").is_not_null().sum(),
            median_delay_days=pl.col("delay_days").median(),
        )
        .with_columns(sensitivity=pl.col("detected") / pl.col("planted"))
    )

    false_alerts = _false_alerts(truth, disp, _batch_alerts(het, seq), soc_of)
    summary = _summary(con, dlp, cutoffs, truth, false_alerts)
    alerts = product_alerts(disp, truth, background_rates)
    return {
        "detection": detection,
        "sensitivity": sensitivity,
        "false_alerts": false_alerts,
        "product_alerts_by_kind": _alerts_by_kind(alerts),
        "summary": summary,
        "product_alerts": alerts,
    }


def _markdown(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.iter_rows():
        lines.append(
            "| " + " | ".join("" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row) + " |"
        )
    return "\n".join(lines)


def write_evaluation(tables: dict[str, pl.DataFrame], out_dir: Path) -> str:
    """Write each table as CSV and all of them as one markdown file; return the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = ["# PV Trace evaluation on the synthetic world's ground truth", ""]
    for name, frame in tables.items():
        frame.write_csv(out_dir / f"{name}.csv")
        parts += [f"## {name}", "", _markdown(frame) if frame.height else "(none)", ""]
    md = "\n".join(parts)
    (out_dir / "evaluation.md").write_text(md)
    return md


def run_evaluation(warehouse: str, inbox: str, output: str) -> str:
    from warehouse.schema import connect

    truth = json.loads(Path(inbox, "ground_truth.json").read_text())
    rates_file = Path(inbox, truth.get("background", {}).get("rates_file", "ground_truth_background_rates.parquet"))
    rates = pl.read_parquet(rates_file) if rates_file.is_file() else None
    con = connect(warehouse, read_only=True)
    try:
        tables = evaluate(con, truth, background_rates=rates)
    finally:
        con.close()
    return write_evaluation(tables, Path(output, "evaluation"))


__all__ = [
    "evaluate",
    "product_alerts",
    "run_evaluation",
    "sequential_replay",
    "weekly_cutoffs",
    "write_evaluation",
]

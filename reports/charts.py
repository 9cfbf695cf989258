"""SVG charts built by hand: one chart stack for the dashboard and the regulator documents.

No JavaScript, no CDN, no browser and no renderer process: every chart is SVG text written here,
deterministic (the same data gives the same bytes), with every text escaped.

* Dashboard charts (:func:`bar_chart`, :func:`histogram`, :func:`funnel_plot`) return a
  ``markupsafe.Markup`` ``<svg role="img">`` with a ``<title>`` (read by screen readers), inlined
  in the page and styled by its stylesheet (classes ``bar``, ``grid``, ``tick``, ``axis``, …).
* The periodic report's case chart (:func:`case_chart`) is plain geometry (bars, axis top, ticks)
  that both report templates draw: inline SVG in the HTML, native Typst shapes in the PDF, so the
  two show the same bars and the PDF's text layer holds the labels.
"""

from __future__ import annotations

import datetime as dt
import math
from datetime import date

import polars as pl
from markupsafe import Markup, escape

W, H = 560, 220
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 14, 34


def _svg(title: str, body: list[str], width: int = W, height: int = H) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _empty(title: str, text: str) -> Markup:
    return _svg(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{escape(text)}</text>'])


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def _y_axis(ymax: float, to_y, ticks: int = 4) -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = ymax * i / ticks
        y = to_y(v)
        out.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(v)}</text>'
        )
    return out


def bar_chart(labels: list[str], values: list[float], title: str, *, y_label: str = "cases") -> Markup:
    """Vertical bars (e.g. cases per month); every ~n-th label shown so they do not overlap."""
    if not values or max(values) <= 0:
        return _empty(title, "no cases")
    ymax = _nice_max(max(values))
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    bw = pw / len(values)

    def to_y(v):
        return PAD_T + ph * (1 - v / ymax)

    body = _y_axis(ymax, to_y)
    step = max(1, math.ceil(len(labels) / 10))
    for i, (lab, v) in enumerate(zip(labels, values)):
        x = PAD_L + i * bw
        body.append(
            f'<rect x="{x + 1:.1f}" y="{to_y(v):.1f}" width="{max(bw - 2, 1):.1f}" height="{ph * v / ymax:.1f}" '
            f'class="bar"><title>{escape(lab)}: {_fmt(v)} {escape(y_label)}</title></rect>'
        )
        if i % step == 0:
            body.append(
                f'<text x="{x + bw / 2:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" class="tick">{escape(lab)}</text>'
            )
    body.append(
        f'<text x="12" y="{PAD_T + ph / 2}" transform="rotate(-90 12 {PAD_T + ph / 2})" text-anchor="middle" '
        f'class="axis">{escape(y_label)}</text>'
    )
    return _svg(title, body)


def monthly_counts(dates: list[date]) -> tuple[list[str], list[int]]:
    """Cases per calendar month from the first to the last date, months with none included."""
    ds = sorted(d for d in dates if d is not None)
    if not ds:
        return [], []
    y, m = ds[0].year, ds[0].month
    counts: dict[str, int] = {}
    while (y, m) <= (ds[-1].year, ds[-1].month):
        counts[f"{y}-{m:02d}"] = 0
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    for d in ds:
        counts[f"{d.year}-{d.month:02d}"] += 1
    return list(counts), list(counts.values())


def histogram(values: list[float], title: str, *, unit: str = "days", bins: int = 12) -> Markup:
    vals = [v for v in values if v is not None]
    if not vals:
        return _empty(title, "no case with a known time to onset")
    hi = max(vals)
    width = max(1, math.ceil((hi + 1) / bins))
    n = max(1, math.ceil((hi + 1) / width))
    counts = [0] * n
    for v in vals:
        counts[min(int(v // width), n - 1)] += 1
    labels = [f"{i * width}–{(i + 1) * width - 1}" if width > 1 else f"{i}" for i in range(n)]
    return bar_chart(labels, counts, title, y_label=f"cases (by {unit})")


def funnel_plot(points: list[dict], grid: list[dict], title: str, *, highlight: set[str] | None = None) -> Markup:
    """Batch reporting rate (cases per 10,000 packs) against packs delivered, with the 95% and 99.8%
    exact Poisson limits around the product's pooled rate (Spiegelhalter 2005). Log x axis."""
    pts = [p for p in points if p.get("exposure") and p.get("rate") is not None]
    if not pts:
        return _empty(title, "no batch with exposure for this product")
    scale = 1e4
    highlight = highlight or set()
    xs = [p["exposure"] for p in pts] + [g["exposure"] for g in grid]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 0.5, x1 + 0.5
    ys = [p["rate"] * scale for p in pts] + [g["hi95"] * scale for g in grid if g.get("hi95") is not None]
    ymax = _nice_max(max(ys) * 1.05 if ys else 1)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def to_x(v):
        return PAD_L + pw * (math.log10(v) - x0) / (x1 - x0)

    def to_y(v):
        return PAD_T + ph * (1 - min(v, ymax) / ymax)

    body = _y_axis(ymax, to_y)
    for e in range(math.ceil(x0), math.floor(x1) + 1):
        x = to_x(10**e)
        body.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" class="tick">{_fmt(10**e)}</text>')
    for key, cls in (
        ("hi998", "lim998"),
        ("lo998", "lim998"),
        ("hi95", "lim95"),
        ("lo95", "lim95"),
        ("target_rate", "target"),
    ):
        line = [(to_x(g["exposure"]), to_y(g[key] * scale)) for g in grid if g.get(key) is not None]
        if len(line) > 1:
            body.append(
                f'<polyline class="{cls}" fill="none" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in line) + '"/>'
            )
    for p in pts:
        cls = "pt-hi" if p.get("batch") in highlight else ("pt-out" if p.get("above_95") else "pt")
        label = f"{p.get('lot') or p.get('batch')}: {p.get('cases')} cases / {p['exposure']:,.0f} packs"
        body.append(
            f'<circle cx="{to_x(p["exposure"]):.1f}" cy="{to_y(p["rate"] * scale):.1f}" r="4" class="{cls}">'
            f"<title>{escape(label)}</title></circle>"
        )
    body.append(
        f'<text x="{PAD_L + pw / 2}" y="{H - 4}" text-anchor="middle" class="axis">packs delivered (log scale)</text>'
    )
    body.append(
        f'<text x="12" y="{PAD_T + ph / 2}" transform="rotate(-90 12 {PAD_T + ph / 2})" text-anchor="middle" '
        f'class="axis">cases per 10,000 packs</text>'
    )
    return _svg(title, body)


# ---- the periodic report's case chart ---------------------------------------------------------------


def _months(start: dt.date, end: dt.date) -> list[str]:
    out, m = [], dt.date(start.year, start.month, 1)
    while m <= end:
        out.append(m.strftime("%Y-%m"))
        m = dt.date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    return out


def monthly_case_counts(cases: pl.DataFrame, first: dt.date, dlp: dt.date) -> pl.DataFrame:
    """Cases per month of receipt (serious / non-serious), every month from ``first`` to the DLP, zeros included."""
    months = _months(first, dlp)
    grid = pl.DataFrame(
        {"month": [m for m in months for _ in (0, 1)], "seriousness": ["serious", "non-serious"] * len(months)}
    )
    if cases.is_empty():
        counts = grid.with_columns(cases=pl.lit(0, dtype=pl.UInt32))
    else:
        got = (
            cases.with_columns(
                month=pl.col("initial_received").dt.strftime("%Y-%m"),
                seriousness=pl.when(pl.col("serious")).then(pl.lit("serious")).otherwise(pl.lit("non-serious")),
            )
            .group_by("month", "seriousness")
            .agg(cases=pl.len())
        )
        counts = grid.join(got, on=["month", "seriousness"], how="left").with_columns(pl.col("cases").fill_null(0))
    return counts.sort("month", "seriousness")


def case_chart(counts: pl.DataFrame) -> dict:
    """The stacked monthly bar chart of a signal's cases (serious on non-serious) as plain geometry, drawn by
    both templates (inline SVG in the HTML, native shapes in the PDF): the same bars, ticks and labels.

    ``bars``: (month, non-serious, serious) per month; ``ymax``: the top of the y axis, a multiple of the tick
    step; ``ticks``: the y-axis labels (whole cases, at most five)."""
    wide = counts.pivot(on="seriousness", index="month", values="cases").sort("month")
    bars = [
        (m, int(ns or 0), int(se or 0))
        for m, ns, se in zip(
            wide["month"].to_list(),
            wide["non-serious"].to_list() if "non-serious" in wide.columns else [0] * wide.height,
            wide["serious"].to_list() if "serious" in wide.columns else [0] * wide.height,
        )
    ]
    top = max((ns + se for _, ns, se in bars), default=0)
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if top <= 4 * s)
    ymax = max(step, -(-top // step) * step)
    return {"bars": bars, "ymax": ymax, "ticks": list(range(0, ymax + 1, step))}

"""`pvtrace evaluate --study`: the count-level operating-characteristics study, written to disk.

Thin wiring around :func:`signals.study.operating_characteristics`: writes
``DIR/evaluation/operating_characteristics.csv`` (one row per scenario x method), two SVG charts
(``power_vs_rate_ratio.svg``, ``delay_vs_rate_ratio.svg``: medium batch, defect from the first
delivery, one line per method and the oracle dashed) and ``study.md`` (the main table).
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path

import polars as pl

from signals.study import operating_characteristics
from signals.study.methods import BATCH_METHODS, PRODUCT_METHODS

MAIN_EXPOSURE = 10_000
#: colour-blind-safe palette (Okabe & Ito 2008), one colour per method
_COLOURS = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
    "#666666",
    "#333333",
]


def _line_chart(title: str, y_label: str, series: dict[str, list[tuple[float, float]]], y_max: float) -> str:
    """Minimal SVG line chart, x = rate ratio on a log axis; series 'oracle' drawn dashed black."""
    W, H, L, R, T, B = 760, 420, 60, 210, 40, 50
    xs = sorted({x for pts in series.values() for x, _ in pts}) or [1.0, 10.0]
    lx0, lx1 = math.log(min(xs)), math.log(max(xs))
    span = (lx1 - lx0) or 1.0

    def px(x):
        return L + (math.log(x) - lx0) / span * (W - L - R)

    def py(y):
        return H - B - (y / y_max) * (H - T - B)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{L}" y="22" font-size="15">{escape(title)}</text>',
        f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#333"/>',
        f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#333"/>',
        f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">rate ratio (log scale)</text>',
        f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:g}</text>')
    for i in range(6):
        v = y_max * i / 5
        out.append(f'<line x1="{L}" y1="{py(v):.1f}" x2="{W - R}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i, (name, pts) in enumerate(series.items()):
        oracle = name == "oracle"
        colour = "#000" if oracle else _COLOURS[i % len(_COLOURS)]
        dash = ' stroke-dasharray="6 4"' if oracle else ""
        pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
        if pts:
            d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(min(y, y_max)):.1f}" for j, (x, y) in enumerate(pts))
            out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        ly = T + 16 * i
        out.append(
            f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{W - R + 36}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def charts(table: pl.DataFrame, exposure: int = MAIN_EXPOSURE) -> dict[str, str]:
    """Power and median delay against the rate ratio for one batch size, defect from first delivery."""
    t = table.filter((pl.col("exposure") == exposure) & (pl.col("onset") == "first_delivery")).sort("rate_ratio")
    methods = [m for m in (*BATCH_METHODS, *PRODUCT_METHODS) if m in set(t["method"])]
    power, delay = {}, {}
    for m in methods:
        tm = t.filter(pl.col("method") == m)
        power[m] = list(zip(tm["rate_ratio"], tm["detected_share"]))
        delay[m] = list(zip(tm["rate_ratio"], tm["median_delay_days"].fill_nan(None)))
    to = t.filter((pl.col("method") == methods[0]) & (pl.col("rate_ratio") > 1)) if methods else t
    power["oracle"] = list(zip(to["rate_ratio"], to["oracle_detected_share"]))
    delay["oracle"] = list(zip(to["rate_ratio"], to["oracle_median_delay_days"].fill_nan(None)))
    finite = [y for pts in delay.values() for _, y in pts if y is not None and math.isfinite(y)]
    y_max = max(finite, default=100.0)
    y_max = 50 * math.ceil(y_max / 50)
    return {
        "power_vs_rate_ratio.svg": _line_chart(
            f"Detected share over the batch's life ({exposure:,} packs, defect from first delivery)",
            "detected share",
            power,
            1.0,
        ),
        "delay_vs_rate_ratio.svg": _line_chart(
            f"Median days from defect to first alert ({exposure:,} packs; missing = under half detected)",
            "median delay (days)",
            delay,
            float(y_max),
        ),
    }


def main_table(table: pl.DataFrame, exposure: int = MAIN_EXPOSURE) -> pl.DataFrame:
    """The README table: rate ratio >= 1.5, one batch size, each method beside the oracle."""
    return (
        table.filter((pl.col("exposure") == exposure) & (pl.col("rate_ratio") > 1))
        .select(
            "onset",
            "rate_ratio",
            "method",
            "detected_share",
            "median_delay_days",
            "oracle_median_delay_days",
            "oracle_detected_share",
            "delay_ratio",
            "false_alarm_rate",
        )
        .sort("onset", "rate_ratio", "method", descending=[True, False, False])
    )


def _markdown(frame: pl.DataFrame) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "–"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def run_study(
    output: str,
    replicates: int = 200,
    seed: int = 14,
    null_multiplier: int = 5,
    quiet: bool = False,
    scenarios: list | None = None,
) -> Path:
    """Run the study and write the CSV, charts and study.md under ``output/evaluation``
    (``scenarios``: default every scenario of :func:`signals.study.default_scenarios`)."""
    out = Path(output, "evaluation")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def progress(line: str) -> None:
        if not quiet:
            print(f"  [{time.perf_counter() - t0:6.1f} s] {line}", flush=True)

    table = operating_characteristics(
        replicates, seed, scenarios=scenarios, null_multiplier=null_multiplier, progress=progress
    )
    table.write_csv(out / "operating_characteristics.csv")
    for name, svg in charts(table).items():
        (out / name).write_text(svg, encoding="utf-8")
    md = [
        f"# Operating characteristics (count-level study, {replicates} replicates per scenario, "
        f"{replicates * null_multiplier} under the null, seed {seed})",
        "",
        f"Batch of {MAIN_EXPOSURE:,} packs; per-stream alpha {table['nominal_alpha'][0]:.3g}.",
        "",
        _markdown(main_table(table)),
        "",
    ]
    (out / "study.md").write_text("\n".join(md), encoding="utf-8")
    if not quiet:
        print(f"study finished in {time.perf_counter() - t0:.1f} s")
    return out

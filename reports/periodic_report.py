"""The periodic signal report: what a scheduled run hands to a safety committee or regulator.

Sections: summary; data and methods (data lock point, sources and counts, methods and
thresholds); the signals with every method's statistic; for each product signal its batch
traceability annex (the batches its cases link to, with delivery and cold-chain facts);
data quality (quarantine); caveats; lineage (run id, input file hashes, code version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from reports.rendering import render
from signals.rules import RULES, RuleThresholds

CAVEATS = [
    "A signal is a hypothesis about a possible causal association, not proof of causation; each needs "
    "clinical assessment before any conclusion is drawn.",
    "Disproportionality compares reporting proportions within spontaneous data, which has no denominators "
    "and is subject to under-reporting, stimulated reporting and confounding by indication.",
    "Rates per batch use the packs delivered to patients as recorded in the delivery logs; deliveries "
    "whose pack code could not be verified are excluded and counted in the data-quality section.",
    "Batch attribution depends on the lot or pack code given in the report; the link method is shown for "
    "every count and lower-confidence methods (normalised or fuzzy lot) should be read accordingly.",
]


@dataclass
class PeriodicReport:
    title: str
    data_lock_point: object
    run_id: str
    generated_at: str
    code_version: str
    summary: dict
    signals: pl.DataFrame
    batches: pl.DataFrame
    lineage: pl.DataFrame
    thresholds: RuleThresholds = field(default_factory=RuleThresholds)


def _signal_rows(signals: pl.DataFrame) -> list[dict]:
    rows = []
    for row in signals.to_dicts():
        row["figures"] = json.loads(row["figures"]) if row.get("figures") else {}
        rows.append(row)
    return rows


def render_periodic_report(report: PeriodicReport) -> str:
    signals = _signal_rows(report.signals)
    batches: dict[str, list[dict]] = {}
    for b in report.batches.to_dicts():
        b["cases_by_method"] = b["cases_by_method"]
        batches.setdefault(b["signal_id"], []).append(b)
    return render(
        "periodic_report.html.j2",
        r=report,
        product_signals=[s for s in signals if s["level"] == "product"],
        ingredient_signals=[s for s in signals if s["level"] == "ingredient"],
        batches=batches,
        rules=[(name, rule.description) for name, rule in RULES.items()],
        lineage=report.lineage.to_dicts(),
        caveats=CAVEATS,
    )


def write_periodic_report(report: PeriodicReport, folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.html"
    path.write_text(render_periodic_report(report), encoding="utf-8")
    return path

"""The periodic signal report a regulator receives: one document per jurisdiction and period, HTML and PDF.

Sections (PBRER-like, ICH E2C(R2) §15–16 in spirit [M]): summary; data and methods (data lock point,
sources and counts, methods and thresholds, terminology); new / ongoing / closed signals with every
method's statistic; a page per signal with its case counts over time (SVG chart), seriousness,
time to onset and the batch traceability annex; the expedited reporting clock; the E2B(R3)
transmission of the period; data quality; caveats; lineage (run id, input file hashes, code version).

Determinism: every table is rendered from data sorted on stable keys, charts are deterministic
SVG, and the run id and the generation timestamp appear only inside elements marked
``data-volatile`` (golden snapshots mask those).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import polars as pl

from reports.charts import case_chart, monthly_case_counts
from reports.jurisdictions import LABELS, Jurisdiction, label
from reports.rendering import render, render_typst
from signals.rules import RULES

CAVEATS = [
    (
        "A report is not proof of causation: a signal is a hypothesis about a possible causal association, and each "
        "needs clinical assessment before any conclusion is drawn."
    ),
    (
        "Spontaneous reports have no denominators: disproportionality compares reporting proportions within the "
        "reports, and is subject to under-reporting, stimulated reporting and confounding by indication. The only "
        "denominators in this report are the packs delivered per batch, from the dispensing platforms' delivery logs; "
        "deliveries whose pack code could not be verified are excluded and counted under data quality."
    ),
    (
        "Batch attribution depends on the lot or pack code given in the report; the link method is shown for every "
        "count, and lower-confidence methods (normalised or fuzzy lot) should be read accordingly."
    ),
    (
        "Signal statistics are those of the signal register at its last detection; when that is after this report's "
        "data lock point, the figures include cases received later (flagged in the signal tables). Case counts, "
        "charts, batch counts and the expedited clock are computed at the data lock point."
    ),
    (
        "Reaction terms are MedDRA-style preferred-term names as reported; MedDRA codes are licensed and not shipped "
        "with PV Trace, so terms are not coded and are given in English in every language version."
    ),
]

# The caveats in the other languages of the bilingual documents (translations by the PV Trace team, to be
# reviewed by a native regulatory writer before submission); English follows each.
CAVEATS_LOCAL = {
    "zh": [
        "报告不构成因果关系的证明：信号是关于可能因果关联的假设，在得出任何结论之前均需进行临床评估。",
        (
            "自发报告没有分母：不成比例分析比较的是报告内部的报告比例，受漏报、刺激性报告和适应症混杂的影响。本报告中唯一的分母是"
            "来自配送平台配送记录的各批次已配送包装数；无法核实追溯码的配送记录已排除，并在数据质量部分计数。"
        ),
        "批次归属取决于报告中给出的批号或追溯码；每个计数均注明关联方法，置信度较低的方法（标准化批号或模糊批号）应谨慎解读。",
        (
            "信号统计量来自信号登记表最近一次检测；若该检测晚于本报告的数据锁定点，统计量包含其后收到的病例（在信号表中标注）。"
            "病例数、图表、批次计数和快速报告时限均按数据锁定点计算。"
        ),
        (
            "不良反应术语为按报告记录的 MedDRA 风格首选术语名称；MedDRA 编码受许可限制，未随 PV Trace 提供，因此术语未编码，"
            "在所有语言版本中均以英文给出。"
        ),
    ],
    "ja": [
        "本報告は因果関係の証明ではない。シグナルは因果関連の可能性に関する仮説であり、結論を出す前に臨床的評価を要する。",
        (
            "自発報告には分母がない。不均衡分析は報告内の報告割合を比較するものであり、過少報告、誘発報告、適応による交絡の影響を受ける。"
            "本報告で唯一の分母は、配送記録に基づくロットごとの配送包装数である。包装コードを検証できなかった配送は除外し、データ品質の項に計上した。"
        ),
        (
            "ロットへの帰属は報告に記載されたロット番号または包装コードに依存する。各件数には紐付け方法を示しており、信頼度の低い方法"
            "（正規化ロット、あいまい一致ロット）による件数は慎重に解釈すること。"
        ),
        (
            "シグナルの統計量はシグナル登録簿の最新検出時点のものである。それが本報告のデータロックポイントより後の場合、その後に受領した症例を"
            "含む（シグナル表に注記）。症例数、図、ロット件数、緊急報告期限はデータロックポイント時点で算出した。"
        ),
        (
            "副作用用語は報告どおりの MedDRA 形式の基本語名である。MedDRA コードはライセンス対象のため PV Trace には含まれず、用語は"
            "コード化されておらず、すべての言語版で英語で記載している。"
        ),
    ],
}

VOLATILE = ("run_id", "generated_at")
_VOLATILE_RE = re.compile(r'(<span data-volatile="[a-z_]+">)[^<]*(</span>)')


def mask_volatile(html: str) -> str:
    """The report with its run id and generation time blanked: what must be identical for identical inputs."""
    return _VOLATILE_RE.sub(r"\1…\2", html)


@dataclass
class ReportInputs:
    """Everything one jurisdiction × period document is rendered from (frames from warehouse.queries.report_queries)."""

    jurisdiction: Jurisdiction
    period_start: object
    period_end: object
    data_lock_point: object
    run_id: str
    generated_at: str
    code_version: str
    summary: dict
    signals: pl.DataFrame
    signal_cases: pl.DataFrame
    batches: pl.DataFrame
    clock: pl.DataFrame
    lineage: pl.DataFrame
    e2b: dict = field(default_factory=dict)  # {"file", "status", "cases", "errors"}
    e2b_not_exported: str | None = None  # why no E2B file was written (e.g. no sender configured)
    files: dict = field(default_factory=dict)  # other outputs of the period (clock CSV, eRMR folder)
    # signal ids that get a full page (chart, tables, batch annex); the others a table row. None: the default
    # rule, full_page_ids() (product and batch level). The report asset passes priority_page_ids() here.
    full_pages: frozenset[str] | None = None
    # the priority threshold of that selection (signals.priority), quoted in the summary; None: not used
    priority_threshold: float | None = None

    @property
    def period_label(self) -> str:
        return f"{self.period_start:%Y-%m}"

    @property
    def report_id(self) -> str:
        return f"PVT-PSR-{self.jurisdiction.code.upper()}-{self.period_start:%Y%m}"

    @property
    def stem(self) -> str:
        return f"periodic_signal_report_{self.jurisdiction.code}_{self.period_label}"


def _tto(days: list[int]) -> dict:
    vals = sorted(d for d in days if d is not None and d >= 0)
    if not vals:
        return {"n": 0}
    q = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else [vals[0]] * 3
    bands = [("0–1 d", 0, 1), ("2–7 d", 2, 7), ("8–30 d", 8, 30), ("31–90 d", 31, 90), ("> 90 d", 91, 10**9)]
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "q1": q[0],
        "q3": q[2],
        "min": vals[0],
        "max": vals[-1],
        "bands": [(name, sum(lo <= v <= hi for v in vals)) for name, lo, hi in bands],
    }


def _seriousness(cases: list[dict]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for c in cases:
        for crit in (c["seriousness"] or "").split(", "):
            if crit:
                counts[crit] = counts.get(crit, 0) + 1
    outcomes: dict[str, int] = {}
    for c in cases:
        outcomes[c["outcome"]] = outcomes.get(c["outcome"], 0) + 1
    return sorted(counts.items()), sorted(outcomes.items())


def _by_priority(signals: pl.DataFrame) -> pl.DataFrame:
    """Highest priority first (``signals.priority``; a frame without the score keeps level, id order)."""
    if "priority" not in signals.columns:
        return signals.sort("category", "level", "signal_id", descending=[False, True, False])
    return signals.sort(
        "category", "priority", "level", "signal_id", descending=[False, True, True, False], nulls_last=True
    )


def _signal_rows(inputs: ReportInputs) -> list[dict]:
    j = inputs.jurisdiction
    rows = []
    for s in _by_priority(inputs.signals).to_dicts():
        s["figures"] = json.loads(s["figures"]) if s.get("figures") else {}
        s["methods"] = list(s["methods"] or [])
        s["meets_primary"] = [m for m in j.primary_rules if m in s["methods"]]
        s["after_dlp"] = s["last_detected"] is not None and s["last_detected"] > inputs.data_lock_point
        rows.append(s)
    return rows


def full_page_ids(signals: list[dict]) -> set[str]:
    """The default page selection: a full page (chart, tables, batch annex) for a signal on a product or one of
    its batches, which are batch-traceable; a substance-level signal spans every product and market and gets a
    table row with its top batches. A caller with another ranking (e.g. a priority score) passes its own set
    as ``ReportInputs.full_pages``."""
    return {s["signal_id"] for s in signals if s["level"] in ("product", "batch")}


def priority_page_ids(signals: list[dict], threshold: float) -> set[str]:
    """The priority selection of full pages: a signal whose priority (``signals.priority``) is at or above
    ``threshold``, or whose status an analyst changed in the period (``status_changed``); every other signal
    stays a row of the tables. Pass the result as ``ReportInputs.full_pages``."""
    return {
        s["signal_id"]
        for s in signals
        if (s.get("priority") is not None and s["priority"] >= threshold) or s.get("status_changed")
    }


def build_pages(inputs: ReportInputs, signals: list[dict]) -> list[dict]:
    """One page per signal with cases up to the DLP: chart, seriousness, outcomes, time to onset, batches.

    Signals in ``inputs.full_pages`` (default: :func:`full_page_ids`) get a full page with a chart; the
    others a row of the substance table."""
    by_signal = (
        {k[0]: v for k, v in inputs.signal_cases.partition_by("signal_id", as_dict=True).items()}
        if not inputs.signal_cases.is_empty()
        else {}
    )
    batches = (
        {k[0]: v.to_dicts() for k, v in inputs.batches.partition_by("signal_id", as_dict=True).items()}
        if not inputs.batches.is_empty()
        else {}
    )
    full = full_page_ids(signals) if inputs.full_pages is None else set(inputs.full_pages)
    first = inputs.summary.get("first_received") or inputs.period_start
    pages = []
    for s in signals:
        cases = by_signal.get(s["signal_id"])
        if cases is None or cases.is_empty():
            continue
        rows = cases.sort("case_id").to_dicts()
        criteria, outcomes = _seriousness(rows)
        page = {
            "signal": s,
            "n_cases": len(rows),
            "n_serious": sum(bool(r["serious"]) for r in rows),
            "n_in_period": sum(inputs.period_start <= r["initial_received"] <= inputs.period_end for r in rows),
            "criteria": criteria,
            "outcomes": outcomes,
            "tto": _tto([r["days_to_onset"] for r in rows]),
            "batches": batches.get(s["signal_id"], []),
        }
        if s["signal_id"] in full:
            page["chart"] = case_chart(monthly_case_counts(cases, first, inputs.data_lock_point))
        pages.append(page)
    return pages


def report_context(inputs: ReportInputs) -> dict:
    """What both templates (HTML and the PDF's Typst) are rendered from: one context, so the two documents
    carry the same content."""
    j = inputs.jurisdiction
    signals = _signal_rows(inputs)
    groups = {
        cat: [s for s in signals if s["category"] == cat and s["level"] != "batch"]
        for cat in ("new", "ongoing", "closed")
    }
    batch_groups = {
        cat: [s for s in signals if s["category"] == cat and s["level"] == "batch"]
        for cat in ("new", "ongoing", "closed")
    }
    pages = build_pages(inputs, signals)
    full = [p for p in pages if "chart" in p]
    if any(s.get("priority") is not None for s in signals):
        full.sort(key=lambda p: -(p["signal"].get("priority") or 0.0))  # stable: ties keep the table order
    threshold = inputs.priority_threshold
    review_first = (
        sorted(
            (s for s in signals if s["signal_id"] in priority_page_ids(signals, threshold)),
            key=lambda s: (-(s.get("priority") or 0.0), s["signal_id"]),
        )
        if threshold is not None
        else []
    )
    return {
        "r": inputs,
        "j": j,
        "L": {key: label(key, j) for key in LABELS},
        "lang": j.languages[0],
        "groups": groups,
        "batch_groups": batch_groups,
        "n_signals": len(signals),
        "n_product": sum(s["level"] == "product" for s in signals),
        "default_selection": inputs.full_pages is None,
        "pages": full,
        "review_first": review_first,
        "priority_threshold": threshold,
        "substance_pages": [p for p in pages if "chart" not in p],
        "clock": inputs.clock.to_dicts(),
        "overdue": inputs.clock.filter(pl.col("status") == "overdue").height if not inputs.clock.is_empty() else 0,
        "rules": [(name, rule.description, name in j.primary_rules) for name, rule in RULES.items()],
        "lineage": inputs.lineage.to_dicts(),
        "caveats": [
            ([loc[i] for lang in j.languages if (loc := CAVEATS_LOCAL.get(lang))], text)
            for i, text in enumerate(CAVEATS)
        ],
    }


def render_periodic_report(inputs: ReportInputs, context: dict | None = None) -> str:
    """The HTML document."""
    return render(inputs.jurisdiction.template, **(context or report_context(inputs)))


def render_periodic_report_typst(inputs: ReportInputs, context: dict | None = None) -> str:
    """The PDF's Typst source, from the same context as the HTML."""
    return render_typst(inputs.jurisdiction.pdf_template, **(context or report_context(inputs)))


# ---- PDF ------------------------------------------------------------------------------------------


class MissingFontsError(RuntimeError):
    pass


# the font families the PDF is set in, in order of preference (the Typst template names them too); CJK
# families also carry Latin glyphs, DejaVu Sans is the Latin fallback every Debian system has
LATIN_FAMILIES = ("DejaVu Sans",)
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP")


@lru_cache(maxsize=1)
def _font_files() -> dict[str, tuple[str, ...]]:
    """Font files per family as fontconfig knows them (``fc-list``); empty without fontconfig."""
    if shutil.which("fc-list") is None:
        return {}
    found = {}
    for family in (*LATIN_FAMILIES, *CJK_FAMILIES):
        out = subprocess.run(["fc-list", family, "file"], capture_output=True, text=True, check=False).stdout
        found[family] = tuple(sorted({line.split(":")[0].strip() for line in out.splitlines() if line.strip()}))
    return found


def cjk_fonts_available() -> bool:
    """True when fontconfig knows a CJK font of :data:`CJK_FAMILIES` (Debian: ``fonts-noto-cjk``)."""
    return any(_font_files().get(f) for f in CJK_FAMILIES)


def font_paths() -> list[str]:
    """The folders of the PDF's fonts, given to Typst explicitly (system fonts are not scanned: faster, and
    the same fonts wherever fontconfig finds them)."""
    return sorted({str(Path(f).parent) for files in _font_files().values() for f in files})


def require_fonts(jurisdiction: Jurisdiction) -> None:
    if jurisdiction.needs_cjk and not cjk_fonts_available():
        raise MissingFontsError(
            f"The {jurisdiction.code.upper()} report is bilingual ({' + '.join(jurisdiction.languages)}) and its PDF needs "
            "CJK fonts, but fontconfig lists none (fc-list :lang=zh). Install Debian's fonts-noto-cjk "
            "(`make system-deps`, or `apt-get install -y fonts-noto-cjk`) and re-run; the HTML report was written."
        )


def compile_pdf(source: str, path: Path, jurisdiction: Jurisdiction) -> Path:
    """Typeset Typst source to a PDF (atomically); refuse (clearly) when a CJK document has no CJK font to embed."""
    require_fonts(jurisdiction)
    import typst

    tmp = path.with_suffix(".pdf.part")
    # untagged, as the WeasyPrint PDFs were: the structure tree would add ~2.4 MB to a 45-page report
    pdf = typst.compile(source.encode("utf-8"), font_paths=font_paths(), ignore_system_fonts=True, pdf_tags=False)
    tmp.write_bytes(pdf)
    tmp.replace(path)
    return path


def write_pdf(inputs: ReportInputs, path: Path, context: dict | None = None) -> Path:
    """The periodic report as PDF, typeset by Typst from the Jinja2-generated Typst source."""
    require_fonts(inputs.jurisdiction)
    return compile_pdf(render_periodic_report_typst(inputs, context), path, inputs.jurisdiction)


def write_periodic_report(inputs: ReportInputs, folder: Path, *, pdf: bool = True) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    context = report_context(inputs)
    paths = {"html": folder / f"{inputs.stem}.html"}
    paths["html"].write_text(render_periodic_report(inputs, context), encoding="utf-8")
    if pdf:
        paths["pdf"] = write_pdf(inputs, folder / f"{inputs.stem}.pdf", context)
    return paths

"""The periodic report renders the same HTML from the same inputs: golden snapshots (run id and timestamps masked).

Regenerate after an intended change with ``PVTRACE_UPDATE_GOLDEN=1 pytest tests/reports/test_periodic_report.py``
and review the diff.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import periodic_report as pr
from reports.expedited import expedited_clock
from reports.jurisdictions import JURISDICTIONS
from reports.periodic_report import ReportInputs, mask_volatile, render_periodic_report
from reports.rendering import typst_escape

GOLDEN = Path(__file__).parent / "golden"
START, END = dt.date(2025, 11, 1), dt.date(2025, 11, 30)
FIGS = {
    "n11": 9,
    "e": 2.1,
    "prr": 4.3,
    "prr_lo95": 2.2,
    "prr_hi95": 8.4,
    "chi2": 21.7,
    "ror": 4.6,
    "ror_lo95": 2.3,
    "ror_hi95": 9.1,
    "ic": 1.9,
    "ic025": 0.9,
    "ic975": 2.6,
    "ebgm": 3.1,
    "eb05": 2.05,
    "eb95": 4.4,
}


def inputs(code: str, run_id: str = "run-1", generated_at: str = "2025-12-01T04:00:00+00:00") -> ReportInputs:
    signals = pl.DataFrame(
        [
            {
                "signal_id": "SIG-AAA",
                "level": "product",
                "product_id": "PRD-001",
                "product_name": "Huaxin Metformin",
                "ingredient": "metformin",
                "manufacturer_id": "MFR-1",
                "manufacturer_name": "Huaxin Pharma",
                "pt": "Lactic acidosis",
                "batch_id": None,
                "batch_lot": None,
                "methods": ["evans", "ema_sdr", "fda_mgps"],
                "figures": json.dumps(FIGS),
                "first_detected": dt.date(2025, 11, 30),
                "last_detected": dt.date(2025, 11, 30),
                "status": "new",
                "category": "new",
            },
            {
                "signal_id": "SIG-CCC",
                "level": "batch",
                "product_id": "PRD-001",
                "product_name": "Huaxin Metformin",
                "ingredient": None,
                "manufacturer_id": "MFR-1",
                "manufacturer_name": "Huaxin Pharma",
                "pt": "Lactic acidosis",
                "batch_id": "B-1",
                "batch_lot": "25071711",
                "methods": ["batch_eb", "batch_exact", "maxsprt"],
                "figures": json.dumps(
                    {
                        "n11": 4,
                        "e": 0.8,
                        "exposure": 8000,
                        "rr": 5.2,
                        "rr_lo": 1.7,
                        "rr_hi": 13.0,
                        "q_exact": 0.004,
                        "rr_shrunk": 3.3,
                        "rr_shrunk_lo": 1.2,
                        "rr_shrunk_hi": 7.9,
                        "maxsprt_llr": 5.1,
                        "maxsprt_cv": 3.4,
                        "maxsprt_crossed_on": "2025-10-13",
                    }
                ),
                "first_detected": dt.date(2025, 10, 13),
                "last_detected": dt.date(2025, 11, 30),
                "status": "new",
                "category": "ongoing",
            },
            {
                "signal_id": "SIG-BBB",
                "level": "ingredient",
                "product_id": None,
                "product_name": None,
                "ingredient": "metformin",
                "manufacturer_id": None,
                "manufacturer_name": None,
                "pt": "Nausea",
                "batch_id": None,
                "batch_lot": None,
                "methods": ["who_umc"],
                "figures": json.dumps({**FIGS, "ebgm": None, "eb05": None, "eb95": None}),
                "first_detected": dt.date(2025, 6, 30),
                "last_detected": dt.date(2025, 12, 31),
                "status": "closed",
                "category": "closed",
            },
        ]
    )
    signal_cases = pl.DataFrame(
        [
            {
                "signal_id": "SIG-AAA",
                "case_id": f"C-{i}",
                "initial_received": dt.date(2025, 9 + i % 3, 1 + i),
                "received_on": dt.date(2025, 9 + i % 3, 1 + i),
                "serious": i % 2 == 0,
                "seriousness": "hospitalisation" if i % 2 == 0 else "",
                "outcome": "recovered",
                "days_to_onset": i * 3,
            }
            for i in range(6)
        ]
        + [
            {
                "signal_id": "SIG-BBB",
                "case_id": "C-9",
                "initial_received": dt.date(2025, 5, 2),
                "received_on": dt.date(2025, 5, 2),
                "serious": False,
                "seriousness": "",
                "outcome": "unknown",
                "days_to_onset": None,
            }
        ]
        + [
            {
                "signal_id": "SIG-CCC",
                "case_id": f"C-{i}",
                "initial_received": dt.date(2025, 9 + i % 3, 1 + i),
                "received_on": dt.date(2025, 9 + i % 3, 1 + i),
                "serious": i % 2 == 0,
                "seriousness": "hospitalisation" if i % 2 == 0 else "",
                "outcome": "recovered",
                "days_to_onset": i * 3,
            }
            for i in range(4)
        ]
    )
    batch_row = {
        "signal_id": "SIG-AAA",
        "batch_id": "B-1",
        "lot_number": "25071711",
        "product_id": "PRD-001",
        "product_name": "Huaxin Metformin",
        "manufacturer_name": "Huaxin Pharma",
        "site": "Suzhou plant 2",
        "manufactured_on": dt.date(2025, 1, 5),
        "released_on": dt.date(2025, 2, 1),
        "expiry_on": dt.date(2027, 1, 31),
        "units_released": 12000,
        "recall_status": "none",
        "units_delivered": 8000,
        "regions": ["CN-BJ", "CN-SH"],
        "first_delivery": dt.date(2025, 2, 10),
        "last_delivery": dt.date(2025, 11, 20),
        "cold_chain_excursions": 2,
        "max_temp_c": 31.5,
        "linked_cases": 4,
        "serious_cases": 2,
        "cases_by_method": "exact_lot: 3, scanned_code: 1",
        "cases_per_10k_packs": 5.0,
    }
    batches = pl.DataFrame([batch_row, {**batch_row, "signal_id": "SIG-CCC"}])
    cases = pl.DataFrame(
        [
            {
                "case_id": "C-0",
                "initial_received": dt.date(2025, 11, 1),
                "country": "CN",
                "seriousness": "death",
                "outcome": "fatal",
                "fatal": True,
                "products": "Huaxin Metformin",
                "lots": "25071711",
                "reactions": "Lactic acidosis",
            }
        ]
    )
    j = JURISDICTIONS[code]
    return ReportInputs(
        jurisdiction=j,
        period_start=START,
        period_end=END,
        data_lock_point=END,
        run_id=run_id,
        generated_at=generated_at,
        code_version="0.1.0+test",
        summary={
            "products": 8,
            "manufacturers": 2,
            "cases_cumulative": 120,
            "cases_new": 11,
            "serious_new": 3,
            "fatal_new": 1,
            "serious_cumulative": 30,
            "packs_delivered": 9000,
            "patients": 4000,
            "all_cases": 400,
            "duplicates_flagged": 2,
            "first_received": dt.date(2025, 1, 3),
            "last_received": END,
            "batches": 40,
            "deliveries": 9000,
            "supply_events": 700,
            "quarantine": [{"stage": "cases", "reason": "bad_json", "n": 3}],
        },
        signals=signals,
        signal_cases=signal_cases,
        batches=batches,
        clock=expedited_clock(cases, j, END),
        lineage=pl.DataFrame(
            {"kind": ["cases"], "path": ["cases/cases_2025-11.jsonl"], "sha256": ["ab" * 32], "n_bytes": [1234]}
        ),
        e2b={"file": f"e2b_icsr_{code}_2025-11.xml", "status": "valid", "cases": 1, "errors": []},
        files={"clock": f"expedited_clock_{code}_2025-11.csv"},
    )


@pytest.mark.parametrize("code", ["nmpa", "fda"])
def test_golden_html(code):
    html = mask_volatile(render_periodic_report(inputs(code)))
    path = GOLDEN / f"periodic_report_{code}.html"
    if os.environ.get("PVTRACE_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(html, encoding="utf-8")
    assert html == path.read_text(encoding="utf-8"), (
        f"{path.name} changed: re-run with PVTRACE_UPDATE_GOLDEN=1 and review"
    )


def test_only_run_id_and_timestamps_differ_between_runs():
    a = render_periodic_report(inputs("nmpa"))
    b = render_periodic_report(inputs("nmpa", run_id="run-2", generated_at="2026-01-01T04:00:00+00:00"))
    assert a != b and mask_volatile(a) == mask_volatile(b)
    assert "run-1" not in mask_volatile(a)


def test_content_of_a_bilingual_report():
    html = render_periodic_report(inputs("nmpa"))
    for text in (
        "摘要 / Summary",
        "数据锁定点 / Data lock point",
        "新信号 / New signals",
        "已关闭信号 / Closed signals",
        "SIG-AAA",
        "SIG-BBB",
        "SIG-CCC",
        'lot <b class="id">25071711</b>',
        "5.20 (1.70–13.00)",
        "crossed 2025-10-13",
        "25071711",
        "Suzhou plant 2",
        "exact_lot: 3, scanned_code: 1",
        "31.5 °C",
        "Deaths immediately",
        "overdue",
        "not proof of causation",
        "报告不构成因果关系的证明",
        "ababab",
        "<svg",
    ):
        assert text in html, text
    # PRR, ROR, IC, EBGM with intervals for the new signal
    for text in ("4.30 (2.20–8.40)", "4.60 (2.30–9.10)", "1.90 (0.90–2.60)", "3.10 (2.05–4.40)"):
        assert text in html, text


def _pdftext(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: make system-deps")
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("code", ["nmpa", "fda"])
def test_pdf_is_typeset_from_the_same_context(code, tmp_path):
    if code == "nmpa" and not pr.cjk_fonts_available():
        pytest.skip("no CJK font (fonts-noto-cjk): make system-deps")
    path = pr.write_pdf(inputs(code), tmp_path / "r.pdf")
    text = " ".join(_pdftext(path).split())
    assert path.read_bytes().startswith(b"%PDF") and not (tmp_path / "r.pdf.part").exists()
    for needle in (
        "SIG-AAA",
        "SIG-BBB",
        "SIG-CCC",
        "25071711",
        "Suzhou plant 2",
        "4.30 (2.20–8.40)",
        "3.10 (2.05–4.40)",
        "5.20 (1.70–13.00)",
        "crossed 2025-10-13",
        "exact_lot: 3, scanned_code: 1",
        "31.5 °C",
        "overdue",
        "not proof of causation",
        "Data lock point",
        "PVT-PSR-" + code.upper() + "-202511",
    ):
        assert needle in text, needle
    if code == "nmpa":
        assert "摘要 / Summary" in text and "报告不构成因果关系的证明" in text  # CJK glyphs embedded, not tofu


def test_full_pages_can_be_chosen_by_the_caller():
    """A ranking (e.g. a priority score) picks which signals get a full page; the others become table rows."""
    ctx = pr.report_context(inputs("fda"))
    assert [p["signal"]["signal_id"] for p in ctx["pages"]] == ["SIG-AAA", "SIG-CCC"]
    assert [p["signal"]["signal_id"] for p in ctx["substance_pages"]] == ["SIG-BBB"]
    chosen = replace(inputs("fda"), full_pages=frozenset({"SIG-BBB"}))
    ctx = pr.report_context(chosen)
    assert [p["signal"]["signal_id"] for p in ctx["pages"]] == ["SIG-BBB"]
    assert sorted(p["signal"]["signal_id"] for p in ctx["substance_pages"]) == ["SIG-AAA", "SIG-CCC"]
    html = render_periodic_report(chosen)
    assert "Other signals" in html and "Huaxin Metformin lot 25071711 / Lactic acidosis" in html
    assert "Other signals" in pr.render_periodic_report_typst(chosen)


def prioritised(code: str, threshold: float = 0.4) -> ReportInputs:
    """The fixture with priority scores: the batch signal highest, the closed substance signal next (its status
    changed in the period), the product signal below the threshold."""
    base = inputs(code)
    scores = {"SIG-CCC": 0.72, "SIG-BBB": 0.2, "SIG-AAA": 0.31}
    signals = base.signals.with_columns(
        pl.col("signal_id").replace_strict(scores, return_dtype=pl.Float64).alias("priority"),
        *(pl.lit(0.5).alias(f"priority_{c}") for c in ("strength", "batch", "seriousness", "recency")),
        *(pl.lit(0.25).alias(f"priority_{c}") for c in ("completeness", "reporter")),
        (pl.col("signal_id") == "SIG-BBB").alias("status_changed"),
        pl.when(pl.col("signal_id") == "SIG-BBB")
        .then(pl.lit(["25071711 (Huaxin Metformin)"]))
        .otherwise(pl.lit(None, dtype=pl.List(pl.String)))
        .alias("tested_lots"),
    )
    rows = signals.to_dicts()
    return replace(
        base,
        signals=signals,
        full_pages=frozenset(pr.priority_page_ids(rows, threshold)),
        priority_threshold=threshold,
    )


def test_priority_selects_full_pages_and_leads_the_summary():
    """Full pages for the signals at or above the threshold or with a status change, highest priority first; the
    summary lists them before anything else; every signal stays in the tables."""
    chosen = prioritised("fda")
    assert chosen.full_pages == {"SIG-CCC", "SIG-BBB"}
    ctx = pr.report_context(chosen)
    assert [s["signal_id"] for s in ctx["review_first"]] == ["SIG-CCC", "SIG-BBB"]
    assert [p["signal"]["signal_id"] for p in ctx["pages"]] == ["SIG-CCC", "SIG-BBB"]
    assert [p["signal"]["signal_id"] for p in ctx["substance_pages"]] == ["SIG-AAA"]
    html = render_periodic_report(chosen)
    summary = html[html.index("1.1 Signals to review first") : html.index("2. ")]
    assert summary.index("SIG-CCC") < summary.index("SIG-BBB") and "SIG-AAA" not in summary
    assert 'lot <b class="id">25071711</b>' in summary and "0.72" in summary and "(status changed)" in summary
    # a substance signal names the lot a batch-level test singles out for its event
    assert 'a batch-level test singles out lot <b class="id">25071711 (Huaxin Metformin)</b>' in summary
    tables = html[html.index("3.1 ") : html.index("4. ")]
    assert all(sid in tables for sid in ("SIG-AAA", "SIG-BBB", "SIG-CCC"))
    typ = pr.render_periodic_report_typst(chosen)
    assert typ.index("1.1 Signals to review first") < typ.index(typst_escape("SIG-CCC")) < typ.index("= 2. ")
    # a higher threshold keeps only the status change
    assert pr.priority_page_ids(prioritised("fda").signals.to_dicts(), 0.9) == {"SIG-BBB"}


def test_priority_threshold_puts_the_batch_on_the_first_page_of_the_pdf(tmp_path):
    path = pr.write_pdf(prioritised("fda"), tmp_path / "r.pdf")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: make system-deps")
    first = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Signals to review first" in first and "25071711" in first and "SIG-CCC" in first


def test_chart_geometry_has_every_month_and_whole_ticks():
    ctx = pr.report_context(inputs("fda"))
    chart = next(p["chart"] for p in ctx["pages"] if p["signal"]["signal_id"] == "SIG-AAA")
    months = [m for m, _, _ in chart["bars"]]
    assert months[0] == "2025-01" and months[-1] == "2025-11" and len(months) == 11
    assert sum(ns + se for _, ns, se in chart["bars"]) == 6 and sum(se for _, _, se in chart["bars"]) == 3
    assert chart["ticks"][0] == 0 and chart["ticks"][-1] == chart["ymax"] >= max(ns + se for _, ns, se in chart["bars"])


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40))
def test_any_text_is_literal_in_typst(text):
    """Escaped values can never open markup, code or comments: the PDF shows exactly the text given."""
    import typst

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    source = f'#set text(font: "DejaVu Sans Mono")\n#set smartquote(enabled: false)\n[{typst_escape(text)}]|END'
    pdf = typst.compile(source.encode(), font_paths=pr.font_paths(), ignore_system_fonts=True, pdf_tags=False)
    got = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    assert " ".join(got.split()) == " ".join(f"[{text}]|END".split())

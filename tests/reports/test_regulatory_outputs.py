"""Jurisdiction profiles, the expedited clock, the eRMR CSV, charts and the PDF font guard — no database."""

from __future__ import annotations

import csv
import datetime as dt

import polars as pl
import pytest

from reports import periodic_report
from reports.charts import case_chart, monthly_case_counts
from reports.ermr import write_ermr
from reports.expedited import expedited_clock, write_clock_csv
from reports.jurisdictions import JURISDICTION_CODES, JURISDICTIONS, label
from signals.disproportionality import score
from signals.rules import RULES, apply_rules

DLP = dt.date(2025, 11, 30)


def test_four_profiles_with_known_rules_and_languages():
    assert JURISDICTION_CODES == ("nmpa", "ema", "fda", "pmda")
    for j in JURISDICTIONS.values():
        assert set(j.primary_rules) <= set(RULES)
        assert j.clock.serious_days > 0 and j.e2b_receiver
    assert JURISDICTIONS["nmpa"].languages == ("zh", "en") and JURISDICTIONS["nmpa"].needs_cjk
    assert not JURISDICTIONS["ema"].needs_cjk
    assert label("summary", JURISDICTIONS["nmpa"]) == "摘要 / Summary"
    assert label("summary", JURISDICTIONS["fda"]) == "Summary"


def cases() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "case_id": "C-3",
                "initial_received": dt.date(2025, 11, 25),
                "country": "CN",
                "seriousness": "death",
                "outcome": "fatal",
                "fatal": True,
                "products": "P",
                "lots": "L1",
                "reactions": "R",
            },
            {
                "case_id": "C-1",
                "initial_received": dt.date(2025, 11, 2),
                "country": "CN",
                "seriousness": "hospitalisation",
                "outcome": "recovered",
                "fatal": False,
                "products": "P",
                "lots": None,
                "reactions": "R",
            },
            {
                "case_id": "C-2",
                "initial_received": dt.date(2025, 11, 20),
                "country": "CN",
                "seriousness": "hospitalisation",
                "outcome": "recovering",
                "fatal": False,
                "products": "P",
                "lots": "L2",
                "reactions": "R",
            },
        ]
    )


def test_clock_nmpa_deaths_immediately_serious_15_days(tmp_path):
    clock = expedited_clock(cases(), JURISDICTIONS["nmpa"], DLP)
    rows = {r["case_id"]: r for r in clock.to_dicts()}
    assert rows["C-3"]["days_allowed"] == 0 and rows["C-3"]["due_date"] == dt.date(2025, 11, 25)
    assert rows["C-3"]["status"] == "overdue"
    assert rows["C-1"]["due_date"] == dt.date(2025, 11, 17) and rows["C-1"]["status"] == "overdue"
    assert rows["C-2"]["due_date"] == dt.date(2025, 12, 5) and rows["C-2"]["status"] == "due"
    assert rows["C-2"]["days_left_at_dlp"] == 5
    assert clock["case_id"].to_list() == ["C-1", "C-3", "C-2"]  # by due date
    path = write_clock_csv(clock, tmp_path / "clock.csv")
    got = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [r["status"] for r in got] == ["overdue", "overdue", "due"] and got[1]["fatal"] == "true"


def test_clock_ema_gives_deaths_15_days_and_respects_submissions():
    clock = expedited_clock(cases(), JURISDICTIONS["ema"], DLP, submitted=frozenset({"C-1"}))
    rows = {r["case_id"]: r for r in clock.to_dicts()}
    assert rows["C-3"]["days_allowed"] == 15 and rows["C-3"]["status"] == "due"
    assert rows["C-1"]["status"] == "submitted"


def test_ermr_one_csv_per_substance_with_sdr(tmp_path):
    counts = pl.DataFrame(
        {
            "ingredient": ["metformin", "metformin", "adalimumab"],
            "pt": ["Lactic acidosis", "Nausea", "Rash"],
            "new_count": [2, 0, 1],
            "total_count": [12, 5, 3],
            "new_serious": [2, 0, 0],
            "total_serious": [9, 0, 1],
            "new_fatal": [1, 0, 0],
            "total_fatal": [1, 0, 0],
            "n1_": [40, 40, 20],
            "n_1": [20, 200, 10],
            "n": [1000, 1000, 1000],
            "additional_monitoring": [False, False, True],
        }
    )
    pairs = counts.rename({"ingredient": "drug", "pt": "event"}).with_columns(n11=pl.col("total_count"))
    scored = apply_rules(score(pairs), rules=["ema_sdr"]).rename({"drug": "ingredient", "event": "pt"})
    paths = write_ermr(scored, tmp_path, period=(dt.date(2025, 11, 1), DLP))
    assert [p.name for p in paths] == ["ermr_adalimumab_2025-11.csv", "ermr_metformin_2025-11.csv"]
    met = list(csv.DictReader(paths[1].open(encoding="utf-8")))
    assert [r["pt"] for r in met] == ["Lactic acidosis", "Nausea"]
    assert met[0]["sdr"] == "Y" and float(met[0]["ror_lower_95"]) > 1 and met[0]["new_fatal"] == "1"
    assert met[1]["sdr"] == "N"
    ada = list(csv.DictReader(paths[0].open(encoding="utf-8")))
    assert ada[0]["additional_monitoring"] == "Y"


def test_chart_is_deterministic_svg_with_every_month():
    df = pl.DataFrame({"initial_received": [dt.date(2025, 3, 9), dt.date(2025, 5, 1)], "serious": [True, False]})
    counts = monthly_case_counts(df, dt.date(2025, 1, 5), DLP)
    assert counts.height == 2 * 11 and counts["cases"].sum() == 2
    chart = case_chart(counts)
    assert chart == case_chart(counts)
    months = [m for m, _, _ in chart["bars"]]
    assert months[0] == "2025-01" and months[-1] == "2025-11" and len(months) == 11
    assert sum(ns + se for _, ns, se in chart["bars"]) == 2 and chart["ymax"] >= 1 and chart["ticks"][0] == 0


def test_pdf_refuses_a_cjk_document_without_cjk_fonts(tmp_path, monkeypatch):
    monkeypatch.setattr(periodic_report, "cjk_fonts_available", lambda: False)
    with pytest.raises(periodic_report.MissingFontsError, match="fonts-noto-cjk"):
        periodic_report.compile_pdf("摘要", tmp_path / "x.pdf", JURISDICTIONS["nmpa"])
    assert not (tmp_path / "x.pdf").exists()
    periodic_report.require_fonts(JURISDICTIONS["ema"])  # English only: no CJK font needed

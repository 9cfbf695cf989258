"""`pvtrace evaluate --study` wiring: a tiny study writes the CSV, charts and study.md."""

import csv

import pytest

from assets.cli import main
from assets.study import run_study
from signals.study import Scenario


def test_tiny_study_writes_csv_and_charts(tmp_path):
    sc = [Scenario(1.0, 10_000), Scenario(3.0, 10_000), Scenario(10.0, 10_000)]
    out = run_study(str(tmp_path), replicates=8, seed=1, null_multiplier=2, quiet=True, scenarios=sc)
    with open(out / "operating_characteristics.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {
        "scenario",
        "rate_ratio",
        "exposure",
        "method",
        "detected_share",
        "median_delay_days",
        "p90_delay_days",
        "oracle_median_delay_days",
        "false_alarm_rate",
    }
    assert need <= set(rows[0])
    assert {r["rate_ratio"] for r in rows} == {"1.0", "3.0", "10.0"}
    for name in ("power_vs_rate_ratio.svg", "delay_vs_rate_ratio.svg"):
        svg = (out / name).read_text(encoding="utf-8")
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "oracle" in svg
    assert "maxsprt_group" in (out / "study.md").read_text(encoding="utf-8")


def test_cli_rejects_zero_replicates():
    with pytest.raises(SystemExit, match="replicates"):
        main(["evaluate", "--study", "--replicates", "0"])

"""`pvtrace detect` on a warehouse filled by `pvtrace ingest` alone: a FAERS quarter to periodic reports (issue 17).

Runs in a subprocess: the monthly report partitions are defined when assets.reporting is imported, and this
quarter (2017) is before the demo's first month."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

Q2017 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faers" / "faers_ascii_2017q2.zip"
pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not Q2017.exists(), reason="../shared/data not available")]


def test_faers_quarter_ingest_then_detect(tmp_path):
    wh, out = tmp_path / "w.duckdb", tmp_path / "out"
    cli = [sys.executable, "-m", "assets.cli"]
    subprocess.run([*cli, "ingest", "--format", "faers", str(Q2017), "--warehouse", str(wh)], check=True)
    run = subprocess.run(
        [*cli, "detect", "--warehouse", str(wh), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PVTRACE_E2B_SENDER"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "E2B(R3) batches skipped" in run.stdout  # no sender configured: never invented
    pdfs = sorted(p.name for p in (out / "reports").glob("periodic_signal_report_*_2017-06.pdf"))
    assert len(pdfs) == 4, pdfs
    con = duckdb.connect(str(wh), read_only=True)
    # ingredient-level scores exist; the product level is empty (no product catalogue), not an error
    levels = dict(con.execute("SELECT level, count(*) FROM disproportionality_score GROUP BY level").fetchall())
    assert levels.get("ingredient", 0) > 0 and levels.get("product", 0) == 0

"""``pvtrace ingest`` in-process: the JSON counts are the last line; bad input exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assets.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FAERS = DATA / "faers" / "faers_ascii_2017q2.zip"

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not FAERS.exists(), reason="../shared/data not available")]


def test_cli_json_is_the_last_line(tmp_path, capsys):
    code = main(["ingest", "--format", "faers", str(FAERS), "--warehouse", str(tmp_path / "w.duckdb"), "--json"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    counts = json.loads(last)
    assert {k: counts[k] for k in ("cases", "case_versions", "drugs", "reactions", "lots", "quarantined")} == {
        "cases": 100,
        "case_versions": 100,
        "drugs": 328,
        "reactions": 286,
        "lots": 31,
        "quarantined": 0,
    }
    assert counts["unmapped_drugs"]["rows"] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--format", "faers", "/no/such/path.zip"], "does not exist"),
        (["--format", "medwatch", str(FAERS)], "unknown format"),
        (["--format", "vaers", str(FAERS)], "no VAERS files found"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, argv, message):
    code = main(["ingest", *argv, "--warehouse", str(tmp_path / "w.duckdb"), "--json"])
    assert code != 0
    assert message in capsys.readouterr().err

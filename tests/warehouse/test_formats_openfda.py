"""openFDA drug-event JSON ingest: the real sample reports, plus a synthetic API download with
harmonised ``openfda`` fields, batch numbers and broken reports."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from warehouse.inputs.regulator.ingest import ingest
from warehouse.linkage.lot_rules import normalise_lot

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openfda"

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not DATA.exists(), reason="../shared/data not available")]


@pytest.mark.parametrize("name", ["event.preannotation.json", "event.postannotation.json"])
def test_sample_report_counts(tmp_path, name):
    doc = json.loads((DATA / name).read_text())
    counts = ingest(DATA / name, "openfda", tmp_path / "w.duckdb")
    assert counts["cases"] == counts["case_versions"] == 1
    assert counts["drugs"] == len(doc["patient"]["drug"])
    assert counts["reactions"] == len(doc["patient"]["reaction"])
    assert counts["lots"] == sum(bool(normalise_lot(d.get("drugbatchnumb"))) for d in doc["patient"]["drug"])
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    row = con.execute("SELECT case_id, sex, age_years, serious, seriousness FROM latest_case").fetchone()
    assert row == (
        f"OPENFDA-{doc['safetyreportid']}",
        "F",
        62.0,
        True,
        ["disability", "hospitalisation", "other_medically_important"],
    )


def test_api_download_with_harmonised_fields_and_bad_reports(tmp_path):
    harmonised = [json.loads(line) for line in (DATA / "harmonized.small.json").read_text().splitlines()[:50]]
    brand = next(h for h in harmonised if h.get("brand_name") and h.get("substance_name"))
    reports = [
        {
            "safetyreportid": "1",
            "safetyreportversion": "2",
            "receivedate": "20200105",
            "serious": "1",
            "seriousnessdeath": "1",
            "patient": {
                "patientsex": "1",
                "patientonsetage": "7",
                "patientonsetageunit": "800",
                "reaction": [{"reactionmeddrapt": "Rash", "reactionoutcome": "1"}, {"reactionoutcome": "6"}],
                "drug": [
                    {
                        "drugcharacterization": "1",
                        "medicinalproduct": "ZANTAC",
                        "drugbatchnumb": "LOT# ab12",
                        "openfda": {"substance_name": ["RANITIDINE HYDROCHLORIDE"], "generic_name": ["RANITIDINE"]},
                    },
                    {"drugcharacterization": "2", "medicinalproduct": brand["brand_name"], "drugbatchnumb": "UNK"},
                    {"medicinalproduct": "NO ROLE"},
                ],
            },
        },
        {"receivedate": "20200105", "patient": {}},  # no id
        {"safetyreportid": "3", "receivedate": "2020", "patient": {}},  # partial date
    ]
    path = tmp_path / "drug-event-0001-of-0001.json"
    path.write_text(json.dumps({"meta": {}, "results": reports}))
    counts = ingest(path, "openfda", tmp_path / "w.duckdb", harmonisation=DATA / "harmonized.small.json")
    assert counts["cases"] == 1 and counts["drugs"] == 2 and counts["reactions"] == 1 and counts["lots"] == 1
    assert counts["quarantine_reasons"] == {"unparsable_report": 2, "missing_pt": 1, "invalid_role": 1}
    assert counts["ingredient_mapping"] == {"openfda_harmonisation": 1, "openfda_substance_name": 1}
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    drugs = con.execute("SELECT ingredient, lot_reported FROM case_drug ORDER BY drug_seq").fetchall()
    assert drugs[0] == ("ranitidine hydrochloride", "LOT# ab12")
    assert drugs[1][1] is None  # UNK is junk
    assert con.execute("SELECT outcome, age_years FROM latest_case").fetchone() == ("fatal", 70.0)

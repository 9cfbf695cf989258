"""E2B(R3): FDA's example instances round-trip through our reader and writer; what we write validates against the ICH XSD."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from lxml import etree

from reports.e2b.reader import read_batch
from reports.e2b.validation import default_schema_path, validate
from reports.e2b.writer import build_batch, to_xml, write_validated
from reports.jurisdictions import JURISDICTIONS

INSTANCES = Path(__file__).resolve().parents[3] / "shared" / "data" / "e2b_r3" / "instances_fda"
FDA_FILES = sorted(INSTANCES.glob("FAERS2022Scenario*.xml"))
HL7 = {"h": "urn:hl7-org:v3"}
CREATED = dt.datetime(2025, 11, 30, 23, 59, 59, tzinfo=dt.UTC)

realdata = [pytest.mark.realdata, pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")]


def test_the_vendored_ich_schema_is_the_default_and_compiles(monkeypatch):
    monkeypatch.delenv("PVTRACE_E2B_SCHEMA", raising=False)
    path = default_schema_path()
    assert path.is_file() and "reports/e2b/schema" in path.as_posix()
    assert (path.parents[2] / "NOTICE.md").is_file()  # ICH's acknowledgement travels with the copy


def rows() -> dict[str, pl.DataFrame]:
    """Two serious cases as warehouse.queries.report_queries.icsr_rows returns them: one linked lot, one fatal without a lot."""
    cases = pl.DataFrame(
        [
            {
                "case_id": "PVT-CN-2025-000001",
                "version": 2,
                "initial_received": dt.date(2025, 11, 3),
                "received_on": dt.date(2025, 11, 10),
                "source": "hcp",
                "reporter_qualification": "physician",
                "country": "CN",
                "age_years": 67.0,
                "sex": "F",
                "serious": True,
                "seriousness": ["hospitalisation"],
                "outcome": "recovering",
            },
            {
                "case_id": "PVT-CN-2025-000002",
                "version": 1,
                "initial_received": dt.date(2025, 11, 20),
                "received_on": dt.date(2025, 11, 20),
                "source": "patient_app",
                "reporter_qualification": "consumer",
                "country": "CN",
                "age_years": None,
                "sex": None,
                "serious": True,
                "seriousness": ["death"],
                "outcome": "fatal",
            },
        ]
    )
    drug = {
        "product_name_reported": None,
        "ndc": None,
        "gtin": None,
        "nmpa_drug_code": "8847033",
        "route": "oral",
        "form": "tablet",
    }
    drugs = pl.DataFrame(
        [
            {
                **drug,
                "case_id": "PVT-CN-2025-000001",
                "drug_seq": 0,
                "role": "suspect",
                "product_name": "Huaxin Metformin",
                "ingredient": "metformin",
                "manufacturer_name": "Huaxin Pharma",
                "start_date": dt.date(2025, 10, 1),
                "linked_lot": "25071711",
                "lot_reported": "L:25071711",
                "link_method": "normalised_lot",
            },
            {
                **drug,
                "case_id": "PVT-CN-2025-000001",
                "drug_seq": 1,
                "role": "concomitant",
                "product_name": "Anlixin",
                "ingredient": "amlodipine",
                "manufacturer_name": None,
                "start_date": None,
                "linked_lot": None,
                "lot_reported": None,
                "link_method": None,
            },
            {
                **drug,
                "case_id": "PVT-CN-2025-000002",
                "drug_seq": 0,
                "role": "suspect",
                "product_name": "Huaxin Metformin",
                "ingredient": "metformin",
                "manufacturer_name": "Huaxin Pharma",
                "start_date": None,
                "linked_lot": None,
                "lot_reported": None,
                "link_method": None,
            },
        ]
    )
    reactions = pl.DataFrame(
        [
            {
                "case_id": "PVT-CN-2025-000001",
                "reaction_seq": 1,
                "pt": "Lactic acidosis",
                "soc": None,
                "onset_date": dt.date(2025, 11, 1),
                "meddra_code": None,
                "meddra_version": None,
            },
            {
                "case_id": "PVT-CN-2025-000002",
                "reaction_seq": 1,
                "pt": "Hepatotoxicity",
                "soc": None,
                "onset_date": None,
                "meddra_code": "10019851",
                "meddra_version": "27.0",
            },
        ]
    )
    return {"cases": cases, "drugs": drugs, "reactions": reactions}


@pytest.mark.parametrize("path", [pytest.param(p, marks=realdata) for p in FDA_FILES], ids=lambda p: p.name)
def test_fda_instances_round_trip(path):
    first = read_batch(path)
    assert first.icsrs and first.icsrs[0].safety_report_id
    xml = to_xml(first)
    assert validate(xml) == []
    assert read_batch(xml) == first


@pytest.mark.realdata
@pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")
def test_fda_reader_sees_lots_roles_and_meddra_codes():
    batch = read_batch(INSTANCES / "FAERS2022Scenario1.xml")
    icsr = batch.icsrs[0]
    assert icsr.safety_report_id == "US-APHARMA-8744554B"
    assert [d.role for d in icsr.drugs] == ["1", "1", "2"]
    assert icsr.drugs[0].lots == ("UNKNOWN",)
    assert [r.meddra_code for r in icsr.reactions] == ["10027940", "10009896"]
    assert batch.receiver == "ZZFDA"


def test_written_batch_is_schema_valid_and_carries_the_linked_lot(tmp_path):
    batch = build_batch(rows(), jurisdiction=JURISDICTIONS["nmpa"], period_label="2025-11", created=CREATED)
    result = write_validated(batch, tmp_path / "e2b_icsr_nmpa_2025-11.xml")
    assert result.valid and result.errors == [] and result.path.exists()
    doc = etree.parse(str(result.path))
    assert validate(doc.getroot()) == []
    lots = doc.xpath("//h:productInstanceInstance/h:lotNumberText/text()", namespaces=HL7)
    assert lots == ["25071711"]  # the linked batch's lot, not the lot as typed ("L:25071711")
    again = read_batch(result.path)
    assert again == batch
    first, second = again.icsrs
    assert first.reactions[0].term == "Lactic acidosis" and first.reactions[0].meddra_code is None
    assert second.reactions[0].meddra_code == "10019851"  # a code the source supplied is kept
    assert second.reactions[0].seriousness == ("death",) and second.reactions[0].outcome == "5"
    assert batch.missing_meddra_codes == 1
    # privacy: initials masked, no free text from the case
    assert doc.xpath("//h:player1/h:name/@nullFlavor", namespaces=HL7) == ["MSK", "MSK"]


def test_same_data_gives_the_same_bytes():
    a = to_xml(build_batch(rows(), jurisdiction=JURISDICTIONS["ema"], period_label="2025-11", created=CREATED))
    b = to_xml(build_batch(rows(), jurisdiction=JURISDICTIONS["ema"], period_label="2025-11", created=CREATED))
    assert a == b


def test_an_invalid_file_is_reported_not_shipped(tmp_path, monkeypatch):
    from reports.e2b import writer

    batch = build_batch(rows(), jurisdiction=JURISDICTIONS["fda"], period_label="2025-11", created=CREATED)
    final = tmp_path / "e2b_icsr_fda_2025-11.xml"
    final.write_bytes(b"<old/>")
    good = writer.to_xml
    # break the element order the schema requires: creationTime before id
    monkeypatch.setattr(writer, "to_xml", lambda b: good(b).replace(b"<creationTime", b"<bogus/><creationTime", 1))
    result = writer.write_validated(batch, final)
    assert not result.valid and result.errors
    assert not final.exists()
    assert result.path == tmp_path / "rejected" / final.name and result.path.exists()
    assert (tmp_path / "rejected" / f"{final.name}.errors.txt").read_text().startswith("line ")

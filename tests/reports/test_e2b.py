"""E2B(R3): what we write is schema-valid and passes its regional profile's business rules; FDA's own example
instances pass the same validator; the sender comes from configuration and the clock from the run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from lxml import etree

from reports.e2b.rules import evaluate
from reports.e2b.sender import DEMO_SENDER, SenderConfigError, load_sender, parse_sender
from reports.e2b.terminology import MeddraCoding
from reports.e2b.validation import default_schema_path, validate
from reports.e2b.writer import build_batch, to_xml, write_validated
from reports.jurisdictions import JURISDICTIONS
from warehouse.inputs.regulator.e2b import parse_icsr

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


SENDER = parse_sender(
    {
        "identifier": "TESTSENDER01",
        "sender_type": "1",
        "organisation": "Test Pharma (test fixture)",
        "department": "Drug Safety",
        "title": "Dr",
        "given_name": "Ada",
        "family_name": "Fixture",
        "street": "1 Test Road",
        "city": "Testville",
        "state": "TS",
        "postcode": "12345",
        "country": "US",
        "telephone": "+1-555-0199",
        "fax": "+1-555-0198",
        "email": "safety@example.org",
    }
)
# the same test sender with the regional settings a PMDA / NMPA submission needs (invented identifiers)
CONFIGURED = parse_sender(
    {
        **SENDER.__dict__,
        "receiver_pmda": "PMDA-GW-TEST",
        "receiver_nmpa": "NMPA-GW-TEST",
        "nmpa_holder_id": "MAH-TEST-1",
    }
)
# invented codes, not MedDRA content (MedDRA codes are eight digits; the 9xxxxxxx range is unused by MedDRA LLTs)
MEDDRA = MeddraCoding("27.0", {"Lactic acidosis": "90000001", "Hepatotoxicity": "90000002"})


def batch_for(code: str, meddra: MeddraCoding | None = MEDDRA, sender=SENDER):
    return build_batch(
        rows(), jurisdiction=JURISDICTIONS[code], period_label="2025-11", created=CREATED, sender=sender, meddra=meddra
    )


def icsrs(xml: bytes) -> list[tuple[dict, list[dict], list[dict], bool]]:
    """The written ICSRs as the warehouse's E2B reader sees them (the one E2B parser of the project)."""
    root = etree.fromstring(xml)
    return [parse_icsr(m, "written.xml") for m in root.findall("h:PORR_IN049016UV", HL7)]


@pytest.mark.parametrize("code", ["fda", "ema", "pmda", "nmpa"])
def test_written_batch_is_schema_valid_and_passes_its_profile(code, tmp_path):
    batch = batch_for(code)
    result = write_validated(batch, tmp_path / f"e2b_icsr_{code}_2025-11.xml", clock=CREATED)
    assert result.valid and result.errors == [] and result.path.exists(), result.errors
    status = result.status(batch)
    assert status["status"] == "valid" and status["rule_counts"]["reject"] == 0
    failed = {r for per in status["results"].values() for r, v in per.items() if v.startswith("fail")}
    # without the receiver / holder settings PMDA and NMPA files say what to configure
    assert failed == {"pmda": {"PVT-REGIONAL", "PVT-RECEIVER"},
                      "nmpa": {"PVT-REGIONAL", "PVT-RECEIVER", "NMPA-C.1.CN.3"}}.get(code, set())  # fmt: skip
    assert status["gateway_ready"] is (code in ("fda", "ema"))
    # with them, only the regional elements PV Trace cannot write stand between the file and a gateway
    batch = batch_for(code, sender=CONFIGURED)
    status = write_validated(batch, tmp_path / f"e2b_icsr_{code}_2025-11.xml", clock=CREATED).status(batch)
    failed = {r for per in status["results"].values() for r, v in per.items() if v.startswith("fail")}
    assert failed == ({"PVT-REGIONAL"} if code in ("pmda", "nmpa") else set())
    assert status["gateway_ready"] is (code in ("fda", "ema"))


def test_without_terminology_the_file_ships_but_is_not_gateway_ready(tmp_path):
    batch = batch_for("fda", meddra=None)
    result = write_validated(batch, tmp_path / "e2b_icsr_fda_2025-11.xml", clock=CREATED)
    status = result.status(batch)
    assert result.valid and result.path == tmp_path / "e2b_icsr_fda_2025-11.xml"
    assert status["gateway_ready"] is False
    assert status["not_gateway_ready"] == ["not gateway-ready: no MedDRA terminology loaded (E.i.2.1a/b not coded)"]
    first = next(iter(status["results"].values()))
    assert first["PVT-MEDDRA-TERMINOLOGY"].startswith("fail") and first["ICH-E.i.2.1"] == "n/a"
    assert batch.missing_meddra_codes == 1  # the source-coded reaction keeps its code


def test_receivers_sender_and_regional_elements_come_from_profile_and_config():
    fda = etree.fromstring(to_xml(batch_for("fda")))
    assert fda.xpath("h:receiver/h:device/h:id/@extension", namespaces=HL7) == ["ZZFDA"]
    assert set(fda.xpath("h:PORR_IN049016UV/h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"CDER"}
    assert set(fda.xpath("//h:sender/h:device/h:id/@extension", namespaces=HL7)) == {"TESTSENDER01"}
    assert fda.xpath("//h:telecom/@value", namespaces=HL7)[:3] == [
        "tel:+1-555-0199",
        "fax:+1-555-0198",
        "mailto:safety@example.org",
    ]
    assert len(fda.xpath("//h:observationEvent/h:code[@code='C54588']", namespaces=HL7)) == 2  # FDA.C.1.7.1
    ema = etree.fromstring(to_xml(batch_for("ema")))
    assert set(ema.xpath("//h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"EVHUMAN"}
    assert not ema.xpath("//h:observationEvent/h:code[@code='C54588']", namespaces=HL7)  # no FDA elements
    assert set(ema.xpath("//h:routeCode/@code", namespaces=HL7)) == {"20053000"}  # EDQM "Oral use"
    assert set(ema.xpath("//h:formCode/@code", namespaces=HL7)) == {"10219000"}  # EDQM "Tablet"
    cbere = parse_sender({**SENDER.__dict__, "fda_centre": "CBER"})
    cber = etree.fromstring(to_xml(batch_for("fda", sender=cbere)))
    assert set(cber.xpath("h:PORR_IN049016UV/h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"CBER"}


def test_pmda_and_nmpa_regional_elements_and_configured_receivers():
    cases = rows()
    japan = {**cases, "cases": cases["cases"].with_columns(pl.Series("country", ["JP", "CN"]))}
    pmda = etree.fromstring(to_xml(build_batch(japan, jurisdiction=JURISDICTIONS["pmda"], period_label="2025-11",
                                               created=CREATED, sender=CONFIGURED, meddra=MEDDRA)))  # fmt: skip
    j21a = "//h:investigationCharacteristic[h:code[@code='1'][@codeSystem='2.16.840.1.113883.3.989.5.1.3.2.1.12']]"
    assert pmda.xpath(f"{j21a}/h:value/@code", namespaces=HL7) == ["AB", "AD"]  # in Japan / abroad
    assert set(pmda.xpath("//h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"PMDA-GW-TEST"}
    nmpa = etree.fromstring(to_xml(batch_for("nmpa", sender=CONFIGURED)))
    cn = "//h:observationEvent[h:code[@code='{}'][@codeSystem='2.16.840.1.113883.3.989.2.1.1.19']]/h:value/@code"
    assert nmpa.xpath(cn.format("CN-6"), namespaces=HL7) == ["3", "2"]  # hcp → medical institution; patient app
    assert nmpa.xpath(cn.format("CN-11"), namespaces=HL7) == ["12", "12"]  # domestic post-marketing
    assert nmpa.xpath(cn.format("CN-12"), namespaces=HL7) == ["MAH-TEST-1", "MAH-TEST-1"]
    assert set(nmpa.xpath("//h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"NMPA-GW-TEST"}
    plain = etree.fromstring(to_xml(batch_for("nmpa")))  # no holder configured: C.1.CN.3 not written, never invented
    assert not plain.xpath(cn.format("CN-12"), namespaces=HL7)
    assert set(plain.xpath("//h:receiver/h:device/h:id/@extension", namespaces=HL7)) == {"CN-NMPA-CDR"}
    for other in ("fda", "ema"):  # no J or CN element elsewhere
        doc = etree.fromstring(to_xml(batch_for(other, sender=CONFIGURED)))
        assert not doc.xpath(j21a, namespaces=HL7) and not doc.xpath(cn.format("CN-6"), namespaces=HL7)
    with pytest.raises(SenderConfigError, match="receiver_pmda"):
        parse_sender({**SENDER.__dict__, "receiver_pmda": "PMDA GW"})


def test_a_missing_sender_setting_stops_the_export(tmp_path, monkeypatch):
    monkeypatch.delenv("PVTRACE_E2B_SENDER", raising=False)
    with pytest.raises(SenderConfigError, match="PVTRACE_E2B_SENDER"):
        load_sender()
    incomplete = tmp_path / "sender.toml"
    incomplete.write_text('[sender]\nidentifier = "X"\norganisation = "Y"\n', encoding="utf-8")
    with pytest.raises(SenderConfigError, match="missing.*department.*telephone"):
        load_sender(incomplete)
    with pytest.raises(SenderConfigError, match="C.3.1"):
        parse_sender({**SENDER.__dict__, "sender_type": "9"})
    demo = load_sender(DEMO_SENDER)  # the shipped demo sender is complete, and labelled as a demo
    assert demo.demo and "fictitious" in demo.organisation and demo.email.endswith("@example.org")


def test_the_clock_is_the_run_clock_and_a_future_date_is_rejected(tmp_path):
    batch = batch_for("fda")
    doc = etree.fromstring(to_xml(batch))
    assert doc.xpath("h:creationTime/@value", namespaces=HL7) == ["20251130235959+0000"]
    assert set(doc.xpath("//h:controlActProcess/h:effectiveTime/@value", namespaces=HL7)) == {"20251130235959+0000"}
    before = CREATED - dt.timedelta(hours=1)  # a clock behind the file's creation time
    result = write_validated(batch, tmp_path / "e2b_icsr_fda_2025-11.xml", clock=before)
    assert not result.valid and any("ICH-FUTURE-DATE" in e for e in result.errors)
    assert result.path.parent.name == "rejected"
    with pytest.raises(ValueError, match="aware"):
        build_batch(rows(), jurisdiction=JURISDICTIONS["fda"], period_label="2025-11",
                    created=CREATED.replace(tzinfo=None), sender=SENDER)  # fmt: skip


def test_written_batch_round_trips_through_the_warehouse_reader_and_carries_the_linked_lot(tmp_path):
    batch = batch_for("nmpa")
    result = write_validated(batch, tmp_path / "e2b_icsr_nmpa_2025-11.xml", clock=CREATED)
    assert result.valid
    doc = etree.parse(str(result.path))
    assert validate(doc.getroot()) == []
    lots = doc.xpath("//h:productInstanceInstance/h:lotNumberText/text()", namespaces=HL7)
    assert lots == ["25071711"]  # the linked batch's lot, not the lot as typed ("L:25071711")
    (c1, d1, r1, del1), (c2, d2, r2, del2) = icsrs(result.path.read_bytes())
    assert c1["case_id"] == "E2B-CN-PVTRACE-PVT-CN-2025-000001" and not del1
    assert (c1["sex"], c1["age_years"], c1["country"], c1["reporter_qualification"]) == ("F", 67.0, "CN", "physician")
    assert c1["seriousness"] == ["hospitalisation"] and c1["received_on"] == dt.date(2025, 11, 10)
    assert [d["product_name_reported"] for d in d1] == ["Huaxin Metformin", "Anlixin"]
    assert [d["role"] for d in d1] == ["suspect", "concomitant"] and d1[0]["lot_raw"] == "25071711"
    assert [(r["meddra_code"], r["meddra_version"]) for r in r1] == [("90000001", "27.0")]  # from the terminology
    assert [r["meddra_code"] for r in r2] == ["10019851"]  # a code the source supplied is kept
    assert c2["seriousness"] == ["death"] and c2["outcome"] == "fatal"
    # privacy: initials masked, no free text from the case
    assert doc.xpath("//h:player1/h:name/@nullFlavor", namespaces=HL7) == ["MSK", "MSK"]


def test_same_data_and_clock_give_the_same_bytes():
    assert to_xml(batch_for("ema")) == to_xml(batch_for("ema"))


def test_an_invalid_file_is_reported_not_shipped(tmp_path, monkeypatch):
    from reports.e2b import writer

    batch = batch_for("fda")
    final = tmp_path / "e2b_icsr_fda_2025-11.xml"
    final.write_bytes(b"<old/>")
    good = writer.to_xml
    # break the element order the schema requires: creationTime before id
    monkeypatch.setattr(writer, "to_xml", lambda b: good(b).replace(b"<creationTime", b"<bogus/><creationTime", 1))
    result = writer.write_validated(batch, final, clock=CREATED)
    assert not result.valid and result.errors
    assert not final.exists()
    assert result.path == tmp_path / "rejected" / final.name and result.path.exists()
    assert (tmp_path / "rejected" / f"{final.name}.errors.txt").read_text().startswith("line ")


@pytest.mark.parametrize("path", [pytest.param(p, marks=realdata) for p in FDA_FILES], ids=lambda p: p.name)
def test_fda_example_instances_pass_the_validator(path):
    """FDA's own instances: schema-valid and no rejection under the FDA profile (dates checked against today)."""
    xml = path.read_bytes()
    assert validate(xml) == []
    ev = evaluate(xml, "fda")
    assert ev.of("reject") == [] and ev.of("warn") == []
    assert len(ev.results) >= 1


def test_every_transmission_is_a_new_message():
    """Re-running a month (e.g. after a gateway rejection) sends the same cases as new messages (N.2.r.1)."""
    again = build_batch(rows(), jurisdiction=JURISDICTIONS["fda"], period_label="2025-11",
                        created=CREATED + dt.timedelta(days=1), sender=SENDER, meddra=MEDDRA)  # fmt: skip
    first = batch_for("fda")
    assert [i.safety_report_id for i in again.icsrs] == [i.safety_report_id for i in first.icsrs]
    assert not {i.message_id for i in again.icsrs} & {i.message_id for i in first.icsrs}

"""Every business rule of reports.e2b.rules fails on a fixture made to break it, and passes on the file we write.

The base files are what the writer produces for the synthetic rows of test_e2b (an invented MedDRA mapping, a
test sender); each fixture changes one thing with lxml and the named rule must report it.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from lxml import etree

from reports.e2b.profiles import PROFILES, text_language
from reports.e2b.registry import parse_registry
from reports.e2b.rules import IE, NS, OID, PRIMARY_SOURCE, REACTIONS, RULES, RULES_BY_ID, SENDER, evaluate
from reports.e2b.terminology import MeddraCoding
from reports.e2b.writer import to_xml
from tests.reports.test_e2b import CONFIGURED, CREATED, batch_for

FDA_RULES_CSV = Path(__file__).resolve().parents[2] / "reports" / "e2b" / "fda_refs" / "rejection_warning_rules.csv"


def _rm(path: str):
    def f(root):
        nodes = root.xpath(path, namespaces=NS)
        assert nodes, path
        for n in nodes:
            n.getparent().remove(n)

    return f


def _set(path: str, **attrs):
    def f(root):
        nodes = root.xpath(path, namespaces=NS)
        assert nodes, path
        for n in nodes:
            for k, v in attrs.items():
                if v is None:
                    n.attrib.pop(k, None)
                else:
                    n.set(k, v)

    return f


def _text(path: str, value: str):
    def f(root):
        for n in root.xpath(path, namespaces=NS):
            n.text = value

    return f


def _both(*fs):
    def f(root):
        for g in fs:
            g(root)

    return f


def _second_meddra_version(root):
    obs = root.xpath(f"h:PORR_IN049016UV[1]/{REACTIONS}", namespaces=NS)[0]
    twin = copy.deepcopy(obs.getparent())
    twin.find("h:observation/h:value", NS).set("codeSystemVersion", "26.0")
    obs.getparent().addnext(twin)


def _premarket(oid: str, number: str):
    """Turn the written ICSR into a pre-market one (N.1.4 ZZFDA_PREMKT, N.2.r.3 CDER_IND) carrying an FDA study
    registration number (FDA.C.5.5a / FDA.C.5.5b / FDA.C.5.6.r) at the place FDA's example instances put it."""

    def f(root):
        root.find("h:receiver/h:device/h:id", NS).set("extension", "ZZFDA_PREMKT")
        for msg in root.findall("h:PORR_IN049016UV", NS):
            msg.find("h:receiver/h:device/h:id", NS).set("extension", "CDER_IND")
            role = msg.xpath(f"{IE}/h:component/h:adverseEventAssessment/h:subject1/h:primaryRole", namespaces=NS)[0]
            h = "{urn:hl7-org:v3}"
            study = etree.SubElement(etree.SubElement(role, f"{h}subjectOf1"), f"{h}researchStudy")
            reg = etree.SubElement(etree.SubElement(study, f"{h}authorization"), f"{h}studyRegistration")
            etree.SubElement(reg, f"{h}id", root=oid, extension=number)

    return f


def _device_problem(code: str):
    def f(root):
        h = "{urn:hl7-org:v3}"
        for kind in root.xpath(f"{MSG}//h:substanceAdministration/h:consumable/h:instanceOfKind/h:kindOfProduct",
                               namespaces=NS):  # fmt: skip
            ch = etree.SubElement(etree.SubElement(kind, f"{h}subjectOf"), f"{h}characteristic")
            etree.SubElement(ch, f"{h}code", code="C54451", codeSystem=NCI)
            etree.SubElement(ch, f"{h}value", code=code, codeSystem=NCI)

    return f


NCI = "2.16.840.1.113883.3.26.1.1"
FDA_STUDY = "2.16.840.1.113883.3.989.5.1.2.2.1.2"
HEADER = "registry,number,centre,product_name\n"
REGISTRY = parse_registry(HEADER + "ind,654321,CDER,Some other product\ndevice_problem_code,1234,,\n", "test")

MSG = "h:PORR_IN049016UV"
ICSR_IE = f"{MSG}/{IE}"
SERIOUS = f"{MSG}/{REACTIONS}/h:outboundRelationship2/h:observation[h:code[@code='{{}}']]/h:value"
BL = f"{ICSR_IE}/h:component/h:observationEvent[h:code[@code='{{}}']]"

# rule id -> (profile, mutation of the written XML, extra evaluate() arguments)
FIXTURES = {
    "ICH-N.2.r.1": ("fda", _set(f"{MSG}/h:id", extension=None), {}),
    "ICH-N.2.r.2": ("fda", _set(f"{MSG}/h:sender/h:device/h:id", extension=None), {}),
    "ICH-N.2.r.3": ("fda", _set(f"{MSG}/h:receiver/h:device/h:id", extension=None), {}),
    "ICH-C.1.1": ("fda", _set(f"{ICSR_IE}/h:id[@root='{OID}.3.1']", extension=None), {}),
    "ICH-C.1.3": ("fda", _set(f"{ICSR_IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='1']]/h:value",
                              code=None), {}),
    "ICH-C.1.6.1": ("fda", _set(BL.format("1") + "/h:value", value=None), {}),
    "ICH-C.1.7": ("fda", _set(BL.format("23") + "/h:value", value=None, nullFlavor="UNK"), {}),
    "ICH-C.1.8.1": ("fda", _rm(f"{ICSR_IE}/h:id[@root='{OID}.3.2']"), {}),
    "ICH-C.1.8.2": ("fda", _rm(f"{ICSR_IE}/h:outboundRelationship/h:relatedInvestigation[h:code[@code='1']]//"
                               "h:assignedEntity/h:code"), {}),
    "ICH-C.1.9.1": ("fda", _set(f"{ICSR_IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='2']]/h:value",
                                nullFlavor="UNK"), {}),
    "ICH-C.1.11.2": ("fda", None, {}),  # built with an empty reason below
    "ICH-DATES": ("fda", _set(f"{MSG}/h:creationTime", value="20251130"), {}),
    "ICH-FUTURE-DATE": ("fda", None, {"clock": CREATED - dt.timedelta(seconds=1)}),
    "ICH-C.1.5": ("fda", _set(f"{ICSR_IE}/h:availabilityTime", value="20251101"), {}),
    "ICH-C.2.r": ("fda", _rm(f"{MSG}/{PRIMARY_SOURCE}//h:asLocatedEntity"), {}),
    "ICH-C.3.2": ("fda", _rm(f"{MSG}/{SENDER}/h:representedOrganization/h:assignedEntity"), {}),
    "ICH-D.1": ("fda", _set(f"{MSG}//h:player1/h:name", nullFlavor="NI"), {}),
    "ICH-D.2.2": ("fda", _set(f"{MSG}//h:observation[h:code[@code='3']]/h:value", unit=None), {}),
    "ICH-D.7.2": ("fda", _rm(f"{MSG}//h:organizer[h:code[@code='1']]/h:component"), {}),
    "ICH-E.i.1.1b": ("fda", _set(f"{MSG}/{REACTIONS}/h:value/h:originalText", language=None), {}),
    "ICH-E.i.2.1": ("fda", _set(f"{MSG}/{REACTIONS}/h:value", code=None), {}),
    "ICH-MEDDRA-VERSION": ("fda", _second_meddra_version, {}),
    **{
        f"ICH-E.i.3.2{letter}": ("fda", _set(SERIOUS.format(code), value=None, nullFlavor="UNK"), {})
        for letter, code in zip("abcdef", ["34", "21", "33", "35", "12", "26"], strict=True)
    },
    "ICH-E.i.7": ("fda", _set(SERIOUS.format("27"), code=None), {}),
    "ICH-G.k.2.2": ("fda", _text(f"{MSG}//h:substanceAdministration/h:consumable/h:instanceOfKind/h:kindOfProduct/"
                                 "h:name", ""), {}),
    "ICH-H.1": ("fda", _rm(f"{ICSR_IE}/h:text"), {}),
    "R0004": ("fda", _set("h:receiver/h:device/h:id", extension="FDA"), {}),
    "R0006": ("fda", _set(f"{MSG}/h:receiver/h:device/h:id", extension="ZZFDA"), {}),
    "R0007": ("fda", _set("h:receiver/h:device/h:id", extension="ZZFDA_PREMKT"), {}),
    "R0011": ("fda", _set(BL.format("23") + "/h:value", value=None, nullFlavor="NI"), {}),
    "FDA-C.1.7.1": ("fda", _rm(f"{ICSR_IE}/h:component[h:observationEvent/h:code[@code='C54588']]"), {}),
    "R0014": ("fda", _set(BL.format("C54588") + "/h:value", code="2"), {}),
    "FDA-C.1.12": ("fda", _set(BL.format("C156384") + "/h:value", nullFlavor="UNK"), {}),
    "FDA-C.2.r.2.8": ("fda", _rm(f"{MSG}/{PRIMARY_SOURCE}/h:telecom"), {}),
    "FDA-C.3": ("fda", _rm(f"{MSG}/{SENDER}/h:telecom[starts-with(@value, 'fax:')]"), {}),
    "FDA-D.11": ("fda", _rm(f"{MSG}//h:subjectOf2[h:observation/h:code[@code='C17049']]"), {}),
    "FDA-D.12": ("fda", _set(f"{MSG}//h:observation[h:code[@code='C16564']]/h:value", nullFlavor="ASKU"), {}),
    "FDA-E.i.3.2h": ("fda", _rm(f"{MSG}/{REACTIONS}/h:outboundRelationship2[h:observation/h:code[@code='7']]"), {}),
    "R0105": ("fda", _premarket(f"{FDA_STUDY}.1", "123456"), {"registry": REGISTRY}),
    "R0106": ("fda", _premarket(f"{FDA_STUDY}.2", "234567"), {"registry": REGISTRY}),
    "W0012": ("fda", _premarket(f"{FDA_STUDY}.3", "222222"), {"registry": REGISTRY}),
    "W0009": ("fda", _premarket(f"{FDA_STUDY}.1", "654321"), {"registry": REGISTRY}),
    "W0008": ("fda", _device_problem("9999"), {"registry": REGISTRY}),
    "R0069": ("fda", _set(f"{ICSR_IE}//h:causalityAssessment[h:code[@code='20']]/h:value", code="2"), {}),
    "EMA-RECEIVER": ("ema", _set(f"{MSG}/h:receiver/h:device/h:id", extension="EMA"), {}),
    "EMA-EDQM-ROUTE": ("ema", _set(f"{MSG}//h:routeCode", code=None), {}),
    "EMA-EDQM-FORM": ("ema", _set(f"{MSG}//h:formCode", code=None), {}),
    "PMDA-RECEIVER": ("pmda", _set("h:receiver/h:device/h:id", extension="ZZPMDA"), {}),
    "PMDA-J2.1a": ("pmda", _rm(f"{ICSR_IE}/h:subjectOf2[h:investigationCharacteristic/h:code"
                               "[@codeSystem='2.16.840.1.113883.3.989.5.1.3.2.1.12']]"), {}),
    "NMPA-RECEIVER": ("nmpa", _set("h:receiver/h:device/h:id", extension="NMPA"), {}),
    "NMPA-C.1.CN.1": ("nmpa", _set(BL.format("CN-6") + "/h:value", code="9"), {}),
    "NMPA-C.1.CN.2": ("nmpa", _rm(f"{ICSR_IE}/h:component[h:observationEvent/h:code[@code='CN-11']]"), {}),
    "NMPA-C.1.CN.3": ("nmpa", _rm(f"{ICSR_IE}/h:component[h:observationEvent/h:code[@code='CN-12']]"), {}),
    "PVT-RECEIVER": ("pmda", _both(_set("h:receiver/h:device/h:id", extension="PMDA"),
                                   _set(f"{MSG}/h:receiver/h:device/h:id", extension="PMDA")), {"receiver": None}),
    "PVT-MEDDRA-TERMINOLOGY": ("fda", None, {"meddra_loaded": False}),
    "PVT-DEMO-SENDER": ("fda", None, {"demo_sender": True}),
    "PVT-REGIONAL": ("nmpa", None, {"unverified_regional": PROFILES["nmpa"].unverified_regional}),
}  # fmt: skip


def written(profile: str, **replace) -> bytes:
    batch = batch_for(profile, sender=CONFIGURED)
    if replace:
        batch = dataclasses.replace(batch, icsrs=tuple(dataclasses.replace(i, **replace) for i in batch.icsrs))
    return to_xml(batch)


def failed(xml: bytes, profile: str, **kw) -> dict[str, list[str]]:
    kw.setdefault("receiver", CONFIGURED.receiver(profile))  # the sender file names the PMDA / NMPA receivers
    ev = evaluate(xml, profile, clock=kw.pop("clock", CREATED), **kw)
    out: dict[str, list[str]] = {}
    for _, rid, _, msg in ev.findings:
        out.setdefault(rid, []).append(msg)
    return out


def test_every_rule_has_a_fixture():
    assert set(FIXTURES) == set(RULES_BY_ID)


@pytest.mark.parametrize("profile", ["fda", "ema", "pmda", "nmpa"])
def test_the_written_files_break_no_rule(profile):
    assert failed(written(profile), profile) == {}


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_each_rule_fails_on_its_fixture(rule_id):
    profile, mutate, kw = FIXTURES[rule_id]
    if rule_id == "ICH-C.1.11.2":
        xml = written(profile, amendment=("1", ""))
    else:
        root = etree.fromstring(written(profile))
        if mutate is not None:
            mutate(root)
        xml = etree.tostring(root)
    found = failed(xml, profile, **kw)
    assert rule_id in found, found
    assert RULES_BY_ID[rule_id].applies_to(profile)


def test_a_nullification_with_its_reason_passes():
    xml = written("fda", amendment=("1", "duplicate of another case"))
    assert failed(xml, "fda") == {}
    root = etree.fromstring(xml)
    assert set(root.xpath(f"{ICSR_IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='3']]/h:value/@code",
                          namespaces=NS)) == {"1"}  # fmt: skip


def test_the_mixed_terminology_version_is_caught_at_write_time():
    other = MeddraCoding("26.1", {"Lactic acidosis": "90000001", "Hepatotoxicity": "90000002"})
    batch = batch_for("fda", meddra=other)  # case 2's source code is MedDRA 27.0, still one version per ICSR
    assert "ICH-MEDDRA-VERSION" not in failed(to_xml(batch), "fda")


def test_fda_rule_ids_and_severities_are_fda_s():
    """Every R/W id implemented is in FDA's vendored table with the same severity (R = rejection, W = warning)."""
    rows = list(csv.reader(FDA_RULES_CSV.open(encoding="utf-8", errors="replace")))
    fda = {r[5].strip(): ("reject" if r[3].strip() else "warn") for r in rows if len(r) > 5 and r[5].strip()}
    ours = [r for r in RULES if r.id[:1] in "RW" and r.id[1:].isdigit()]
    assert ours
    for rule in ours:
        assert fda.get(rule.id) == rule.severity, rule.id
    assert all(r.severity in ("reject", "warn", "not_ready") for r in RULES)


def test_reaction_text_language_is_read_from_the_text():
    assert text_language("Lactic acidosis") == "eng"
    assert text_language("乳酸性酸中毒") == "chi"
    assert text_language("乳酸アシドーシス") == "jpn"
    assert text_language(None) is None


def test_terminology_rejects_non_meddra_shapes():
    with pytest.raises(ValueError, match="eight digits"):
        MeddraCoding("27.0", {"x": "123"})
    with pytest.raises(ValueError, match="version"):
        MeddraCoding("27", {"x": "90000001"})
    assert MeddraCoding("27.1", {"Nausea": "90000003"}).code(" nausea ") == ("90000003", "27.1")


def test_amendments_nullifications_and_corrected_resubmissions_follow_c111():
    from reports.e2b.resubmission import amend, nullify, resubmit_corrected, sequence_problems

    first = batch_for("fda").icsrs[0]
    later = CREATED + dt.timedelta(days=3)
    amended = amend(first, "wrong sex coded", later)
    assert amended.amendment == ("2", "wrong sex coded") and amended.most_recent == first.most_recent
    assert amended.safety_report_id == first.safety_report_id and amended.message_id != first.message_id
    assert sequence_problems(first, amended) == []
    nullified = nullify(amended, "duplicate", later + dt.timedelta(days=1))
    assert sequence_problems(amended, nullified) == []
    assert "nothing is sent after a nullification" in " ".join(sequence_problems(nullified, amended))
    fixed = resubmit_corrected(first, first, later)
    assert fixed.amendment is None and fixed.created > first.created
    assert sequence_problems(first, fixed, previous_accepted=False) == []
    # each rule has its failing case
    assert "C.1.5 must stay" in " ".join(sequence_problems(first, dataclasses.replace(amended, most_recent="20991231")))
    assert "rejected ICSR" in " ".join(sequence_problems(first, amended, previous_accepted=False))
    assert "N.2.r.1 reused" in " ".join(
        sequence_problems(first, dataclasses.replace(amended, message_id=first.message_id))
    )
    assert "C.1.2 not after" in " ".join(sequence_problems(first, dataclasses.replace(amended, created=first.created)))
    assert "C.1.1 changed" in " ".join(sequence_problems(first, dataclasses.replace(amended, safety_report_id="X")))
    assert "C.1.8.1 changed" in " ".join(sequence_problems(first, dataclasses.replace(amended, worldwide_id="X")))
    assert "before the previous" in " ".join(
        sequence_problems(first, dataclasses.replace(fixed, most_recent="20000101"))
    )
    with pytest.raises(ValueError, match="reason"):
        amend(first, " ", later)
    with pytest.raises(ValueError, match="after the previous"):
        nullify(first, "duplicate", CREATED)
    # what is written passes the business rules, including C.1.11.2
    xml = to_xml(dataclasses.replace(batch_for("fda", sender=CONFIGURED), icsrs=(amended, nullified)))
    assert failed(xml, "fda", clock=later + dt.timedelta(days=2)) == {}

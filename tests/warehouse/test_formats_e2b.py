"""E2B(R3) ingest on FDA's ten FAERS2022 example ICSR files, checked with plain XPath here."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse.inputs.regulator.ingest import ingest
from warehouse.linkage.lot_rules import normalise_lot

etree = pytest.importorskip("lxml.etree")

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2b_r3" / "instances_fda"
NS = {"h": "urn:hl7-org:v3"}
IE = "h:controlActProcess/h:subject/h:investigationEvent"
DRUG = (
    IE + "/h:component/h:adverseEventAssessment/h:subject1/h:primaryRole/h:subjectOf2/"
    "h:organizer[h:code/@code='4']/h:component/h:substanceAdministration"
)
REACTION = (
    IE + "/h:component/h:adverseEventAssessment/h:subject1/h:primaryRole/h:subjectOf2/h:observation[h:code/@code='29']"
)

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not DATA.exists(), reason="../shared/data not available")]


def icsrs() -> list[dict]:
    """Every ICSR of every file, with the values the ingest keys on, by plain XPath."""
    out = []
    for f in sorted(DATA.glob("*.xml")):
        for m in etree.parse(str(f)).xpath("//h:PORR_IN049016UV", namespaces=NS):
            out.append(
                {
                    "file": f.name,
                    "c11": m.xpath(IE + "/h:id[@root='2.16.840.1.113883.3.989.2.1.3.1']/@extension", namespaces=NS)[0],
                    "c12": m.xpath("h:controlActProcess/h:effectiveTime/@value", namespaces=NS)[0],
                    "drugs": [
                        [t.strip() for t in d.xpath(".//h:lotNumberText/text()", namespaces=NS)]
                        for d in m.xpath(DRUG, namespaces=NS)
                    ],
                    "reactions": len(m.xpath(REACTION, namespaces=NS)),
                }
            )
    return out


def test_fda_instances_counts(tmp_path):
    all_icsrs = icsrs()
    assert len(all_icsrs) == 10
    # one version per (C.1.1, C.1.2); repeats within the input: the later file wins
    versions = {}
    for x in all_icsrs:
        versions[(x["c11"], x["c12"])] = x
    latest = {}
    for (c11, c12), x in versions.items():
        if c11 not in latest or c12[:14] > latest[c11]["c12"][:14]:  # same UTC offset in these files
            latest[c11] = x

    counts = ingest(DATA, "e2b", tmp_path / "w.duckdb")

    assert counts["cases"] == len(latest) == 5
    assert counts["case_versions"] == len(versions) == 7
    assert counts["quarantined"] == len(all_icsrs) - len(versions)
    assert counts["quarantine_reasons"] == {"duplicate_case_version": 3}
    assert counts["drugs"] == sum(len(x["drugs"]) for x in latest.values())
    assert counts["reactions"] == sum(x["reactions"] for x in latest.values())
    usable = sum(any(normalise_lot(lot) for lot in d) for x in latest.values() for d in x["drugs"])
    assert counts["lots"] == usable == 3

    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    # Scenario 6 has the real G.k.4.r.7 lot 4577BN2 on its first drug, an older version of 8744554B
    lot = con.execute(
        "SELECT lot_reported FROM case_drug WHERE case_id = 'E2B-US-APHARMA-8744554B' AND drug_seq = 1 "
        "AND lot_reported LIKE '%4577BN2'"
    ).fetchone()
    assert lot is not None and "4577BN2" in normalise_lot(lot[0])
    assert con.execute("SELECT count(*) FROM latest_case WHERE case_id = 'E2B-US-APHARMA-8744554B'").fetchone()[0] == 1
    # MedDRA LLT codes and versions are kept; roles come from G.k.1
    assert con.execute("SELECT count(*) FROM case_reaction_meddra WHERE meddra_code ~ '^[0-9]{8}$'").fetchone()[0] > 0
    roles = {r[0] for r in con.execute("SELECT DISTINCT role FROM case_drug").fetchall()}
    assert {"suspect", "concomitant"} <= roles and None not in roles


def test_broken_xml_and_broken_icsr_are_quarantined(tmp_path):
    good = (DATA / "FAERS2022Scenario4.xml").read_text(encoding="utf-8")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.xml").write_text(good, encoding="utf-8")
    (folder / "truncated.xml").write_text(good[: len(good) // 2], encoding="utf-8")
    # an ICSR without C.1.1
    (folder / "no_id.xml").write_text(
        good.replace('root="2.16.840.1.113883.3.989.2.1.3.1"/>', 'root="9.9"/>'), encoding="utf-8"
    )
    counts = ingest(folder, "e2b", tmp_path / "w.duckdb")
    assert counts["cases"] == 1
    assert counts["quarantine_reasons"] == {"unparsable_icsr": 1, "unparsable_xml": 1}
    again = ingest(folder, "e2b", tmp_path / "w.duckdb")
    assert again["warehouse"] == counts["warehouse"]

"""Property-based: the E2B(R3) reader (warehouse/inputs/regulator/e2b.py) on arbitrary input.

Its documented behaviour: a file that is not XML is quarantined (``unparsable_xml``); an ICSR it
cannot convert is quarantined (``unparsable_icsr``) and the others load; an input with nothing
readable raises ``IngestError`` (one line naming the file). So on arbitrary bytes and on arbitrary
mutations of a valid ICSR tree:

- ``e2b.stage`` raises nothing but ``IngestError``;
- ``ingest_into`` raises nothing but an ``IngestError`` of the reader's own (not the safety net
  that wraps an unexpected exception, which would carry it as ``__cause__``);
- every ICSR element read is either a staged case version or a quarantined ``unparsable_icsr``.
"""

from __future__ import annotations

import copy
import shutil
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warehouse.inputs.regulator import InputSet, create_staging
from warehouse.inputs.regulator import e2b as reader
from warehouse.inputs.regulator.ingest import IngestError, ingest_into
from warehouse.schema import connect

H = "urn:hl7-org:v3"
ET.register_namespace("", H)

# one ICSR with every element the reader looks at: C.1.1, C.1.2, C.1.5, C.2.r, D.5, D.2.2, E.i (with
# seriousness and outcome), G.k (product, substance, lot) and its G.k.1 role, C.1.11.1
ICSR = f"""<PORR_IN049016UV xmlns="{H}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <controlActProcess classCode="CACT" moodCode="EVN">
  <effectiveTime value="20240105101500+0100"/>
  <subject typeCode="SUBJ">
   <investigationEvent classCode="INVSTG" moodCode="EVN">
    <id root="{reader.ROOT_C11}" extension="US-PVT-0001"/>
    <id root="{reader.ROOT_C181}" extension="US-PVT-0001"/>
    <text>coded narrative</text>
    <effectiveTime><low value="20240101"/></effectiveTime>
    <availabilityTime value="20240104"/>
    <component typeCode="COMP">
     <adverseEventAssessment classCode="INVSTG" moodCode="EVN">
      <subject1 typeCode="SBJ">
       <primaryRole classCode="INVSBJ">
        <player1 classCode="PSN" determinerCode="INSTANCE"><administrativeGenderCode code="2"/></player1>
        <subjectOf2 typeCode="SBJ">
         <observation classCode="OBS" moodCode="EVN"><code code="3"/><value xsi:type="PQ" value="34" unit="a"/></observation>
        </subjectOf2>
        <subjectOf2 typeCode="SBJ">
         <observation classCode="OBS" moodCode="EVN">
          <id root="r1"/><code code="29"/>
          <effectiveTime><low value="20231230"/></effectiveTime>
          <value xsi:type="CE" code="10019211" codeSystemVersion="26.1"/>
          <location><locatedEntity><locatedPlace><code code="US"/></locatedPlace></locatedEntity></location>
          <outboundRelationship2 typeCode="PERT">
           <observation classCode="OBS" moodCode="EVN"><code code="33"/><value xsi:type="BL" value="true"/></observation>
          </outboundRelationship2>
          <outboundRelationship2 typeCode="PERT">
           <observation classCode="OBS" moodCode="EVN"><code code="27"/><value xsi:type="CE" code="2"/></observation>
          </outboundRelationship2>
         </observation>
        </subjectOf2>
        <subjectOf2 typeCode="SBJ">
         <organizer classCode="CATEGORY" moodCode="EVN">
          <code code="4"/>
          <component typeCode="COMP">
           <substanceAdministration classCode="SBADM" moodCode="EVN">
            <id root="d1"/>
            <consumable typeCode="CSM"><instanceOfKind classCode="INST">
             <productInstanceInstance classCode="MMAT" determinerCode="INSTANCE"><lotNumberText>EK9231</lotNumberText>
             </productInstanceInstance>
             <kindOfProduct classCode="MMAT" determinerCode="KIND"><name>Vaccine X</name>
              <ingredient classCode="ACTI"><ingredientSubstance classCode="MMAT" determinerCode="KIND"><name>tozinameran</name>
              </ingredientSubstance></ingredient>
             </kindOfProduct>
            </instanceOfKind></consumable>
           </substanceAdministration>
          </component>
         </organizer>
        </subjectOf2>
       </primaryRole>
      </subject1>
      <component typeCode="COMP">
       <causalityAssessment classCode="OBS" moodCode="EVN">
        <code code="20"/><value xsi:type="CE" code="1"/>
        <subject2 typeCode="SUBJ"><productUseReference classCode="SBADM" moodCode="EVN"><id root="d1"/>
        </productUseReference></subject2>
       </causalityAssessment>
      </component>
     </adverseEventAssessment>
    </component>
    <outboundRelationship typeCode="SPRT">
     <relatedInvestigation classCode="INVSTG" moodCode="EVN"><code code="2"/>
      <subjectOf2 typeCode="SUBJ"><controlActEvent classCode="CACT" moodCode="EVN"><author typeCode="AUT">
       <assignedEntity classCode="ASSIGNED"><assignedPerson classCode="PSN" determinerCode="INSTANCE">
        <asQualifiedEntity classCode="QUAL"><code code="1"/></asQualifiedEntity>
        <asLocatedEntity classCode="LOCE"><location classCode="COUNTRY" determinerCode="INSTANCE"><code code="US"/>
        </location></asLocatedEntity>
       </assignedPerson></assignedEntity>
      </author></controlActEvent></subjectOf2>
     </relatedInvestigation>
    </outboundRelationship>
    <subjectOf2 typeCode="SUBJ"><investigationCharacteristic classCode="OBS" moodCode="EVN">
     <code code="3" codeSystem="{reader.CS_CHARACTERISTIC}"/><value xsi:type="BL" code="2"/>
    </investigationCharacteristic></subjectOf2>
   </investigationEvent>
  </subject>
 </controlActProcess>
</PORR_IN049016UV>"""
TEMPLATE = ET.fromstring(ICSR)
N_NODES = sum(1 for _ in TEMPLATE.iter())
ATTRS = ["value", "code", "extension", "root", "unit", "codeSystem", "codeSystemVersion"]
# values that have broken readers: empty, blanks, signs, huge or tiny numbers, partial or impossible dates
NASTY = st.sampled_from(
    ["", " ", "-", "+", "nan", "inf", "1e400", "-1", "0", "99999999999999999999", "0000", "2024", "202402",
     "20240230", "20241301", "99991231235959+9999", "2024010512-", "00010101", "20240105101500.123-0500",
     "US-PVT-0001", "\u00e9\u4e2d", "10.a", "mo", "h", "true", "1", "2", "27", "29", "4", "20"]
)  # fmt: skip
TEXT = NASTY | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)

mutation = st.one_of(
    st.tuples(st.just("drop"), st.integers(1, N_NODES - 1)),
    st.tuples(st.just("attr"), st.integers(0, N_NODES - 1), st.sampled_from(ATTRS), TEXT),
    st.tuples(st.just("text"), st.integers(0, N_NODES - 1), TEXT),
    st.tuples(st.just("copy"), st.integers(1, N_NODES - 1)),
    st.tuples(st.just("tag"), st.integers(1, N_NODES - 1), st.sampled_from(["id", "code", "value", "x"])),
)


def mutated(mutations: list[tuple]) -> ET.Element:
    """The template ICSR with elements dropped, duplicated or renamed and attributes or text replaced."""
    root = copy.deepcopy(TEMPLATE)
    for op, index, *args in mutations:
        nodes = list(root.iter())
        node = nodes[index % len(nodes)]
        parent = next((p for p in nodes if node in list(p)), None)
        if op == "drop" and parent is not None:
            parent.remove(node)
        elif op == "copy" and parent is not None:
            parent.append(copy.deepcopy(node))
        elif op == "tag" and parent is not None:
            node.tag = f"{{{H}}}{args[0]}"
        elif op == "attr":
            node.set(args[0], args[1])
        elif op == "text":
            node.text = args[0]
    return root


def batch(icsrs: list[ET.Element]) -> bytes:
    root = ET.Element(f"{{{H}}}MCCI_IN200100UV01")
    root.extend(icsrs)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@pytest.fixture(scope="module")
def memory_con():
    con = connect(":memory:")
    yield con
    con.close()


def _check(con, folder) -> None:
    """Stage, then ingest: only the reader's IngestError; every ICSR read is staged or quarantined."""
    with InputSet(folder) as inputs:
        con.execute("BEGIN TRANSACTION")
        try:
            create_staging(con)
            try:
                info = reader.stage(con, inputs)
            except IngestError as exc:
                assert "\n" not in str(exc)
            else:
                staged = con.sql("SELECT count(*) FROM stg_case").fetchone()[0]
                rejected = con.sql("SELECT count(*) FROM stg_quarantine WHERE reason = 'unparsable_icsr'").fetchone()[0]
                assert info.extra["icsrs"] == staged + rejected
        finally:
            con.execute("ROLLBACK")
    try:
        ingest_into(con, folder, "e2b")
    except IngestError as exc:
        assert exc.__cause__ is None, f"an unexpected {type(exc.__cause__).__name__} inside the ingest: {exc}"


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(data=st.binary(max_size=400), prefix=st.sampled_from([b"", b"<?xml version='1.0'?>", batch([TEMPLATE])[:300]]))
@example(data=b"\x00", prefix=batch([TEMPLATE])[:300])  # lxml's message had a newline: a two-line error
def test_arbitrary_bytes_raise_only_ingest_error(memory_con, tmp_path_factory, prefix, data):
    folder = tmp_path_factory.mktemp("e2b_bytes")
    (folder / "batch.xml").write_bytes(prefix + data)
    _check(memory_con, folder)
    shutil.rmtree(folder, ignore_errors=True)


@SETTINGS
@given(icsrs=st.lists(st.lists(mutation, max_size=6).map(mutated), min_size=1, max_size=3))
def test_arbitrary_icsr_trees_are_loaded_or_quarantined_never_raised(memory_con, tmp_path_factory, icsrs):
    folder = tmp_path_factory.mktemp("e2b_tree")
    (folder / "batch.xml").write_bytes(batch(icsrs))
    _check(memory_con, folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_the_template_icsr_loads_as_one_case(memory_con, tmp_path):
    """The property's starting point is a valid ICSR, so the mutations exercise the whole reader."""
    (tmp_path / "batch.xml").write_bytes(batch([TEMPLATE]))
    counts = ingest_into(memory_con, tmp_path, "e2b")
    assert (counts["cases"], counts["drugs"], counts["reactions"], counts["lots"], counts["quarantined"]) == (
        1,
        1,
        1,
        1,
        0,
    )
    row = memory_con.sql(
        "SELECT sex, age_years, country, seriousness, outcome FROM latest_case WHERE case_id = 'E2B-US-PVT-0001'"
    ).fetchone()
    assert row == ("F", 34.0, "US", ["hospitalisation"], "recovering")

"""Read an ICH E2B(R3) batch file into :mod:`reports.e2b.model` — the fields the writer writes.

Used to check the writer by round trip: FDA's example instances are read, written by
:func:`reports.e2b.writer.to_xml`, validated against the ICH XSD and read again; the two readings
must be equal. Paths follow FDA's data-element table (``fda_refs/icsr_data_elements.csv``).

The ingest side (``warehouse/inputs/regulator/e2b.py``, issue 9) parses ICSRs into warehouse rows; it is not
reused here because ``reports`` does not import ``warehouse`` (docs/architecture.md, "Packages and what each may import") and it keeps MedDRA codes
only, not the reaction as reported (E.i.1.1a), which this reader needs.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from reports.e2b.model import SERIOUSNESS_CODES, Drug, Icsr, IcsrBatch, Reaction

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
OID = "2.16.840.1.113883.3.989.2.1"


def _a(el, path: str, name: str) -> str | None:
    node = el.find(path, NS) if path else el
    if node is None:
        return None
    v = node.get(name)
    return v.strip() if v and v.strip() else None


def _t(el, path: str) -> str | None:
    node = el.find(path, NS)
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def _id(el, root: str) -> str | None:
    return next((i.get("extension") for i in el.findall("h:id", NS) if i.get("root") == root), None)


def _reaction(obs) -> Reaction:
    value = obs.find("h:value", NS)
    criteria, outcome = [], None
    for o in obs.findall("h:outboundRelationship2/h:observation", NS):
        code = _a(o, "h:code", "code")
        if code in SERIOUSNESS_CODES and _a(o, "h:value", "value") == "true":
            criteria.append(SERIOUSNESS_CODES[code])
        elif code == "27":
            outcome = _a(o, "h:value", "code")
    return Reaction(
        id=_a(obs, "h:id", "root"),
        term=None if value is None else _t(value, "h:originalText"),
        term_language=None if value is None else _a(value, "h:originalText", "language"),
        meddra_code=None if value is None else _a(value, "", "code"),
        meddra_version=None if value is None else _a(value, "", "codeSystemVersion"),
        onset=_a(obs, "h:effectiveTime/h:low", "value"),
        country=_a(obs, "h:location/h:locatedEntity/h:locatedPlace/h:code", "code"),
        seriousness=tuple(sorted(criteria)),
        outcome=outcome,
    )


def _drug(sa, roles: dict[str, str]) -> Drug:
    kind = sa.find("h:consumable/h:instanceOfKind/h:kindOfProduct", NS)
    lots, start = [], None
    for dose in sa.findall("h:outboundRelationship2/h:substanceAdministration", NS):
        lot = _t(dose, "h:consumable/h:instanceOfKind/h:productInstanceInstance/h:lotNumberText")
        if lot:
            lots.append(lot)
        if start is None:
            start = _a(dose, "h:effectiveTime/h:comp[@operator='A']/h:low", "value") or _a(
                dose, "h:effectiveTime/h:low", "value"
            )
    did = _a(sa, "h:id", "root")
    return Drug(
        id=did,
        role=roles.get(did),
        name=None if kind is None else _t(kind, "h:name"),
        substances=()
        if kind is None
        else tuple(n for n in (_t(i, "h:ingredientSubstance/h:name") for i in kind.findall("h:ingredient", NS)) if n),
        holder=None
        if kind is None
        else _t(kind, "h:asManufacturedProduct/h:subjectOf/h:approval/h:holder/h:role/h:playingOrganization/h:name"),
        lots=tuple(lots),
        start=start,
    )


def read_icsr(msg) -> Icsr:
    cap = msg.find("h:controlActProcess", NS)
    ie = cap.find("h:subject/h:investigationEvent", NS)
    assessment = ie.find("h:component/h:adverseEventAssessment", NS)
    role = assessment.find("h:subject1/h:primaryRole", NS)
    roles = {}
    for ca in assessment.findall("h:component/h:causalityAssessment", NS):
        if _a(ca, "h:code", "code") == "20":
            roles[_a(ca, "h:subject2/h:productUseReference/h:id", "root")] = _a(ca, "h:value", "code")
    age = None
    reactions, drugs = [], []
    for sub in role.findall("h:subjectOf2", NS):
        obs = sub.find("h:observation", NS)
        if obs is not None and _a(obs, "h:code", "code") == "3":
            age = (_a(obs, "h:value", "value"), _a(obs, "h:value", "unit"))
        elif obs is not None and _a(obs, "h:code", "code") == "29":
            reactions.append(_reaction(obs))
        org = sub.find("h:organizer", NS)
        if org is not None and _a(org, "h:code", "code") == "4":
            drugs.extend(_drug(sa, roles) for sa in org.findall("h:component/h:substanceAdministration", NS))
    expedited = None
    for comp in ie.findall("h:component/h:observationEvent", NS):
        if _a(comp, "h:code", "code") == "23":
            v = _a(comp, "h:value", "value")
            expedited = None if v is None else v == "true"
    qualification = country = None
    for rel in ie.findall("h:outboundRelationship", NS):
        inv = rel.find("h:relatedInvestigation", NS)
        if inv is None or _a(inv, "h:code", "code") != "2" or _a(rel, "h:priorityNumber", "value") != "1":
            continue
        person = inv.find("h:subjectOf2/h:controlActEvent/h:author/h:assignedEntity/h:assignedPerson", NS)
        if person is not None:
            qualification = _a(person, "h:asQualifiedEntity/h:code", "code")
            country = _a(person, "h:asLocatedEntity/h:location/h:code", "code")
    sender = ie.find("h:subjectOf1/h:controlActEvent/h:author/h:assignedEntity", NS)
    report_type = None
    for ch in ie.findall("h:subjectOf2/h:investigationCharacteristic", NS):
        if _a(ch, "h:code", "code") == "1":
            report_type = _a(ch, "h:value", "code")
    return Icsr(
        message_id=_id(msg, f"{OID}.3.1"),
        created=_a(cap, "h:effectiveTime", "value"),
        safety_report_id=_id(ie, f"{OID}.3.1"),
        worldwide_id=_id(ie, f"{OID}.3.2"),
        first_received=_a(ie, "h:effectiveTime/h:low", "value"),
        most_recent=_a(ie, "h:availabilityTime", "value"),
        report_type=report_type,
        expedited=expedited,
        narrative=_t(ie, "h:text"),
        sex=_a(role, "h:player1/h:administrativeGenderCode", "code"),
        age=age,
        qualification=qualification,
        reporter_country=country,
        sender_type=None if sender is None else _a(sender, "h:code", "code"),
        sender_organisation=None
        if sender is None
        else _t(sender, "h:representedOrganization/h:assignedEntity/h:representedOrganization/h:name"),
        reactions=tuple(reactions),
        drugs=tuple(drugs),
    )


def read_batch(source: bytes | str | Path) -> IcsrBatch:
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    msg_receiver = msg_sender = None
    icsrs = []
    for msg in root.findall("h:PORR_IN049016UV", NS):
        icsrs.append(read_icsr(msg))
        msg_receiver = msg_receiver or _a(msg, "h:receiver/h:device/h:id", "extension")
        msg_sender = msg_sender or _a(msg, "h:sender/h:device/h:id", "extension")
    return IcsrBatch(
        batch_id=_id(root, f"{OID}.3.22"),
        created=_a(root, "h:creationTime", "value"),
        sender=_a(root, "h:sender/h:device/h:id", "extension"),
        receiver=_a(root, "h:receiver/h:device/h:id", "extension"),
        message_sender=msg_sender,
        message_receiver=msg_receiver,
        icsrs=tuple(icsrs),
    )

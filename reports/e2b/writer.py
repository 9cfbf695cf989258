"""Serious cases → one ICH E2B(R3) batch file (``MCCI_IN200100UV01`` with one ``PORR_IN049016UV`` per case).

Element order and code systems follow FDA's example instances (FAERS2022Scenario1/6) and the ICH
XSD; XPaths as in FDA's data-element table. Choices, and why:

* **MedDRA.** PV Trace's synthetic reactions have PT *names* only (MedDRA is licensed). With a loaded
  terminology (:class:`reports.e2b.terminology.MeddraCoding`, passed in by the asset) each reaction gets its
  LLT code (E.i.2.1b) and the release's version (E.i.2.1a); a code the source case supplied (E2B-ingested
  cases) is kept. Without one the reaction is written as reported only (E.i.1.1a) and the status says the
  file is not gateway-ready (rule ``PVT-MEDDRA-TERMINOLOGY``).
* **Regional profiles** (:mod:`reports.e2b.profiles`): receivers (FDA: N.1.4 ``ZZFDA``, N.2.r.3 the centre;
  EMA / PMDA / NMPA overridable in the sender file), FDA's regional elements, EDQM route / dose-form TermIDs for
  the EU, PMDA's J2.1a and NMPA's C.1.CN.1-3 (their layout from public vendor sources, marked [M]). The sender identity and contact
  details (N.1.3, N.2.r.2, C.3.x) come from configuration (:mod:`reports.e2b.sender`), never invented.
* **Business rules** (:mod:`reports.e2b.rules`) run on every file with the XSD before it is written; a
  rejection-level finding keeps the file out of the final folder like a schema error.
* **Privacy.** D.1 patient initials are ``nullFlavor="MSK"`` (masked); no reporter name or
  address; H.1 is a narrative *generated from coded fields*, never the free text (docs/architecture.md, "Privacy").
* **Batch numbers.** G.k.4.r.7 carries the lot number of the batch the drug links to (scanned pack
  code, exact/normalised/fuzzy lot), else the lot as reported; the link method is in the narrative.
* **Clock.** N.1.5, N.2.r.4 and C.1.2 are the run's clock (passed in as ``created``), never after it;
  a date in the file after that clock is a rejection (``ICH-FUTURE-DATE``).
* **Determinism.** Ids are UUID-5 of the case and element (the message id N.2.r.1 also of the clock, so a
  re-run after a gateway rejection is a new message), so the same data and clock give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from lxml import etree

from reports.e2b.model import (
    COUNTRY,
    FDA_OID,
    HL7,
    MEDDRA,
    NCI,
    OID,
    OUTCOME_CODES,
    QUALIFICATION_CODES,
    ROLE_CODES,
    SERIOUSNESS_CODES,
    XSI,
    Drug,
    Icsr,
    IcsrBatch,
    Reaction,
    ts,
)
from reports.e2b.profiles import (
    CN_HOLDER_ID,
    CN_REPORT_CATEGORY,
    CN_REPORT_SOURCE,
    EDQM_FORM_OID,
    EDQM_FORMS,
    EDQM_ROUTE_OID,
    EDQM_ROUTES,
    J2_1A_OID,
    J_CHARACTERISTIC_OID,
    batch_receiver,
    nmpa_category,
    nmpa_source,
    pmda_category,
    profile_for,
    text_language,
)
from reports.e2b.profiles import message_receiver as receiver_for
from reports.e2b.registry import load_registry
from reports.e2b.rules import Evaluation, evaluate
from reports.e2b.sender import Sender
from reports.e2b.terminology import MeddraCoding
from reports.e2b.validation import validate

XSI_TYPE = f"{{{XSI}}}type"
CS_OBS = f"{OID}.1.19"  # observation codes
UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pvtrace:e2b")
SERIOUSNESS_ORDER = ["34", "21", "33", "35", "12", "26"]
NAMES = {
    "34": "resultsInDeath",
    "21": "isLifeThreatening",
    "33": "requiresInpatientHospitalization",
    "35": "resultsInPersistentOrSignificantDisability",
    "12": "congenitalAnomalyBirthDefect",
    "26": "otherMedicallyImportantCondition",
}


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(UUID_NS, "/".join(str(p) for p in parts)))


# ---- building the model from warehouse rows ------------------------------------------------------


def _narrative(case: dict, drugs: list[dict], reactions: list[dict]) -> str:
    crit = ", ".join(c.replace("_", " ") for c in case["seriousness"] or []) or "serious"
    age = f"{int(case['age_years'])} years" if case["age_years"] is not None else "age unknown"
    sex = {"M": "male", "F": "female"}.get(case["sex"] or "", "sex unknown")
    suspects = "; ".join(
        f"{d['product_name']} ({d['role']}"
        + (
            f", lot {d['linked_lot'] or d['lot_reported']}"
            if (d["linked_lot"] or d["lot_reported"])
            else ", lot not reported"
        )
        + (f", batch linked by {d['link_method']}" if d["link_method"] else "")
        + ")"
        for d in drugs
    )
    reacts = "; ".join(f"{r['pt']}" + (f" (onset {r['onset_date']})" if r["onset_date"] else "") for r in reactions)
    qual = (case["reporter_qualification"] or "unknown reporter").replace("_", " ")
    return (
        f"Serious case ({crit}) first received {case['initial_received']} from a {qual} in {case['country'] or 'an unknown country'}; "
        f"patient {sex}, {age}. Products: {suspects}. Reactions: {reacts}. Outcome: "
        f"{(case['outcome'] or 'unknown').replace('_', ' ')}. Narrative generated by PV Trace from coded fields; the "
        "reporter's free text and identifiers are not transmitted."
    )


def _coded(r: dict, meddra: MeddraCoding | None) -> tuple[str | None, str | None]:
    """(E.i.2.1b, E.i.2.1a): the source's code if it had one, else the loaded terminology's, else none."""
    if r.get("meddra_code"):
        return r["meddra_code"], r.get("meddra_version")
    hit = meddra.code(r["pt"]) if meddra is not None else None
    return hit if hit else (None, None)


def build_icsr(
    case: dict,
    drugs: list[dict],
    reactions: list[dict],
    *,
    created: dt.datetime,
    sender: Sender,
    meddra: MeddraCoding | None = None,
    edqm: bool = False,
    profile: str = "ich",
) -> Icsr:
    cid = case["case_id"]
    country = case["country"]
    regional: tuple[tuple[str, str], ...] = ()
    if profile == "pmda":
        regional = (("J2.1a", pmda_category(country)),)
    elif profile == "nmpa":
        regional = (("C.1.CN.1", nmpa_source(case.get("source"))), ("C.1.CN.2", nmpa_category(country)))
    seriousness = tuple(sorted(case["seriousness"] or []))
    outcome = OUTCOME_CODES.get(case["outcome"] or "unknown", "0")
    reaction_models = []
    for r in reactions:
        code, version = _coded(r, meddra)
        reaction_models.append(
            Reaction(
                id=_uid(cid, "reaction", r["reaction_seq"]),
                term=r["pt"],
                term_language=text_language(r["pt"]),
                meddra_code=code,
                meddra_version=version if code else None,
                onset=ts(r["onset_date"]),
                country=country,
                seriousness=seriousness,
                outcome=outcome,
            )
        )
    drug_models = tuple(
        Drug(
            id=_uid(cid, "drug", d["drug_seq"]),
            role=ROLE_CODES.get(d["role"], "1"),
            name=d["product_name"] or d["product_name_reported"],
            substances=(d["ingredient"],) if d["ingredient"] else (),
            holder=d["manufacturer_name"],
            lots=tuple(x for x in [d["linked_lot"] or d["lot_reported"]] if x),
            start=ts(d["start_date"]),
            route=d.get("route"),
            route_term=EDQM_ROUTES.get((d.get("route") or "").strip().lower()) if edqm else None,
            form=d.get("form"),
            form_term=EDQM_FORMS.get((d.get("form") or "").strip().lower()) if edqm else None,
        )
        for d in drugs
    )
    report_id = f"{country or 'XX'}-PVTRACE-{cid}"
    age = (str(int(case["age_years"])), "a") if case["age_years"] is not None else None
    return Icsr(
        message_id=_uid(cid, case["version"], "message", ts(created)),  # a new N.2.r.1 for every transmission
        created=ts(created),
        safety_report_id=report_id,
        worldwide_id=report_id,
        first_received=ts(case["initial_received"]),
        most_recent=ts(case["received_on"]),
        report_type="1",
        expedited=True,
        narrative=_narrative(case, drugs, reactions),
        sex={"M": "1", "F": "2"}.get(case["sex"] or ""),
        age=age,
        qualification=QUALIFICATION_CODES.get(case["reporter_qualification"] or ""),
        reporter_country=country,
        sender_type=sender.sender_type,
        sender_organisation=sender.organisation,
        reactions=tuple(reaction_models),
        drugs=drug_models,
        regional=regional,
    )


def build_batch(
    rows: dict[str, pl.DataFrame],
    *,
    jurisdiction,
    period_label: str,
    created: dt.datetime,
    sender: Sender,
    meddra: MeddraCoding | None = None,
) -> IcsrBatch:
    """rows = :func:`warehouse.queries.report_queries.icsr_rows`; one ICSR per case, sorted by case id.

    ``created`` is the run's clock (N.1.5, N.2.r.4, C.1.2); ``sender`` the configured sender; ``meddra`` the
    loaded terminology, ``None`` when there is none (the file is then not gateway-ready)."""
    if created.tzinfo is None:
        raise ValueError("created must be an aware datetime (the run's clock, UTC)")
    profile = profile_for(jurisdiction.code)
    drugs = (
        {k[0]: v.to_dicts() for k, v in rows["drugs"].partition_by("case_id", as_dict=True).items()}
        if rows["drugs"].height
        else {}
    )
    reactions = (
        {k[0]: v.to_dicts() for k, v in rows["reactions"].partition_by("case_id", as_dict=True).items()}
        if rows["reactions"].height
        else {}
    )
    icsrs = tuple(
        build_icsr(
            c,
            drugs.get(c["case_id"], []),
            reactions.get(c["case_id"], []),
            created=created,
            sender=sender,
            meddra=meddra,
            edqm=profile.edqm_terms,
            profile=profile.code,
        )
        for c in rows["cases"].sort("case_id").to_dicts()
    )
    code = jurisdiction.code.upper()
    return IcsrBatch(
        batch_id=f"PVTRACE-{code}-{period_label.replace('-', '')}",
        created=ts(created),
        sender=sender.identifier,
        receiver=batch_receiver(profile, sender.receiver(profile.code)),
        message_sender=sender.identifier,
        message_receiver=receiver_for(profile, sender.fda_centre, sender.receiver(profile.code)),
        icsrs=icsrs,
        profile=profile.code,
        contact=sender,
        meddra_loaded=meddra is not None,
    )


# ---- XML ----------------------------------------------------------------------------------------


def _el(parent, tag: str, text: str | None = None, **attrs) -> etree._Element:
    attrs = {(XSI_TYPE if k == "xsi_type" else k): v for k, v in attrs.items() if v is not None}
    node = etree.SubElement(parent, f"{{{HL7}}}{tag}", attrs)
    if text is not None:
        node.text = text
    return node


def _country(parent, code: str) -> etree._Element:
    """A country (ISO 3166-1 alpha-2) under ``asLocatedEntity/location``: C.2.r.3 of a reporter, C.3.4.5 of the sender."""
    loc = _el(
        _el(parent, "asLocatedEntity", classCode="LOCE"), "location", classCode="COUNTRY", determinerCode="INSTANCE"
    )
    return _el(loc, "code", code=code, codeSystem=COUNTRY)


def _device(parent, role: str, extension: str, root: str) -> etree._Element:
    """A batch's or message's ``receiver`` / ``sender`` device id (N.1.3, N.1.4, N.2.r.2, N.2.r.3)."""
    type_code = {"receiver": "RCV", "sender": "SND"}[role]
    device = _el(_el(parent, role, typeCode=type_code), "device", classCode="DEV", determinerCode="INSTANCE")
    return _el(device, "id", extension=extension, root=root)


def _observation_event(ie, code: str, code_system: str, display: str | None = None) -> etree._Element:
    """A case observation (``component/observationEvent``: C.1.6.1, C.1.7, FDA.C.1.7.1, C.1.CN.x) with its code;
    the caller adds the value."""
    o = _el(_el(ie, "component", typeCode="COMP"), "observationEvent", classCode="OBS", moodCode="EVN")
    _el(o, "code", code=code, codeSystem=code_system, displayName=display)
    return o


def _characteristic(ie, code: str, code_system: str, display: str | None = None) -> etree._Element:
    """A case characteristic (``subjectOf2/investigationCharacteristic``: C.1.3, C.1.9.1, C.1.11.x, J2.1a) with its
    code; the caller adds the value."""
    ch = _el(_el(ie, "subjectOf2", typeCode="SUBJ"), "investigationCharacteristic", classCode="OBS", moodCode="EVN")
    _el(ch, "code", code=code, codeSystem=code_system, displayName=display)
    return ch


def _author(parent, relationship: str) -> etree._Element:
    """``<relationship>/controlActEvent/author/assignedEntity``: the primary source (C.2.r), the sender (C.3)."""
    event = _el(_el(parent, relationship, typeCode="SUBJ"), "controlActEvent", classCode="CACT", moodCode="EVN")
    return _el(_el(event, "author", typeCode="AUT"), "assignedEntity", classCode="ASSIGNED")


def _bl(parent, value: bool | None):
    if value is None:
        return _el(parent, "value", xsi_type="BL", nullFlavor="NI")
    return _el(parent, "value", xsi_type="BL", value="true" if value else "false")


def _reaction(parent, r: Reaction, *, fda: bool = False):
    obs = _el(_el(parent, "subjectOf2", typeCode="SBJ"), "observation", classCode="OBS", moodCode="EVN")
    _el(obs, "id", root=r.id)
    _el(obs, "code", code="29", codeSystem=CS_OBS, displayName="reaction")
    if r.onset:
        _el(_el(obs, "effectiveTime", xsi_type="IVL_TS"), "low", value=r.onset)
    value = _el(obs, "value", xsi_type="CE", code=r.meddra_code, codeSystem=MEDDRA, codeSystemVersion=r.meddra_version)
    if r.term:
        _el(value, "originalText", r.term, language=r.term_language)
    if r.country:
        loc = _el(
            _el(_el(obs, "location", typeCode="LOC"), "locatedEntity", classCode="LOCE"),
            "locatedPlace",
            classCode="COUNTRY",
            determinerCode="INSTANCE",
        )
        _el(loc, "code", code=r.country, codeSystem=COUNTRY)
    for code in SERIOUSNESS_ORDER:
        o = _el(_el(obs, "outboundRelationship2", typeCode="PERT"), "observation", classCode="OBS", moodCode="EVN")
        _el(o, "code", code=code, codeSystem=CS_OBS, displayName=NAMES[code])
        _bl(o, True if SERIOUSNESS_CODES[code] in r.seriousness else None)
    if fda:  # FDA.E.i.3.2h required intervention: not recorded by PV Trace → NI
        o = _el(_el(obs, "outboundRelationship2", typeCode="PERT"), "observation", classCode="OBS", moodCode="EVN")
        _el(o, "code", code="7", codeSystem=f"{FDA_OID}.3", displayName="requiredIntervention")
        _bl(o, None)
    if r.outcome is not None:
        o = _el(_el(obs, "outboundRelationship2", typeCode="PERT"), "observation", classCode="OBS", moodCode="EVN")
        _el(o, "code", code="27", codeSystem=CS_OBS, displayName="outcome")
        _el(o, "value", xsi_type="CE", code=r.outcome, codeSystem=f"{OID}.1.11")


def _drug(organizer, d: Drug):
    sa = _el(_el(organizer, "component", typeCode="COMP"), "substanceAdministration", classCode="SBADM", moodCode="EVN")
    _el(sa, "id", root=d.id)
    kind = _el(
        _el(_el(sa, "consumable", typeCode="CSM"), "instanceOfKind", classCode="INST"),
        "kindOfProduct",
        classCode="MMAT",
        determinerCode="KIND",
    )
    _el(kind, "name", d.name)
    if d.holder:
        approval = _el(
            _el(_el(kind, "asManufacturedProduct", classCode="MANU"), "subjectOf", typeCode="SBJ"),
            "approval",
            classCode="CNTRCT",
            moodCode="EVN",
        )
        org = _el(
            _el(_el(approval, "holder", typeCode="HLD"), "role", classCode="HLD"),
            "playingOrganization",
            classCode="ORG",
            determinerCode="INSTANCE",
        )
        _el(org, "name", d.holder)
    for s in d.substances:
        _el(
            _el(
                _el(kind, "ingredient", classCode="ACTI"),
                "ingredientSubstance",
                classCode="MMAT",
                determinerCode="KIND",
            ),
            "name",
            s,
        )
    lots = d.lots or ((None,) if (d.start or d.route or d.form) else ())
    for i, lot in enumerate(lots):
        dose = _el(
            _el(sa, "outboundRelationship2", typeCode="COMP"),
            "substanceAdministration",
            classCode="SBADM",
            moodCode="EVN",
        )
        if d.start and i == 0:
            # G.k.4.r.4 alone: an interval with a start (SXPR_TS needs two components; FDA's single-date form)
            _el(_el(dose, "effectiveTime", xsi_type="IVL_TS"), "low", value=d.start)
        if d.route:  # G.k.4.r.10.1 (text), G.k.4.r.10.2b (EDQM TermID, EU)
            term = d.route_term or (None, None)
            route = _el(dose, "routeCode", code=term[0], codeSystem=EDQM_ROUTE_OID if term[0] else None)
            _el(route, "originalText", d.route)
        if lot or d.form:
            inst = _el(_el(dose, "consumable", typeCode="CSM"), "instanceOfKind", classCode="INST")
            if lot:
                _el(
                    _el(inst, "productInstanceInstance", classCode="MMAT", determinerCode="INSTANCE"),
                    "lotNumberText",
                    lot,
                )
            if d.form:  # G.k.4.r.9.1 (text), G.k.4.r.9.2b (EDQM TermID, EU)
                term = d.form_term or (None, None)
                kind = _el(inst, "kindOfProduct", classCode="MMAT", determinerCode="KIND")
                form = _el(kind, "formCode", code=term[0], codeSystem=EDQM_FORM_OID if term[0] else None)
                _el(form, "originalText", d.form)
    return sa


def _role(assessment, d: Drug):
    ca = _el(_el(assessment, "component", typeCode="COMP"), "causalityAssessment", classCode="OBS", moodCode="EVN")
    _el(ca, "code", code="20", codeSystem=CS_OBS, displayName="interventionCharacterization")
    _el(ca, "value", xsi_type="CE", code=d.role, codeSystem=f"{OID}.1.13")
    ref = _el(_el(ca, "subject2", typeCode="SUBJ"), "productUseReference", classCode="SBADM", moodCode="EVN")
    _el(ref, "id", root=d.id)


def _nci_obs(role, code: str, display: str):
    """An FDA patient observation (FDA.D.11.r race, FDA.D.12 ethnicity) PV Trace does not record: nullFlavor UNK."""
    o = _el(_el(role, "subjectOf2", typeCode="SBJ"), "observation", classCode="OBS", moodCode="EVN")
    _el(o, "code", code=code, codeSystem=NCI, displayName=display)
    _el(o, "value", xsi_type="CE", nullFlavor="UNK")


def _sender(sender_el, i: Icsr, contact: Sender | None):
    """C.3.1–C.3.4.8, element order as in FDA's instances (addr, telecom, assignedPerson, representedOrganization)."""
    _el(sender_el, "code", code=i.sender_type, codeSystem=f"{OID}.1.7")
    if contact is not None:
        addr = _el(sender_el, "addr")
        _el(addr, "streetAddressLine", contact.street)
        _el(addr, "city", contact.city)
        _el(addr, "state", contact.state)
        _el(addr, "postalCode", contact.postcode)
        _el(sender_el, "telecom", value=f"tel:{contact.telephone}")
        _el(sender_el, "telecom", value=f"fax:{contact.fax}")
        _el(sender_el, "telecom", value=f"mailto:{contact.email}")
        person = _el(sender_el, "assignedPerson", classCode="PSN", determinerCode="INSTANCE")
        name = _el(person, "name")
        _el(name, "prefix", contact.title)
        _el(name, "given", contact.given_name)
        if contact.middle_name:
            _el(name, "given", contact.middle_name)
        _el(name, "family", contact.family_name)
        _country(person, contact.country.upper())
    if i.sender_organisation:
        dept = _el(sender_el, "representedOrganization", classCode="ORG", determinerCode="INSTANCE")
        if contact is not None:
            _el(dept, "name", contact.department)
        _el(
            _el(
                _el(dept, "assignedEntity", classCode="ASSIGNED"),
                "representedOrganization",
                classCode="ORG",
                determinerCode="INSTANCE",
            ),
            "name",
            i.sender_organisation,
        )


def _icsr(root, i: Icsr, batch: IcsrBatch):
    fda = batch.profile == "fda"
    msg = _el(root, "PORR_IN049016UV")
    _el(msg, "id", extension=i.message_id, root=f"{OID}.3.1")
    _el(msg, "creationTime", value=i.created)
    _el(msg, "interactionId", extension="PORR_IN049016UV", root="2.16.840.1.113883.1.6")
    _el(msg, "processingCode", code="P")
    _el(msg, "processingModeCode", code="I")
    _el(msg, "acceptAckCode", code="AL")
    _device(msg, "receiver", batch.message_receiver, f"{OID}.3.12")
    _device(msg, "sender", batch.message_sender, f"{OID}.3.11")
    cap = _el(msg, "controlActProcess", classCode="CACT", moodCode="EVN")
    _el(cap, "code", code="PORR_TE049016UV", codeSystem="2.16.840.1.113883.1.18")
    _el(cap, "effectiveTime", value=i.created)
    ie = _el(_el(cap, "subject", typeCode="SUBJ"), "investigationEvent", classCode="INVSTG", moodCode="EVN")
    _el(ie, "id", extension=i.safety_report_id, root=f"{OID}.3.1")
    if i.worldwide_id:
        _el(ie, "id", extension=i.worldwide_id, root=f"{OID}.3.2")
    _el(ie, "code", code="PAT_ADV_EVNT", codeSystem="2.16.840.1.113883.5.4")
    if i.narrative:
        _el(ie, "text", i.narrative)
    _el(ie, "statusCode", code="active")
    _el(_el(ie, "effectiveTime"), "low", value=i.first_received)
    _el(ie, "availabilityTime", value=i.most_recent)

    assessment = _el(
        _el(ie, "component", typeCode="COMP"), "adverseEventAssessment", classCode="INVSTG", moodCode="EVN"
    )
    role = _el(_el(assessment, "subject1", typeCode="SBJ"), "primaryRole", classCode="INVSBJ")
    player = _el(role, "player1", classCode="PSN", determinerCode="INSTANCE")
    _el(player, "name", nullFlavor="MSK")
    if i.sex:
        _el(player, "administrativeGenderCode", code=i.sex, codeSystem="1.0.5218")
    else:
        _el(player, "administrativeGenderCode", nullFlavor="UNK")
    if i.age:
        o = _el(_el(role, "subjectOf2", typeCode="SBJ"), "observation", classCode="OBS", moodCode="EVN")
        _el(o, "code", code="3", codeSystem=CS_OBS, displayName="age")
        _el(o, "value", xsi_type="PQ", value=i.age[0], unit=i.age[1])
    if fda:
        _nci_obs(role, "C17049", "Race")  # FDA.D.11.r
        _nci_obs(role, "C16564", "Ethnic Group")  # FDA.D.12
    # D.7.2: PV Trace records no medical history, and D.7.1 is not given, so the text is required: UNK
    history = _el(_el(role, "subjectOf2", typeCode="SBJ"), "organizer", classCode="CATEGORY", moodCode="EVN")
    _el(
        history, "code", code="1", codeSystem=f"{OID}.1.20", displayName="relevantMedicalHistoryAndConcurrentConditions"
    )
    h = _el(_el(history, "component", typeCode="COMP"), "observation", classCode="OBS", moodCode="EVN")
    _el(h, "code", code="18", codeSystem=CS_OBS, displayName="historyAndConcurrentConditionText")
    _el(h, "value", xsi_type="ED", nullFlavor="UNK")
    for r in i.reactions:
        _reaction(role, r, fda=fda)
    if i.drugs:
        organizer = _el(_el(role, "subjectOf2", typeCode="SBJ"), "organizer", classCode="CATEGORY", moodCode="EVN")
        _el(organizer, "code", code="4", codeSystem=f"{OID}.1.20", displayName="drugInformation")
        for d in i.drugs:
            _drug(organizer, d)
        for d in i.drugs:
            if d.role:
                _role(assessment, d)

    for code, value in (("1", False), ("23", i.expedited)):  # C.1.6.1 additional documents, C.1.7 expedited
        _bl(_observation_event(ie, code, CS_OBS), value)
    if fda:
        o = _observation_event(ie, "C54588", NCI, "localCriteriaReportType")
        # FDA.C.1.7.1 with FDA.C.1.12 = NI: 1 (15-day) when expedited, else 2 (non-expedited) — rules R0014/R0015
        _el(o, "value", xsi_type="CE", code="1" if i.expedited else "2", codeSystem=f"{FDA_OID}.1.1")
        o = _observation_event(ie, "C156384", NCI, "Combination Product Report Indicator")
        _bl(o, None)  # FDA.C.1.12: PV Trace does not know whether a product is a combination product → NI
    regional = dict(i.regional)
    if batch.profile == "nmpa":  # C.1.CN.1 report source, C.1.CN.2 report category, C.1.CN.3 holder id [M]
        holder = getattr(batch.contact, "nmpa_holder_id", None)
        for code, display, value in (
            (CN_REPORT_SOURCE, "reportSource", regional.get("C.1.CN.1")),
            (CN_REPORT_CATEGORY, "classifyOfReport", regional.get("C.1.CN.2")),
            (CN_HOLDER_ID, "mahID", holder),
        ):
            if value:
                _el(_observation_event(ie, code, CS_OBS, display), "value", xsi_type="CE", code=value)
    # C.1.8.2 first sender of this case (1 regulator, 2 other)
    initial = _el(
        _el(ie, "outboundRelationship", typeCode="SPRT"), "relatedInvestigation", classCode="INVSTG", moodCode="EVN"
    )
    _el(initial, "code", code="1", codeSystem=f"{OID}.1.22", displayName="initialReport")
    event = _el(_el(initial, "subjectOf2", typeCode="SUBJ"), "controlActEvent", classCode="CACT", moodCode="EVN")
    author = _el(_el(event, "author", typeCode="AUT"), "assignedEntity", classCode="ASSIGNED")
    _el(author, "code", code=i.first_sender, codeSystem=f"{OID}.1.3")
    rel = _el(ie, "outboundRelationship", typeCode="SPRT")
    _el(rel, "priorityNumber", value="1")
    inv = _el(rel, "relatedInvestigation", classCode="INVSTG", moodCode="EVN")
    _el(inv, "code", code="2", codeSystem=f"{OID}.1.22", displayName="sourceReport")
    reporter = _author(inv, "subjectOf2")
    if fda:  # FDA.C.2.r.2.8 reporter's e-mail: never transmitted (privacy) → MSK
        _el(reporter, "telecom", nullFlavor="MSK")
    person = _el(reporter, "assignedPerson", classCode="PSN", determinerCode="INSTANCE")
    qual = _el(person, "asQualifiedEntity", classCode="QUAL")
    if i.qualification:
        _el(qual, "code", code=i.qualification, codeSystem=f"{OID}.1.6")
    else:
        _el(qual, "code", nullFlavor="UNK")
    if i.reporter_country:
        _country(person, i.reporter_country)
    _sender(_author(ie, "subjectOf1"), i, batch.contact)
    ch = _characteristic(ie, "1", f"{OID}.1.23", "ICH ReportType")
    _el(ch, "value", xsi_type="CE", code=i.report_type, codeSystem=f"{OID}.1.2")
    _bl(_characteristic(ie, "2", f"{OID}.1.23", "otherCaseIds"), None)
    if i.amendment:  # C.1.11.1 nullification (1) / amendment (2) and C.1.11.2 its reason
        ch = _characteristic(ie, "3", f"{OID}.1.23", "nullificationAmendmentCode")
        _el(ch, "value", xsi_type="CE", code=i.amendment[0], codeSystem=f"{OID}.1.5")
        ch = _characteristic(ie, "4", f"{OID}.1.23", "nullificationAmendmentReason")
        _el(_el(ch, "value", xsi_type="CE"), "originalText", i.amendment[1])
    if regional.get("J2.1a"):  # PMDA reporting category [M] (reports.e2b.profiles)
        ch = _characteristic(ie, "1", J_CHARACTERISTIC_OID)
        _el(ch, "value", xsi_type="CE", code=regional["J2.1a"], codeSystem=J2_1A_OID)


def to_xml(batch: IcsrBatch) -> bytes:
    root = etree.Element(f"{{{HL7}}}MCCI_IN200100UV01", nsmap={None: HL7, "xsi": XSI}, ITSVersion="XML_1.0")
    _el(root, "id", extension=batch.batch_id, root=f"{OID}.3.22")
    _el(root, "creationTime", value=batch.created)
    _el(root, "responseModeCode", code="D")
    _el(root, "interactionId", extension="MCCI_IN200100UV01", root="2.16.840.1.113883.1.6")
    _el(root, "name", code="1", displayName="ichicsr", codeSystem=f"{OID}.1.1")
    for i in batch.icsrs:
        _icsr(root, i, batch)
    _device(root, "receiver", batch.receiver, f"{OID}.3.14")
    _device(root, "sender", batch.sender, f"{OID}.3.13")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


@dataclass
class WriteResult:
    path: Path
    valid: bool  # schema-valid and no rejection-level business-rule finding: shipped as final
    errors: list[str]  # schema errors, then rejection findings
    evaluation: Evaluation | None = None

    def status(self, batch: IcsrBatch) -> dict:
        """The ``.status.json`` of the file: schema and business-rule results, per ICSR each rule's result."""
        out = {
            "file": self.path.name,
            "status": "valid" if self.valid else "INVALID",
            "cases": batch.n_icsrs,
            "errors": self.errors[:50],
            "missing_meddra_codes": batch.missing_meddra_codes,
            "created": batch.created,
            "batch_id": batch.batch_id,
            "shipped": self.valid,
            "icsrs": [{"safety_report_id": i.safety_report_id, "message_id": i.message_id} for i in batch.icsrs],
        }
        if self.evaluation is not None:
            out |= self.evaluation.status()
        return out


def check_batch(batch: IcsrBatch, xml: bytes, *, schema: Path | None = None, clock: dt.datetime | None = None):
    """(schema errors, business-rule evaluation under the batch's profile) for the bytes of ``batch``; the FDA
    registry rules use the registry ``$PVTRACE_E2B_REGISTRY`` names (reports.e2b.registry), if any."""
    schema_errors = validate(xml, schema)
    profile = profile_for(batch.profile) if batch.profile != "ich" else None
    contact = batch.contact if isinstance(batch.contact, Sender) else None
    evaluation = evaluate(
        xml,
        batch.profile,
        clock=clock,
        meddra_loaded=batch.meddra_loaded,
        demo_sender=bool(contact and contact.demo),
        unverified_regional=profile.unverified_regional if profile else None,
        registry=load_registry(),
        receiver=contact.receiver(batch.profile) if contact else None,
    )
    return schema_errors, evaluation


def write_validated(
    batch: IcsrBatch, path: Path, *, schema: Path | None = None, clock: dt.datetime | None = None
) -> WriteResult:
    """Validate against the ICH XSD and the profile's business rules, then write: a valid file to ``path``; one with
    a schema error or a rejection-level finding to ``rejected/`` beside it, with its errors in
    ``<name>.errors.txt`` (never at the final path, and an older final file is removed). ``clock``: the run's
    clock for the future-date rule (default: now)."""
    xml = to_xml(batch)
    schema_errors, evaluation = check_batch(batch, xml, schema=schema, clock=clock or dt.datetime.now(dt.UTC))
    errors = schema_errors + evaluation.messages("reject")
    path.parent.mkdir(parents=True, exist_ok=True)
    if errors:
        rejected = path.parent / "rejected"
        rejected.mkdir(exist_ok=True)
        (rejected / path.name).write_bytes(xml)
        (rejected / f"{path.name}.errors.txt").write_text("\n".join(errors) + "\n", encoding="utf-8")
        path.unlink(missing_ok=True)
        return WriteResult(rejected / path.name, False, errors, evaluation)
    tmp = path.with_suffix(".xml.part")
    tmp.write_bytes(xml)
    tmp.replace(path)
    for stale in (path.parent / "rejected" / path.name, path.parent / "rejected" / f"{path.name}.errors.txt"):
        stale.unlink(missing_ok=True)
    return WriteResult(path, True, [], evaluation)

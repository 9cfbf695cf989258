"""ICH E2B(R3) ICSR batch files (``MCCI_IN200100UV01`` with one or more ``PORR_IN049016UV``) → staging.

Parsed with lxml when it is installed, otherwise with the standard library's ElementTree
(same API for what is used here: ``iterparse``, ``find``/``findall`` with a namespace map).
The element paths follow FDA's data-element table (``fda_refs/icsr_data_elements.csv``),
relative to ``controlActProcess/subject/investigationEvent`` (IE):

* case id ``E2B-<C.1.1>`` (IE/id[@root=…3.1]); C.1.8.1 worldwide id is kept in the quarantine
  detail only when C.1.1 is missing. **Versions**: follow-ups share C.1.1 and differ by the date
  of creation C.1.2 (controlActProcess/effectiveTime); ``version`` = minutes since 1970-01-01 UTC
  of C.1.2, so a later follow-up always has the higher version, whichever file it comes in.
* received_on = C.1.5 (date of most recent information), else C.1.4; country = C.2.r.3 of the
  first primary source, else the reaction's country; qualification C.2.r.4 (1 physician,
  2 pharmacist, 3 other HCP, 4 lawyer, 5 consumer); sex D.5 (1 M, 2 F); age D.2.2a/b (UCUM
  units a, mo, wk, d, h, 10.a).
* reactions (observation code 29): E.i.2.1b MedDRA **LLT code** and E.i.2.1a version go to
  ``case_reaction_meddra``; ``case_reaction.pt`` holds the code too, since E2B carries codes
  only and no MedDRA release ships with PV Trace (map codes to PT names with a licensed release).
  Onset E.i.4. Seriousness E.i.3.2a–f (34 death, 21 life-threatening, 33 hospitalisation,
  35 disability, 12 congenital anomaly, 26 other medically important) = union over reactions.
  Outcome E.i.7 (0 unknown, 1 recovered, 2 recovering, 3 not recovered, 4 with sequelae,
  5 fatal): the case gets the most severe reaction outcome.
* drugs (organizer code 4 / substanceAdministration): G.k.2.2 product name, G.k.2.3.r.1
  substances (→ ingredient, method ``e2b_substance``), G.k.4.r.7 lots at
  ``…/productInstanceInstance/lotNumberText`` (several dosages' lots joined with ``, ``),
  G.k.1 role from the causalityAssessment code 20 that references the drug's id (1 suspect,
  2 concomitant, 3 interacting, 4 not_administered).
* C.1.11.1 = 1 (nullification) → the case is listed in ``stg_deleted``.

An XML file that does not parse is quarantined (``unparsable_xml``: with how many ICSRs were
read before the error); an ICSR without C.1.1 or C.1.2, or failing to convert, is quarantined
(``unparsable_icsr``) and the other ICSRs of the batch are still loaded.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePath

import duckdb

from warehouse.inputs.regulator import IngestError, InputSet, StageInfo, insert_rows

try:  # lxml when available (faster, better errors); ElementTree otherwise — same calls
    from lxml import etree as ET  # type: ignore[import-not-found]

    PARSER = "lxml"
except ImportError:  # pragma: no cover - depends on the environment
    import xml.etree.ElementTree as ET

    PARSER = "xml.etree"

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ICSR_TAG = f"{{{HL7}}}PORR_IN049016UV"
ROOT_C11 = "2.16.840.1.113883.3.989.2.1.3.1"
ROOT_C181 = "2.16.840.1.113883.3.989.2.1.3.2"
CS_OBS = "2.16.840.1.113883.3.989.2.1.1.19"
CS_CHARACTERISTIC = "2.16.840.1.113883.3.989.2.1.1.23"
SERIOUSNESS_CODES = {
    "34": "death",
    "21": "life_threatening",
    "33": "hospitalisation",
    "35": "disability",
    "12": "congenital_anomaly",
    "26": "other_medically_important",
}
OUTCOMES = {
    "0": "unknown",
    "1": "recovered",
    "2": "recovering",
    "3": "not_recovered",
    "4": "recovered_with_sequelae",
    "5": "fatal",
}
OUTCOME_SEVERITY = ["fatal", "not_recovered", "recovered_with_sequelae", "recovering", "recovered", "unknown"]
ROLES = {"1": "suspect", "2": "concomitant", "3": "interacting", "4": "not_administered"}
QUALIFICATIONS = {"1": "physician", "2": "pharmacist", "3": "other_hcp", "4": "lawyer", "5": "consumer"}
AGE_UNIT_YEARS = {"a": 1.0, "10.a": 10.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25, "h": 1 / 8766}


class IcsrRejected(ValueError):
    pass


def _attr(el, path: str, name: str) -> str | None:
    node = el.find(path, NS) if path else el
    value = None if node is None else node.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _text(el, path: str) -> str | None:
    node = el.find(path, NS)
    text = None if node is None else (node.text or "")
    return text.strip() if text and text.strip() else None


def _code(obs) -> str | None:
    return _attr(obs, "h:code", "code")


def parse_ts(value: str | None) -> dt.datetime | None:
    """HL7 TS ``CCYY[MM[DD[hh[mm[ss]]]]][±ZZzz]`` → aware datetime (UTC when no offset)."""
    if not value:
        return None
    body, offset = value, None
    for sign in ("+", "-"):
        if sign in value[8:]:
            idx = value.rindex(sign)
            body, offset = value[:idx], value[idx:]
            break
    body = body.split(".")[0]
    try:
        parts = [
            int(body[0:4]),
            int(body[4:6] or 1),
            int(body[6:8] or 1),
            int(body[8:10] or 0),
            int(body[10:12] or 0),
            int(body[12:14] or 0),
        ]
        tz = dt.UTC
        if offset and len(offset) == 5:
            delta = dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
            tz = dt.timezone(delta if offset[0] == "+" else -delta)
        return dt.datetime(*parts, tzinfo=tz)
    except (ValueError, IndexError):
        return None


def parse_date(value: str | None) -> dt.date | None:
    """A full date (CCYYMMDD…) only; partial dates (CCYY, CCYYMM) are not days."""
    if not value or len(value) < 8:
        return None
    ts = parse_ts(value[:8])
    return ts.date() if ts else None


def version_of(created: dt.datetime) -> int:
    return int(created.astimezone(dt.UTC).timestamp() // 60)


def parse_icsr(msg, source_file: str) -> tuple[dict, list[dict], list[dict], bool]:
    """One PORR_IN049016UV → (case row, drug rows, reaction rows, nullified?)."""
    cap = msg.find("h:controlActProcess", NS)
    ie = None if cap is None else cap.find("h:subject/h:investigationEvent", NS)
    if ie is None:
        raise IcsrRejected("no controlActProcess/subject/investigationEvent")
    c11 = next(
        (i.get("extension") for i in ie.findall("h:id", NS) if i.get("root") == ROOT_C11 and i.get("extension")), None
    )
    if not c11:
        c181 = next((i.get("extension") for i in ie.findall("h:id", NS) if i.get("root") == ROOT_C181), None)
        raise IcsrRejected(f"no C.1.1 sender's safety report id (C.1.8.1 = {c181!r})")
    created = parse_ts(_attr(cap, "h:effectiveTime", "value"))
    if created is None:
        raise IcsrRejected(f"C.1.1 {c11}: no valid C.1.2 date of creation")
    case_id, version = f"E2B-{c11.strip()}", version_of(created)
    received = (
        parse_date(_attr(ie, "h:availabilityTime", "value"))
        or parse_date(_attr(ie, "h:effectiveTime/h:low", "value"))
        or created.date()
    )

    nullified = False
    for sub in ie.findall("h:subjectOf2/h:investigationCharacteristic", NS):
        code = sub.find("h:code", NS)
        if code is not None and code.get("code") == "3" and code.get("codeSystem") == CS_CHARACTERISTIC:
            nullified = _attr(sub, "h:value", "code") == "1"

    qualification = country = None
    for rel in ie.findall("h:outboundRelationship", NS):
        inv = rel.find("h:relatedInvestigation", NS)
        if inv is None or _attr(inv, "h:code", "code") != "2":
            continue
        person = inv.find("h:subjectOf2/h:controlActEvent/h:author/h:assignedEntity/h:assignedPerson", NS)
        if person is not None:
            qualification = QUALIFICATIONS.get(_attr(person, "h:asQualifiedEntity/h:code", "code") or "")
            country = _attr(person, "h:asLocatedEntity/h:location/h:code", "code")
        break

    assessment = ie.find("h:component/h:adverseEventAssessment", NS)
    role_el = None if assessment is None else assessment.find("h:subject1/h:primaryRole", NS)
    if role_el is None:
        raise IcsrRejected(f"C.1.1 {c11}: no adverseEventAssessment/subject1/primaryRole (patient)")
    sex = {"1": "M", "2": "F"}.get(_attr(role_el, "h:player1/h:administrativeGenderCode", "code") or "")
    age = None
    reactions, drugs, seriousness, outcomes = [], [], set(), []
    for sub in role_el.findall("h:subjectOf2", NS):
        obs = sub.find("h:observation", NS)
        if obs is not None and _code(obs) == "3":  # D.2.2 age at onset
            val = obs.find("h:value", NS)
            try:
                factor = AGE_UNIT_YEARS.get((val.get("unit") or "").strip())
                age = float(val.get("value")) * factor if factor else None
            except (TypeError, ValueError, AttributeError):
                age = None
        elif obs is not None and _code(obs) == "29":  # E.i reaction
            value = obs.find("h:value", NS)
            code = None if value is None else (value.get("code") or "").strip() or None
            outcome = None
            for rel in obs.findall("h:outboundRelationship2/h:observation", NS):
                rc = _code(rel)
                if rc in SERIOUSNESS_CODES and _attr(rel, "h:value", "value") == "true":
                    seriousness.add(SERIOUSNESS_CODES[rc])
                elif rc == "27":
                    outcome = OUTCOMES.get(_attr(rel, "h:value", "code") or "")
            if outcome:
                outcomes.append(outcome)
            if country is None:
                country = _attr(obs, "h:location/h:locatedEntity/h:locatedPlace/h:code", "code")
            reactions.append(
                {
                    "case_id": case_id,
                    "version": version,
                    "reaction_seq": len(reactions) + 1,
                    "pt": code,
                    "onset_date": parse_date(_attr(obs, "h:effectiveTime/h:low", "value")),
                    "meddra_code": code,
                    "meddra_version": None if value is None else value.get("codeSystemVersion"),
                }
            )
        organizer = sub.find("h:organizer", NS)
        if organizer is not None and _code(organizer) == "4":  # G.k drugs
            for comp in organizer.findall("h:component/h:substanceAdministration", NS):
                product = comp.find("h:consumable/h:instanceOfKind/h:kindOfProduct", NS)
                name = None if product is None else _text(product, "h:name")
                substances = (
                    []
                    if product is None
                    else [
                        s.text.strip()
                        for s in product.findall("h:ingredient/h:ingredientSubstance/h:name", NS)
                        if s.text and s.text.strip()
                    ]
                )
                # G.k.4.r.7 (per dosage) and, for combination products, the device part's lot
                lots = [
                    t.text.strip()
                    for t in comp.findall(".//h:productInstanceInstance/h:lotNumberText", NS)
                    if t.text and t.text.strip()
                ]
                drugs.append(
                    {
                        "_id": _attr(comp, "h:id", "root"),
                        "case_id": case_id,
                        "version": version,
                        "drug_seq": len(drugs) + 1,
                        "product_name_reported": name,
                        "ingredient_reported": "; ".join(substances) or None,
                        "ingredient_method": "e2b_substance" if substances else None,
                        "lot_raw": ", ".join(dict.fromkeys(lots)) or None,
                    }
                )
    roles = {}
    for ca in assessment.findall("h:component/h:causalityAssessment", NS):
        if _code(ca) == "20":
            ref = _attr(ca, "h:subject2/h:productUseReference/h:id", "root")
            roles[ref] = ROLES.get(_attr(ca, "h:value", "code") or "")
    for d in drugs:
        d["role"] = roles.get(d.pop("_id"))
    severity = next((o for o in OUTCOME_SEVERITY if o in outcomes), None)
    case = {
        "case_id": case_id,
        "version": version,
        "received_on": received,
        "source": "regulator",
        "reporter_qualification": qualification,
        "country": country,
        "age_years": round(age, 3) if age is not None and 0 <= age <= 130 else None,
        "sex": sex,
        "serious": bool(seriousness),
        "seriousness": sorted(seriousness),
        "outcome": "fatal" if "death" in seriousness else severity,
        "narrative": _text(ie, "h:text"),
        "onset_date": min((r["onset_date"] for r in reactions if r["onset_date"]), default=None),
        "source_file": source_file,
    }
    return case, drugs, reactions, nullified


def stage(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> StageInfo:
    info = StageInfo(extra={"xml_parser": PARSER})
    xml_files = [f for f in inputs.files if PurePath(f.local).suffix.lower() == ".xml"]
    if not xml_files:
        raise IngestError(f"{inputs.path}: no .xml files (E2B(R3) ICSR batches) found")
    cases, drugs, reactions, quarantine, deleted = [], [], [], [], []
    for f in xml_files:
        read = 0
        try:
            for _event, el in ET.iterparse(str(f.local), events=("end",)):
                if el.tag != ICSR_TAG:
                    continue
                read += 1
                try:
                    case, d, r, nullified = parse_icsr(el, f.name)
                    doc = len(cases)  # reading order: a later copy of the same case version wins
                    cases.append({**case, "_doc": doc})
                    drugs.extend({**x, "_doc": doc} for x in d)
                    reactions.extend({**x, "_doc": doc} for x in r)
                    if nullified:
                        deleted.append({"case_id": case["case_id"], "source_file": f.name})
                except Exception as exc:
                    quarantine.append(
                        {
                            "source_file": f.name,
                            "record_key": f"ICSR #{read}",
                            "reason": "unparsable_icsr",
                            "detail": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                            "raw": ET.tostring(el, encoding="unicode")[:4000],
                        }
                    )
                el.clear()
        except ET.ParseError as exc:
            quarantine.append(
                {
                    "source_file": f.name,
                    "record_key": f"after ICSR #{read}",
                    "reason": "unparsable_xml",
                    # one line: lxml's messages can carry a newline (the CLI's error is one line)
                    "detail": f"{' '.join(str(exc).split())}; {read} ICSRs read before the error were kept",
                    "raw": None,
                }
            )
    if not cases and not quarantine:
        raise IngestError(f"{inputs.path}: no E2B(R3) ICSR (PORR_IN049016UV) found in {len(xml_files)} XML files")
    if not cases and all(q["reason"] == "unparsable_xml" for q in quarantine):
        first = quarantine[0]
        raise IngestError(f"{first['source_file']}: cannot read as E2B(R3) XML ({first['detail']})")
    insert_rows(con, "stg_case", cases)
    insert_rows(con, "stg_drug", drugs)
    insert_rows(con, "stg_reaction", reactions)
    insert_rows(con, "stg_quarantine", quarantine)
    insert_rows(con, "stg_deleted", deleted)
    info.extra["icsrs"] = len(cases) + sum(q["reason"] == "unparsable_icsr" for q in quarantine)
    return info

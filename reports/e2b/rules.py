"""Business rules for E2B(R3) ICSR batches: ICH implementation-guide conformance, FDA's rejection/warning rules and
the regional profiles, as data (id, severity, profiles, element, description) plus a small XPath check each.

Severities:

* ``reject``: the gateway would reject the ICSR (FDA ``R0nnn`` ids, ICH mandatory / conditional elements).
  A batch with a reject-level finding is not shipped as final (``reports.e2b.writer.write_validated``).
* ``warn``: the gateway would accept it with a warning (FDA ``W0nnn`` ids, PV Trace's own advisories).
* ``not_ready``: nothing in the file is wrong, but it cannot go to a gateway yet (no MedDRA terminology loaded,
  a demo sender, regional elements PV Trace cannot write yet). The file is written; its status says why it is
  not gateway-ready.

A rule that checks a value against a registry PV Trace does not have (FDA's IND, pre-ANDA and device-problem-code
lists: R0105, R0106, W0012, W0009, W0008) uses the user's registry (:mod:`reports.e2b.registry`); without one
its result is ``not checked: no registry configured`` — never ``pass``.

Rule ids: ``ICH-<element>`` for ICH conformance, FDA's own ids (``R0006``; ``FDA-<element>`` for an FDA
data-element-table requirement that has no R/W id), ``EMA-…``, ``PVT-…`` for PV Trace's readiness rules.
A check gets one ICSR message (``PORR_IN049016UV``) and the batch context and returns its failure messages
(empty: passed), or ``None`` when the rule does not apply to that ICSR. :func:`evaluate` runs every rule of a
profile on every ICSR.

FDA's data-element table (``fda_refs/icsr_data_elements.csv``) states which elements are required and which
nullFlavors each allows; the XPaths here follow FDA's example instances (where the table's XPaths differ from
FDA's own instances — FDA.C.1.7.1, FDA.C.1.12, FDA.E.i.3.2h — the instances are followed).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from reports.e2b.model import FDA_OID, HL7, MEDDRA, NCI, OID, XSI
from reports.e2b.profiles import (
    CN_CATEGORY_CODES,
    CN_HOLDER_ID,
    CN_REPORT_CATEGORY,
    CN_REPORT_SOURCE,
    CN_SOURCE_CODES,
    EDQM_FORM_OID,
    EDQM_ROUTE_OID,
    J2_1A_OID,
    J_CHARACTERISTIC_OID,
    PROFILES,
)
from reports.e2b.registry import Registry, fold

NS = {"h": HL7, "xsi": XSI}

IE = "h:controlActProcess/h:subject/h:investigationEvent"
PRIMARY_ROLE = f"{IE}/h:component/h:adverseEventAssessment/h:subject1/h:primaryRole"
REACTIONS = f"{PRIMARY_ROLE}/h:subjectOf2/h:observation[h:code[@code='29'][@codeSystem='{OID}.1.19']]"
DRUGS = (
    f"{PRIMARY_ROLE}/h:subjectOf2/h:organizer[h:code[@code='4'][@codeSystem='{OID}.1.20']]"
    "/h:component/h:substanceAdministration"
)
ROLES = (
    f"{IE}/h:component/h:adverseEventAssessment/h:component/h:causalityAssessment"
    f"[h:code[@code='20'][@codeSystem='{OID}.1.19']]/h:value/@code"
)
SENDER = f"{IE}/h:subjectOf1/h:controlActEvent/h:author/h:assignedEntity[h:code[@codeSystem='{OID}.1.7']]"
PRIMARY_SOURCE = (
    f"{IE}/h:outboundRelationship[@typeCode='SPRT'][h:relatedInvestigation/h:code[@code='2']]"
    "[h:priorityNumber/@value='1']/h:relatedInvestigation/h:subjectOf2/h:controlActEvent/h:author/h:assignedEntity"
)
MED_HISTORY = f"{PRIMARY_ROLE}/h:subjectOf2/h:organizer[h:code[@code='1'][@codeSystem='{OID}.1.20']]"

SEVERITIES = ("reject", "warn", "not_ready")


@dataclass
class Context:
    """What a check may need beyond the ICSR: the batch, the profile, the clock and the loaded terminology."""

    batch: etree._Element
    profile: str
    clock: dt.datetime | None = None  # "now" for the future-date rule (the run's clock); None: the real now
    meddra_loaded: bool = True
    demo_sender: bool = False
    unverified_regional: str | None = None
    registry: Registry | None = None  # the user's FDA registry (reports.e2b.registry); None: not configured
    receiver: str | None = None  # the receiver the sender file configures for this regulator (N.1.4, N.2.r.3)

    @property
    def batch_receiver(self) -> str | None:
        return _first(self.batch, "h:receiver/h:device/h:id/@extension")

    @property
    def postmarket(self) -> bool:
        return self.batch_receiver == "ZZFDA"


@dataclass(frozen=True)
class NotChecked:
    """A check's answer when the element is there but what it must be compared with is not (a registry)."""

    reason: str


NO_REGISTRY = NotChecked("no registry configured")

Check = Callable[[etree._Element, Context], "list[str] | NotChecked | None"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str  # reject | warn | not_ready
    profiles: frozenset[str]  # {"ich"} = every profile
    element: str  # E2B data element(s)
    description: str
    source: str  # where the rule is written down
    check: Check = field(repr=False, compare=False)

    def applies_to(self, profile: str) -> bool:
        return "ich" in self.profiles or profile in self.profiles


# ---- XPath helpers -----------------------------------------------------------------------------------


def _x(node, path: str) -> list:
    return node.xpath(path, namespaces=NS)


def _first(node, path: str) -> str | None:
    found = _x(node, path)
    if not found:
        return None
    v = found[0]
    text = v if isinstance(v, str) else (v.text or "")
    return text.strip() or None


def _value_or_null(node, path: str, attr: str, nulls: tuple[str, ...]) -> str | None:
    """Failure message when the element at ``path`` has neither ``attr`` (or text) nor an allowed nullFlavor."""
    els = _x(node, path)
    if not els:
        return "absent"
    el = els[0]
    value = el.get(attr) if attr != "text()" else (el.text or "").strip()
    if value:
        return None
    nf = el.get("nullFlavor")
    if nf and nf in nulls:
        return None
    if nf:
        return f"nullFlavor {nf} not allowed (allowed: {', '.join(nulls) or 'none'})"
    return "empty"


def _required(element: str, path: str, attr: str = "value", nulls: tuple[str, ...] = ()) -> Check:
    def check(msg, ctx):
        problem = _value_or_null(msg, path, attr, nulls)
        return [f"{element} {problem}"] if problem else []

    return check


def _per(items: str, element: str, path: str, attr: str, nulls: tuple[str, ...] = ()) -> Check:
    """The element at ``path`` (relative to each of ``items``) is required in every repetition."""

    def check(msg, ctx):
        nodes = _x(msg, items)
        if not nodes:
            return None
        out = []
        for i, node in enumerate(nodes, 1):
            problem = _value_or_null(node, path, attr, nulls)
            if problem:
                out.append(f"{element} #{i} {problem}")
        return out

    return check


def _bl(code: str, system: str, where: str = f"{IE}/h:component/h:observationEvent") -> str:
    return f"{where}[h:code[@code='{code}'][@codeSystem='{system}']]/h:value"


def _ts(value: str | None) -> dt.datetime | None:
    """An HL7 TS (CCYY[MM[DD[hh[mm[ss]]]]][+/-ZZzz]) as an aware datetime (the earliest instant it can mean)."""
    if not value:
        return None
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", value)
    if not m:
        return None
    y, mo, d, h, mi, s, tz = m.groups()
    offset = dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * (1 if tz[0] == "+" else -1) if tz else None
    try:
        when = dt.datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone(offset) if offset is not None else dt.UTC)


# ---- checks that need more than presence -------------------------------------------------------------


def _dates_not_in_future(msg, ctx):
    now = ctx.clock or dt.datetime.now(dt.UTC)  # a gateway compares with its own clock
    fields = {
        "N.1.5": _first(ctx.batch, "h:creationTime/@value"),
        "N.2.r.4": _first(msg, "h:creationTime/@value"),
        "C.1.2": _first(msg, "h:controlActProcess/h:effectiveTime/@value"),
        "C.1.4": _first(msg, f"{IE}/h:effectiveTime/h:low/@value"),
        "C.1.5": _first(msg, f"{IE}/h:availabilityTime/@value"),
    }
    for i, v in enumerate(_x(msg, f"{REACTIONS}/h:effectiveTime/h:low/@value"), 1):
        fields[f"E.i.4 #{i}"] = v
    out = []
    for element, value in fields.items():
        when = _ts(value)
        if when is not None and when > now:
            out.append(f"{element} contains Future date ({value})")
    return out


def _full_precision(msg, ctx):
    out = []
    for element, value in (
        ("N.1.5", _first(ctx.batch, "h:creationTime/@value")),
        ("N.2.r.4", _first(msg, "h:creationTime/@value")),
        ("C.1.2", _first(msg, "h:controlActProcess/h:effectiveTime/@value")),
    ):
        if value and not re.match(r"^\d{14}", value):
            out.append(f"{element} does not contain full precision date ({value})")
    for element, value in (
        ("C.1.4", _first(msg, f"{IE}/h:effectiveTime/h:low/@value")),
        ("C.1.5", _first(msg, f"{IE}/h:availabilityTime/@value")),
    ):
        if value and not re.match(r"^\d{8}", value):
            out.append(f'{element} does not contain minimum precision of "CCYYMMDD" ({value})')
    return out


def _received_order(msg, ctx):
    first, recent = (
        _ts(_first(msg, p)) for p in (f"{IE}/h:effectiveTime/h:low/@value", f"{IE}/h:availabilityTime/@value")
    )
    if first and recent and recent < first:
        return ["C.1.5 (most recent information) is before C.1.4 (first received)"]
    return []


def _meddra_codes(msg, ctx):
    if not ctx.meddra_loaded:
        return None  # PVT-MEDDRA-TERMINOLOGY says so instead
    out = []
    for i, r in enumerate(_x(msg, REACTIONS), 1):
        value = (_x(r, f"h:value[@codeSystem='{MEDDRA}']") or [None])[0]
        code = value.get("code") if value is not None else None
        version = value.get("codeSystemVersion") if value is not None else None
        if not code:
            out.append(f"E.i.2.1b #{i} absent (MedDRA LLT code required, no nullFlavor allowed)")
        elif not re.fullmatch(r"\d{8}", code):
            out.append(f"E.i.2.1b #{i} {code!r} is not an eight-digit MedDRA code")
        if not version:
            out.append(f"E.i.2.1a #{i} absent (MedDRA version required)")
    return out


def _one_meddra_version(msg, ctx):
    versions = {v for v in _x(msg, f".//h:*[@codeSystem='{MEDDRA}']/@codeSystemVersion") if v}
    return [f"{len(versions)} MedDRA versions in one ICSR: {sorted(versions)}"] if len(versions) > 1 else []


def _meddra_terminology(msg, ctx):
    return [] if ctx.meddra_loaded else ["not gateway-ready: no MedDRA terminology loaded (E.i.2.1a/b not coded)"]


def _language_with_text(msg, ctx):
    out = []
    for i, r in enumerate(_x(msg, REACTIONS), 1):
        for ot in _x(r, f"h:value[@codeSystem='{MEDDRA}']/h:originalText"):
            if (ot.text or "").strip() and not ot.get("language"):
                out.append(f"E.i.1.1b #{i} absent although E.i.1.1a is given")
    return out


def _age_pair(msg, ctx):
    for v in _x(msg, f"{PRIMARY_ROLE}/h:subjectOf2/h:observation[h:code[@code='3']]/h:value"):
        if bool(v.get("value")) != bool(v.get("unit")):
            return ["D.2.2a and D.2.2b must be given together"]
    return []


def _primary_source(msg, ctx):
    sources = _x(msg, PRIMARY_SOURCE)
    if not sources:
        return ["C.2.r.5: no primary source for regulatory purposes (priorityNumber 1)"]
    out = []
    src = sources[0]
    if not _x(src, ".//h:asLocatedEntity/h:location/h:code[@codeSystem='1.0.3166.1.2.2']/@code"):
        out.append("C.2.r.3 absent for the primary source for regulatory purposes")
    qual = _x(src, ".//h:asQualifiedEntity/h:code")
    if not qual or not (qual[0].get("code") or qual[0].get("nullFlavor") == "UNK"):
        out.append("C.2.r.4 absent (or a nullFlavor other than UNK) for the primary source")
    return out


def _sender_org(msg, ctx):
    sender = _x(msg, SENDER)
    if not sender:
        return ["C.3.1 absent"]
    if _first(sender[0], "h:code/@code") == "7":
        return None
    name = _first(sender[0], "h:representedOrganization/h:assignedEntity/h:representedOrganization/h:name")
    return [] if name else ["C.3.2 absent although the sender type is not 7 (patient / consumer)"]


def _nullification_reason(msg, ctx):
    kind = _x(msg, f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='3']]/h:value/@code")
    if not kind:
        return None
    reason = _first(msg, f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='4']]/h:value/h:originalText")
    out = [] if reason else ["C.1.11.2 (reason) absent although C.1.11.1 is given"]
    if kind[0] not in ("1", "2"):
        out.append(f"C.1.11.1 contains invalid value {kind[0]}")
    return out


def _medical_history_text(msg, ctx):
    coded = _x(msg, f"{MED_HISTORY}/h:component/h:observation[h:value/@codeSystem='{MEDDRA}']")
    if coded:
        return None
    text = _x(msg, f"{MED_HISTORY}/h:component/h:observation[h:code[@code='18']]/h:value")
    if not text:
        return ["D.7.2 absent and D.7.1 not given"]
    v = text[0]
    if (v.text or "").strip() or v.get("nullFlavor") in ("MSK", "UNK", "ASKU", "NASK"):
        return []
    return ["D.7.2 empty (nullFlavor MSK, UNK, ASKU or NASK allowed)"]


def _drug_roles(msg, ctx):
    if not ctx.postmarket:
        return None
    roles = _x(msg, ROLES)
    return [] if set(roles) & {"1", "3", "4"} else ["no product with G.k.1 = 1, 3 or 4"]


def _fda_batch_receiver(msg, ctx):
    r = ctx.batch_receiver
    return [] if r in ("ZZFDA", "ZZFDA_PREMKT") else [f'N.1.4 is {r!r}: "ZZFDA" (post-market) or "ZZFDA_PREMKT"']


def _fda_message_receiver(msg, ctx):
    if not ctx.postmarket:
        return None
    r = _first(msg, "h:receiver/h:device/h:id/@extension")
    return [] if r in ("CDER", "CBER") else [f"N.2.r.3 is {r!r}: post-market ICSRs go to the centre, CDER or CBER"]


def _fda_premarket_receiver(msg, ctx):
    if ctx.batch_receiver != "ZZFDA_PREMKT":
        return None
    r = _first(msg, "h:receiver/h:device/h:id/@extension")
    ok = ("CDER_IND", "CBER_IND", "CDER_IND_EXEMPT_BA_BE")
    return [] if r in ok else [f"N.2.r.3 is {r!r}; pre-market: {', '.join(ok)}"]


def _fda_expedited_not_ni(msg, ctx):
    v = _x(msg, _bl("23", f"{OID}.1.19"))
    nullified = _x(msg, f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='3']]")
    if v and v[0].get("nullFlavor") == "NI" and not nullified:
        return ["C.1.7 nullFlavor NI is not accepted by FDA"]
    return []


def _fda_c171(msg, ctx):
    """R0012–R0015: the local criteria report type must agree with C.1.12 (combination product) and C.1.7."""
    if not ctx.postmarket:
        return None
    report_type = _first(msg, f"{_bl('C54588', NCI)}/@code")
    if report_type is None:
        return None  # FDA-C.1.7.1 reports the absence
    combo = _first(msg, f"{_bl('C156384', NCI)}/@value") == "true"
    expedited = _first(msg, f"{_bl('23', f'{OID}.1.19')}/@value") == "true"
    allowed = {(True, True): {"1", "4"}, (True, False): {"2", "5"}, (False, True): {"1"}, (False, False): {"2"}}
    ok = allowed[(combo, expedited)]
    rid = {(True, True): "R0012", (True, False): "R0013", (False, True): "R0014", (False, False): "R0015"}
    if report_type in ok:
        return []
    return [
        f"{rid[(combo, expedited)]}: FDA.C.1.7.1 is {report_type}; with FDA.C.1.12 "
        f"{'true' if combo else 'false/NI'} and C.1.7 {'true' if expedited else 'false/NI'} allowed: {sorted(ok)}"
    ]


def _postmarket(check: Check) -> Check:
    def wrapped(msg, ctx):
        return check(msg, ctx) if ctx.postmarket else None

    return wrapped


def _fda_race(msg, ctx):
    return (
        _required_obs(msg, "C17049", "FDA.D.11.r", ("NI", "MSK", "UNK", "NA", "ASKU", "NASK"))
        if ctx.postmarket
        else None
    )


def _fda_ethnicity(msg, ctx):
    return _required_obs(msg, "C16564", "FDA.D.12", ("NI", "MSK", "UNK", "NA")) if ctx.postmarket else None


def _required_obs(msg, code: str, element: str, nulls: tuple[str, ...]):
    values = _x(msg, f"{PRIMARY_ROLE}/h:subjectOf2/h:observation[h:code[@code='{code}'][@codeSystem='{NCI}']]/h:value")
    if not values:
        return [f"{element} absent"]
    for v in values:
        if not v.get("code") and v.get("nullFlavor") not in nulls:
            return [f"{element} has neither a code nor an allowed nullFlavor ({', '.join(nulls)})"]
    return []


def _fda_required_intervention(msg, ctx):
    if not ctx.postmarket:
        return None
    out = []
    for i, r in enumerate(_x(msg, REACTIONS), 1):
        v = _x(r, f"h:outboundRelationship2/h:observation[h:code[@code='7'][@codeSystem='{FDA_OID}.3']]/h:value")
        if not v:
            out.append(f"FDA.E.i.3.2h #{i} absent")
        elif not v[0].get("value") and v[0].get("nullFlavor") != "NI":
            out.append(f"FDA.E.i.3.2h #{i} empty (nullFlavor NI allowed)")
    return out


def _fda_reporter_email(msg, ctx):
    if not ctx.postmarket:
        return None
    sources = _x(msg, PRIMARY_SOURCE)
    if not sources:
        return None
    tel = _x(sources[0], "h:telecom[starts-with(@value, 'mailto:')] | h:telecom[@nullFlavor]")
    if not tel:
        return ["FDA.C.2.r.2.8 absent (reporter's e-mail, or nullFlavor MSK, ASKU or NASK)"]
    if tel[0].get("nullFlavor") and tel[0].get("nullFlavor") not in ("MSK", "ASKU", "NASK"):
        return [f"FDA.C.2.r.2.8 nullFlavor {tel[0].get('nullFlavor')} not allowed (MSK, ASKU, NASK)"]
    return []


_SENDER_CONTACT = {  # FDA data-element table: post-market "Required", no nullFlavor
    "C.3.3.1": ("h:representedOrganization/h:name", "text()"),
    "C.3.3.2": ("h:assignedPerson/h:name/h:prefix", "text()"),
    "C.3.3.3": ("h:assignedPerson/h:name/h:given", "text()"),
    "C.3.3.5": ("h:assignedPerson/h:name/h:family", "text()"),
    "C.3.4.1": ("h:addr/h:streetAddressLine", "text()"),
    "C.3.4.2": ("h:addr/h:city", "text()"),
    "C.3.4.3": ("h:addr/h:state", "text()"),
    "C.3.4.4": ("h:addr/h:postalCode", "text()"),
    "C.3.4.5": ("h:assignedPerson/h:asLocatedEntity/h:location/h:code", "code"),
    "C.3.4.6": ("h:telecom[starts-with(@value, 'tel:')]", "value"),
    "C.3.4.7": ("h:telecom[starts-with(@value, 'fax:')]", "value"),
    "C.3.4.8": ("h:telecom[starts-with(@value, 'mailto:')]", "value"),
}


def _sender_contact(msg, ctx):
    if not ctx.postmarket:
        return None
    sender = _x(msg, SENDER)
    if not sender:
        return ["C.3.1 absent"]
    out = []
    for element, (path, attr) in _SENDER_CONTACT.items():
        problem = _value_or_null(sender[0], path, attr, ())
        if problem:
            out.append(f"{element} {problem}")
    return out


def _regional_receivers(msg, ctx):
    """N.1.4 and N.2.r.3 are the configured receiver, else the profile's receiver identifiers (reports.e2b.profiles)."""
    profile = PROFILES[ctx.profile]
    batch = ctx.receiver or profile.batch_receiver
    messages = (ctx.receiver,) if ctx.receiver else profile.message_receivers
    out = []
    if ctx.batch_receiver != batch:
        out.append(f"N.1.4 is {ctx.batch_receiver!r}, not {batch}")
    r = _first(msg, "h:receiver/h:device/h:id/@extension")
    if r not in messages:
        out.append(f"N.2.r.3 is {r!r}, not {' or '.join(messages)}")
    return out


def _receiver_configured(msg, ctx):
    """The profile's built-in receiver is unverified [M]: the sender file must name the one the gateway expects."""
    if ctx.receiver or PROFILES[ctx.profile].receiver_verified:
        return []
    return [
        f"not gateway-ready: receiver {ctx.batch_receiver!r} is PV Trace's unverified default [M]; set "
        f"receiver_{ctx.profile} in the sender file to the identifier your gateway registration gives"
    ]


def _j2_1a(msg, ctx):
    """PMDA J2.1a reporting category: present, two capital letters (AA-AG post-marketing, DA-DG trial, ...)."""
    path = f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='1'][@codeSystem='{J_CHARACTERISTIC_OID}']]"
    value = _x(msg, f"{path}/h:value[@codeSystem='{J2_1A_OID}']/@code")
    if not value:
        return ["J2.1a (reporting category) absent"]
    return [] if re.fullmatch(r"[A-Z]{2}", value[0]) else [f"J2.1a contains invalid value {value[0]}"]


def _cn_code(element: str, code: str, allowed: frozenset[str] | None) -> Check:
    """An NMPA C.1.CN.x observation: present, and its value in ``allowed`` (None: any non-empty value)."""

    def check(msg, ctx):
        value = _x(msg, f"{_bl(code, f'{OID}.1.19')}/@code")
        if not value:
            return [f"{element} absent"]
        if allowed is not None and value[0] not in allowed:
            return [f"{element} contains invalid value {value[0]} (allowed: {', '.join(sorted(allowed))})"]
        return []

    return check


def _cn_holder(msg, ctx):
    if _x(msg, f"{_bl(CN_HOLDER_ID, f'{OID}.1.19')}/@code"):
        return []
    return ["not gateway-ready: C.1.CN.3 (holder identifier) not configured: set nmpa_holder_id in the sender file"]


def _edqm(what: str, oid: str, path: str) -> Check:
    def check(msg, ctx):
        nodes = _x(msg, path)
        if not nodes:
            return None
        missing = [i for i, n in enumerate(nodes, 1) if not (n.get("code") and n.get("codeSystem") == oid)]
        return [f"{what} #{i} has text only, no EDQM TermID" for i in missing]

    return check


def _demo_sender(msg, ctx):
    return ["not gateway-ready: the sender is the demo's fictitious sender"] if ctx.demo_sender else []


def _regional_unverified(msg, ctx):
    return [f"not gateway-ready: {ctx.unverified_regional}"] if ctx.unverified_regional else []


# ---- FDA rules that need FDA's registries (the user's copy: reports.e2b.registry) ---------------------------

STUDY_REGISTRATION = f"{IE}//h:researchStudy/h:authorization/h:studyRegistration/h:id"
IND_OID = f"{FDA_OID}.2.1"  # FDA.C.5.5a IND number where the AE occurred
PRE_ANDA_OID = f"{FDA_OID}.2.2"  # FDA.C.5.5b pre-ANDA number
CROSS_IND_OID = f"{FDA_OID}.2.3"  # FDA.C.5.6.r IND number of a cross-reported IND
DEVICE_PROBLEM = ".//h:characteristic[h:code[@code='C54451'][@codeSystem='" + NCI + "']]/h:value"  # FDA.G.k.12.r.3.r


def _centre(msg) -> str:
    """The FDA centre an application number is registered with: N.2.r.3 before its suffix (CDER_IND -> CDER)."""
    return (_first(msg, "h:receiver/h:device/h:id/@extension") or "").split("_")[0]


def _numbers(msg, oid: str) -> list[str]:
    return [v.strip() for v in _x(msg, f"{STUDY_REGISTRATION}[@root='{oid}']/@extension") if v.strip()]


def _registered(kind: str, element: str, oid: str) -> Check:
    def check(msg, ctx):
        numbers = _numbers(msg, oid)
        if not numbers:
            return None
        if ctx.registry is None:
            return NO_REGISTRY
        centre = _centre(msg)
        return [
            f"{element} {n} is not registered for {centre or 'the centre in N.2.r.3'} in the {kind} registry"
            for n in numbers
            if not ctx.registry.has(kind, n, centre)
        ]

    return check


def _registered_product_name(msg, ctx):
    """W0009: each suspect product's G.k.2.2 is a product registered for the application in FDA.C.5.5a/b."""
    apps = [("ind", n) for n in _numbers(msg, IND_OID)] + [("pre_anda", n) for n in _numbers(msg, PRE_ANDA_OID)]
    if not apps:
        return None
    if ctx.registry is None:
        return NO_REGISTRY
    names = frozenset().union(*(ctx.registry.product_names(k, n) for k, n in apps))
    if not names:
        return NotChecked(f"no product_name registered for {', '.join(n for _, n in apps)}")
    suspects = set(
        _x(
            msg,
            f"{IE}/h:component/h:adverseEventAssessment/h:component/h:causalityAssessment"
            f"[h:code[@code='20'][@codeSystem='{OID}.1.19']][h:value/@code='1']"
            "/h:subject2/h:productUseReference/h:id/@root",
        )
    )
    out = []
    for drug in _x(msg, DRUGS):
        if _first(drug, "h:id/@root") not in suspects:
            continue
        name = _first(drug, "h:consumable/h:instanceOfKind/h:kindOfProduct/h:name")
        if name and fold(name) not in names:
            out.append(
                f"G.k.2.2 {name!r} does not match the registered product name for application "
                f"{', '.join(n for _, n in apps)} (ignore for a comparator study product)"
            )
    return out


def _device_problem_codes(msg, ctx):
    codes = [c.strip() for c in _x(msg, f"{DEVICE_PROBLEM}/@code") if c.strip()]
    if not codes:
        return None
    if ctx.registry is None:
        return NO_REGISTRY
    return [
        f"FDA.G.k.12.r.3.r contains invalid value {c}" for c in codes if not ctx.registry.has("device_problem_code", c)
    ]


# ---- the catalogue -----------------------------------------------------------------------------------

ICH_IG = "ICH E2B(R3) implementation guide"
FDA_RULES = "FDA E2B(R3) business rules (fda_refs/rejection_warning_rules.csv)"
FDA_TABLE = "FDA E2B(R3) data elements, post-market conformance (fda_refs/icsr_data_elements.csv)"
PMDA_VENDOR = "[M] public vendor sources (reports.e2b.profiles); PMDA's guide not verified"
NMPA_VENDOR = "[M] NMPA regional guide (2019) as public vendor sources describe it (reports.e2b.profiles)"
ALL = frozenset({"ich"})
FDA = frozenset({"fda"})
_C17 = f"{IE}/h:component/h:observationEvent"


def _r(id, severity, profiles, element, description, source, check) -> Rule:
    return Rule(id, severity, profiles, element, description, source, check)


RULES: tuple[Rule, ...] = (
    # ICH: mandatory elements of the message header and section C
    _r("ICH-N.2.r.1", "reject", ALL, "N.2.r.1", "Message identifier required", ICH_IG,
       _required("N.2.r.1", f"h:id[@root='{OID}.3.1']", "extension")),
    _r("ICH-N.2.r.2", "reject", ALL, "N.2.r.2", "Message sender identifier required", ICH_IG,
       _required("N.2.r.2", "h:sender/h:device/h:id", "extension")),
    _r("ICH-N.2.r.3", "reject", ALL, "N.2.r.3", "Message receiver identifier required", ICH_IG,
       _required("N.2.r.3", "h:receiver/h:device/h:id", "extension")),
    _r("ICH-C.1.1", "reject", ALL, "C.1.1", "Sender's safety report unique identifier required", ICH_IG,
       _required("C.1.1", f"{IE}/h:id[@root='{OID}.3.1']", "extension")),
    _r("ICH-C.1.3", "reject", ALL, "C.1.3", "Type of report required", ICH_IG,
       _required("C.1.3", f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='1']]/h:value", "code")),
    _r("ICH-C.1.6.1", "reject", ALL, "C.1.6.1", "Are additional documents available? required", ICH_IG,
       _required("C.1.6.1", _bl("1", f"{OID}.1.19"), "value")),
    _r("ICH-C.1.7", "reject", ALL, "C.1.7", "Local criteria for an expedited report required (nullFlavor NI)", ICH_IG,
       _required("C.1.7", _bl("23", f"{OID}.1.19"), "value", ("NI",))),
    _r("ICH-C.1.8.1", "reject", ALL, "C.1.8.1", "Worldwide unique case identification required", ICH_IG,
       _required("C.1.8.1", f"{IE}/h:id[@root='{OID}.3.2']", "extension")),
    _r("ICH-C.1.8.2", "reject", ALL, "C.1.8.2", "First sender of this case required (1 regulator, 2 other)", ICH_IG,
       _required("C.1.8.2", f"{IE}/h:outboundRelationship/h:relatedInvestigation[h:code[@code='1']]"
                 f"/h:subjectOf2/h:controlActEvent/h:author/h:assignedEntity/h:code[@codeSystem='{OID}.1.3']", "code")),
    _r("ICH-C.1.9.1", "reject", ALL, "C.1.9.1", "Other case identifiers in previous transmissions required (NI)",
       ICH_IG, _required("C.1.9.1", f"{IE}/h:subjectOf2/h:investigationCharacteristic[h:code[@code='2']]/h:value",
                         "value", ("NI",))),
    _r("ICH-C.1.11.2", "reject", ALL, "C.1.11.1, C.1.11.2",
       "A nullification or amendment (C.1.11.1 = 1 or 2) carries its reason (C.1.11.2)", ICH_IG, _nullification_reason),
    _r("ICH-DATES", "reject", ALL, "N.1.5, N.2.r.4, C.1.2, C.1.4, C.1.5", "Date precision: creation and transmission "
       "times to the second, receipt dates at least CCYYMMDD", f"{ICH_IG}; FDA generic date messages", _full_precision),
    _r("ICH-FUTURE-DATE", "reject", ALL, "N.1.5, N.2.r.4, C.1.2, C.1.4, C.1.5, E.i.4",
       "No date after the run's clock (a gateway: after its own clock)", f"{ICH_IG}; FDA generic message 'contains Future date'",
       _dates_not_in_future),
    _r("ICH-C.1.5", "reject", ALL, "C.1.4, C.1.5", "Most recent information (C.1.5) not before first receipt (C.1.4)",
       ICH_IG, _received_order),
    _r("ICH-C.2.r", "reject", ALL, "C.2.r.3, C.2.r.4, C.2.r.5", "A primary source for regulatory purposes with its "
       "country and qualification (UNK allowed)", f"{ICH_IG}; FDA R0019, R0020, R0021", _primary_source),
    _r("ICH-C.3.2", "reject", ALL, "C.3.1, C.3.2", "Sender's organisation required unless the sender is a patient",
       f"{ICH_IG}; FDA R0022", _sender_org),
    _r("ICH-D.1", "reject", ALL, "D.1", "Patient (name or initials) or nullFlavor MSK, UNK, NA, ASKU, NASK", ICH_IG,
       _required("D.1", f"{PRIMARY_ROLE}/h:player1/h:name", "text()", ("MSK", "UNK", "NA", "ASKU", "NASK"))),
    _r("ICH-D.2.2", "reject", ALL, "D.2.2a, D.2.2b", "Age value and unit together", f"{ICH_IG}; FDA R0029, R0030",
       _age_pair),
    _r("ICH-D.7.2", "reject", ALL, "D.7.1, D.7.2", "Medical history text required when D.7.1 is not given "
       "(nullFlavor MSK, UNK, ASKU, NASK)", f"{ICH_IG}; FDA R0035", _medical_history_text),
    _r("ICH-E.i.1.1b", "reject", ALL, "E.i.1.1a, E.i.1.1b", "Reaction text language when the text is given",
       f"{ICH_IG}; FDA R0058", _language_with_text),
    _r("ICH-E.i.2.1", "reject", ALL, "E.i.2.1a, E.i.2.1b", "Each reaction coded: MedDRA version and eight-digit LLT "
       "code (no nullFlavor)", ICH_IG, _meddra_codes),
    _r("ICH-MEDDRA-VERSION", "reject", ALL, "E.i.2.1a and other MedDRA versions",
       "Only one MedDRA version per ICSR", f"{ICH_IG}; FDA R0033 (text)", _one_meddra_version),
    *(
        _r(f"ICH-E.i.3.2{letter}", "reject", ALL, f"E.i.3.2{letter}", f"Seriousness criterion {name} (true or NI)",
           ICH_IG, _per(REACTIONS, f"E.i.3.2{letter}", f"h:outboundRelationship2/h:observation[h:code[@code='{code}']]"
                        "/h:value", "value", ("NI",)))
        for letter, code, name in (("a", "34", "results in death"), ("b", "21", "life threatening"),
                                   ("c", "33", "hospitalisation"), ("d", "35", "disabling"),
                                   ("e", "12", "congenital anomaly"), ("f", "26", "other medically important"))
    ),
    _r("ICH-E.i.7", "reject", ALL, "E.i.7", "Outcome of each reaction required", ICH_IG,
       _per(REACTIONS, "E.i.7", "h:outboundRelationship2/h:observation[h:code[@code='27']]/h:value", "code")),
    _r("ICH-G.k.2.2", "reject", ALL, "G.k.2.2", "Medicinal product name as reported required", ICH_IG,
       _per(DRUGS, "G.k.2.2", "h:consumable/h:instanceOfKind/h:kindOfProduct/h:name", "text()")),
    _r("ICH-H.1", "reject", ALL, "H.1", "Case narrative required", ICH_IG, _required("H.1", f"{IE}/h:text", "text()")),
    # FDA (post-market unless said otherwise)
    _r("R0004", "reject", FDA, "N.1.4", 'Batch receiver "ZZFDA" (post-market) or "ZZFDA_PREMKT" (pre-market)',
       FDA_RULES, _fda_batch_receiver),
    _r("R0006", "reject", FDA, "N.2.r.3", "Post-market message receiver is the centre, CDER (CBER for biologics)",
       FDA_RULES, _fda_message_receiver),
    _r("R0007", "reject", FDA, "N.2.r.3", "Pre-market message receiver CDER_IND, CBER_IND or CDER_IND_EXEMPT_BA_BE",
       FDA_RULES, _fda_premarket_receiver),
    _r("R0011", "reject", FDA, "C.1.7", "nullFlavor NI not accepted for C.1.7 in initial submissions", FDA_RULES,
       _fda_expedited_not_ni),
    _r("FDA-C.1.7.1", "reject", FDA, "FDA.C.1.7.1", "Local criteria report type required (1 15-day, 2 non-expedited, "
       "4 5-day, 5 30-day, 6 7-day)", FDA_TABLE, _postmarket(_required("FDA.C.1.7.1", _bl("C54588", NCI), "code"))),
    _r("R0014", "reject", FDA, "FDA.C.1.7.1, FDA.C.1.12, C.1.7", "Local criteria report type consistent with the "
       "combination-product indicator and C.1.7 (R0012-R0015)", FDA_RULES, _fda_c171),
    _r("FDA-C.1.12", "reject", FDA, "FDA.C.1.12", "Combination product report indicator required (NI allowed)",
       FDA_TABLE, _postmarket(_required("FDA.C.1.12", _bl("C156384", NCI), "value", ("NI",)))),
    _r("FDA-C.2.r.2.8", "reject", FDA, "FDA.C.2.r.2.8", "Reporter's e-mail (nullFlavor MSK, ASKU, NASK)", FDA_TABLE,
       _fda_reporter_email),
    _r("FDA-C.3", "reject", FDA, "C.3.3.1-C.3.4.8", "Sender's department, contact person, address, telephone, fax "
       "and e-mail required", FDA_TABLE, _sender_contact),
    _r("FDA-D.11", "reject", FDA, "FDA.D.11.r", "Patient race required (code or nullFlavor)", f"{FDA_TABLE}; W0003",
       _fda_race),
    _r("FDA-D.12", "reject", FDA, "FDA.D.12", "Patient ethnicity required (code or nullFlavor)",
       f"{FDA_TABLE}; W0004; FDA's negative acknowledgment example", _fda_ethnicity),
    _r("FDA-E.i.3.2h", "reject", FDA, "FDA.E.i.3.2h", "Required intervention per reaction (true or NI)", FDA_TABLE,
       _fda_required_intervention),
    _r("R0105", "reject", FDA, "FDA.C.5.5a", "IND number where the AE occurred is registered with the centre in "
       "N.2.r.3 (needs the user's registry)", FDA_RULES, _registered("ind", "FDA.C.5.5a", IND_OID)),
    _r("R0106", "reject", FDA, "FDA.C.5.5b", "Pre-ANDA number where the AE occurred is registered with the centre in "
       "N.2.r.3 (needs the user's registry)", FDA_RULES, _registered("pre_anda", "FDA.C.5.5b", PRE_ANDA_OID)),
    _r("W0012", "warn", FDA, "FDA.C.5.6.r", "IND number of a cross-reported IND is registered with the centre in "
       "N.2.r.3 (needs the user's registry)", FDA_RULES, _registered("ind", "FDA.C.5.6.r", CROSS_IND_OID)),
    _r("W0009", "warn", FDA, "G.k.2.2, FDA.C.5.5a, FDA.C.5.5b", "Suspect product name matches the product registered "
       "for the application (needs the user's registry)", FDA_RULES, _registered_product_name),
    _r("W0008", "warn", FDA, "FDA.G.k.12.r.3.r", "Device problem codes are valid FDA / IMDRF codes (needs the user's "
       "registry)", FDA_RULES, _device_problem_codes),
    _r("R0069", "reject", FDA, "G.k.1", "At least one product suspect, interacting or not administered", FDA_RULES,
       _drug_roles),
    # EMA, PMDA, NMPA
    _r("EMA-RECEIVER", "reject", frozenset({"ema"}), "N.1.4, N.2.r.3", "EudraVigilance receiver EVHUMAN [M]",
       "EU ICSR implementation guide [M]", _regional_receivers),
    _r("EMA-EDQM-ROUTE", "warn", frozenset({"ema"}), "G.k.4.r.10.2b", "Route of administration as an EDQM TermID",
       "EU ICSR implementation guide", _edqm("G.k.4.r.10", EDQM_ROUTE_OID,
                                             f"{DRUGS}/h:outboundRelationship2/h:substanceAdministration/h:routeCode")),
    _r("EMA-EDQM-FORM", "warn", frozenset({"ema"}), "G.k.4.r.9.2b", "Pharmaceutical dose form as an EDQM TermID",
       "EU ICSR implementation guide", _edqm("G.k.4.r.9", EDQM_FORM_OID,
                                             f"{DRUGS}/h:outboundRelationship2/h:substanceAdministration/h:consumable"
                                             "/h:instanceOfKind/h:kindOfProduct/h:formCode")),
    _r("PMDA-RECEIVER", "reject", frozenset({"pmda"}), "N.1.4, N.2.r.3", "PMDA receiver identifier (configured, "
       "else PV Trace's default [M])", "[M]", _regional_receivers),
    _r("PMDA-J2.1a", "reject", frozenset({"pmda"}), "J2.1a", "Reporting category (報告区分) present, two letters",
       PMDA_VENDOR, _j2_1a),
    _r("NMPA-RECEIVER", "reject", frozenset({"nmpa"}), "N.1.4, N.2.r.3", "NMPA receiver identifier (configured, "
       "else PV Trace's default [M])", "[M]", _regional_receivers),
    _r("NMPA-C.1.CN.1", "reject", frozenset({"nmpa"}), "C.1.CN.1", "Report source (报告来源) present, code 1-8",
       NMPA_VENDOR, _cn_code("C.1.CN.1", CN_REPORT_SOURCE, CN_SOURCE_CODES)),
    _r("NMPA-C.1.CN.2", "reject", frozenset({"nmpa"}), "C.1.CN.2", "Report category (报告分类) present: 11, 12, 21 "
       "or 22", NMPA_VENDOR, _cn_code("C.1.CN.2", CN_REPORT_CATEGORY, CN_CATEGORY_CODES)),
    _r("NMPA-C.1.CN.3", "not_ready", frozenset({"nmpa"}), "C.1.CN.3", "Holder identifier (持有人标识) configured "
       "(nmpa_holder_id)", NMPA_VENDOR, _cn_holder),
    # readiness
    _r("PVT-MEDDRA-TERMINOLOGY", "not_ready", ALL, "E.i.2.1a, E.i.2.1b", "A MedDRA terminology is loaded so reactions "
       "carry LLT codes", "PV Trace", _meddra_terminology),
    _r("PVT-DEMO-SENDER", "not_ready", ALL, "C.3, N.1.3", "The sender is a real, configured sender (not the demo's)",
       "PV Trace", _demo_sender),
    _r("PVT-RECEIVER", "not_ready", frozenset({"pmda", "nmpa"}), "N.1.4, N.2.r.3", "The receiver identifier is "
       "configured (PV Trace's PMDA and NMPA defaults are unverified)", "PV Trace [M]", _receiver_configured),
    _r("PVT-REGIONAL", "not_ready", frozenset({"pmda", "nmpa"}), "J*, *.CN.*", "The regulator's regional elements are "
       "written", "PV Trace [M]", _regional_unverified),
)  # fmt: skip

RULES_BY_ID = {r.id: r for r in RULES}
assert len(RULES_BY_ID) == len(RULES), "duplicate rule id"


# ---- running the rules -------------------------------------------------------------------------------


@dataclass
class Evaluation:
    profile: str
    rules: tuple[Rule, ...]
    results: dict[str, dict[str, str]]  # C.1.1 (or message position) → rule id → "pass" | "n/a" | "fail: …"
    findings: list[tuple[str, str, str, str]]  # (icsr, rule id, severity, message)
    not_checked: list[tuple[str, str, str]] = field(default_factory=list)  # (icsr, rule id, why)

    def of(self, severity: str) -> list[tuple[str, str, str, str]]:
        return [f for f in self.findings if f[2] == severity]

    @property
    def rejected(self) -> bool:
        return bool(self.of("reject"))

    @property
    def not_ready_reasons(self) -> list[str]:
        return sorted({f[3] for f in self.of("not_ready")})

    @property
    def gateway_ready(self) -> bool:
        return not self.rejected and not self.of("not_ready")

    def messages(self, severity: str) -> list[str]:
        return [f"{icsr}: {rid}: {msg}" for icsr, rid, _, msg in self.of(severity)]

    def status(self) -> dict:
        """The rule part of ``.status.json``: the catalogue applied, per ICSR each rule's result, the counts."""
        return {
            "profile": self.profile,
            "gateway_ready": self.gateway_ready,
            "not_gateway_ready": self.not_ready_reasons,
            "rejections": self.messages("reject")[:200],
            "warnings": self.messages("warn")[:200],
            "rule_counts": {s: len(self.of(s)) for s in SEVERITIES},
            "not_checked": sorted({f"{rid}: {why}" for _, rid, why in self.not_checked}),
            "rules": {
                r.id: {"severity": r.severity, "element": r.element, "description": r.description, "source": r.source}
                for r in self.rules
            },
            "results": self.results,
        }


def evaluate(
    xml: bytes | etree._Element,
    profile: str,
    *,
    clock: dt.datetime | None = None,
    meddra_loaded: bool = True,
    demo_sender: bool = False,
    unverified_regional: str | None = None,
    registry: Registry | None = None,
    receiver: str | None = None,
) -> Evaluation:
    """Run every rule of ``profile`` (fda, ema, pmda, nmpa, or ich for ICH rules only) on every ICSR of a batch.
    ``registry``: the user's FDA registry for R0105/R0106/W0012/W0009/W0008 (``None``: those are not checked);
    ``receiver``: the N.1.4 / N.2.r.3 the sender file configures for this regulator (``None``: PV Trace's default)."""
    root = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    if hasattr(root, "getroot"):
        root = root.getroot()
    ctx = Context(root, profile, clock, meddra_loaded, demo_sender, unverified_regional, registry, receiver)
    rules = tuple(r for r in RULES if r.applies_to(profile))
    results: dict[str, dict[str, str]] = {}
    findings = []
    not_checked = []
    for n, msg in enumerate(_x(root, "h:PORR_IN049016UV"), 1):
        icsr = _first(msg, f"{IE}/h:id[@root='{OID}.3.1']/@extension") or f"message {n}"
        if icsr in results:
            icsr = f"{icsr} (message {n})"
        per = results[icsr] = {}
        for rule in rules:
            problems = rule.check(msg, ctx)
            if problems is None:
                per[rule.id] = "n/a"
            elif isinstance(problems, NotChecked):
                per[rule.id] = f"not checked: {problems.reason}"
                not_checked.append((icsr, rule.id, problems.reason))
            elif not problems:
                per[rule.id] = "pass"
            else:
                per[rule.id] = "fail: " + "; ".join(problems)
                findings.extend((icsr, rule.id, rule.severity, p) for p in problems)
    return Evaluation(profile, rules, results, findings, not_checked)

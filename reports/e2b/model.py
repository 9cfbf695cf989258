"""The subset of an ICH E2B(R3) ICSR that PV Trace writes and reads back (data element numbers in comments).

Small frozen dataclasses so a round trip (read → write → read) can be checked with ``==``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# namespaces and code-system OIDs (ICH E2B(R3) implementation guide; FDA regional guide for NCI / FDA_OID)
HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OID = "2.16.840.1.113883.3.989.2.1"  # ICH E2B(R3) OID arc
MEDDRA = "2.16.840.1.113883.6.163"
COUNTRY = "1.0.3166.1.2.2"  # ISO 3166-1 alpha-2
NCI = "2.16.840.1.113883.3.26.1.1"  # NCI thesaurus (FDA regional codes)
FDA_OID = "2.16.840.1.113883.3.989.5.1.2.2.1"  # FDA regional code systems

SERIOUSNESS_CODES = {  # E.i.3.2a–f: observation code → PV Trace criterion
    "34": "death",
    "21": "life_threatening",
    "33": "hospitalisation",
    "35": "disability",
    "12": "congenital_anomaly",
    "26": "other_medically_important",
}
OUTCOME_CODES = {
    "unknown": "0",
    "recovered": "1",
    "recovering": "2",
    "not_recovered": "3",
    "recovered_with_sequelae": "4",
    "fatal": "5",
}  # E.i.7
ROLE_CODES = {"suspect": "1", "concomitant": "2", "interacting": "3", "not_administered": "4"}  # G.k.1
QUALIFICATION_CODES = {"physician": "1", "pharmacist": "2", "other_hcp": "3", "lawyer": "4", "consumer": "5"}  # C.2.r.4


@dataclass(frozen=True)
class Reaction:
    id: str  # observation id (UUID), referenced by causality assessments
    term: str | None  # E.i.1.1a reaction as reported (native language)
    term_language: str | None  # E.i.1.1b (ISO 639-2, e.g. "eng")
    meddra_code: str | None  # E.i.2.1b (LLT code) — None when not coded
    meddra_version: str | None  # E.i.2.1a
    onset: str | None  # E.i.4 as an HL7 TS string (CCYYMMDD…)
    country: str | None  # E.i.9
    seriousness: tuple[str, ...]  # E.i.3.2a–f criteria that are true, sorted
    outcome: str | None  # E.i.7 code


@dataclass(frozen=True)
class Drug:
    id: str  # substanceAdministration id (UUID)
    role: str | None  # G.k.1 code
    name: str | None  # G.k.2.2
    substances: tuple[str, ...] = ()  # G.k.2.3.r.1
    holder: str | None = None  # G.k.3.3
    lots: tuple[str, ...] = ()  # G.k.4.r.7, one per dosage
    start: str | None = None  # G.k.4.r.4 (first dosage)
    route: str | None = None  # G.k.4.r.10.1 route as text
    route_term: tuple[str, str] | None = None  # G.k.4.r.10.2b EDQM TermID and its name (EU profile)
    form: str | None = None  # G.k.4.r.9.1 pharmaceutical dose form as text
    form_term: tuple[str, str] | None = None  # G.k.4.r.9.2b EDQM TermID and its name (EU profile)


@dataclass(frozen=True)
class Icsr:
    message_id: str  # N.2.r.1
    created: str  # C.1.2 (and N.2.r.4), HL7 TS
    safety_report_id: str  # C.1.1
    worldwide_id: str | None  # C.1.8.1
    first_received: str | None  # C.1.4
    most_recent: str | None  # C.1.5
    report_type: str | None  # C.1.3
    expedited: bool | None  # C.1.7
    narrative: str | None  # H.1
    sex: str | None  # D.5 code
    age: tuple[str, str] | None  # D.2.2a/b (value, unit)
    qualification: str | None  # C.2.r.4 of the primary source for regulatory purposes
    reporter_country: str | None  # C.2.r.3
    sender_type: str | None  # C.3.1
    sender_organisation: str | None  # C.3.2
    reactions: tuple[Reaction, ...] = ()
    drugs: tuple[Drug, ...] = ()
    first_sender: str = "2"  # C.1.8.2: 1 regulator, 2 other (PV Trace is not a regulator)
    amendment: tuple[str, str] | None = None  # (C.1.11.1 code: 1 nullification, 2 amendment; C.1.11.2 reason)
    regional: tuple[tuple[str, str], ...] = ()  # regional elements (reports.e2b.profiles): ("J2.1a", "AB"), ...


@dataclass(frozen=True)
class IcsrBatch:
    batch_id: str  # N.1.2
    created: str  # N.1.5
    sender: str  # N.1.3
    receiver: str  # N.1.4
    message_sender: str  # N.2.r.2
    message_receiver: str  # N.2.r.3
    icsrs: tuple[Icsr, ...] = field(default_factory=tuple)
    profile: str = "ich"  # reports.e2b.profiles code: fda, ema, pmda, nmpa
    contact: object | None = None  # reports.e2b.sender.Sender: C.3.3-C.3.4 contact details (None: not written)
    meddra_loaded: bool = False  # a MedDRA terminology coded the reactions

    @property
    def n_icsrs(self) -> int:
        return len(self.icsrs)

    @property
    def missing_meddra_codes(self) -> int:
        return sum(r.meddra_code is None for i in self.icsrs for r in i.reactions)


def ts(value: dt.date | dt.datetime | None) -> str | None:
    """HL7 TS: CCYYMMDD for a date, CCYYMMDDhhmmss+ZZzz for an aware datetime."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC)
        return value.strftime("%Y%m%d%H%M%S") + "+0000"
    return value.strftime("%Y%m%d")

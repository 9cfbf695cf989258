"""Regional E2B(R3) profiles: who receives the file and which regional elements and terms each regulator expects.

``[M]`` marks what could not be verified against the regulator's own published guide in this repository
(README "E2B(R3)" lists them); the validator does not pretend to check what it cannot, and a profile with an
unverified part says "not gateway-ready" and names what is missing.

* **FDA** (FDA E2B(R3) regional implementation guide and its data-element table, vendored in
  ``reports/e2b/fda_refs/``): post-market batches go to ``ZZFDA`` (N.1.4, rule R0004) and each message to
  the centre, ``CDER`` or ``CBER`` for biologics (N.2.r.3, R0006). FDA regional elements are written
  (FDA.C.1.7.1, FDA.C.1.12, FDA.C.2.r.2.8, FDA.D.11.r, FDA.D.12, FDA.E.i.3.2h).
* **EMA** (EU ICSR implementation guide, EMA/51938/2013): ``EVHUMAN`` for N.1.4 and N.2.r.3 — the
  EudraVigilance post-authorisation module, also named as the EMA profile's receiver in Oracle Argus Safety's
  public release notes ("EMA E2B(R3) validation … for EVHUMAN/EVPM cases"); route (G.k.4.r.10.2b) and dose
  form (G.k.4.r.9.2b) as EDQM Standard Terms. ``receiver_ema`` in the sender file overrides it.
* **PMDA**: J2.1a (reporting category, 報告区分) is written — ``AB`` (adverse drug reaction case in Japan,
  post-marketing) or ``AD`` (abroad) — as ``subjectOf2/investigationCharacteristic`` with code ``1`` in
  ``2.16.840.1.113883.3.989.5.1.3.2.1.12`` and the value in ``2.16.840.1.113883.3.989.5.1.3.2.1.1``. Sources:
  the category codes from Oracle Argus Safety's public "Reporting Category (LM_RPT_CATEGORY)" code list; the
  XML placement and OIDs from a public E2B(R2)→(R3) conversion stylesheet for PMDA (the J-element OIDs all sit
  under ``2.16.840.1.113883.3.989.5.1.3.2``). PMDA's own J-element list (E2B(R3) 実装ガイド / Q&A) could
  not be read here [M], so the file stays not gateway-ready; not written: J2.1b (report identifier), J2.2.1 /
  J2.2.2 (start of the reporting time frame and its comment), J2.4.x, J2.7.1 (complete/incomplete), J2.8,
  J2.11, J2.12, J2.13.r and the other J elements; infection cases (AA / AC) are not told apart, because PV
  Trace does not record whether a reaction is an infection transmitted by the product. Receiver ``PMDA``
  [M]: set ``receiver_pmda`` in the sender file.
* **NMPA** (the NMPA regional implementation guide of 22 November 2019 defines 19 China-specific elements,
  mandatory for post-marketing reports since 1 July 2022 — as Oracle Argus Safety's public "China NMPA
  E2B(R3) Best Practices" summarise it): written are C.1.CN.1 (report source, 报告来源: 1 regulator,
  2 patient / family, 3 medical institution, 4 distributor, 5 literature, 6 study, 7 programme, 8 other),
  C.1.CN.2 (report category, 报告分类: 12 domestic post-marketing, 22 foreign post-marketing) and C.1.CN.3
  (holder identifier, 持有人标识, from ``nmpa_holder_id`` in the sender file), each a
  ``component/observationEvent`` with code ``CN-6`` / ``CN-11`` / ``CN-12`` in the ICH observation code system,
  as a public E2B(R3) stylesheet for NMPA writes them [M: NMPA's guide itself not read here]. Not written:
  D.CN.1 (ethnic minority), D.CN.2 (race), G.k.CN.4 (approval / acceptance number), G.k.9.i.2.r.CN.2 (result
  of assessment) and the other *.CN.* elements, and the Chinese text NMPA requires for the reaction as
  reported (E.i.1.1a) and the narrative (H.1): PV Trace has only English texts. Receiver ``CN-NMPA-CDR`` [M]:
  set ``receiver_nmpa`` in the sender file.

Reaction text language (E.i.1.1b is ISO 639-2, three letters: FDA's examples write ``eng``, ``por``) is
detected from the text itself — kana → ``jpn`` (ja), CJK ideographs → ``chi`` (zh), else ``eng`` — rather than
assumed from the regulator: PV Trace's synthetic reactions are English MedDRA PT names, tagged ``eng`` for every
region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reports.jurisdictions import JURISDICTIONS

EDQM_ROUTE_OID = "0.4.0.127.0.16.1.1.2.6"  # G.k.4.r.10.2b (ICH code-system OID for EDQM RoA)
EDQM_FORM_OID = "0.4.0.127.0.16.1.1.2.1"  # G.k.4.r.9.2b (EDQM pharmaceutical dose form)
# EDQM Standard Terms for the routes and dose forms PV Trace's products use; checked against public uses of the
# EDQM codes (FHIR implementation guides); forms not listed are written as text only (warning EMA-EDQM-FORM).
EDQM_ROUTES = {
    "oral": ("20053000", "Oral use"),
    "intravenous": ("20045000", "Intravenous use"),
    "subcutaneous": ("20066000", "Subcutaneous use"),
    "intramuscular": ("20035000", "Intramuscular use"),
}
EDQM_FORMS = {
    "tablet": ("10219000", "Tablet"),
    "film-coated tablet": ("10221000", "Film-coated tablet"),
    "gastro-resistant tablet": ("10225000", "Gastro-resistant tablet"),
    "orally disintegrating tablet": ("10223000", "Orodispersible tablet"),
    "solution for injection": ("11201000", "Solution for injection"),
    "suspension for injection": ("11202000", "Suspension for injection"),
    "powder for solution for injection": ("11205000", "Powder for solution for injection"),
    "solution for injection in pre-filled pen": ("50060200", "Solution for injection in pre-filled pen"),
    "solution for injection in pre-filled syringe": ("50060300", "Solution for injection in pre-filled syringe"),
    "suspension for injection in pre-filled syringe": ("50063300", "Suspension for injection in pre-filled syringe"),
}  # "capsule" and "delayed-release capsule" are ambiguous in EDQM (hard / soft capsule): text only


# PMDA J2.1a reporting category (see the module docstring for the sources) [M]
J_CHARACTERISTIC_OID = "2.16.840.1.113883.3.989.5.1.3.2.1.12"  # code of PMDA's case characteristics (J2.1a: 1)
J2_1A_OID = "2.16.840.1.113883.3.989.5.1.3.2.1.1"  # J2.1a value list (AA-AG post-marketing, DA-DG clinical trial)
J2_1A_DOMESTIC, J2_1A_FOREIGN = "AB", "AD"  # adverse drug reaction case in Japan / abroad, post-marketing
# NMPA C.1.CN.x: observation codes in the ICH observation code system (see the module docstring) [M]
CN_REPORT_SOURCE, CN_REPORT_CATEGORY, CN_HOLDER_ID = "CN-6", "CN-11", "CN-12"
CN_SOURCES = {"regulator": "1", "patient_app": "2", "hcp": "3"}  # PV Trace case source → C.1.CN.1; else 8 (other)
CN_SOURCE_CODES = frozenset("12345678")
CN_CATEGORY_DOMESTIC, CN_CATEGORY_FOREIGN = "12", "22"  # post-marketing, in China / abroad
CN_CATEGORY_CODES = frozenset({"11", "12", "21", "22"})  # 11 / 21: pre-marketing (clinical trial)


@dataclass(frozen=True)
class Profile:
    code: str  # fda, ema, pmda, nmpa
    batch_receiver: str  # N.1.4 (default; ``receiver_<code>`` in the sender file overrides it for ema/pmda/nmpa)
    message_receivers: tuple[str, ...]  # allowed N.2.r.3
    fda_regional: bool = False  # write and check FDA.* elements
    edqm_terms: bool = False  # write EDQM route / dose-form TermIDs
    unverified_regional: str | None = None  # regional elements PV Trace does not write [M]
    receiver_verified: bool = True  # False: the default receiver is unverified [M] and must be configured


_N14 = {code: j.e2b_receiver for code, j in JURISDICTIONS.items()}  # N.1.4: one definition, the jurisdiction's
PROFILES = {
    "fda": Profile("fda", _N14["fda"], ("CDER", "CBER"), fda_regional=True),
    "ema": Profile("ema", _N14["ema"], (_N14["ema"],), edqm_terms=True),
    "pmda": Profile(
        "pmda",
        _N14["pmda"],
        (_N14["pmda"],),
        unverified_regional="PMDA J elements: J2.1a written from public vendor sources [M]; not written: J2.1b, "
        "J2.2.1, J2.2.2, J2.4.x, J2.7.1, J2.8, J2.11, J2.12, J2.13.r and the other J elements of PMDA's list "
        "(PMDA's guide not verified here); infection categories AA/AC not told apart",
        receiver_verified=False,
    ),
    "nmpa": Profile(
        "nmpa",
        _N14["nmpa"],
        (_N14["nmpa"],),
        unverified_regional="NMPA *.CN.* elements: C.1.CN.1-3 written from public vendor sources [M]; not written: "
        "D.CN.1, D.CN.2, G.k.CN.4, G.k.9.i.2.r.CN.2 and the other of the 19 *.CN.* elements, and Chinese text "
        "for E.i.1.1a and H.1 (NMPA's guide not verified here)",
        receiver_verified=False,
    ),
}


def profile_for(code: str) -> Profile:
    try:
        return PROFILES[code.lower()]
    except KeyError:
        raise ValueError(f"no E2B profile {code!r}; known: {', '.join(PROFILES)}") from None


def message_receiver(profile: Profile, fda_centre: str = "CDER", configured: str | None = None) -> str:
    """N.2.r.3: for FDA the centre (CDER, or CBER for biologics), else the configured receiver or the profile's."""
    if profile.fda_regional:
        return fda_centre
    return configured or profile.message_receivers[0]


def batch_receiver(profile: Profile, configured: str | None = None) -> str:
    """N.1.4: the configured receiver (``receiver_<code>`` in the sender file; not for FDA) or the profile's."""
    return profile.batch_receiver if profile.fda_regional else (configured or profile.batch_receiver)


def pmda_category(country: str | None) -> str:
    """J2.1a for a post-marketing adverse-drug-reaction case: AB if it occurred in Japan, else AD."""
    return J2_1A_DOMESTIC if country == "JP" else J2_1A_FOREIGN


def nmpa_source(source: str | None) -> str:
    """C.1.CN.1 for a PV Trace case source (regulator, patient_app, hcp; anything else is 8, other)."""
    return CN_SOURCES.get(source or "", "8")


def nmpa_category(country: str | None) -> str:
    """C.1.CN.2 for a post-marketing case: 12 if it occurred in China, else 22."""
    return CN_CATEGORY_DOMESTIC if country == "CN" else CN_CATEGORY_FOREIGN


_KANA = re.compile(r"[\u3040-\u30ff]")
_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")


def text_language(text: str | None) -> str | None:
    """E.i.1.1b for a reaction text: ``jpn`` if it has kana, ``chi`` if it has CJK ideographs, else ``eng``."""
    if not text:
        return None
    if _KANA.search(text):
        return "jpn"
    if _CJK.search(text):
        return "chi"
    return "eng"

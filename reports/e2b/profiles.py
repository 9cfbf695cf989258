"""Regional E2B(R3) profiles: who receives the file and which regional elements and terms each regulator expects.

``[M]`` marks what could not be verified against the regulator's published guide in this repository
(README "E2B(R3)" lists them); the validator does not pretend to check what it cannot.

* **FDA** (FDA E2B(R3) regional implementation guide and its data-element table, vendored in
  ``reports/e2b/fda_refs/``): post-market batches go to ``ZZFDA`` (N.1.4, rule R0004) and each message to
  the centre, ``CDER`` or ``CBER`` for biologics (N.2.r.3, R0006). FDA regional elements are written
  (FDA.C.1.7.1, FDA.C.1.12, FDA.C.2.r.2.8, FDA.D.11.r, FDA.D.12, FDA.E.i.3.2h).
* **EMA** (EU ICSR implementation guide): ``EVHUMAN`` for N.1.4 and N.2.r.3 [M: not re-verified here];
  route (G.k.4.r.10.2b) and dose form (G.k.4.r.9.2b) as EDQM Standard Terms.
* **PMDA**: receiver ``PMDA`` [M]; the Japanese regional J elements (e.g. J2.1a reporting category) are not
  written: their XML placement was not verified [M], so the file is not gateway-ready for PMDA.
* **NMPA**: receiver ``CN-NMPA-CDR`` [M]; the China-specific regional elements (the NMPA guide's ``*.CN.*``
  elements, mandatory for post-marketing reports since 1 July 2022) are not written [M], so the file is not
  gateway-ready for NMPA.

Reaction text language (E.i.1.1b, ISO 639-2) is detected from the text itself (CJK → ``chi``, kana →
``jpn``, else ``eng``) rather than assumed from the regulator: PV Trace's synthetic reactions are English
MedDRA PT names, so they are tagged ``eng`` for every region.
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


@dataclass(frozen=True)
class Profile:
    code: str  # fda, ema, pmda, nmpa
    batch_receiver: str  # N.1.4
    message_receivers: tuple[str, ...]  # allowed N.2.r.3
    fda_regional: bool = False  # write and check FDA.* elements
    edqm_terms: bool = False  # write EDQM route / dose-form TermIDs
    unverified_regional: str | None = None  # regional elements PV Trace does not write [M]


_N14 = {code: j.e2b_receiver for code, j in JURISDICTIONS.items()}  # N.1.4: one definition, the jurisdiction's
PROFILES = {
    "fda": Profile("fda", _N14["fda"], ("CDER", "CBER"), fda_regional=True),
    "ema": Profile("ema", _N14["ema"], (_N14["ema"],), edqm_terms=True),
    "pmda": Profile(
        "pmda",
        _N14["pmda"],
        (_N14["pmda"],),
        unverified_regional="PMDA regional J elements (e.g. J2.1a reporting category) not written: their "
        "specification was not verified [M]",
    ),
    "nmpa": Profile(
        "nmpa",
        _N14["nmpa"],
        (_N14["nmpa"],),
        unverified_regional="NMPA China-specific regional elements (*.CN.*) not written: their specification "
        "was not verified [M]",
    ),
}


def profile_for(code: str) -> Profile:
    try:
        return PROFILES[code.lower()]
    except KeyError:
        raise ValueError(f"no E2B profile {code!r}; known: {', '.join(PROFILES)}") from None


def message_receiver(profile: Profile, fda_centre: str = "CDER") -> str:
    """N.2.r.3: for FDA the centre (CDER, or CBER for biologics), else the profile's receiver."""
    return fda_centre if profile.fda_regional else profile.message_receivers[0]


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

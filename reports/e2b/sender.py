"""Who sends the E2B(R3) file: the sender identity and contact details (C.3.x, N.1.3, N.2.r.2) from configuration.

PV Trace never invents a sender. The settings come from a TOML file named by ``$PVTRACE_E2B_SENDER``
(section ``[sender]``, keys below); a missing file or key stops the export with :class:`SenderConfigError`
naming what is missing. ``reports/e2b/demo_sender.toml`` is the demo's clearly-labelled fictitious sender,
used only by ``pvtrace demo``.

Keys (data element in brackets): ``identifier`` (N.1.3 batch and N.2.r.2 message sender identifier, the id
the gateway registered for you), ``sender_type`` (C.3.1 code: 1 pharmaceutical company, 2 regulatory
authority, 3 health professional, 4 regional pharmacovigilance centre, 5 WHO collaborating centre, 6 other
(e.g. distributor), 7 patient / consumer), ``organisation`` (C.3.2), ``department`` (C.3.3.1), ``title``
(C.3.3.2), ``given_name`` (C.3.3.3), ``family_name`` (C.3.3.5), ``street`` (C.3.4.1), ``city`` (C.3.4.2),
``state`` (C.3.4.3), ``postcode`` (C.3.4.4), ``country`` (C.3.4.5, ISO 3166-1 alpha-2), ``telephone``
(C.3.4.6), ``fax`` (C.3.4.7), ``email`` (C.3.4.8). Optional: ``middle_name`` (C.3.3.4), ``fda_centre``
(N.2.r.3 for FDA post-market: ``CDER``, or ``CBER`` for biologics; default ``CDER``), ``demo = true`` marks a
fictitious sender (the status then says the file is not gateway-ready), ``nmpa_holder_id`` (C.1.CN.3, the
marketing authorisation holder identifier NMPA assigned you; without it the NMPA file is not gateway-ready),
``receiver_ema`` / ``receiver_pmda`` / ``receiver_nmpa`` (N.1.4 and N.2.r.3 for that regulator, as your gateway
registration gives them; PV Trace's built-in PMDA and NMPA receivers are unverified, so without
``receiver_pmda`` / ``receiver_nmpa`` those files are not gateway-ready — README "E2B(R3)").
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

ENV = "PVTRACE_E2B_SENDER"
DEMO_SENDER = Path(__file__).resolve().parent / "demo_sender.toml"
REQUIRED = (
    "identifier",
    "sender_type",
    "organisation",
    "department",
    "title",
    "given_name",
    "family_name",
    "street",
    "city",
    "state",
    "postcode",
    "country",
    "telephone",
    "fax",
    "email",
)
RECEIVER_KEYS = ("receiver_ema", "receiver_pmda", "receiver_nmpa")
SENDER_TYPES = {"1", "2", "3", "4", "5", "6", "7"}
FDA_CENTRES = {"CDER", "CBER"}


class SenderConfigError(ValueError):
    """The E2B sender is not configured (or not correctly): no E2B file can be written."""


@dataclass(frozen=True)
class Sender:
    identifier: str
    sender_type: str
    organisation: str
    department: str
    title: str
    given_name: str
    family_name: str
    street: str
    city: str
    state: str
    postcode: str
    country: str
    telephone: str
    fax: str
    email: str
    middle_name: str | None = None
    fda_centre: str = "CDER"
    demo: bool = False
    source: str = ""
    nmpa_holder_id: str | None = None  # C.1.CN.3
    receiver_ema: str | None = None  # N.1.4 / N.2.r.3 overrides (README "E2B(R3)")
    receiver_pmda: str | None = None
    receiver_nmpa: str | None = None

    def receiver(self, code: str) -> str | None:
        """The configured receiver identifier for the regulator ``code`` (ema, pmda, nmpa), if any."""
        return getattr(self, f"receiver_{code}", None)


def parse_sender(values: dict, *, source: str = "") -> Sender:
    where = f" in {source}" if source else ""
    missing = [k for k in REQUIRED if not str(values.get(k) or "").strip()]
    if missing:
        raise SenderConfigError(
            f"E2B sender settings missing{where}: {', '.join(missing)} (section [sender]; see reports/e2b/sender.py). "
            "PV Trace does not invent a sender: no E2B file is written until these are configured."
        )
    clean = {k: str(values[k]).strip() for k in REQUIRED}
    if clean["sender_type"] not in SENDER_TYPES:
        raise SenderConfigError(f"E2B sender_type{where} must be a C.3.1 code 1-7, not {clean['sender_type']!r}")
    if len(clean["country"]) != 2 or not clean["country"].isalpha():
        raise SenderConfigError(f"E2B sender country{where} must be ISO 3166-1 alpha-2, not {clean['country']!r}")
    if "@" not in clean["email"]:
        raise SenderConfigError(f"E2B sender email{where} is not an e-mail address: {clean['email']!r}")
    centre = str(values.get("fda_centre") or "CDER").strip().upper()
    if centre not in FDA_CENTRES:
        raise SenderConfigError(f"E2B fda_centre{where} must be CDER or CBER, not {centre!r}")
    optional = {}
    for key in ("nmpa_holder_id", *RECEIVER_KEYS):
        value = str(values.get(key) or "").strip()
        if value and (len(value) > 60 or any(c.isspace() for c in value)):
            raise SenderConfigError(f"E2B {key}{where} must be an identifier (no spaces, at most 60 characters)")
        optional[key] = value or None
    return Sender(
        **clean,
        middle_name=str(values["middle_name"]).strip() if values.get("middle_name") else None,
        fda_centre=centre,
        demo=bool(values.get("demo", False)),
        source=source,
        **optional,
    )


def load_sender(path: str | Path | None = None) -> Sender:
    """The sender from ``path``, else from the file ``$PVTRACE_E2B_SENDER`` names; :class:`SenderConfigError` if unset."""
    path = path or os.environ.get(ENV)
    if not path:
        raise SenderConfigError(
            f"E2B sender not configured: set {ENV} to a TOML file with a [sender] section (identifier, organisation, "
            "contact person and address, telephone, fax, e-mail; see reports/e2b/sender.py). PV Trace does not invent "
            "a sender, so no E2B file is written without it."
        )
    path = Path(path)
    if not path.is_file():
        raise SenderConfigError(f"E2B sender file {path} ({ENV}) does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SenderConfigError(f"E2B sender file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data.get("sender"), dict):
        raise SenderConfigError(f"E2B sender file {path} has no [sender] section")
    return parse_sender(data["sender"], source=str(path))

"""Test-wide set-up: validate EPCIS documents against GS1's schema from the public files beside the
repository when they are there (the product does not ship the schema: README, "EPCIS schema").
Without them, supply documents load unvalidated, as on any clone without the schema configured."""

import os
from pathlib import Path

_EPCIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "epcis" / "EPCIS-JSON-Schema.json"
if _EPCIS.exists():
    os.environ.setdefault("PVTRACE_EPCIS_SCHEMA", str(_EPCIS))

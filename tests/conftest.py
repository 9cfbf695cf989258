"""Test-wide set-up: validate EPCIS documents against GS1's schema from the public files beside the
repository when they are there (the product does not ship the schema: README, "EPCIS schema").
Without them, supply documents load unvalidated, as on any clone without the schema configured."""

import os

from tests.shared_data import EPCIS_SCHEMA

if EPCIS_SCHEMA.exists():
    os.environ.setdefault("PVTRACE_EPCIS_SCHEMA", str(EPCIS_SCHEMA))

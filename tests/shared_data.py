"""Where the public test data beside the repository lives (``../shared/data``; PROVENANCE.md there).

Tests that read it skip cleanly when it is absent; the product itself never reads it."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: GS1's EPCIS 2.0 JSON Schema (not shipped with PV Trace: README, "EPCIS schema")
EPCIS_SCHEMA = SHARED_DATA / "epcis" / "EPCIS-JSON-Schema.json"

"""Validation of E2B(R3) XML against the ICH ICSR schema (``MCCI_IN200100UV01.xsd``, multicache set) with lxml.

The schema is vendored in the package (``reports/e2b/schema/``, ICH's acknowledgement in ``NOTICE.md``), so every
installation validates with no external file; ``PVTRACE_E2B_SCHEMA`` points at another copy (e.g. a newer ICH
release). Compiling the 160-file schema takes about a second, so the compiled schema is cached per path.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from lxml import etree

VENDORED_SCHEMA = (
    Path(__file__).resolve().parent
    / "schema"
    / "4_ICH_ICSR_Schema_Files"
    / "multicacheschemas"
    / "MCCI_IN200100UV01.xsd"
)


def default_schema_path() -> Path:
    """``$PVTRACE_E2B_SCHEMA`` when set, else the vendored ICH schema."""
    env = os.environ.get("PVTRACE_E2B_SCHEMA")
    return Path(env) if env else VENDORED_SCHEMA


class SchemaUnavailable(FileNotFoundError):
    pass


@lru_cache(maxsize=4)
def load_schema(path: str | Path) -> etree.XMLSchema:
    path = Path(path)
    if not path.exists():
        raise SchemaUnavailable(
            f"ICH E2B(R3) schema not found at {path}: set PVTRACE_E2B_SCHEMA to MCCI_IN200100UV01.xsd of the ICH "
            "'4_ICH_ICSR_Schema_Files' multicache set. Without it no E2B file can be validated, so none is shipped."
        )
    return etree.XMLSchema(etree.parse(str(path)))


def validate(xml: bytes | etree._Element, schema: str | Path | None = None) -> list[str]:
    """Schema errors as ``line N: message`` strings; an empty list means valid."""
    xsd = load_schema(str(schema or default_schema_path()))
    doc = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    tree = doc.getroottree() if hasattr(doc, "getroottree") else doc
    if xsd.validate(tree):
        return []
    return [f"line {e.line}: {e.message}" for e in xsd.error_log]

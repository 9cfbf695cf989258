"""Who owns which case rows: the platform's inbox, or an external source ingested by format.

Case tables hold both. Cases ingested from regulators' files carry a source prefix
(``FAERS-<caseid>``, ``VAERS-<id>`` …, see warehouse.inputs.regulator.ingest) and are written additively by
``pvtrace ingest``; every other case id belongs to the platform's inbox, whose loader replaces
only its own rows. An inbox case may not use an external prefix (it is quarantined).
"""

from __future__ import annotations

EXTERNAL_NAMESPACES: dict[str, tuple[str, ...]] = {
    "faers": ("FAERS-", "AERS-"),
    "vaers": ("VAERS-",),
    "e2b": ("E2B-",),
    "openfda": ("OPENFDA-",),
}
EXTERNAL_PREFIXES: tuple[str, ...] = tuple(p for ps in EXTERNAL_NAMESPACES.values() for p in ps)


def inbox_case_sql(column: str = "case_id") -> str:
    """A SQL predicate true for case ids that belong to the inbox (no external prefix)."""
    return "NOT (" + " OR ".join(f"starts_with({column}, '{p}')" for p in EXTERNAL_PREFIXES) + ")"


def is_external_case_id(case_id: str) -> bool:
    return case_id.startswith(EXTERNAL_PREFIXES)

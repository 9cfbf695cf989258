"""The MedDRA interface the E2B writer takes: reported term / PT name → (LLT code, MedDRA version).

MedDRA is licensed, so PV Trace ships no MedDRA content. The terminology (issue 17) is loaded by the
pipeline and handed to the writer as a :class:`MeddraCoding`; ``None`` means no terminology is loaded, in
which case reactions are written as reported (E.i.1.1a) without E.i.2.1a/b and the batch status says the
file is not gateway-ready (rule ``PVT-MEDDRA-TERMINOLOGY``). Tests use a tiny invented mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

LLT_CODE = re.compile(r"^[0-9]{8}$")  # MedDRA codes are eight digits
VERSION = re.compile(r"^[0-9]{1,2}\.[01]$")  # E.i.2.1a: "27.0", "27.1" (March / September releases)


@dataclass(frozen=True)
class MeddraCoding:
    """One MedDRA release: ``version`` (E.i.2.1a) and ``llt`` term → LLT code (E.i.2.1b), matched case-insensitively."""

    version: str
    llt: Mapping[str, str]

    def __post_init__(self):
        if not VERSION.match(self.version):
            raise ValueError(f"MedDRA version must look like '27.0' or '27.1', not {self.version!r}")
        bad = [c for c in self.llt.values() if not LLT_CODE.match(str(c))]
        if bad:
            raise ValueError(f"MedDRA LLT codes are eight digits; got {bad[:3]}")
        object.__setattr__(self, "_folded", {k.strip().casefold(): str(v) for k, v in self.llt.items()})

    def code(self, term: str | None) -> tuple[str, str] | None:
        """(LLT code, version) for a reported term or PT name; ``None`` when the release does not have it."""
        if not term:
            return None
        code = self._folded.get(term.strip().casefold())  # type: ignore[attr-defined]
        return (code, self.version) if code else None

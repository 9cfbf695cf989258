"""The sender's own registry of FDA numbers, for the FDA rules that check a number against FDA's records.

FDA's gateway checks some values against FDA's internal lists, which are not public (FDA rule table,
``fda_refs/rejection_warning_rules.csv``):

* **R0105** (rejection): FDA.C.5.5a, the IND number where the AE occurred, must be an IND registered with the
  centre named in N.2.r.3;
* **R0106** (rejection): FDA.C.5.5b, the pre-ANDA number, likewise;
* **W0012** (warning): each FDA.C.5.6.r, IND number of a cross-reported IND, likewise;
* **W0009** (warning): G.k.2.2, the suspect product's name, must match the product registered for the
  application in FDA.C.5.5a / FDA.C.5.5b (FDA: "ignore this message for comparator study product");
* **W0008** (warning): FDA.G.k.12.r.3.r, device problem codes, must be valid FDA / IMDRF codes.

PV Trace checks them against a registry the user supplies — the sender's own IND / pre-ANDA numbers with
their centre and product name, and the device problem codes of FDA's / IMDRF's published list — named by
``$PVTRACE_E2B_REGISTRY``: a UTF-8 CSV with the header ``registry,number,centre,product_name``:

* ``registry``: ``ind``, ``pre_anda`` or ``device_problem_code``;
* ``number``: the IND / pre-ANDA number as FDA wants it in the file (digits, no prefix) or the device
  problem code (letters and digits);
* ``centre``: ``CDER`` or ``CBER`` for ``ind`` / ``pre_anda`` (the centre the application is filed with),
  empty for device problem codes;
* ``product_name``: the product registered for the application (optional; W0009 is "not checked" without it).

Several rows may name one number (several products, or both centres). Without a registry these rules
report "not checked: no registry configured" for every ICSR that carries the element, never "pass". A
malformed registry stops the validation with :class:`RegistryError` naming the line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV = "PVTRACE_E2B_REGISTRY"
HEADER = ("registry", "number", "centre", "product_name")
KINDS = ("ind", "pre_anda", "device_problem_code")
CENTRES = ("CDER", "CBER")
_NUMBER = {"ind": re.compile(r"^\d{1,10}$"), "pre_anda": re.compile(r"^\d{1,10}$")}
_CODE = re.compile(r"^[A-Za-z0-9]{1,7}$")  # FDA.G.k.12.r.3.r: 7 characters, AN (FDA data-element table)


class RegistryError(ValueError):
    """The registry file is missing, unreadable or malformed."""


def fold(name: str) -> str:
    """A product name compared case- and space-insensitively."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Registry:
    numbers: frozenset[tuple[str, str, str]]  # (registry, number, centre); centre "" for device codes
    products: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)  # folded names
    source: str = ""

    def has(self, kind: str, number: str, centre: str = "") -> bool:
        return (kind, number.strip(), centre) in self.numbers

    def product_names(self, kind: str, number: str) -> frozenset[str]:
        return self.products.get((kind, number.strip()), frozenset())


def parse_registry(text: str, source: str = "") -> Registry:
    """A :class:`Registry` from the CSV text (see the module docstring); :class:`RegistryError` on a bad row."""
    where = source or "the E2B registry"
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header[:4]) != HEADER:
        raise RegistryError(f"{where}: the first line must be the header {','.join(HEADER)}")
    numbers: set[tuple[str, str, str]] = set()
    products: dict[tuple[str, str], set[str]] = {}
    for line, row in enumerate(reader, 2):
        if not any(c.strip() for c in row):
            continue
        kind, number, centre, name = ([c.strip() for c in row] + ["", "", "", ""])[:4]
        kind, centre = kind.lower(), centre.upper()
        if kind not in KINDS:
            raise RegistryError(f"{where} line {line}: registry must be one of {', '.join(KINDS)}, not {kind!r}")
        if kind == "device_problem_code":
            if not _CODE.match(number):
                raise RegistryError(
                    f"{where} line {line}: {number!r} is not a device problem code (1-7 letters/digits)"
                )
            if centre:
                raise RegistryError(f"{where} line {line}: a device problem code has no centre")
        else:
            if not _NUMBER[kind].match(number):
                raise RegistryError(f"{where} line {line}: {kind} number {number!r} must be digits without a prefix")
            if centre not in CENTRES:
                raise RegistryError(f"{where} line {line}: centre must be CDER or CBER, not {centre!r}")
        numbers.add((kind, number, centre))
        if name:
            products.setdefault((kind, number), set()).add(fold(name))
    return Registry(frozenset(numbers), {k: frozenset(v) for k, v in products.items()}, source)


def load_registry(path: str | Path | None = None) -> Registry | None:
    """The registry at ``path``, else at ``$PVTRACE_E2B_REGISTRY``; ``None`` when neither is set."""
    path = path or os.environ.get(ENV)
    if not path:
        return None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"E2B registry {path} ({ENV}) cannot be read: {exc}") from exc
    return parse_registry(text, str(path))

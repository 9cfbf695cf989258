"""Traceability codes: GS1 (EU FMD, US DSCSA, Japan) and NMPA 20-digit drug codes.

This module is the single place that knows how pack codes are built and read.
"""

from __future__ import annotations


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a numeric body (GTIN without its last digit, GLN, SSCC ...).

    Weights 3, 1, 3, 1 ... from the rightmost body digit; check = (10 - sum mod 10) mod 10
    (GS1 General Specifications §7.9.1). ``gs1_check_digit("0950110153000") == "3"``.
    """
    if not body.isdigit():
        raise ValueError(f"GS1 check digit needs digits only, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)

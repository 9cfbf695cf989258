"""Identifiers and code strings of the synthetic world, built column-wise with polars.

Why a module of its own: pack codes appear in three places (serialisation upload, pharmacy
scan, patient-app scan) in different *written forms* of the same GS1 element string, and the
warehouse must recognise all of them. Keeping the builders together makes the forms agree.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a numeric body (GS1 General Specifications §7.9.1): from the
    rightmost digit, weights 3, 1, 3, …; the check digit brings the weighted sum to a multiple of 10.

    The generator's own implementation, deliberately not the parser's
    (``warehouse.linkage.pack_codes``): the synthetic world's codes are then an independent
    oracle for the parser's check-digit validation, and ``sample_data`` imports nothing of the
    warehouse."""
    if not body.isdigit():
        raise ValueError(f"a GS1 check digit needs a numeric body, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


_ALNUM = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", dtype=np.uint8)  # no I, O
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def gtin14(company_prefix: str, item_reference: str) -> str:
    """GTIN-14 (indicator 0) of a GS1 company prefix + item reference, with its check digit."""
    body = "0" + company_prefix + item_reference
    if len(body) != 13:
        raise ValueError(f"GTIN body must be 13 digits, got {body!r}")
    return body + gs1_check_digit(body)


def ndc_gtin14(ndc10: str) -> str:
    """NDC-based GTIN-14 of a US unit pack: ``0`` + ``03`` + NDC10 digits + check digit.

    ``ndc_gtin14("59572-215-93") == "00359572215931"`` (DSCSA; see domain/formats.md §4).
    """
    digits = ndc10.replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        raise ValueError(f"NDC10 must have 10 digits, got {ndc10!r}")
    body = "003" + digits
    return body + gs1_check_digit(body)


def random_strings(rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray) -> np.ndarray:
    """``n`` random fixed-length strings over ``alphabet`` as a numpy unicode array (vectorised)."""
    idx = rng.integers(0, len(alphabet), size=(n, length), dtype=np.uint8)  # small: 10M packs
    raw = np.ascontiguousarray(alphabet[idx]).view(f"S{length}").ravel()
    return raw.astype(f"U{length}")


def unique_random_strings(rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray = _ALNUM) -> np.ndarray:
    """Like :func:`random_strings` but guaranteed unique: serials are never reused (FMD, NMPA)."""
    out = random_strings(rng, n, length, alphabet)
    while True:
        _, first = np.unique(out, return_index=True)
        if len(first) == n:
            return out
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        out[dup] = random_strings(rng, int(dup.sum()), length, alphabet)


def gs1_hri(gtin: pl.Expr, expiry_yymmdd: pl.Expr, lot: pl.Expr, serial: pl.Expr) -> pl.Expr:
    """GS1 human-readable interpretation ``(01)…(17)…(10)…(21)…`` as printed under a DataMatrix."""
    return pl.concat_str(
        [pl.lit("(01)"), gtin, pl.lit("(17)"), expiry_yymmdd, pl.lit("(10)"), lot, pl.lit("(21)"), serial]
    )


def gs1_raw(gtin: pl.Expr, expiry_yymmdd: pl.Expr, lot: pl.Expr, serial: pl.Expr) -> pl.Expr:
    """GS1 element string as a scanner emits it, FNC1/GS (0x1D) written as ``<GS>``.

    Fixed-length AIs (01, 17) first; the variable-length lot (10) needs a separator before the
    serial (21), which is last and needs none.
    """
    return pl.concat_str([pl.lit("01"), gtin, pl.lit("17"), expiry_yymmdd, pl.lit("10"), lot, pl.lit("<GS>21"), serial])


def gs1_digital_link(gtin: pl.Expr, expiry_yymmdd: pl.Expr, lot: pl.Expr, serial: pl.Expr) -> pl.Expr:
    """GS1 Digital Link URI of a pack; lots/serials here are URI-safe so need no escaping."""
    return pl.concat_str(
        [
            pl.lit("https://id.gs1.org/01/"),
            gtin,
            pl.lit("/10/"),
            lot,
            pl.lit("/21/"),
            serial,
            pl.lit("?17="),
            expiry_yymmdd,
        ]
    )


def scanned_forms(form: pl.Expr, hri: pl.Expr, raw: pl.Expr, link: pl.Expr) -> pl.Expr:
    """Pick the written form of a scan: 0 = HRI, 1 = raw with ``<GS>``, 2 = Digital Link."""
    return pl.when(form == 0).then(hri).when(form == 1).then(raw).otherwise(link)


def typo(rng: np.random.Generator, text: str) -> str:
    """One-character typing error: substitution, deletion or swap of neighbours."""
    if len(text) < 3:
        return text + "X"
    i = int(rng.integers(0, len(text) - 1))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        confusable = {
            "0": "O",
            "O": "0",
            "1": "I",
            "I": "1",
            "5": "S",
            "S": "5",
            "8": "B",
            "B": "8",
            "2": "Z",
            "Z": "2",
        }
        repl = confusable.get(text[i], chr(ord("A") + int(rng.integers(0, 26))))
        return text[:i] + repl + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]

"""Traceability codes: GS1 (EU FMD, US DSCSA, Japan) and NMPA 20-digit drug codes.

This module is the single place that knows how pack codes are built and read.

Two entry points read codes:

- :func:`parse_pack_code` reads one code of any supported form and returns a
  :class:`PackCode` or raises :class:`InvalidPackCode` (a ``ValueError`` with a
  machine-readable ``reason``). GS1 parsing is delegated to ``biip``; this module only
  decides which biip parser to call, pre-processes what biip does not understand (the
  textual ``<GS>`` separator, surrounding whitespace) and checks what biip leaves to the
  caller (the GTIN check digit is reported, not raised; AI requirements such as "10 and
  21 require 01" are not checked by biip).
- :func:`parse_pack_codes` does the same for a whole column: the well-formed majority
  (canonical HRI ``(01)(17)(10)[(21)]``, the raw ``01 17 10<GS>21`` and Digital Link
  ``/01/…/10/…/21/…?17=`` forms our inbox writes, NMPA codes) with polars expressions,
  everything else per distinct code through :func:`parse_pack_code`. Both paths give the
  same result for every input (tested).

Lot numbers as typed in case reports are cleaned in :mod:`warehouse.linkage.lot_rules`
(:func:`normalise_lot` and :func:`normalise_lot_expr` are re-exported here for callers).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl
from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_messages import GS1Message
from biip.symbology import SymbologyIdentifier

from warehouse.linkage.lot_rules import normalise_lot, normalise_lot_expr

__all__ = [
    "REASONS",
    "InvalidPackCode",
    "PackCode",
    "gs1_check_digit",
    "ndc_to_gtin",
    "normalise_lot",
    "normalise_lot_expr",
    "parse_pack_code",
    "parse_pack_codes",
]


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a numeric body (GTIN without its last digit, GLN, SSCC ...).

    Weights 3, 1, 3, 1 ... from the rightmost body digit; check = (10 - sum mod 10) mod 10
    (GS1 General Specifications §7.9.1). ``gs1_check_digit("0950110153000") == "3"``.
    """
    if not body.isdigit():
        raise ValueError(f"GS1 check digit needs digits only, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


# ---------------------------------------------------------------------------------------
# Result and error types

#: Every value ``InvalidPackCode.reason`` (and ``parse_pack_codes``' ``error_reason``) takes.
REASONS = {
    "empty": "no code (null, empty or whitespace only)",
    "unknown_format": "neither GS1 (HRI, element string, Digital Link) nor NMPA",
    "bad_check_digit": "GTIN check digit does not match (GS1 mod 10)",
    "impossible_date": "expiry (17) is not a valid YYMMDD date (month 13, 30 February ...)",
    "bad_gtin": "AI (01) is not 14 digits",
    "missing_gtin": "a GS1 code without AI (01): not a pack identifier",
    "malformed_gs1": "GS1 syntax error (unknown AI, bad characters, value too long ...)",
    "bad_nmpa_code": "looks like an NMPA code but is not 20 digits starting with 8",
    "conflicting_ai": "the same AI twice with different values (e.g. two GTINs, or a Digital Link query "
    "contradicting its path)",
}


class InvalidPackCode(ValueError):
    """A pack code that cannot be read. ``reason`` is one of :data:`REASONS`' keys."""

    def __init__(self, reason: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class PackCode:
    """One pack's traceability code, whatever form it was read from.

    GS1: ``gtin`` (14 digits), ``serial`` (21), ``lot`` (10), ``expiry`` (17; day 00 =
    last day of the month) — the last three may be None (Japan has no serials).
    NMPA: ``nmpa_drug_code`` is the 7-digit 药品标识码 prefix; ``serial`` is the remaining
    13 digits, kept opaque (their split into serial and check part is not verified);
    ``gtin``, ``lot`` and ``expiry`` are None (the batch comes from the packs upload).
    """

    system: Literal["gs1", "nmpa"]
    gtin: str | None = None
    serial: str | None = None
    lot: str | None = None
    expiry: dt.date | None = None
    nmpa_drug_code: str | None = None


# ---------------------------------------------------------------------------------------
# Single-code parser (biip for GS1)

_NMPA_RE = re.compile(r"^8\d{19}$")
# Something that was meant to be an NMPA code: mostly digits, about 20 long, or 20
# alphanumerics starting with 8. Checked only after the GS1 readings did not apply.
_NMPA_LIKE_RE = re.compile(r"^(?:\d{15,25}|8[0-9A-Za-z]{17,22})$")
_TEXT_GS_RE = re.compile(r"<GS>", re.IGNORECASE)
_AI_IN_MESSAGE_RE = re.compile(r"GS1 AI \((\d+)\)")


def parse_pack_code(text: str) -> PackCode:
    """Read one pack code: GS1 HRI, GS1 element string, GS1 Digital Link URI or NMPA.

    Accepted GS1 forms (all give the same :class:`PackCode` for the same pack):

    - HRI ``(01)09501101530003(17)261200(10)ABC123(21)SN001`` (any AI order, spaces
      between elements ignored — biip removes all whitespace);
    - element string ``01095011015300031726120010ABC123␝21SN001`` with the real GS
      (0x1D) or the textual ``<GS>`` our delivery CSVs use, with or without a symbology
      identifier such as ``]d2`` (DataMatrix), ``]C1`` (GS1-128), ``]Q3`` (QR);
    - Digital Link ``https://id.gs1.org/01/{gtin}/10/{lot}/21/{serial}?17=YYMMDD`` on any
      host and path prefix (lot/serial percent-decoded; a GTIN-13 is padded to 14).

    NMPA: ``^8\\d{19}$`` (possibly behind a symbology identifier).

    An AI given twice must carry the same value both times: ``(01)…(10)AAA(01)<other GTIN>``
    or a Digital Link whose ``?10=`` / ``?01=`` query contradicts its path is refused with
    ``conflicting_ai`` (never "the last value wins").

    Raises:
        InvalidPackCode: with ``reason`` in :data:`REASONS` — and nothing else, whatever the
        input (an unexpected failure inside biip becomes ``malformed_gs1``).
    """
    try:
        return _parse_pack_code(text)
    except InvalidPackCode:
        raise
    except Exception as exc:  # the documented contract: only InvalidPackCode escapes
        raise InvalidPackCode("malformed_gs1", f"unreadable code ({type(exc).__name__})", text) from exc


def _parse_pack_code(text: str) -> PackCode:
    if text is None or not isinstance(text, str) or not text.strip():
        raise InvalidPackCode("empty", "no pack code", text)
    code = text.strip()

    if _NMPA_RE.match(code):
        return _nmpa(code)

    if code.startswith("("):
        return _gs1(code, _parse_hri, text)
    lower = code[:8].lower()
    if lower.startswith(("http://", "https://")):
        return _gs1(code, _parse_digital_link, text)

    if code.startswith("]"):
        if len(code) < 3:  # "]" + symbology character + modifier
            raise InvalidPackCode("unknown_format", f"incomplete symbology identifier {code!r}", text)
        try:
            symbology = SymbologyIdentifier.extract(code)
        except ParseError as exc:
            raise InvalidPackCode("unknown_format", str(exc), text) from exc
        rest = code[len(symbology.value) :].strip()
        if _NMPA_RE.match(rest):
            return _nmpa(rest)
        if not rest:
            raise InvalidPackCode("empty", f"only a symbology identifier {code!r}", text)
        if rest.startswith(("http://", "https://")):  # a QR code carrying a Digital Link
            return _gs1(rest, _parse_digital_link, text)
        code = rest

    element_string = _TEXT_GS_RE.sub("\x1d", code).strip()
    if element_string[:2].isdigit() and (element_string.startswith("01") or not element_string.isdigit()):
        try:
            return _gs1(element_string, _parse_element_string, text)
        except InvalidPackCode as exc:
            # 20-odd plain digits that fail as GS1 were more likely a mangled NMPA code
            if exc.reason == "malformed_gs1" and _NMPA_LIKE_RE.match(code):
                raise _bad_nmpa(code, text) from exc
            raise
    if _NMPA_LIKE_RE.match(code):
        raise _bad_nmpa(code, text)
    raise InvalidPackCode("unknown_format", f"not a GS1 or NMPA code: {code[:60]!r}", text)


def _bad_nmpa(code: str, original: str) -> InvalidPackCode:
    why = []
    if len(code) != 20:
        why.append(f"{len(code)} characters, expected 20")
    if not code.startswith("8"):
        why.append(f"starts with {code[0]!r}, expected '8'")
    if not code.isdigit():
        why.append("contains non-digits")
    return InvalidPackCode("bad_nmpa_code", "NMPA code " + "; ".join(why), original)


def _nmpa(code: str) -> PackCode:
    return PackCode(system="nmpa", serial=code[7:], nmpa_drug_code=code[:7])


def _parse_hri(code: str):
    return GS1Message.parse_hri(code).element_strings


def _parse_element_string(code: str):
    return GS1Message.parse(code).element_strings


_DL_GTIN_RE = re.compile(r"/01/([^/?#]*)")


def _parse_digital_link(code: str):
    path_gtin = _DL_GTIN_RE.search(code)
    # biip zero-pads whatever stands after /01/, so an empty or short segment would read as a GTIN
    if path_gtin and not re.fullmatch(r"\d{8}|\d{12,14}", path_gtin.group(1)):
        raise InvalidPackCode("bad_gtin", f"Digital Link GTIN {path_gtin.group(1)!r} is not 8, 12, 13 or 14 digits")
    return GS1DigitalLinkURI.parse(code).element_strings


def _gs1(code: str, parser, original: str) -> PackCode:
    try:
        elements = parser(code)
    except InvalidPackCode as exc:
        raise InvalidPackCode(exc.reason, str(exc).split(": ", 1)[-1], original) from exc
    except ParseError as exc:
        raise InvalidPackCode(_classify_biip_error(str(exc)), str(exc), original) from exc
    except ValueError as exc:  # biip lets e.g. an out-of-range date escape as ValueError
        raise InvalidPackCode("malformed_gs1", str(exc), original) from exc

    values: dict[str, object] = {}
    seen: dict[str, str] = {}
    gtin_error = None
    for element in elements:
        ai = element.ai.ai
        if ai in seen and seen[ai] != element.value:
            raise InvalidPackCode("conflicting_ai", f"AI ({ai}) twice with different values in {code[:60]!r}", original)
        seen[ai] = element.value
        if ai == "01":
            if len(element.value) not in (8, 12, 13, 14) or not element.value.isdigit():
                raise InvalidPackCode("bad_gtin", f"GTIN {element.value!r} is not 8, 12, 13 or 14 digits", original)
            values["gtin"] = element.value.zfill(14)
            gtin_error = element.gtin_error
        elif ai == "17":
            values["expiry"] = element.date
        elif ai == "10":
            values["lot"] = element.value
        elif ai == "21":
            values["serial"] = element.value
    if "gtin" not in values:
        raise InvalidPackCode("missing_gtin", f"no GTIN (01) in {code[:60]!r}", original)
    if gtin_error:
        reason = "bad_check_digit" if "check digit" in gtin_error else "bad_gtin"
        raise InvalidPackCode(reason, gtin_error, original)
    return PackCode(system="gs1", **values)  # type: ignore[arg-type]


def _classify_biip_error(message: str) -> str:
    """Map a biip ParseError message to a reason (biip has no error codes; pinned by tests)."""
    if "date/time" in message:
        return "impossible_date"
    found = _AI_IN_MESSAGE_RE.search(message)
    if found and found.group(1) == "17":
        return "impossible_date"
    if found and found.group(1) == "01":
        return "bad_gtin"
    return "malformed_gs1"


# ---------------------------------------------------------------------------------------
# NDC → GTIN


def ndc_to_gtin(ndc: str) -> str:
    """GTIN-14 of a US NDC10 on a unit pack: ``"0" + "3" + NDC10 digits + check digit``.

    The NDC must have 10 digits in one of the FDA layouts 4-4-2, 5-3-2 or 5-4-1 (hyphens
    optional). ``ndc_to_gtin("59572-215-93") == "00359572215931"``. The billing NDC11
    (5-4-2, zero padded) is refused: its padding cannot be undone without the NDC
    directory.
    """
    text = (ndc or "").strip()
    parts = text.split("-")
    if len(parts) == 3:
        if tuple(len(p) for p in parts) not in {(4, 4, 2), (5, 3, 2), (5, 4, 1)}:
            raise ValueError(f"NDC {ndc!r} is not in a 4-4-2, 5-3-2 or 5-4-1 layout")
    elif len(parts) != 1:
        raise ValueError(f"NDC {ndc!r} is not in a 4-4-2, 5-3-2 or 5-4-1 layout")
    digits = "".join(parts)
    if not digits.isdigit() or len(digits) != 10:
        raise ValueError(f"NDC {ndc!r} must have exactly 10 digits (NDC10)")
    body = "003" + digits  # indicator 0 (unit) + "03" + NDC10
    return body + gs1_check_digit(body)


# ---------------------------------------------------------------------------------------
# Vectorised parser

_PACK_SCHEMA = {
    "code": pl.String,
    "system": pl.String,
    "gtin": pl.String,
    "serial": pl.String,
    "lot": pl.String,
    "expiry": pl.Date,
    "nmpa_drug_code": pl.String,
    "error_reason": pl.String,
}
# GS1 CSET 82 (biip's own class) without "(" and ")", which end an HRI field
_CSET82_NO_PAREN = r"""[!"%&'*+,\-./0-9:;<=>?A-Z_a-z]"""
# ... and without "<", so that a textual "<GS>" cannot hide inside a raw lot
_CSET82_RAW = r"""[!"%&'()*+,\-./0-9:;=>?A-Z_a-z]"""
# Digital Link: unreserved URI characters only (no percent-encoding, no delimiters)
_DL_SAFE = r"[A-Za-z0-9\-._]"
# The canonical forms our inbox writes; anything else goes to biip.
_FAST_FORMS = (
    r"^\(01\)(?P<gtin>\d{14})\(17\)(?P<date>\d{6})\(10\)(?P<lot>"
    + _CSET82_NO_PAREN
    + r"{1,20})(?:\(21\)(?P<serial>"
    + _CSET82_NO_PAREN
    + r"{1,20}))?$",
    r"^(?:\]d2)?01(?P<gtin>\d{14})17(?P<date>\d{6})10(?P<lot>"
    + _CSET82_RAW
    + r"{1,20})(?:<GS>|\x1d)21(?P<serial>"
    + _CSET82_RAW
    + r"{1,20})$",
    r"^https?://[A-Za-z0-9.\-]+(?::\d+)?/01/(?P<gtin>\d{14})/10/(?P<lot>"
    + _DL_SAFE
    + r"{1,20})/21/(?P<serial>"
    + _DL_SAFE
    + r"{1,20})\?17=(?P<date>\d{6})$",
)
_FAST_STRIP = " \t\r\n"  # a subset of what str.strip() removes, so both paths agree


def _century_expr(yy: pl.Expr) -> pl.Expr:
    """The century biip gives a two-digit year: within -49/+50 years of this UTC year."""
    current = dt.datetime.now(tz=dt.UTC).year
    century = current - current % 100
    diff = yy - (current - century)
    return (
        pl.when((diff >= 51) & (diff <= 99))
        .then(century - 100)
        .when((diff >= -99) & (diff <= -50))
        .then(century + 100)
        .otherwise(century)
    )


def _check_digit_ok_expr(gtin: pl.Expr) -> pl.Expr:
    """Vectorised GS1 mod-10 check on a 14-digit string column (integer arithmetic)."""
    number = gtin.cast(pl.UInt64, strict=False)
    total = pl.lit(0, dtype=pl.UInt64)
    for position in range(1, 14):  # digit `position` from the right, excluding the check
        digit = (number // (10**position)) % 10
        total = total + digit * (3 if position % 2 == 1 else 1)
    return (10 - total % 10) % 10 == number % 10


def parse_pack_codes(codes: pl.Series | list[str | None]) -> pl.DataFrame:
    """Parse a column of pack codes; one output row per input row, input order kept.

    Columns: code (the input), system, gtin, serial, lot, expiry, nmpa_drug_code,
    error_reason (null when the code is valid, else an ``InvalidPackCode.reason``).
    Canonical HRI ``(01)(17)(10)[(21)]``, raw ``[]d2]01…17…10…<GS>21…`` (or real GS),
    plain Digital Link ``https://host/01/…/10/…/21/…?17=…`` and NMPA codes are parsed with
    polars expressions; every other row goes once per distinct code through
    :func:`parse_pack_code`. The result equals ``parse_pack_code`` row by row.
    """
    series = codes if isinstance(codes, pl.Series) else pl.Series(codes, dtype=pl.String)
    series = series.cast(pl.String).rename("code")
    if series.len() <= PARSE_CHUNK_ROWS:
        return _parse_chunk(series)
    # The three form regexes each leave a struct column as long as the input; parsed a chunk
    # at a time, those intermediates stay chunk-sized and only the result is full-sized.
    return pl.concat(
        [_parse_chunk(series.slice(start, PARSE_CHUNK_ROWS)) for start in range(0, series.len(), PARSE_CHUNK_ROWS)],
        rechunk=False,
    )


#: rows parsed at once by :func:`parse_pack_codes` (bounds its intermediate memory)
PARSE_CHUNK_ROWS = 1_000_000


def _parse_chunk(series: pl.Series) -> pl.DataFrame:
    frame = pl.DataFrame({"code": series})
    frame = frame.with_columns(_s=pl.col("code").str.strip_chars(_FAST_STRIP))
    # each form's regex runs once, into a struct column; coalescing struct fields of the bare
    # expressions instead re-ran all three regexes for each of the four fields
    forms = [f"_form{i}" for i in range(len(_FAST_FORMS))]
    frame = frame.with_columns(
        pl.col("_s").str.extract_groups(form).alias(name) for name, form in zip(forms, _FAST_FORMS)
    )
    frame = frame.with_columns(
        pl.coalesce(pl.col(name).struct.field(field) for name in forms).alias(f"_{field}")
        for field in ("gtin", "date", "lot", "serial")
    ).drop(forms)
    # the date fields once, as integer columns: date validity and expiry both read them
    yy = pl.col("_date").str.slice(0, 2).cast(pl.Int32)
    frame = frame.with_columns(
        _year=yy + _century_expr(yy),
        _mm=pl.col("_date").str.slice(2, 2).cast(pl.Int32),
        _dd=pl.col("_date").str.slice(4, 2).cast(pl.Int32),
    )
    year, mm, dd = pl.col("_year"), pl.col("_mm"), pl.col("_dd")
    month_ok = mm.is_between(1, 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    # days in the month by arithmetic (building a date per row to take its month end was slow)
    last_day = (
        pl.when(mm == 2)
        .then(pl.when(leap).then(29).otherwise(28))
        .when(mm.is_in([4, 6, 9, 11]))
        .then(30)
        .otherwise(31)
        .cast(pl.Int32)
    )
    frame = frame.with_columns(_last_day=pl.when(month_ok).then(last_day))
    date_ok = month_ok & (dd <= pl.col("_last_day"))
    expiry = pl.when(date_ok).then(pl.date(year, mm, pl.when(dd == 0).then(pl.col("_last_day")).otherwise(dd)))
    is_hri = pl.col("_gtin").is_not_null()
    frame = frame.with_columns(_nmpa=pl.col("_s").str.contains(r"^8\d{19}$"))
    is_nmpa = pl.col("_nmpa")
    frame = frame.with_columns(
        _fast=(is_hri | is_nmpa).fill_null(False),
        system=pl.when(is_nmpa).then(pl.lit("nmpa")).when(is_hri).then(pl.lit("gs1")),
        error_reason=pl.when(is_hri & ~date_ok)
        .then(pl.lit("impossible_date"))
        .when(is_hri & ~_check_digit_ok_expr(pl.col("_gtin")))
        .then(pl.lit("bad_check_digit")),
    )
    ok_hri = is_hri & pl.col("error_reason").is_null()
    fast = frame.select(
        "code",
        pl.when(pl.col("error_reason").is_null()).then(pl.col("system")).alias("system"),
        pl.when(ok_hri).then(pl.col("_gtin")).alias("gtin"),
        pl.when(ok_hri).then(pl.col("_serial")).when(is_nmpa).then(pl.col("_s").str.slice(7)).alias("serial"),
        pl.when(ok_hri).then(pl.col("_lot")).alias("lot"),
        pl.when(ok_hri).then(expiry).alias("expiry"),
        pl.when(is_nmpa).then(pl.col("_s").str.slice(0, 7)).alias("nmpa_drug_code"),
        "error_reason",
        "_fast",
    )
    slow_rows = fast.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "code", "_fast").filter(
        ~pl.col("_fast")
    )
    fast = fast.drop("_fast")
    slow_codes = slow_rows.get_column("code").unique()
    if slow_codes.len() == 0:
        return fast
    # only the few fallback rows are joined and written back in place (not a join of every row)
    patch = slow_rows.join(_parse_slow(slow_codes), on="code", how="left", nulls_equal=True, maintain_order="left")
    return fast.with_columns(
        fast.get_column(c).clone().scatter(patch["_i"], patch[c]) for c in _PACK_SCHEMA if c != "code"
    )


def _parse_slow(codes: pl.Series) -> pl.DataFrame:
    rows = []
    for code in codes.to_list():
        try:
            p = parse_pack_code(code)
        except InvalidPackCode as exc:
            rows.append((code, None, None, None, None, None, None, exc.reason))
        else:
            rows.append((code, p.system, p.gtin, p.serial, p.lot, p.expiry, p.nmpa_drug_code, None))
    return pl.DataFrame(rows, schema=_PACK_SCHEMA, orient="row")

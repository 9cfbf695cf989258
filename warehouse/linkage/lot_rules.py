"""Lot numbers as typed in case reports → comparable lots, an expiry, and the rule behind each rejection.

The single place that cleans lot text. Case-report lots (FAERS ``LOT_NUM``, VAERS ``VAX_LOT``,
E2B G.k.4.r.7, openFDA ``drugbatchnumb``, our own cases inbox) and batch lot numbers from the
reference data all go through :func:`clean_lots_expr`, so both sides meet in the middle.

Steps, in order (:func:`clean_lots` runs them on the distinct values of a column in a few frame
passes; the expression and scalar forms call it, so there is one definition):

1. upper-case, squeeze whitespace;
2. **expiry split**: an expiry written after the lot is moved to the ``expiry`` field (``YYYY-MM``)
   instead of being glued onto the lot — ``EK9231  4/21`` → lot ``EK9231``, expiry ``2021-04``.
   Shapes (at the end of the field, after whitespace, ``EXP``/``EXPIRY``/``EXP DATE`` or ``(``):
   ``M/YY``, ``MM/YYYY``, ``M-YY``, ``M.YYYY``, ``M/D/YY(YY)``, ``YYYY-MM(-DD)``, ``MON YY(YY)``
   (``APR 2021``, ``APR21``). Two-digit years are 20YY up to 50, else 19YY. A field that would be
   left without a lot is not split (``LOT 12/34`` stays a lot);
3. the named **rejection rules** (:data:`LOT_RULES`) on the whole field, then on each part after
   splitting several lots (``,`` ``;`` ``&`` `` AND ``, and ``/`` only between two parts of at
   least three characters each, so that ``N/K`` or ``A/12`` stay whole);
4. prefixes removed (``LOT``, ``LOT#``, ``LOT:``, ``L:``, ``BATCH``, ``Lot No.``, ``Ch.-B.``,
   ``批号``), all whitespace removed, edge punctuation trimmed, duplicates dropped.

A rejected part is not a lot: it never links to a batch and never counts as a usable lot.
``rejected`` lists, per value, the rule name of every rejected part, so an ingest can report
how many lots each rule rejected.
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

__all__ = ["LOT_RULES", "clean_lot", "clean_lots", "clean_lots_expr", "normalise_lot", "normalise_lot_expr"]

#: Every rejection rule, by name: what it rejects.
LOT_RULES = {
    "junk_unknown": "a token meaning unknown or absent: UNKNOWN and its misspellings (UNK, UNKOWN, UNKNWN, "
    "UKNOWN ...), N/A, N/K, U/K, NONE, NIL, '-', '?', ASKU/NASK, 不详",
    "unconfirmed": "UNCONFIRMED / UNVERIFIED / PENDING and no lot beside it (with a lot, the remark is dropped "
    "and the lot kept)",
    "sentence": "a sentence instead of a lot: 'don't know', 'not available', 'not on card', 'discarded' "
    "..., or three or more words without a digit",
    "manufacturer_name": "a manufacturer's name typed into the lot field (PFIZER, MODERNA, MERCK & CO ...)",
    "date_only": "a date and nothing else (04/2021, 4/30/2021, 2021-04-30): an expiry or a vaccination date",
}

_UNKNOWN_RE = (
    r"^(?:UNK[A-Z]*|UKN[A-Z]*|UNNOWN|UNKWN|UNKOWN|UNKNONW|UNSURE|UNKNOWN\s*LOT|LOT\s*UNKNOWN"
    r"|N\s*/\s*[AKR]|N\.\s*[AKR]\.?|U\s*/\s*K|NA|NK|NR|N\.A|NONE|NIL|NULL|NO|NONE\s*GIVEN"
    r"|NOT\s*(?:KNOWN|REPORTED|AVAILABLE|APPLICABLE|PROVIDED|GIVEN|STATED|SPECIFIED|RECORDED|DOCUMENTED)"
    r"|ASKU|NASK|NI|MSK|[-_*.?#/\\]+|X{2,}|0+|不详|未知|无)$"
)
_UNCONFIRMED_RE = (
    r"\(?\s*(?:UNCONFIRMED|UNCONFIRM|UNVERIFIED|NOT\s*CONFIRMED|NOT\s*VERIFIED|PENDING|TO\s*BE\s*CONFIRMED|TBC|TBD)"
    r"\s*\)?"
)
_DATE_ONLY_RE = r"^(?:\d{1,2}\s*/\s*(?:19|20)\d{2}|\d{1,2}\s*/\s*\d{1,2}\s*/\s*(?:\d{2}|\d{4})|(?:19|20)\d{2}-\d{1,2}(?:-\d{1,2})?)$"
_SENTENCE_RE = (
    r"DON'?T\s*KNOW|DO\s*NOT\s*KNOW|DOESN'?T\s*KNOW|DID\s*NOT\s*KNOW|NOT\s*KNOWN|UNKNOWN|UNAVAILABLE"
    r"|NOT\s*AVAILABLE|NOT\s*ON\s|NOT\s*RECORDED|NOT\s*DOCUMENTED|NOT\s*PROVIDED|NOT\s*GIVEN|NOT\s*REPORTED"
    r"|NO\s*LOT|NO\s*RECORD|NO\s*INFO|UNABLE|CANNOT|CAN'?T|COULD\s*NOT|NOT\s*SURE|UNSURE|ASKED|REQUESTED"
    r"|ILLEGIBLE|NOT\s*LEGIBLE|UNREADABLE|DISCARDED|THREW|THROWN|NOT\s*OBTAIN|NOT\s*AVAIL|NOT\s*NOTED"
    r"|SEE\s*(?:ABOVE|BELOW|NARRATIVE)|PATIENT|UNKNOW"
)
# compact (letters and digits only) manufacturer names; company suffixes are dropped first
_MANUFACTURERS = (
    "PFIZER|PFIZERBIONTECH|BIONTECH|MODERNA|MODERNATX|JANSSEN|JOHNSONJOHNSON|JJ|JANDJ|MERCK|MERCKCO|MSD"
    "|SANOFI|SANOFIPASTEUR|PASTEUR|PASTEURMERIEUX|PASTEURMERIEUXCONNAUGHT|AVENTIS|AVENTISPASTEUR|PMC|CONNAUGHT"
    "|GSK|GLAXO|GLAXOSMITHKLINE|SMITHKLINE|SMITHKLINEBEECHAM|ASTRAZENECA|AZ|NOVAVAX|SEQIRUS|NOVARTIS|MEDIMMUNE"
    "|WYETH|LEDERLE|WYETHLEDERLE|CSL|EMERGENT|DYNAVAX|BAVARIANNORDIC|PROTEINSCIENCES|MASSPUBHLTH|MASSBIOLOGIC"
    "|BAXTER|CHIRON|EVANS|BERNA|ORGANON|TEVA|MYLAN|SANDOZ|AMGEN|ABBVIE|ABBOTT|LILLY|ELILILLY|ROCHE|BAYER"
    "|NOVONORDISK|BOEHRINGER|BOEHRINGERINGELHEIM|TAKEDA|VALNEVA|INTERCELL|UNKNOWNMANUFACTURER"
)
_COMPANY_SUFFIX_RE = (
    r"(?:INCORPORATED|INC|CORPORATION|CORP|COMPANY|CO|LTD|LLC|LP|PLC|GMBH|AG|SA|BV|NV|BIOLOGICALS|BIOLOGICS"
    r"|VACCINES|VACCINE|PHARMACEUTICALS|PHARMACEUTICAL|PHARMA|LABORATORIES|LABS|AND|DIAGNOSTICS|US|USA)$"
)

_MONTHS = {
    m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)
}
_EXP_WORD = r"(?:\(?\s*(?:EXP(?:IRY|IRES|IRATION)?\.?(?:\s*DATE)?\s*[:.=]?\s*)|\(\s*)"
# (lead) (month) (year): lead is whitespace or an EXP word; each alternative captures mm and yy(yy)
_EXPIRY_FORMS = (
    # M/YY, MM/YYYY, M-YY, M.YYYY
    rf"^(?P<rest>.*?)(?:\s+{_EXP_WORD}?|{_EXP_WORD})(?P<mm>\d{{1,2}})\s*[/\-.]\s*(?P<yy>\d{{4}}|\d{{2}})\s*\)?$",
    # M/D/YY(YY)
    rf"^(?P<rest>.*?)(?:\s+{_EXP_WORD}?|{_EXP_WORD})(?P<mm>\d{{1,2}})\s*/\s*\d{{1,2}}\s*/\s*(?P<yy>\d{{4}}|\d{{2}})\s*\)?$",
    # YYYY-MM(-DD)
    rf"^(?P<rest>.*?)(?:\s+{_EXP_WORD}?|{_EXP_WORD})(?P<yy>20\d{{2}})\s*[/\-.]\s*(?P<mm>\d{{1,2}})(?:\s*[/\-.]\s*\d{{1,2}})?\s*\)?$",
    # MON YY(YY), MONYY
    rf"^(?P<rest>.*?)(?:\s+{_EXP_WORD}?|{_EXP_WORD})(?P<mon>JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\.?\s*[/\-]?\s*(?P<yy>\d{{4}}|\d{{2}})\s*\)?$",
)

# Prefixes people write before the lot (Rust regex: no look-around). "LOT"/"BATCH" need a
# separator after them, or "LOT" a digit (handled by _LOT_DIGIT_RE), so that lots such as
# "LOTUS7" keep their letters; single-letter L/B need ":" or "#".
_LOT_PREFIX_RE = (
    r"^(?:"
    r"(?:LOT|BATCH|CHARGE)\s*(?:NUMBER|NO\.|NO\s|NR\.?|N°|#|:)\s*[:#.]?\s*"
    r"|(?:LOT|BATCH|CHARGE)\s*[#:.\-]+\s*"
    r"|(?:LOT|BATCH|CHARGE)\s+"
    r"|CH\.-?B\.\s*[:#]?\s*"
    r"|[LB]\s*[:#]\s*"
    r"|批号\s*[:：]?\s*"
    r")"
)
_LOT_DIGIT_RE = r"^LOT(\d)"
# several lots in one field; "/" only between two runs of 3+ characters (see the module docstring)
_LOT_SPLIT_RE = r"\s*(?:[,;&]|\sAND\s)\s*"
_SLASH_SPLIT_RE = r"([A-Z0-9]{3,})\s*/\s*([A-Z0-9]{3,})"
_EDGE_PUNCT_RE = r"""^[#:.\-_*'"()\[\]]+|[#:.\-_*'"()\[\]]+$"""
_SEP = "\x00"
_EMPTY = pl.lit([], dtype=pl.List(pl.String))


def _two_digit_year(yy: pl.Expr) -> pl.Expr:
    n = yy.cast(pl.Int32, strict=False)
    return pl.when(yy.str.len_chars() == 4).then(n).when(n <= 50).then(2000 + n).otherwise(1900 + n)


def _split_expiry(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``body`` (the field without its expiry) and ``expiry`` (``YYYY-MM`` or null) to a frame
    with an ``upper`` column; each form's regex runs once, into its own column."""
    rest = pl.lit(None, pl.String)
    expiry = pl.lit(None, pl.String)
    forms = [f"_x{i}" for i in range(len(_EXPIRY_FORMS))]
    frame = frame.with_columns(pl.col("upper").str.extract_groups(f).alias(n) for n, f in zip(forms, _EXPIRY_FORMS))
    # later forms first so that the first form (tried last) wins ties
    for name, form in reversed(list(zip(forms, _EXPIRY_FORMS))):
        groups = pl.col(name)
        month = (
            groups.struct.field("mm").cast(pl.Int32, strict=False)
            if "(?P<mm>" in form
            else groups.struct.field("mon").replace_strict(_MONTHS, default=None, return_dtype=pl.Int32)
        )
        year = _two_digit_year(groups.struct.field("yy"))
        left = groups.struct.field("rest").str.strip_chars(" ,;:-")
        # a usable split: a real month, and a lot-like remainder (not only a prefix)
        remainder = (left + " ").str.replace(_LOT_PREFIX_RE, "").str.replace_all(r"[^0-9A-Z]", "")
        ok = month.is_between(1, 12) & year.is_between(1950, 2099) & (remainder.str.len_chars() >= 2)
        text = pl.format("{}-{}", year.cast(pl.String), month.cast(pl.String).str.zfill(2))
        rest = pl.when(ok).then(left).otherwise(rest)
        expiry = pl.when(ok).then(text).otherwise(expiry)
    return frame.with_columns(body=pl.coalesce(rest, pl.col("upper")), expiry=expiry).drop(forms)


def _rule(part: pl.Expr) -> pl.Expr:
    """The name of the rule that rejects this (upper-case, prefix-stripped) part, or null."""
    bare = part.str.strip_chars(" ").str.replace_all(_EDGE_PUNCT_RE, "").str.strip_chars(" ")
    compact = bare.str.replace_all(r"[^0-9A-Z]", "")
    company = compact
    for _ in range(2):  # "MERCK & CO INC": two suffixes
        company = company.str.replace(_COMPANY_SUFFIX_RE, "")
    has_digit = bare.str.contains(r"\d")
    lotlike_token = bare.str.contains(r"(?:^|\s)[A-Z0-9\-]*\d[A-Z0-9\-]*[A-Z0-9]{3,}|(?:^|\s)[A-Z0-9]{3,}\d")
    words = bare.str.count_matches(r"[A-Z']+")
    manufacturer = f"^(?:{_MANUFACTURERS})$"
    return (
        pl.when(bare.str.contains(_UNKNOWN_RE) | ((bare == "") & (part.str.strip_chars(" ") != "")))
        .then(pl.lit("junk_unknown"))
        .when(compact.str.contains(manufacturer) | company.str.contains(manufacturer))
        .then(pl.lit("manufacturer_name"))
        .when(bare.str.contains(_UNCONFIRMED_RE) & (_drop_unconfirmed(bare).str.replace_all(r"[^0-9A-Z]", "") == ""))
        .then(pl.lit("unconfirmed"))
        .when((bare.str.contains(_SENTENCE_RE) & ~lotlike_token) | ((words >= 3) & ~has_digit))
        .then(pl.lit("sentence"))
        .when(bare.str.contains(_DATE_ONLY_RE))
        .then(pl.lit("date_only"))
    )


def _drop_unconfirmed(part: pl.Expr) -> pl.Expr:
    """``EN6201 (unconfirmed)`` → ``EN6201``: the lot is kept, the remark is not part of it."""
    return part.str.replace_all(_UNCONFIRMED_RE, " ")


def _strip_prefix(part: pl.Expr) -> pl.Expr:
    return part.str.strip_chars(" ").str.replace(_LOT_PREFIX_RE, "").str.replace(_LOT_DIGIT_RE, "${1}")


def _compact(part: pl.Expr) -> pl.Expr:
    return _drop_unconfirmed(part).str.replace_all(r"\s", "").str.replace_all(_EDGE_PUNCT_RE, "")


_SCHEMA = {"lots": pl.List(pl.String), "expiry": pl.String, "rejected": pl.List(pl.String)}


def clean_lots(values: pl.Series) -> pl.DataFrame:
    """Clean a column of typed lots: ``lots`` (``list[str]``, empty when none, never null),
    ``expiry`` (``YYYY-MM`` or null) and ``rejected`` (the :data:`LOT_RULES` rule of every rejected
    part); one row per input value, input order kept.

    Each distinct value is cleaned once, in a few frame passes (the parts of a field exploded to
    rows, not evaluated inside list expressions), then joined back.
    """
    values = values.cast(pl.String)
    distinct = pl.DataFrame({"raw": values.unique()})
    frame = distinct.with_columns(
        upper=pl.col("raw").str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars(" ")
    )
    frame = _split_expiry(frame)
    whole = _rule(_strip_prefix(pl.col("body")))
    frame = frame.with_row_index("_v").with_columns(
        # a few rules judge the whole field before it is split ("N/K", "MERCK & CO"); the rest each part
        _whole=pl.when(whole.is_in(["junk_unknown", "manufacturer_name"])).then(whole),
        _blank=pl.col("upper").is_null() | (pl.col("body").str.replace_all(r"[\s,;&/]", "") == ""),
        _parts=pl.col("body")
        .str.replace_all(_SLASH_SPLIT_RE, f"${{1}}{_SEP}${{2}}")
        .str.replace_all(_SLASH_SPLIT_RE, f"${{1}}{_SEP}${{2}}")  # A/B/C: the middle run was consumed once
        .str.replace_all(_LOT_SPLIT_RE, _SEP)
        .str.split(_SEP),
    )
    parts = (
        frame.filter(~pl.col("_blank") & pl.col("_whole").is_null())
        .select("_v", pl.col("_parts").alias("part"))
        .explode("part")
        .with_columns(part=_strip_prefix(pl.col("part")))
        .with_columns(rule=_rule(pl.col("part")))
        .with_columns(lot=pl.when(pl.col("rule").is_null()).then(_compact(pl.col("part"))))
    )
    per_value = parts.group_by("_v", maintain_order=True).agg(  # rows stay in part order within a value
        pl.col("lot").filter(pl.col("lot").is_not_null() & (pl.col("lot") != "")).alias("_lots"),
        pl.col("rule").filter(pl.col("rule").is_not_null()).alias("_rej"),
    )
    frame = frame.join(per_value, on="_v", how="left").select(
        "raw",
        pl.when(pl.col("_blank") | pl.col("_whole").is_not_null())
        .then(_EMPTY)
        .otherwise(pl.col("_lots").list.unique(maintain_order=True).fill_null(_EMPTY))
        .alias("lots"),
        pl.when(pl.col("upper").is_not_null()).then(pl.col("expiry")).alias("expiry"),
        pl.when(pl.col("_blank"))
        .then(_EMPTY)
        .when(pl.col("_whole").is_not_null())
        .then(pl.concat_list("_whole"))
        .otherwise(pl.col("_rej").fill_null(_EMPTY))
        .alias("rejected"),
    )
    out = pl.DataFrame({"raw": values}).join(frame, on="raw", how="left", nulls_equal=True, maintain_order="left")
    return out.select(pl.col(c).cast(t) for c, t in _SCHEMA.items())


def clean_lots_expr(expr: pl.Expr | str) -> pl.Expr:
    """:func:`clean_lots` as an expression: a struct ``{lots, expiry, rejected}`` per value."""
    e = pl.col(expr) if isinstance(expr, str) else expr
    return e.map_batches(lambda s: clean_lots(s).to_struct(s.name), return_dtype=pl.Struct(_SCHEMA))


def normalise_lot_expr(expr: pl.Expr | str) -> pl.Expr:
    """The comparable lots of each value (``list[str]``, empty list, never null); see :func:`clean_lots_expr`."""
    e = pl.col(expr) if isinstance(expr, str) else expr
    name = e.meta.output_name(raise_if_undetermined=False)
    out = clean_lots_expr(e).struct.field("lots")
    return out.alias(name) if name else out


def clean_lot(text: str | None) -> dict:
    """:func:`clean_lots_expr` for one value: ``{"lots": [...], "expiry": "YYYY-MM" | None, "rejected": [...]}``.

    Evaluates the vectorised expression (one definition); for many values use :func:`clean_lots_expr`.
    """
    lots, expiry, rejected = _clean_one(text if text is None else str(text))
    return {"lots": list(lots), "expiry": expiry, "rejected": list(rejected)}


@lru_cache(maxsize=1 << 16)
def _clean_one(text: str | None) -> tuple[tuple[str, ...], str | None, tuple[str, ...]]:
    row = clean_lots(pl.Series([text], dtype=pl.String)).row(0, named=True)
    return tuple(row["lots"]), row["expiry"], tuple(row["rejected"])


def normalise_lot(text: str | None) -> list[str]:
    """Clean a lot number as typed in a case report into zero or more comparable lots.

    >>> normalise_lot("Lot No. ab 12c; LOT#XY9")
    ['AB12C', 'XY9']
    >>> normalise_lot("EK9231  4/21")
    ['EK9231']
    """
    return clean_lot(text)["lots"]

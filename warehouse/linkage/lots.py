"""Report ↔ batch linkage: which batch (lot) a case's drug came from, how sure we are, and why.

One decision per case-drug row, best evidence first:

==================  ==========  =======================================================
method              confidence  evidence
==================  ==========  =======================================================
``scanned_code``    1.0         the scanned code is a pack in the serialisation upload
                                (exact ``pack_code``, or GS1 GTIN + serial, or the NMPA
                                20-digit code), the pack names the batch
``scanned_code``    0.99        a valid GS1 code whose pack is not uploaded, but whose
                                GTIN gives the product and whose AI (10) lot is one of
                                that product's batches (exact or normalised)
``exact_lot``       0.98        the typed lot equals a lot number of the product
                                (outer whitespace ignored)
``normalised_lot``  0.95        :func:`~warehouse.linkage.lot_rules.normalise_lot` of the typed
                                lot meets that of exactly one batch of the product
``fuzzy_lot``       0.8         one edit (insert, delete, substitute, swap two
                                neighbours — optimal-string-alignment distance 1) from
                                exactly one batch's normalised lot, typed lot ≥ 4 chars
``product_only``    0.0         product known (reported, or from the scanned code), no
                                single batch: no lot, junk lot, no match, or ambiguous
``unlinked``        0.0         no product
==================  ==========  =======================================================

The product is the one the scanned code names when a code was scanned and understood,
else the product mapped from the reported name. An invalid or unknown scanned code does
not stop the typed lot from being used; the reason says what happened to the code.
When several batches fit equally (normalised or fuzzy), no batch is chosen and
``candidates`` lists them, so an analyst can see the ambiguity instead of a guess.

Pure polars: joins only, no per-row Python except biip for pack codes that are not in the
canonical forms (see :func:`~warehouse.linkage.pack_codes.parse_pack_codes`). Edit distance 1
is found with a deletion-neighbourhood join (every string with one character removed,
plus adjacent swaps) instead of comparing all pairs, so it scales with the number of
rows, not rows × batches; ``rapidfuzz`` is therefore not needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from warehouse.linkage.lot_rules import normalise_lot_expr
from warehouse.linkage.pack_codes import parse_pack_codes

__all__ = ["CONFIDENCE", "FUZZY_MIN_LENGTH", "LINK_COLUMNS", "METHODS", "link_case_to_batch"]

METHODS = ("scanned_code", "exact_lot", "normalised_lot", "fuzzy_lot", "product_only", "unlinked")
CONFIDENCE = {
    "scanned_code": 1.0,
    "scanned_code_lot": 0.99,  # method "scanned_code", batch found from GTIN + lot in the code
    "exact_lot": 0.98,
    "normalised_lot": 0.95,
    "fuzzy_lot": 0.8,
    "product_only": 0.0,
    "unlinked": 0.0,
}
#: A one-edit match on a shorter normalised lot is too likely to be chance.
FUZZY_MIN_LENGTH = 4
#: Longer normalised lots are sentences, not lots; they are not fuzzy-matched.
FUZZY_MAX_LENGTH = 30
KEYS = ["case_id", "version", "drug_seq"]
LINK_COLUMNS = [*KEYS, "batch_id", "product_id", "method", "confidence", "candidates", "reason"]

_STR_LIST = pl.List(pl.String)
_ALIASES = {"lot_reported": "lot_as_reported", "pack_code_reported": "pack_code_as_reported"}


def link_case_to_batch(
    case_drugs: pl.DataFrame,
    products: pl.DataFrame,
    batches: pl.DataFrame,
    packs: pl.DataFrame,
    *,
    keys: Sequence[str] = KEYS,
) -> pl.DataFrame:
    """Decide the batch of every case-drug row; one output row per input row, same order.

    A row's decision depends only on its product_id, lot_as_reported and pack_code_as_reported:
    ``keys`` (default case_id, version, drug_seq) are carried through, so a caller may decide the
    distinct reported triples once (``keys`` = those three columns) and join the decisions back.

    Args:
        case_drugs: case_id, version, drug_seq, product_id (mapped from the reported
            name; may be null), lot_as_reported, pack_code_as_reported (the warehouse
            names lot_reported / pack_code_reported are accepted too).
        products: product_id, gtin, nmpa_drug_code.
        batches: batch_id, product_id, lot_number.
        packs: pack_code, batch_id and, for GS1 packs, serial.

    Returns:
        ``keys``, batch_id (nullable), product_id (nullable),
        method (see :data:`METHODS`), confidence (see module docstring), candidates
        (``list[str]`` of batch_ids, non-empty only when ambiguous), reason (text).
    """
    keys = list(keys)
    rows = _prepare_rows(case_drugs, keys)
    products = products.select(
        pl.col("product_id").cast(pl.String),
        _blank_to_null(pl.col("gtin")).alias("gtin"),
        _blank_to_null(pl.col("nmpa_drug_code")).alias("nmpa_drug_code"),
    )
    batches = batches.select(
        pl.col("batch_id").cast(pl.String),
        pl.col("product_id").cast(pl.String),
        pl.col("lot_number").cast(pl.String),
    )
    scanned = _scanned_code_stage(rows, products, batches, packs)
    rows = rows.join(scanned, on="_rid", how="left").with_columns(_product=pl.coalesce("_scan_product", "product_id"))
    lots = _lot_stage(rows.filter(pl.col("_scan_batch").is_null()), batches)
    rows = rows.join(lots, on="_rid", how="left")
    return _assemble(rows, keys)


# ---------------------------------------------------------------------------------------
# Input preparation


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(text != "").then(text)


def _prepare_rows(case_drugs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    renames = {old: new for old, new in _ALIASES.items() if old in case_drugs.columns and new not in case_drugs.columns}
    frame = case_drugs.rename(renames)
    return frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_rid"),
        *(pl.col(k).alias(f"_key_{k}") for k in keys),
        pl.col("product_id").cast(pl.String),
        pl.col("lot_as_reported").cast(pl.String).alias("_lot_raw"),
        _blank_to_null(pl.col("pack_code_as_reported")).alias("_code"),
    )


# ---------------------------------------------------------------------------------------
# Stage 1: scanned pack code


def _unique_map(frame: pl.DataFrame, key: str, value: str) -> pl.DataFrame:
    """key → value where the key names exactly one value (duplicates are data errors)."""
    return (
        frame.filter(pl.col(key).is_not_null())
        .group_by(key)
        .agg(pl.col(value).unique())
        .filter(pl.col(value).list.len() == 1)
        .select(key, pl.col(value).list.first())
    )


def _scanned_code_stage(
    rows: pl.DataFrame, products: pl.DataFrame, batches: pl.DataFrame, packs: pl.DataFrame
) -> pl.DataFrame:
    """Per row with a scanned code: _scan_batch, _scan_product, _scan_conf, _scan_note."""
    scans = rows.filter(pl.col("_code").is_not_null()).select("_rid", "_code", "product_id")
    empty = pl.DataFrame(
        schema={
            "_rid": pl.UInt32,
            "_scan_batch": pl.String,
            "_scan_product": pl.String,
            "_scan_conf": pl.Float64,
            "_scan_note": pl.String,
        }
    )
    if scans.height == 0:
        return empty

    distinct = scans.select(pl.col("_code").unique())
    parsed = parse_pack_codes(distinct["_code"]).rename({"code": "_code"})
    scans = scans.join(parsed, on="_code", how="left")

    batch_product = batches.select("batch_id", pl.col("product_id").alias("_pack_product"))
    packs = packs.select(
        _blank_to_null(pl.col("pack_code")).alias("pack_code"),
        pl.col("batch_id").cast(pl.String),
        (_blank_to_null(pl.col("serial")) if "serial" in packs.columns else pl.lit(None, pl.String)).alias("serial"),
    )

    # 1a. the code exactly as uploaded (HRI or NMPA as serialised)
    by_code = scans.join(
        _unique_map(packs, "pack_code", "batch_id"),
        left_on="_code",
        right_on="pack_code",
        how="inner",
    ).select("_rid", pl.col("batch_id").alias("_pack_batch"))
    # 1b. a GS1 code in another form: the same pack is GTIN + serial
    found = by_code.get_column("_rid")
    gs1_rest = scans.filter(
        (pl.col("system") == "gs1") & pl.col("serial").is_not_null() & ~pl.col("_rid").is_in(found.implode())
    )
    by_serial = pl.DataFrame(schema={"_rid": pl.UInt32, "_pack_batch": pl.String})
    if gs1_rest.height:
        pack_keys = (
            packs.filter(pl.col("serial").is_in(gs1_rest["serial"].unique().implode()))
            .join(batch_product, on="batch_id", how="inner")
            .join(products.select(pl.col("product_id").alias("_pack_product"), "gtin"), on="_pack_product", how="inner")
            .filter(pl.col("gtin").is_not_null())
            .select(pl.concat_str("gtin", pl.lit("|"), "serial").alias("_gs"), "batch_id")
        )
        by_serial = (
            gs1_rest.with_columns(_gs=pl.concat_str("gtin", pl.lit("|"), "serial"))
            .join(_unique_map(pack_keys, "_gs", "batch_id"), on="_gs", how="inner")
            .select("_rid", pl.col("batch_id").alias("_pack_batch"))
        )
    pack_hits = pl.concat([by_code, by_serial]).join(
        batch_product, left_on="_pack_batch", right_on="batch_id", how="left"
    )

    # 1c. no pack: the product from the code (GTIN / NMPA 7-digit id), then GS1 lot
    gtin_map = _unique_map(products, "gtin", "product_id").rename({"product_id": "_p_gtin"})
    nmpa_map = _unique_map(products, "nmpa_drug_code", "product_id").rename({"product_id": "_p_nmpa"})
    scans = (
        scans.join(pack_hits, on="_rid", how="left")
        .join(gtin_map, on="gtin", how="left")
        .join(nmpa_map, on="nmpa_drug_code", how="left")
        .with_columns(
            _code_product=pl.coalesce("_pack_product", "_p_gtin", "_p_nmpa"),
        )
    )
    lot_keys = _batch_keys(batches)
    code_lot = scans.filter(
        pl.col("_pack_batch").is_null() & pl.col("lot").is_not_null() & pl.col("_code_product").is_not_null()
    ).select("_rid", "_code_product", "lot")
    exact = code_lot.join(
        batches,
        left_on=["_code_product", "lot"],
        right_on=["product_id", "lot_number"],
        how="inner",
    ).select("_rid", pl.col("batch_id").alias("_lot_batch"))
    normalised = (
        code_lot.filter(~pl.col("_rid").is_in(exact["_rid"].implode()))
        .with_columns(_key=normalise_lot_expr("lot"))
        .explode("_key")
        .join(lot_keys, left_on=["_code_product", "_key"], right_on=["product_id", "_key"], how="inner")
        .group_by("_rid")
        .agg(pl.col("batch_id").unique())
        .filter(pl.col("batch_id").list.len() == 1)
        .select("_rid", pl.col("batch_id").list.first().alias("_lot_batch"))
    )
    scans = scans.join(pl.concat([exact, normalised]), on="_rid", how="left")

    invalid = pl.col("error_reason").is_not_null()
    note = (
        pl.when(invalid)
        .then(pl.format("scanned code invalid: {}", "error_reason"))
        .when(pl.col("_pack_batch").is_not_null())
        .then(pl.lit("scanned code is a pack in the serialisation upload"))
        .when(pl.col("_code_product").is_null() & (pl.col("system") == "gs1"))
        .then(pl.format("scanned GTIN {} matches no product", "gtin"))
        .when(pl.col("_code_product").is_null())
        .then(pl.format("scanned NMPA drug code {} matches no product", "nmpa_drug_code"))
        .when(pl.col("_lot_batch").is_not_null())
        .then(pl.format("scanned pack not uploaded; GTIN and lot {} in the code match", "lot"))
        .when(pl.col("system") == "nmpa")
        .then(pl.lit("scanned NMPA code not in the packs upload"))
        .when(pl.col("lot").is_null())
        .then(pl.lit("scanned pack not uploaded and the code carries no lot"))
        .otherwise(pl.format("scanned pack not uploaded; lot {} in the code is no batch", "lot"))
    )
    mismatch = (
        pl.col("product_id").is_not_null()
        & pl.col("_code_product").is_not_null()
        & (pl.col("product_id") != pl.col("_code_product"))
    )
    note = (
        pl.when(mismatch)
        .then(pl.format("{}; the code's product {} differs from the reported {}", note, "_code_product", "product_id"))
        .otherwise(note)
    )
    return scans.select(
        "_rid",
        pl.coalesce("_pack_batch", "_lot_batch").alias("_scan_batch"),
        pl.when(~invalid).then(pl.col("_code_product")).alias("_scan_product"),
        pl.when(pl.col("_pack_batch").is_not_null())
        .then(CONFIDENCE["scanned_code"])
        .when(pl.col("_lot_batch").is_not_null())
        .then(CONFIDENCE["scanned_code_lot"])
        .cast(pl.Float64)
        .alias("_scan_conf"),
        note.alias("_scan_note"),
    )


# ---------------------------------------------------------------------------------------
# Stage 2: typed lot within the product


def _batch_keys(batches: pl.DataFrame) -> pl.DataFrame:
    """(product_id, normalised lot key, batch_id), one row per key."""
    return (
        batches.select("product_id", "batch_id", normalise_lot_expr("lot_number").alias("_key"))
        .explode("_key")
        .filter(pl.col("_key").is_not_null())
        .unique()
    )


def _lot_stage(rows: pl.DataFrame, batches: pl.DataFrame) -> pl.DataFrame:
    """Per row (without a scanned batch): _lot_method, _lot_batch2, _cands, _lot_note."""
    rows = rows.select("_rid", "_product", "_lot_raw").with_columns(_lot=pl.col("_lot_raw").str.strip_chars())
    with_product = rows.filter(pl.col("_product").is_not_null())
    batches_p = batches.filter(pl.col("product_id").is_in(with_product["_product"].unique().implode()))

    exact = with_product.join(
        batches_p,
        left_on=["_product", "_lot"],
        right_on=["product_id", "lot_number"],
        how="inner",
    ).select("_rid", pl.col("batch_id").alias("_exact"))

    keyed = (
        with_product.filter(~pl.col("_rid").is_in(exact["_rid"].implode()))
        .with_columns(_keys=normalise_lot_expr("_lot_raw"))
        .select("_rid", "_product", "_keys")
    )
    typed = keyed.explode("_keys").rename({"_keys": "_key"}).filter(pl.col("_key").is_not_null())
    batch_keys = _batch_keys(batches_p)
    normalised = (
        typed.join(batch_keys, left_on=["_product", "_key"], right_on=["product_id", "_key"], how="inner")
        .group_by("_rid")
        .agg(pl.col("batch_id").unique().sort().alias("_norm"))
    )
    fuzzy_typed = typed.filter(
        ~pl.col("_rid").is_in(normalised["_rid"].implode())
        & pl.col("_key").str.len_chars().is_between(FUZZY_MIN_LENGTH, FUZZY_MAX_LENGTH)
    )
    fuzzy = (
        _edit_distance_one(
            fuzzy_typed.rename({"_product": "product_id"}),
            batch_keys.filter(pl.col("_key").str.len_chars() <= FUZZY_MAX_LENGTH + 1),
        )
        .group_by("_rid")
        .agg(pl.col("batch_id").unique().sort().alias("_fuzzy"))
    )

    out = (
        rows.join(keyed.select("_rid", "_keys"), on="_rid", how="left")
        .join(exact, on="_rid", how="left")
        .join(normalised, on="_rid", how="left")
        .join(fuzzy, on="_rid", how="left")
    )
    n_norm = pl.col("_norm").list.len().fill_null(0)
    n_fuzzy = pl.col("_fuzzy").list.len().fill_null(0)
    has_keys = pl.col("_keys").list.len().fill_null(0) > 0
    method = (
        pl.when(pl.col("_exact").is_not_null())
        .then(pl.lit("exact_lot"))
        .when(n_norm == 1)
        .then(pl.lit("normalised_lot"))
        .when((n_norm == 0) & (n_fuzzy == 1))
        .then(pl.lit("fuzzy_lot"))
    )
    batch = (
        pl.when(pl.col("_exact").is_not_null())
        .then(pl.col("_exact"))
        .when(n_norm == 1)
        .then(pl.col("_norm").list.first())
        .when((n_norm == 0) & (n_fuzzy == 1))
        .then(pl.col("_fuzzy").list.first())
    )
    candidates = (
        pl.when(pl.col("_exact").is_null() & (n_norm > 1))
        .then(pl.col("_norm"))
        .when(pl.col("_exact").is_null() & (n_norm == 0) & (n_fuzzy > 1))
        .then(pl.col("_fuzzy"))
        .otherwise(pl.lit([], dtype=_STR_LIST))
    )
    lot_quoted = pl.format("'{}'", pl.col("_lot"))
    note = (
        pl.when(pl.col("_product").is_null())
        .then(pl.lit(None, pl.String))
        .when(pl.col("_exact").is_not_null())
        .then(pl.lit("lot matched exactly"))
        .when(n_norm == 1)
        .then(pl.format("normalised lot {} matched", lot_quoted))
        .when(n_norm > 1)
        .then(pl.format("lot matched {} batches", n_norm))
        .when(n_fuzzy == 1)
        .then(pl.format("lot {} is one edit from one batch's lot", lot_quoted))
        .when(n_fuzzy > 1)
        .then(pl.format("fuzzy lot matched {} batches", n_fuzzy))
        .when(pl.col("_lot").is_null() | (pl.col("_lot") == ""))
        .then(pl.lit("no lot reported"))
        .when(~has_keys)
        .then(pl.format("lot {} means unknown", lot_quoted))
        .otherwise(pl.format("lot {} matched no batch of {}", lot_quoted, "_product"))
    )
    return out.select(
        "_rid",
        method.alias("_lot_method"),
        batch.alias("_lot_batch2"),
        candidates.alias("_cands"),
        note.alias("_lot_note"),
    )


def _variants(frame: pl.DataFrame, id_cols: list[str], *, swaps: bool) -> pl.DataFrame:
    """Every one-character deletion of ``_key`` (with its position), or every adjacent swap."""
    length = pl.col("_key").str.len_chars()
    max_len = frame.select(length.max()).item() or 0
    parts = []
    for i in range(max_len - (1 if swaps else 0)):
        key = pl.col("_key")
        if swaps:
            variant = pl.concat_str(
                key.str.slice(0, i),
                key.str.slice(i + 1, 1),
                key.str.slice(i, 1),
                key.str.slice(i + 2),
            )
            keep = (length > i + 1) & (key.str.slice(i, 1) != key.str.slice(i + 1, 1))
        else:
            variant = pl.concat_str(key.str.slice(0, i), key.str.slice(i + 1))
            keep = length > i
        parts.append(frame.filter(keep).select(*id_cols, pl.lit(i, pl.UInt8).alias("_pos"), variant.alias("_var")))
    if not parts:
        return pl.DataFrame(schema={**{c: frame.schema[c] for c in id_cols}, "_pos": pl.UInt8, "_var": pl.String})
    return pl.concat(parts)


def _edit_distance_one(typed: pl.DataFrame, lots: pl.DataFrame) -> pl.DataFrame:
    """(_rid, batch_id) pairs whose ``_key`` are at optimal-string-alignment distance ≤ 1
    within the same product_id, found by joins on deletion variants and adjacent swaps."""
    schema = {"_rid": pl.UInt32, "batch_id": pl.String}
    if typed.height == 0 or lots.height == 0:
        return pl.DataFrame(schema=schema)
    lots = lots.filter(pl.col("product_id").is_in(typed["product_id"].unique().implode()))
    t_del = _variants(typed, ["_rid", "product_id"], swaps=False)
    l_del = _variants(lots, ["batch_id", "product_id"], swaps=False)
    t_swap = _variants(typed, ["_rid", "product_id"], swaps=True)
    pairs = [
        # substitution: both lose the same position and agree
        t_del.join(l_del, on=["product_id", "_pos", "_var"], how="inner"),
        # typed has one character too many
        t_del.join(lots, left_on=["product_id", "_var"], right_on=["product_id", "_key"], how="inner"),
        # typed misses one character
        typed.join(l_del, left_on=["product_id", "_key"], right_on=["product_id", "_var"], how="inner"),
        # two neighbours swapped
        t_swap.join(lots, left_on=["product_id", "_var"], right_on=["product_id", "_key"], how="inner"),
    ]
    return pl.concat([p.select("_rid", "batch_id") for p in pairs]).unique()


# ---------------------------------------------------------------------------------------
# Assembly


def _assemble(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    scanned = pl.col("_scan_batch").is_not_null()
    lot_linked = pl.col("_lot_method").is_not_null()
    has_product = pl.col("_product").is_not_null()
    method = (
        pl.when(scanned)
        .then(pl.lit("scanned_code"))
        .when(lot_linked)
        .then(pl.col("_lot_method"))
        .when(has_product)
        .then(pl.lit("product_only"))
        .otherwise(pl.lit("unlinked"))
    )
    confidence = (
        pl.when(scanned)
        .then(pl.col("_scan_conf"))
        .otherwise(pl.col("_lot_method").replace_strict(CONFIDENCE, default=0.0, return_dtype=pl.Float64))
        .fill_null(0.0)
    )
    reason = pl.concat_str(
        [
            pl.col("_scan_note"),
            pl.when(~scanned).then(
                pl.when(has_product).then(pl.col("_lot_note")).otherwise(pl.lit("product not mapped"))
            ),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return rows.sort("_rid").select(
        *(pl.col(f"_key_{k}").alias(k) for k in keys),
        pl.coalesce("_scan_batch", "_lot_batch2").alias("batch_id"),
        pl.col("_product").alias("product_id"),
        method.alias("method"),
        confidence.alias("confidence"),
        pl.when(scanned)
        .then(pl.lit([], dtype=_STR_LIST))
        .otherwise(pl.col("_cands").fill_null(pl.lit([], dtype=_STR_LIST)))
        .alias("candidates"),
        reason.alias("reason"),
    )

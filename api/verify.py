"""Pack verification: any code in, the pack's identity and its EU FMD / NMVS-style status out.

Vectorised: the codes of a request are parsed by :func:`warehouse.linkage.pack_codes.parse_pack_codes`
(one call for all of them) and resolved by one DuckDB query against the snapshot's
``api_pack_state`` / ``api_batch_state`` tables (:mod:`api.snapshot`) — never one query per code.

Statuses (first that applies wins; every one that applies is listed in ``conditions``):

================  ==============================================================================
status            derived from
================  ==============================================================================
mismatch          the pack is known (GS1 GTIN + serial, or the NMPA code) but the code's lot (10)
                  differs from its batch's ``lot_number``, or the code's expiry (17) differs from
                  the batch's ``expiry_on`` (also for a lot-only code whose lot matched a batch) —
                  a falsification signal (NMVS "batch/expiry mismatch" alerts)
dispensed         a ``delivery`` row scanned this pack (the delivery loader's pack match: its code
                  parsed to the same GTIN + serial or NMPA code): supplied to a patient
recalled          ``batch.recall_status = 'recalled'``, or a supply event of the batch with
                  disposition ``recalled`` (or biz step ``recalling``)
decommissioned    ``batch.recall_status = 'quarantined'`` (NMVS "locked"), or the batch's
                  decommissioning supply events (action ``DELETE``, biz step ``decommissioning`` /
                  ``destroying``, or disposition destroyed / disposed / stolen / damaged / inactive /
                  non_sellable_other) cover every pack of the batch not yet dispensed (supply
                  events are lot-level, so a partial decommissioning cannot say which packs: it is
                  reported as the condition ``partly_decommissioned`` and does not set the status)
expired           the batch's ``expiry_on`` is before the verification date (UTC), or a supply
                  event of the batch has disposition ``expired``
active            a known pack (or, for a code without serial, a known lot) none of the above holds
unknown_serial    a valid code that names no known pack: ``detail`` says why — ``unknown_product``
                  (no product has its GTIN / NMPA drug code), ``unknown_serial`` (known product, no
                  pack with that serial), ``unknown_lot`` (a code without serial whose lot is no
                  batch of the product), ``no_serial`` (an NDC: it names a product, not a pack)
================  ==============================================================================

A code that does not parse is ``valid: false`` with the parser's ``reason`` (one of
:data:`warehouse.linkage.pack_codes.REASONS`) and no status. ``level`` says what was verified:
``pack`` (serialised pack found), ``batch`` (a code without serial, e.g. Japan's GS1 codes, matched
to a lot) or ``product``.
"""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import polars as pl

from api.snapshot import pack_key_sql
from warehouse.linkage.pack_codes import REASONS, InvalidPackCode, ndc_to_gtin, parse_pack_code, parse_pack_codes

__all__ = ["MAX_CODES", "STATUSES", "parse_codes", "verify_codes"]

MAX_CODES = 10_000
STATUSES = ("active", "dispensed", "decommissioned", "expired", "recalled", "unknown_serial", "mismatch")
#: an NDC10 as printed (4-4-2, 5-3-2, 5-4-1 with hyphens) or its 10 digits
_NDC_RE = r"^\s*(?:\d{4}-\d{4}-\d{2}|\d{5}-\d{3}-\d{2}|\d{5}-\d{4}-\d|\d{10})\s*$"
_NDC = re.compile(_NDC_RE)

FIELDS = (
    "code",
    "valid",
    "reason",
    "reason_text",
    "system",
    "gtin",
    "nmpa_drug_code",
    "ndc",
    "lot",
    "serial",
    "expiry",
    "product_id",
    "product_name",
    "manufacturer",
    "batch_id",
    "batch_lot",
    "batch_expiry",
    "status",
    "level",
    "detail",
    "conditions",
)


def parse_codes(codes: list[str | None]) -> pl.DataFrame:
    """Parse every code (pack_codes.parse_pack_codes) and read a plain NDC as a product code.

    The pack-code parser knows GS1 and NMPA; an NDC10 on its own (``59572-215-93``) is not a pack
    code for it (``malformed_gs1`` or ``unknown_format``). Such a code is answered at product level through
    :func:`ndc_to_gtin` (GTIN-14 of the NDC's unit pack), with system ``ndc``.
    """
    if len(codes) <= FEW_CODES:  # polars' fixed cost (~5 ms) dominates for a handful of codes
        parsed = _parse_few(codes)
    else:
        parsed = parse_pack_codes(pl.Series("code", codes, dtype=pl.String))
    ndc_rows = parsed.select(
        pl.col("error_reason").is_in(["unknown_format", "malformed_gs1"])
        & pl.col("code").str.contains(_NDC_RE).fill_null(False)
    ).to_series()
    if ndc_rows.any():
        ndc_gtin = [ndc_to_gtin(c.strip()) if hit else None for c, hit in zip(parsed["code"], ndc_rows)]
        parsed = parsed.with_columns(
            pl.when(ndc_rows).then(pl.lit("ndc")).otherwise(pl.col("system")).alias("system"),
            pl.when(ndc_rows).then(pl.Series(ndc_gtin, dtype=pl.String)).otherwise(pl.col("gtin")).alias("gtin"),
            pl.when(ndc_rows).then(None).otherwise(pl.col("error_reason")).alias("error_reason"),
        )
    return parsed.with_row_index("i")


#: up to this many codes are parsed one by one with parse_pack_code (same result as parse_pack_codes)
FEW_CODES = 8


def _parse_few(codes: list[str | None]) -> pl.DataFrame:
    rows = []
    for code in codes:
        try:
            p = parse_pack_code(code)
        except InvalidPackCode as exc:
            rows.append((code, None, None, None, None, None, None, exc.reason))
        else:
            rows.append((code, p.system, p.gtin, p.serial, p.lot, p.expiry, p.nmpa_drug_code, None))
    schema = dict.fromkeys(("code", "system", "gtin", "serial", "lot"), pl.String) | {
        "expiry": pl.Date,
        "nmpa_drug_code": pl.String,
        "error_reason": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


_RESOLVE_SQL = f"""
WITH c AS (
    SELECT *, {pack_key_sql("system", "gtin", "serial", "nmpa_drug_code")} AS pack_key FROM _codes
),
resolved AS (
    SELECT c.*, k.batch_id AS pack_batch, k.dispensed_at,
           coalesce(pg.product_id, pn.product_id) AS code_product
    FROM c
    LEFT JOIN api_pack_state k ON k.pack_key = c.pack_key
    LEFT JOIN api_product_gtin pg ON pg.gtin = c.gtin
    LEFT JOIN api_product_nmpa pn ON pn.nmpa_drug_code = c.nmpa_drug_code
    QUALIFY row_number() OVER (PARTITION BY c.i ORDER BY k.batch_id) = 1
),
with_batch AS (
    SELECT r.*, coalesce(r.pack_batch, CASE WHEN r.system = 'gs1' AND r.serial IS NULL THEN l.batch_id END) AS batch_id,
           CASE WHEN r.pack_batch IS NOT NULL THEN 'pack'
                WHEN r.system = 'gs1' AND r.serial IS NULL AND l.batch_id IS NOT NULL THEN 'batch'
                WHEN r.code_product IS NOT NULL THEN 'product' END AS level
    FROM resolved r
    LEFT JOIN api_lot l ON l.product_id = r.code_product AND l.lot_number = r.lot
)
SELECT w.i, w.level, w.batch_id, w.dispensed_at,
       coalesce(b.product_id, w.code_product) AS product_id,
       p.name AS product_name, m.name AS manufacturer, p.ndc,
       b.lot_number AS batch_lot, b.expiry_on AS batch_expiry,
       w.level = 'pack' AND w.lot IS NOT NULL AND w.lot <> b.lot_number AS lot_mismatch,
       b.batch_id IS NOT NULL AND w.expiry IS NOT NULL AND w.expiry <> b.expiry_on AS expiry_mismatch,
       w.dispensed_at IS NOT NULL AS dispensed,
       b.recall_status = 'recalled' OR coalesce(s.recall_event, false) AS recalled,
       b.recall_status = 'quarantined' AS locked,
       coalesce(s.decommissioned_units, 0) > 0
           AND s.decommissioned_units >= coalesce(b.units_released, 0) - s.dispensed_packs AS decommissioned,
       coalesce(s.decommissioned_units, 0) > 0
           AND s.decommissioned_units < coalesce(b.units_released, 0) - s.dispensed_packs AS partly_decommissioned,
       b.expiry_on < $as_of OR coalesce(s.expired_event, false) AS expired
FROM with_batch w
LEFT JOIN batch b ON b.batch_id = w.batch_id
LEFT JOIN api_batch_state s ON s.batch_id = w.batch_id
LEFT JOIN product p ON p.product_id = coalesce(b.product_id, w.code_product)
LEFT JOIN manufacturer m ON m.manufacturer_id = p.manufacturer_id
ORDER BY w.i
"""

_CONDITIONS = (
    "lot_mismatch",
    "expiry_mismatch",
    "dispensed",
    "recalled",
    "locked",
    "decommissioned",
    "partly_decommissioned",
    "expired",
)


def verify_codes(
    con: duckdb.DuckDBPyConnection, codes: list[str | None], *, as_of: dt.date | None = None
) -> pl.DataFrame:
    """One row per code, in order, with the columns of :data:`FIELDS` (``conditions`` a list)."""
    if len(codes) > MAX_CODES:
        raise ValueError(f"at most {MAX_CODES} codes per request, got {len(codes)}")
    as_of = as_of or dt.datetime.now(tz=dt.UTC).date()
    parsed = parse_codes(codes)
    con.register("_codes", parsed.to_arrow())
    try:
        found = con.execute(_RESOLVE_SQL, {"as_of": as_of}).pl()
    finally:
        con.unregister("_codes")
    frame = parsed.join(found, on="i", how="left", maintain_order="left")
    flags = {c: pl.col(c).fill_null(False) for c in _CONDITIONS}
    valid = pl.col("error_reason").is_null()
    known = pl.col("level").is_in(["pack", "batch"]).fill_null(False)
    status = (
        pl.when(~valid)
        .then(None)
        .when(~known)
        .then(pl.lit("unknown_serial"))
        .when(flags["lot_mismatch"] | flags["expiry_mismatch"])
        .then(pl.lit("mismatch"))
        .when(flags["dispensed"])
        .then(pl.lit("dispensed"))
        .when(flags["recalled"])
        .then(pl.lit("recalled"))
        .when(flags["locked"] | flags["decommissioned"])
        .then(pl.lit("decommissioned"))
        .when(flags["expired"])
        .then(pl.lit("expired"))
        .otherwise(pl.lit("active"))
    )
    detail = (
        pl.when(~valid | known)
        .then(None)
        .when(pl.col("system") == "ndc")
        .then(pl.lit("no_serial"))
        .when(pl.col("product_id").is_null())
        .then(pl.lit("unknown_product"))
        .when((pl.col("system") == "gs1") & pl.col("serial").is_null())
        .then(pl.lit("unknown_lot"))
        .otherwise(pl.lit("unknown_serial"))
    )
    conditions = pl.concat_list(
        [pl.when(flags[c]).then(pl.lit(c)).otherwise(None) for c in _CONDITIONS]
    ).list.drop_nulls()
    reason_text = pl.col("error_reason").replace_strict(REASONS, default=None, return_dtype=pl.String)
    computed = {  # every other field of FIELDS is a column of the parsed or resolved frame, by name
        "valid": valid,
        "reason": pl.col("error_reason"),
        "reason_text": reason_text,
        "status": status,
        "detail": detail,
        "conditions": pl.when(valid).then(conditions).otherwise(pl.lit([], dtype=pl.List(pl.String))),
    }
    return frame.select(computed[f].alias(f) if f in computed else pl.col(f) for f in FIELDS)

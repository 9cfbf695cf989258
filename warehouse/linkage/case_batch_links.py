"""Store report↔batch links: read the case drugs and traceability tables, link (warehouse.linkage.lots), replace.

The pack table (one row per serialised pack: ~10^10 on a national platform) never leaves the
engine: only the packs a reported code can name — the same code, or a GS1 code's serial — are
selected there (a semi-join against the distinct scanned codes) and handed to the linker, which
gives the same links as with the whole table (:func:`~warehouse.linkage.lots.link_case_to_batch`
only looks packs up by those two keys).
"""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.engine.engines import DuckDBEngine, Engine
from warehouse.inputs.inbox import replace_rows
from warehouse.linkage.lots import link_case_to_batch
from warehouse.linkage.pack_codes import parse_pack_codes

LINK_COLUMNS = [
    "case_id",
    "version",
    "drug_seq",
    "batch_id",
    "product_id",
    "method",
    "confidence",
    "candidates",
    "reason",
]

#: The warehouse table :func:`packs_for_codes` reads (what a Spark engine must be given).
PACK_TABLES = ("pack",)


def packs_for_codes(engine: Engine, codes: pl.Series) -> pl.DataFrame:
    """pack_code, batch_id, serial of every pack whose (trimmed) code is one of ``codes`` or whose
    serial is the serial of one of them (GS1 codes in another form: GTIN + serial), computed by the engine."""
    codes = codes.drop_nulls().str.strip_chars()
    codes = codes.filter(codes != "").unique()
    serials = parse_pack_codes(codes)["serial"].drop_nulls().unique()
    keys = pl.concat(
        [pl.DataFrame({"key": codes, "kind": "code"}), pl.DataFrame({"key": serials, "kind": "serial"})],
        how="vertical",
    )
    if keys.is_empty():
        return pl.DataFrame(schema={"pack_code": pl.String, "batch_id": pl.String, "serial": pl.String})
    name = "_pv_scanned_keys"
    k = engine.register(name, keys)
    try:
        p = engine.table("pack")
        by_code = k.filter(k.kind == "code").key
        by_serial = k.filter(k.kind == "serial").key
        hits = p.filter(p.pack_code.strip().isin(by_code) | p.serial.strip().isin(by_serial))
        return engine.to_polars(hits.select("pack_code", "batch_id", "serial"))
    finally:
        engine.drop(name)


def rebuild_case_batch_links(con: duckdb.DuckDBPyConnection, engine: Engine | None = None) -> pl.DataFrame:
    """Link every case drug (all versions, every source) to its batch and replace ``case_batch_link``.

    ``engine`` (given :data:`PACK_TABLES`) selects the packs; default DuckDB on ``con``."""
    case_drugs = con.sql(
        "SELECT case_id, version, drug_seq, product_id, lot_reported, pack_code_reported FROM case_drug"
    ).pl()
    links = link_case_to_batch(
        case_drugs,
        con.sql("SELECT product_id, gtin, nmpa_drug_code FROM product").pl(),
        con.sql("SELECT batch_id, product_id, lot_number FROM batch").pl(),
        packs_for_codes(engine or DuckDBEngine(con), case_drugs["pack_code_reported"]),
    ).select(LINK_COLUMNS)
    replace_rows(con, "case_batch_link", links)
    return links


__all__ = ["LINK_COLUMNS", "PACK_TABLES", "packs_for_codes", "rebuild_case_batch_links"]

"""Store report↔batch links: the engine joins, Python decides each distinct reported value once.

No fact table is read whole into Python (issue 15):

* ``case_drug`` stays in the engine. A link depends only on what was reported — the mapped
  product, the typed lot and the scanned code (:func:`~warehouse.linkage.lots.link_case_to_batch`)
  — so the engine hands over the DISTINCT (product_id, lot_reported, pack_code_reported) triples
  (follow-up versions repeat their drugs; most drugs carry no code; lots repeat), Python decides
  each triple once (GS1 parsing by biip, the lot rules, the edit-distance joins), and the engine
  joins the decisions back to every case drug (null-safe on all three) and writes the links.
* ``pack`` (one row per serialised pack: ~10^10 on a national platform) never leaves the engine:
  only the packs a reported code can name — the same code, or a GS1 code's serial — are selected
  there (a semi-join against the distinct scanned codes) and handed to the linker, which gives the
  same links as with the whole table (it only looks packs up by those two keys).

``product`` and ``batch`` are reference tables (10^5 products, 10^7 batches), read as today.
"""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.engine.engines import DuckDBEngine, Engine
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
#: The warehouse tables :func:`rebuild_case_batch_links` has the engine read.
LINK_TABLES = ("case_drug", "pack")

#: what a link depends on, as reported on the case drug
REPORTED = ("product_id", "lot_reported", "pack_code_reported")
_DECIDED = "_pv_link_decisions"


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


def reported_values(engine: Engine) -> pl.DataFrame:
    """The distinct (product_id, lot_reported, pack_code_reported) of ``case_drug``, from the engine."""
    cd = engine.table("case_drug")
    return engine.to_polars(cd.select(*REPORTED).distinct())


def decide_links(
    reported: pl.DataFrame, products: pl.DataFrame, batches: pl.DataFrame, packs: pl.DataFrame
) -> pl.DataFrame:
    """One decision per distinct reported triple: the triple as ``_r_product``, ``_r_lot``, ``_r_code``,
    then batch_id, product_id, method, confidence, candidates, reason (see
    :func:`~warehouse.linkage.lots.link_case_to_batch`)."""
    frame = reported.select(
        pl.col("product_id").alias("_r_product"),
        pl.col("lot_reported").alias("_r_lot"),
        pl.col("pack_code_reported").alias("_r_code"),
        pl.col("product_id"),
        pl.col("lot_reported").alias("lot_as_reported"),
        pl.col("pack_code_reported").alias("pack_code_as_reported"),
    )
    return link_case_to_batch(frame, products, batches, packs, keys=["_r_product", "_r_lot", "_r_code"])


def links_expr(engine: Engine, decisions):
    """Every case drug joined (null-safe on the reported triple) to its decision: :data:`LINK_COLUMNS`."""
    cd = engine.table("case_drug")
    d = decisions
    joined = cd.join(
        d,
        [
            cd.product_id.identical_to(d._r_product),
            cd.lot_reported.identical_to(d._r_lot),
            cd.pack_code_reported.identical_to(d._r_code),
        ],
    )
    return joined.select(
        cd.case_id,
        cd.version,
        cd.drug_seq,
        d.batch_id,
        d.product_id,
        d.method,
        d.confidence,
        d.candidates,
        d.reason,
    ).order_by(["case_id", "version", "drug_seq"])


def rebuild_case_batch_links(con: duckdb.DuckDBPyConnection, engine: Engine | None = None) -> int:
    """Link every case drug (all versions, every source) to its batch and replace ``case_batch_link``;
    returns the number of links.

    ``engine`` (given :data:`LINK_TABLES`) reads the case drugs and packs and joins the decisions
    back; default DuckDB on ``con``. The links are written to ``con``'s table."""
    engine = engine or DuckDBEngine(con)
    reported = reported_values(engine)
    decisions = decide_links(
        reported,
        con.sql("SELECT product_id, gtin, nmpa_drug_code FROM product").pl(),
        con.sql("SELECT batch_id, product_id, lot_number FROM batch").pl(),
        packs_for_codes(engine, reported["pack_code_reported"]),
    )
    d = engine.register(_DECIDED, decisions)
    try:
        con.execute("DELETE FROM case_batch_link")
        return engine.insert_into(links_expr(engine, d), con, "case_batch_link")
    finally:
        engine.drop(_DECIDED)


__all__ = [
    "LINK_COLUMNS",
    "LINK_TABLES",
    "PACK_TABLES",
    "REPORTED",
    "decide_links",
    "links_expr",
    "packs_for_codes",
    "rebuild_case_batch_links",
    "reported_values",
]

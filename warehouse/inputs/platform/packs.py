"""Pack serialisation uploads (inbox/packs/*.parquet): one row per pack, code → batch.

A pack whose code does not parse, whose batch is unknown, or whose code contradicts its batch
(GTIN of another product, lot printed differently, NMPA prefix of another product) is
quarantined with the reason.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import inbox_files, quarantine_frame, record_ingested, replace_quarantine, replace_rows
from warehouse.linkage.pack_codes import parse_pack_codes

PACK_COLUMNS = ["pack_code", "code_system", "batch_id", "serial", "commissioned_at"]


def read_packs(inbox: Path) -> tuple[pl.DataFrame, list]:
    files = inbox_files(inbox, "packs")
    parts = []
    for f in files:
        frame = pl.read_parquet(f.path)
        missing = [c for c in PACK_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{f.path}: missing columns {missing} (see docs/inbox-format.md)")
        parts.append(
            frame.select(
                pl.col("pack_code").cast(pl.String),
                pl.col("code_system").cast(pl.String),
                pl.col("batch_id").cast(pl.String),
                pl.col("serial").cast(pl.String),
                pl.col("commissioned_at").cast(pl.Datetime("us")),
            ).with_columns(pl.lit(str(f.path)).alias("_file"))
        )
    return pl.concat(parts), files


def load_packs(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, int]:
    packs, files = read_packs(inbox)
    packs = packs.unique(subset=["pack_code"], keep="last", maintain_order=True)
    parsed = parse_pack_codes(packs["pack_code"]).select(
        pl.col("system").alias("_system"),
        "gtin",
        pl.col("serial").alias("_serial"),
        pl.col("lot").alias("_lot"),
        "nmpa_drug_code",
        "error_reason",
    )
    batches = con.sql(
        "SELECT b.batch_id, b.lot_number, p.gtin AS product_gtin, p.nmpa_drug_code AS product_nmpa "
        "FROM batch b JOIN product p USING (product_id)"
    ).pl()
    frame = pl.concat([packs, parsed], how="horizontal").join(batches, on="batch_id", how="left")
    reason = (
        pl.when(pl.col("error_reason").is_not_null())
        .then(pl.col("error_reason"))
        .when(pl.col("lot_number").is_null())
        .then(pl.lit("unknown_batch"))
        .when((pl.col("_system") == "gs1") & (pl.col("gtin") != pl.col("product_gtin")))
        .then(pl.lit("gtin_mismatch"))
        .when((pl.col("_system") == "gs1") & pl.col("_lot").is_not_null() & (pl.col("_lot") != pl.col("lot_number")))
        .then(pl.lit("lot_mismatch"))
        .when((pl.col("_system") == "nmpa") & (pl.col("nmpa_drug_code") != pl.col("product_nmpa")))
        .then(pl.lit("nmpa_code_mismatch"))
    )
    frame = frame.with_columns(reason.alias("_reason"))
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null()).select(
        "pack_code",
        pl.col("_system").alias("code_system"),
        "batch_id",
        pl.coalesce("_serial", "serial").alias("serial"),
        "gtin",
        "nmpa_drug_code",
        "commissioned_at",
    )
    q = quarantine_frame(
        bad.select(
            pl.col("_file").alias("source_file"),
            pl.col("pack_code").alias("record_key"),
            pl.col("_reason").alias("reason"),
            pl.format("batch {}", pl.col("batch_id")).alias("detail"),
        )
    )
    counts = {"packs": replace_rows(con, "pack", good), "quarantined": replace_quarantine(con, "packs", q)}
    record_ingested(con, files)
    return counts

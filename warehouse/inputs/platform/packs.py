"""Pack serialisation uploads (inbox/packs/*.parquet): one row per pack, code → batch.

A pack whose code does not parse, whose batch is unknown, or whose code contradicts its batch
(GTIN of another product, lot printed differently, NMPA prefix of another product) is
quarantined with the reason.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import (
    FileAccount,
    account,
    counts_by_file,
    dedupe_last_wins,
    inbox_files,
    quarantine_frame,
    read_typed_parquet,
    record_ingested,
    replace_quarantine,
    replace_rows,
    run_clock,
    superseded_rows,
    write_manifest,
)
from warehouse.inputs.platform import plausibility
from warehouse.linkage.pack_codes import parse_pack_codes

PACK_COLUMNS = ["pack_code", "code_system", "batch_id", "serial", "commissioned_at"]
_PACK_TYPES = {
    "pack_code": pl.String,
    "code_system": pl.String,
    "batch_id": pl.String,
    "serial": pl.String,
    "commissioned_at": pl.Datetime("us"),
}


def _utc_naive_commissioned(frame: pl.DataFrame) -> pl.DataFrame:
    """``commissioned_at`` as naive UTC, whether the file stored text, a naive or a zoned timestamp."""
    dtype = frame["commissioned_at"].dtype
    if dtype == pl.String:
        return frame.with_columns(pl.col("commissioned_at").str.to_datetime(strict=False, time_unit="us"))
    if isinstance(dtype, pl.Datetime) and dtype.time_zone:
        return frame.with_columns(pl.col("commissioned_at").dt.convert_time_zone("UTC").dt.replace_time_zone(None))
    return frame


def read_packs(inbox: Path) -> tuple[pl.DataFrame, list, list[FileAccount], list[pl.DataFrame]]:
    """Every pack file: (rows with _file/_row/_bad_type, files, accounts, file-level quarantine)."""
    files = inbox_files(inbox, "packs")
    packs, accounts, rejected = read_typed_parquet(files, _PACK_TYPES, prepare=_utc_naive_commissioned)
    return packs, files, accounts, rejected


def load_packs(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, int]:
    packs, files, accounts, quarantined = read_packs(inbox)
    has_key = pl.col("pack_code").is_not_null() & (pl.col("pack_code").str.strip_chars() != "")
    unkeyed = packs.filter(~has_key)
    packs, superseded = dedupe_last_wins(packs.filter(has_key), ["pack_code"])
    quarantined += [
        superseded_rows(superseded, "pack_code", line_col="_row"),
        quarantine_frame(
            unkeyed.select(
                pl.col("_file").alias("source_file"),
                pl.col("_row").alias("line"),
                pl.lit("missing_key").alias("reason"),
                pl.lit("no pack_code").alias("detail"),
            )
        ),
    ]
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
    clock = run_clock().astimezone(dt.UTC).replace(tzinfo=None)
    reason = (
        pl.when(pl.col("_bad_type"))
        .then(pl.lit("invalid_value"))
        .when(pl.col("batch_id").is_null())
        .then(pl.lit("missing_value"))
        .when(pl.col("error_reason").is_not_null())
        .then(pl.col("error_reason"))
        .when(pl.col("lot_number").is_null())
        .then(pl.lit("unknown_batch"))
        .when((pl.col("_system") == "gs1") & (pl.col("gtin") != pl.col("product_gtin")))
        .then(pl.lit("gtin_mismatch"))
        .when((pl.col("_system") == "gs1") & pl.col("_lot").is_not_null() & (pl.col("_lot") != pl.col("lot_number")))
        .then(pl.lit("lot_mismatch"))
        .when((pl.col("_system") == "nmpa") & (pl.col("nmpa_drug_code") != pl.col("product_nmpa")))
        .then(pl.lit("nmpa_code_mismatch"))
        .when(pl.lit(plausibility.enabled("not_after_clock")) & (pl.col("commissioned_at") > clock))
        .then(pl.lit(plausibility.reason("not_after_clock")))
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
    quarantined.append(
        quarantine_frame(
            bad.select(
                pl.col("_file").alias("source_file"),
                pl.col("_row").alias("line"),  # the row of the Parquet file
                pl.col("pack_code").alias("record_key"),
                pl.col("_reason").alias("reason"),
                pl.format("batch {}", pl.col("batch_id")).alias("detail"),
            )
        )
    )
    q = pl.concat(quarantined)
    loaded = counts_by_file(frame.filter(pl.col("_reason").is_null())["_file"])
    # the wide intermediates (millions of rows) are freed before DuckDB takes its own copy
    del frame, packs, parsed, bad
    counts = {"packs": replace_rows(con, "pack", good), "quarantined": replace_quarantine(con, "packs", q)}
    counts.update(write_manifest(con, "packs", account(accounts, loaded, q)))
    record_ingested(con, files)
    return counts

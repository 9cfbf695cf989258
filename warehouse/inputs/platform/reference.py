"""Reference data: manufacturers, products, batches (inbox/reference/*.csv).

Rows that break the model (unknown manufacturer or product, duplicate lot within a product,
a GTIN with a wrong check digit, impossible dates) are quarantined with their reason.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import (
    FileAccount,
    FileRejected,
    InboxFile,
    account,
    counts_by_file,
    file_quarantine,
    inbox_files,
    quarantine_frame,
    read_csv_file,
    record_ingested,
    replace_quarantine,
    replace_rows,
    run_clock,
    superseded_rows,
    write_manifest,
)
from warehouse.inputs.platform import plausibility
from warehouse.linkage.pack_codes import gs1_check_digit

MANUFACTURER_SCHEMA = {
    "manufacturer_id": pl.String,
    "name": pl.String,
    "country": pl.String,
    "region": pl.String,
    "alert_email": pl.String,
    "alert_webhook_url": pl.String,
    # optional (may be absent from the file): which alert channels, and the *name* of the
    # environment variable holding the webhook signing secret (docs/inbox-format.md)
    "alert_channels": pl.String,
    "alert_webhook_secret_env": pl.String,
}
OPTIONAL_COLUMNS = {"alert_channels", "alert_webhook_secret_env"}
PRODUCT_SCHEMA = {
    "product_id": pl.String,
    "name": pl.String,
    "manufacturer_id": pl.String,
    "ingredient": pl.String,
    "atc_code": pl.String,
    "form": pl.String,
    "strength": pl.String,
    "route": pl.String,
    "region": pl.String,
    "gtin": pl.String,
    "ndc": pl.String,
    "nmpa_drug_code": pl.String,
    "storage_min_c": pl.Float64,
    "storage_max_c": pl.Float64,
    "additional_monitoring": pl.Boolean,
}
BATCH_SCHEMA = {
    "batch_id": pl.String,
    "product_id": pl.String,
    "lot_number": pl.String,
    "site": pl.String,
    "manufactured_on": pl.Date,
    "expiry_on": pl.Date,
    "released_on": pl.Date,
    "units_released": pl.Int64,
    "recall_status": pl.String,
}


def _read_csv(con: duckdb.DuckDBPyConnection, f: InboxFile, schema: dict[str, pl.DataType]):
    """(text frame with every schema column + _line, rows read, malformed-row quarantine)."""
    cols = ", ".join(f'"{c}" VARCHAR' for c in schema)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _ref_file ({cols}, _file VARCHAR)")
    read = read_csv_file(con, f, list(schema), "_ref_file", optional=tuple(OPTIONAL_COLUMNS))
    frame = con.sql("SELECT *, rowid AS _rid FROM _ref_file ORDER BY rowid").pl()
    con.execute("DROP TABLE _ref_file")
    lines = pl.Series("_line", [read.line_of(r) for r in frame["_rid"].to_list()], dtype=pl.Int64)
    frame = frame.select(*schema).with_columns(lines)
    return frame, read.rows_read, read.rejects


def _cast(
    frame: pl.DataFrame, schema: dict[str, pl.DataType], key: str, source: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast text columns to their types; rows whose non-empty value does not parse are quarantined."""
    exprs, bad = [], []
    for col, dtype in schema.items():
        text = pl.col(col).str.strip_chars().replace("", None)
        if dtype == pl.String:
            exprs.append(text.alias(col))
            continue
        if dtype == pl.Date:
            cast = text.str.to_date("%Y-%m-%d", strict=False)
        elif dtype == pl.Boolean:
            cast = text.str.to_lowercase().replace_strict(
                {"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean
            )
        else:
            cast = text.cast(dtype, strict=False)
        exprs.append(cast.alias(col))
        bad.append(pl.when(text.is_not_null() & cast.is_null()).then(pl.lit(f"bad {col}")))
    flags = pl.concat_str(bad, separator="; ", ignore_nulls=True) if bad else pl.lit("")
    typed = frame.with_columns(flags.alias("_bad")).with_columns(exprs)
    rejected = typed.filter(pl.col("_bad").is_not_null() & (pl.col("_bad") != ""))
    kept = typed.filter(pl.col("_bad").is_null() | (pl.col("_bad") == "")).drop("_bad")
    quarantine = rejected.select(
        pl.lit(str(source)).alias("source_file"),
        pl.col("_line").alias("line"),
        pl.col(key).alias("record_key"),
        pl.lit("invalid_value").alias("reason"),
        pl.col("_bad").alias("detail"),
    )
    return kept, quarantine


def _gtin_valid(gtin: str | None) -> bool:
    return gtin is None or (len(gtin) == 14 and gtin.isdigit() and gs1_check_digit(gtin[:-1]) == gtin[-1])


def load_reference(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, int]:
    """Load manufacturers, products and batches; return row and quarantine counts."""
    files = {k: inbox_files(inbox, k) for k in ("manufacturers", "products", "batches")}
    frames, quarantined, accounts = {}, [], {}
    for kind, schema, key in (
        ("manufacturers", MANUFACTURER_SCHEMA, "manufacturer_id"),
        ("products", PRODUCT_SCHEMA, "product_id"),
        ("batches", BATCH_SCHEMA, "batch_id"),
    ):
        parts = []
        accounts[kind] = []
        for f in files[kind]:
            acc = FileAccount(f, "csv")
            accounts[kind].append(acc)
            try:
                text, acc.rows_read, rejects = _read_csv(con, f, schema)
            except FileRejected as exc:
                acc.error = f"{exc.reason}: {exc.detail}"
                quarantined.append(file_quarantine(f, exc))
                continue
            kept, q = _cast(text, schema, key, f.path)
            parts.append(kept.with_columns(pl.lit(str(f.path)).alias("_file")))
            quarantined += [rejects, q]
        empty = pl.DataFrame(schema={**schema, "_line": pl.Int64, "_file": pl.String})
        frame = pl.concat([p.cast(empty.schema) for p in parts]) if parts else empty
        missing_key = frame.filter(pl.col(key).is_null())
        quarantined.append(
            missing_key.select(
                pl.col("_file").alias("source_file"),
                pl.col("_line").alias("line"),
                pl.lit(None, pl.String).alias("record_key"),
                pl.lit("missing_key").alias("reason"),
                pl.lit(f"no {key}").alias("detail"),
            )
        )
        indexed = frame.filter(pl.col(key).is_not_null()).with_row_index("_i")
        kept = indexed.unique(subset=[key], keep="last", maintain_order=True)
        quarantined.append(superseded_rows(indexed.join(kept.select("_i"), on="_i", how="anti"), key, line_col="_line"))
        frames[kind] = kept.drop("_i")

    def reject(kind: str, mask: pl.Expr, reason: str, detail: pl.Expr, key: str) -> None:
        bad = frames[kind].filter(mask)
        if bad.height:
            quarantined.append(
                bad.select(
                    pl.col("_file").alias("source_file"),
                    pl.col("_line").alias("line"),
                    pl.col(key).alias("record_key"),
                    pl.lit(reason).alias("reason"),
                    detail.alias("detail"),
                )
            )
            frames[kind] = frames[kind].filter(~mask)

    m_ids = frames["manufacturers"]["manufacturer_id"].implode()
    reject(
        "products",
        ~pl.col("manufacturer_id").is_in(m_ids),
        "unknown_manufacturer",
        pl.format("manufacturer {} not in manufacturers.csv", pl.col("manufacturer_id")),
        "product_id",
    )
    reject(
        "products",
        pl.col("name").is_null() | pl.col("ingredient").is_null(),
        "missing_value",
        pl.lit("product needs name and ingredient"),
        "product_id",
    )
    reject(
        "products",
        ~pl.col("gtin").map_elements(_gtin_valid, return_dtype=pl.Boolean),
        "bad_check_digit",
        pl.format("GTIN {} fails the GS1 check digit", pl.col("gtin")),
        "product_id",
    )
    reject(
        "products",
        pl.col("nmpa_drug_code").is_not_null() & ~pl.col("nmpa_drug_code").str.contains(r"^\d{7}$"),
        "bad_nmpa_drug_code",
        pl.format("NMPA drug code {} is not 7 digits", pl.col("nmpa_drug_code")),
        "product_id",
    )
    p_ids = frames["products"]["product_id"].implode()
    reject(
        "batches",
        ~pl.col("product_id").is_in(p_ids),
        "unknown_product",
        pl.format("product {} not in products.csv", pl.col("product_id")),
        "batch_id",
    )
    reject("batches", pl.col("lot_number").is_null(), "missing_value", pl.lit("batch needs a lot number"), "batch_id")
    reject(
        "batches",
        pl.col("expiry_on") < pl.col("manufactured_on"),
        "impossible_date",
        pl.lit("expiry before manufacture"),
        "batch_id",
    )
    if plausibility.enabled("not_after_clock"):
        today = run_clock().date()
        reject(
            "batches",
            (pl.col("manufactured_on") > today) | (pl.col("released_on") > today),
            plausibility.reason("not_after_clock"),
            pl.format("manufactured_on {} / released_on {} after the run's clock", "manufactured_on", "released_on"),
            "batch_id",
        )
    dup_lot = pl.struct("product_id", "lot_number").is_duplicated()
    reject(
        "batches",
        dup_lot,
        "duplicate_lot",
        pl.format("lot {} appears twice for {}", pl.col("lot_number"), pl.col("product_id")),
        "batch_id",
    )

    q = pl.concat([quarantine_frame(x) for x in quarantined])
    counts = {
        "manufacturers": replace_rows(con, "manufacturer", frames["manufacturers"].drop("_file", "_line")),
        "products": replace_rows(con, "product", frames["products"].drop("_file", "_line")),
        "batches": replace_rows(con, "batch", frames["batches"].drop("_file", "_line")),
        "quarantined": replace_quarantine(con, "reference", q),
    }
    for kind, accs in accounts.items():
        loaded = counts_by_file(frames[kind]["_file"]) if frames[kind].height else {}
        counts.update(write_manifest(con, kind, account(accs, loaded, q)))
    for fs in files.values():
        record_ingested(con, fs)
    return counts

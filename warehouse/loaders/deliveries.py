"""Post-delivery logs (inbox/deliveries/*.csv) and patient medication logs.

A delivery is exposure only when its scanned pack code reaches a known pack of a known batch.
Otherwise the row is quarantined with the reason, in the vocabulary of the EU FMD / DSCSA
verification alerts: ``bad_check_digit``, ``impossible_date``, ``unknown_format``,
``unknown_gtin``, ``unknown_nmpa_drug_code``, ``unknown_serial``, ``lot_mismatch``,
``expired_at_delivery``, ``pack_already_dispensed`` (the same pack handed out twice).
Patient references are pseudonymised before anything is stored.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.inbox import InboxError, inbox_files, quarantine_frame, record_ingested, replace_quarantine, replace_rows
from warehouse.pseudonym import pseudonymise
from warehouse.traceability import parse_pack_codes

DELIVERY_COLUMNS = ["delivery_id", "delivered_at", "pack_code", "patient_ref", "pharmacy_id", "region", "country", "quantity"]
MEDICATION_LOG_COLUMNS = ["log_id", "patient_ref", "delivery_id", "week_start", "doses_taken", "doses_missed"]


def _read_delivery_csvs(inbox: Path):
    files = inbox_files(inbox, "deliveries")
    parts = []
    for f in files:
        frame = pl.read_csv(f.path, infer_schema=False)
        missing = [c for c in DELIVERY_COLUMNS if c not in frame.columns]
        if missing:
            raise InboxError(f"{f.path}: missing columns {missing} (see docs/inbox-format.md)")
        parts.append(frame.select(DELIVERY_COLUMNS).with_columns(pl.lit(str(f.path)).alias("_file")))
    return pl.concat(parts), files


def _scan_text(code: pl.Expr) -> pl.Expr:
    """CSV exports write the GS1 group separator as the text ``<GS>``; restore the real byte."""
    return code.str.strip_chars().str.replace_all("<GS>", "\x1d", literal=True)


def load_deliveries(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    raw, files = _read_delivery_csvs(inbox)
    raw = raw.unique(subset=["delivery_id"], keep="last", maintain_order=True)
    typed = raw.with_columns(
        pl.col("delivered_at").str.to_datetime(time_zone="UTC", strict=False).alias("_at"),
        pl.col("quantity").cast(pl.Int32, strict=False).alias("_qty"),
        _scan_text(pl.col("pack_code")).alias("_scan"),
    )
    parsed = parse_pack_codes(typed["_scan"]).select(
        pl.col("system").alias("_system"), pl.col("gtin").alias("_gtin"), pl.col("serial").alias("_serial"),
        pl.col("lot").alias("_lot"), pl.col("nmpa_drug_code").alias("_nmpa"), pl.col("error_reason").alias("_parse_error"),
    )
    frame = pl.concat([typed, parsed], how="horizontal")

    packs = con.sql(
        "SELECT k.pack_code AS _pack, k.code_system, k.gtin AS _gtin, k.serial AS _serial, k.batch_id, "
        "b.product_id, b.lot_number, b.expiry_on FROM pack k JOIN batch b USING (batch_id)"
    ).pl()
    known_gtins = con.sql("SELECT gtin FROM product WHERE gtin IS NOT NULL").pl()["gtin"].implode()
    known_nmpa = con.sql("SELECT nmpa_drug_code FROM product WHERE nmpa_drug_code IS NOT NULL").pl()["nmpa_drug_code"].implode()

    gs1 = frame.filter(pl.col("_system") == "gs1").join(packs.filter(pl.col("code_system") == "gs1"),
                                                        on=["_gtin", "_serial"], how="left")
    nmpa = frame.filter(pl.col("_system") == "nmpa").join(
        packs.filter(pl.col("code_system") == "nmpa").select(pl.exclude("_gtin", "_serial")),
        left_on="_scan", right_on="_pack", how="left",
    )
    unparsed = frame.filter(pl.col("_system").is_null())
    frame = pl.concat([gs1, nmpa, unparsed], how="diagonal_relaxed")

    reason = (
        pl.when(pl.col("_parse_error").is_not_null()).then(pl.col("_parse_error"))
        .when(pl.col("_at").is_null()).then(pl.lit("bad_timestamp"))
        .when(pl.col("_qty").is_null() | (pl.col("_qty") < 1)).then(pl.lit("bad_quantity"))
        .when(pl.col("patient_ref").is_null()).then(pl.lit("missing_patient"))
        .when((pl.col("_system") == "gs1") & ~pl.col("_gtin").is_in(known_gtins)).then(pl.lit("unknown_gtin"))
        .when((pl.col("_system") == "nmpa") & ~pl.col("_nmpa").is_in(known_nmpa)).then(pl.lit("unknown_nmpa_drug_code"))
        .when(pl.col("batch_id").is_null()).then(pl.lit("unknown_serial"))
        .when(pl.col("_lot").is_not_null() & (pl.col("_lot") != pl.col("lot_number"))).then(pl.lit("lot_mismatch"))
        .when(pl.col("_at").dt.date() > pl.col("expiry_on")).then(pl.lit("expired_at_delivery"))
    )
    frame = frame.with_columns(reason.alias("_reason")).sort("_at", "delivery_id", nulls_last=True)
    # The same pack dispensed twice: the first delivery stands, later ones are quarantined.
    pack_key = pl.when(pl.col("_system") == "nmpa").then(pl.col("_scan")).otherwise(
        pl.concat_str("_gtin", "_serial", separator="|"))
    frame = frame.with_columns(
        pl.when(pl.col("_reason").is_null() & (pl.int_range(pl.len()).over(pl.when(pl.col("_reason").is_null()).then(pack_key)) > 0))
        .then(pl.lit("pack_already_dispensed")).otherwise(pl.col("_reason")).alias("_reason")
    )
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null()).select(
        "delivery_id", pl.col("_at").alias("delivered_at"), pl.col("_scan").alias("pack_code"),
        pl.col("_system").alias("code_system"), "batch_id", "product_id",
        pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"),
        "pharmacy_id", "region", "country", pl.col("_qty").alias("quantity"), pl.col("_file").alias("source_file"),
    )
    q = quarantine_frame(bad.select(
        pl.col("_file").alias("source_file"), pl.col("delivery_id").alias("record_key"), pl.col("_reason").alias("reason"),
        pl.format("pack code {}", pl.col("pack_code")).alias("detail"),
    ))
    counts = {"deliveries": replace_rows(con, "delivery", good), "quarantined": replace_quarantine(con, "deliveries", q)}
    record_ingested(con, files)
    return counts


def load_medication_logs(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    files = inbox_files(inbox, "medication_logs", required=False)
    if not files:
        replace_rows(con, "medication_log", pl.DataFrame())
        return {"medication_logs": 0, "quarantined": replace_quarantine(con, "medication_logs", quarantine_frame([]))}
    parts = []
    for f in files:
        frame = pl.read_parquet(f.path)
        missing = [c for c in MEDICATION_LOG_COLUMNS if c not in frame.columns]
        if missing:
            raise InboxError(f"{f.path}: missing columns {missing} (see docs/inbox-format.md)")
        parts.append(frame.select(
            pl.col("log_id").cast(pl.String), pl.col("patient_ref").cast(pl.String), pl.col("delivery_id").cast(pl.String),
            pl.col("week_start").cast(pl.Date), pl.col("doses_taken").cast(pl.Int32), pl.col("doses_missed").cast(pl.Int32),
        ).with_columns(pl.lit(str(f.path)).alias("_file")))
    logs = pl.concat(parts).unique(subset=["log_id"], keep="last", maintain_order=True)
    deliveries = con.sql("SELECT delivery_id FROM delivery").pl()["delivery_id"].implode()
    logs = logs.with_columns(
        pl.when(~pl.col("delivery_id").is_in(deliveries)).then(pl.lit("unknown_delivery"))
        .when((pl.col("doses_taken") < 0) | (pl.col("doses_missed") < 0)).then(pl.lit("negative_doses"))
        .alias("_reason")
    )
    good = logs.filter(pl.col("_reason").is_null()).select(
        "log_id", pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"), "delivery_id", "week_start",
        "doses_taken", "doses_missed",
    )
    q = quarantine_frame(logs.filter(pl.col("_reason").is_not_null()).select(
        pl.col("_file").alias("source_file"), pl.col("log_id").alias("record_key"), pl.col("_reason").alias("reason"),
        pl.format("delivery {}", pl.col("delivery_id")).alias("detail"),
    ))
    counts = {"medication_logs": replace_rows(con, "medication_log", good),
              "quarantined": replace_quarantine(con, "medication_logs", q)}
    record_ingested(con, files)
    return counts

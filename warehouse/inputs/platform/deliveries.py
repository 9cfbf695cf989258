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

from warehouse.inputs.inbox import (
    InboxError,
    inbox_files,
    quarantine_frame,
    record_ingested,
    replace_quarantine,
    replace_rows,
)
from warehouse.linkage.pack_codes import parse_pack_codes
from warehouse.pseudonym import pseudonym_sql, pseudonymise

DELIVERY_COLUMNS = [
    "delivery_id",
    "delivered_at",
    "pack_code",
    "patient_ref",
    "pharmacy_id",
    "region",
    "country",
    "quantity",
]
MEDICATION_LOG_COLUMNS = ["log_id", "patient_ref", "delivery_id", "week_start", "doses_taken", "doses_missed"]


def _check_headers(files) -> None:
    for f in files:
        header = pl.read_csv(f.path, n_rows=0, infer_schema=False).columns
        missing = [c for c in DELIVERY_COLUMNS if c not in header]
        if missing:
            raise InboxError(f"{f.path}: missing columns {missing} (see docs/inbox-format.md)")


def _scan_text(code: pl.Expr) -> pl.Expr:
    """CSV exports write the GS1 group separator as the text ``<GS>``; restore the real byte."""
    return code.str.strip_chars().str.replace_all("<GS>", "\x1d", literal=True)


# Resolution of every delivery row, in DuckDB: the pack table (millions of rows) never leaves
# the database; only the distinct scanned codes go through the vectorised parser (_parsed).
_RESOLVE_SQL = """
CREATE OR REPLACE TEMP TABLE _dl_resolved AS
WITH raw AS (
    SELECT *, row_number() OVER (PARTITION BY delivery_id ORDER BY _file DESC, _line DESC) AS _rank
    FROM (SELECT *, row_number() OVER () AS _line FROM read_csv($files, all_varchar = true, header = true,
                                                                  filename = '_file', union_by_name = true))
),
typed AS (
    SELECT r.delivery_id, r.pack_code, r.patient_ref, r.pharmacy_id, r.region, r.country, r._file,
           try_cast(r.delivered_at AS TIMESTAMPTZ) AS _at, try_cast(r.quantity AS INTEGER) AS _qty,
           p.scan AS _scan, p.system AS _system, p.gtin AS _gtin, p.serial AS _serial, p.lot AS _lot,
           p.nmpa_drug_code AS _nmpa, p.error_reason AS _parse_error
    FROM raw r LEFT JOIN _parsed p ON p.code = r.pack_code
    WHERE r._rank = 1
),
matched AS (
    SELECT t.*, coalesce(kg.batch_id, kn.batch_id) AS batch_id, coalesce(kg.pack_code, kn.pack_code) AS _pack
    FROM typed t
    -- pure equi-joins (a left-side condition in a LEFT JOIN's ON turns it into a nested loop)
    LEFT JOIN (SELECT gtin, serial, batch_id, pack_code FROM pack WHERE code_system = 'gs1') kg
           ON kg.gtin = t._gtin AND kg.serial = t._serial
    LEFT JOIN (SELECT pack_code, batch_id FROM pack WHERE code_system = 'nmpa') kn ON kn.pack_code = t._scan
),
reasoned AS (
    SELECT m.*, b.product_id, b.lot_number, b.expiry_on,
           CASE
             WHEN m._parse_error IS NOT NULL THEN m._parse_error
             WHEN m._at IS NULL THEN 'bad_timestamp'
             WHEN m._qty IS NULL OR m._qty < 1 THEN 'bad_quantity'
             WHEN m.patient_ref IS NULL THEN 'missing_patient'
             WHEN m._system = 'gs1' AND m._gtin NOT IN (SELECT gtin FROM product WHERE gtin IS NOT NULL) THEN 'unknown_gtin'
             WHEN m._system = 'nmpa' AND m._nmpa NOT IN (SELECT nmpa_drug_code FROM product WHERE nmpa_drug_code IS NOT NULL)
                  THEN 'unknown_nmpa_drug_code'
             WHEN m.batch_id IS NULL THEN 'unknown_serial'
             WHEN m._lot IS NOT NULL AND m._lot <> b.lot_number THEN 'lot_mismatch'
             WHEN m._at::DATE > b.expiry_on THEN 'expired_at_delivery'
           END AS _reason
    FROM matched m LEFT JOIN batch b ON b.batch_id = m.batch_id
)
-- the same pack dispensed twice: the first delivery stands, later ones are quarantined
SELECT * REPLACE (
    CASE WHEN _reason IS NULL
          AND row_number() OVER (PARTITION BY (_reason IS NULL), _pack ORDER BY _at, delivery_id) > 1
         THEN 'pack_already_dispensed' ELSE _reason END AS _reason)
FROM reasoned
"""


def load_deliveries(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    files = inbox_files(inbox, "deliveries")
    _check_headers(files)
    paths = [str(f.path) for f in files]
    codes = con.execute(
        "SELECT DISTINCT pack_code FROM read_csv($files, all_varchar = true, header = true, union_by_name = true) "
        "WHERE pack_code IS NOT NULL",
        {"files": paths},
    ).pl()["pack_code"]
    scans = codes.to_frame("code").select("code", _scan_text(pl.col("code")).alias("scan"))
    parsed = pl.concat([scans, parse_pack_codes(scans["scan"]).drop("code")], how="horizontal")
    con.register("_parsed", parsed.to_arrow())
    try:
        con.execute(_RESOLVE_SQL, {"files": paths})
    finally:
        con.unregister("_parsed")
    con.execute("DELETE FROM delivery")
    con.execute(
        f"""
        INSERT INTO delivery (delivery_id, delivered_at, pack_code, code_system, batch_id, product_id, patient_key,
                              pharmacy_id, region, country, quantity, source_file)
        SELECT delivery_id, _at, _scan, _system, batch_id, product_id, {pseudonym_sql("patient_ref")},
               pharmacy_id, region, country, _qty, _file
        FROM _dl_resolved WHERE _reason IS NULL ORDER BY _at, delivery_id
        """,
        {"salt": salt},
    )
    q = con.sql(
        "SELECT _file AS source_file, delivery_id AS record_key, _reason AS reason, 'pack code ' || coalesce(pack_code, '') "
        "AS detail FROM _dl_resolved WHERE _reason IS NOT NULL ORDER BY delivery_id"
    ).pl()
    kept = con.sql("SELECT count(*) FROM _dl_resolved WHERE _reason IS NULL").fetchone()[0]
    con.execute("DROP TABLE _dl_resolved")
    counts = {"deliveries": kept, "quarantined": replace_quarantine(con, "deliveries", q)}
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
        parts.append(
            frame.select(
                pl.col("log_id").cast(pl.String),
                pl.col("patient_ref").cast(pl.String),
                pl.col("delivery_id").cast(pl.String),
                pl.col("week_start").cast(pl.Date),
                pl.col("doses_taken").cast(pl.Int32),
                pl.col("doses_missed").cast(pl.Int32),
            ).with_columns(pl.lit(str(f.path)).alias("_file"))
        )
    logs = pl.concat(parts).unique(subset=["log_id"], keep="last", maintain_order=True)
    deliveries = con.sql("SELECT delivery_id FROM delivery").pl()["delivery_id"].implode()
    logs = logs.with_columns(
        pl.when(~pl.col("delivery_id").is_in(deliveries))
        .then(pl.lit("unknown_delivery"))
        .when((pl.col("doses_taken") < 0) | (pl.col("doses_missed") < 0))
        .then(pl.lit("negative_doses"))
        .alias("_reason")
    )
    good = logs.filter(pl.col("_reason").is_null()).select(
        "log_id",
        pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"),
        "delivery_id",
        "week_start",
        "doses_taken",
        "doses_missed",
    )
    q = quarantine_frame(
        logs.filter(pl.col("_reason").is_not_null()).select(
            pl.col("_file").alias("source_file"),
            pl.col("log_id").alias("record_key"),
            pl.col("_reason").alias("reason"),
            pl.format("delivery {}", pl.col("delivery_id")).alias("detail"),
        )
    )
    counts = {
        "medication_logs": replace_rows(con, "medication_log", good),
        "quarantined": replace_quarantine(con, "medication_logs", q),
    }
    record_ingested(con, files)
    return counts

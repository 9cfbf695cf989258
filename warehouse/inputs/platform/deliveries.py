"""Post-delivery logs (inbox/deliveries/*.csv) and patient medication logs.

A delivery is exposure only when its scanned pack code reaches a known pack of a known batch.
Otherwise the row is quarantined with the reason, in the vocabulary of the EU FMD / DSCSA
verification alerts: ``bad_check_digit``, ``impossible_date``, ``unknown_format``,
``unknown_gtin``, ``unknown_nmpa_drug_code``, ``unknown_serial``, ``lot_mismatch``,
``expired_at_delivery``, ``pack_already_dispensed`` (the same pack handed out twice).
Patient references are pseudonymised before anything is stored.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import (
    FileAccount,
    FileRejected,
    account,
    counts_by_file,
    dedupe_last_wins,
    file_quarantine,
    inbox_files,
    quarantine_frame,
    read_csv_file,
    read_typed_parquet,
    record_ingested,
    replace_quarantine,
    replace_rows,
    run_clock,
    write_manifest,
)
from warehouse.inputs.platform import plausibility
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


def _scan_text(code: pl.Expr) -> pl.Expr:
    """CSV exports write the GS1 group separator as the text ``<GS>``; restore the real byte."""
    return code.str.strip_chars().str.replace_all("<GS>", "\x1d", literal=True)


# Resolution of every delivery row, in DuckDB: the pack table (millions of rows) never leaves
# the database; only the distinct scanned codes go through the vectorised parser (_dl_parsed,
# parsed in chunks of _PARSE_CHUNK codes). _dl_raw holds every well-formed row of every file
# (text), with _file, in file order (rowid order: the last delivery of a delivery_id wins).
# Memory (issue 18): its two windows see narrow rows only — the rank of a delivery_id over
# (rowid, delivery_id) here, the second dispensing of a pack over (_rid, _pack, _at,
# delivery_id) in _DISPENSED_TWICE_SQL — not every column of every row. The load runs under a DuckDB
# memory_limit (load_memory_limit, default 2 GB) so that the joins and sorts spill to DuckDB's
# temp directory instead of growing with the data. On the 10x world (1.89M rows against 4.16M packs)
# the deliveries stage's peak RSS is 3,811 MB with no limit (18.6 s), 2,745 MB at 2 GB (19.4 s),
# 2,318 MB at 1.5 GB (21.4 s), with the same delivery and quarantine rows (order-free digests). Part of the statement cannot spill (on the demo world it fails
# under a 250 MB limit, needing ~280 MB), so the limit is a floor the data must stay under, not a knob
# to set tight: PVTRACE_LOAD_MEMORY_LIMIT raises it, "none" removes it.
_RESOLVE_SQL = """
CREATE OR REPLACE TEMP TABLE _dl_resolved AS
WITH ranks AS (
    SELECT rowid AS _rid,
           CASE WHEN nullif(trim(delivery_id), '') IS NULL THEN NULL
                ELSE row_number() OVER (PARTITION BY delivery_id ORDER BY rowid DESC) END AS _rank
    FROM _dl_raw
),
raw AS (
    SELECT r.*, k._rid, k._rank FROM _dl_raw r JOIN ranks k ON k._rid = r.rowid
),
typed AS (
    SELECT r.delivery_id, r.delivered_at, r.quantity, r.pack_code, r.patient_ref, r.pharmacy_id, r.region,
           r.country, r._file, r._rid, r._rank,
           try_cast(r.delivered_at AS TIMESTAMPTZ) AS _at,
           CASE WHEN $strict_qty THEN (CASE WHEN regexp_full_match(trim(r.quantity), '[0-9]{1,9}')
                                           THEN trim(r.quantity)::INTEGER END)
                ELSE try_cast(r.quantity AS INTEGER) END AS _qty,
           p.scan AS _scan, p.system AS _system, p.gtin AS _gtin, p.serial AS _serial, p.lot AS _lot,
           p.nmpa_drug_code AS _nmpa, p.error_reason AS _parse_error
    FROM raw r LEFT JOIN _dl_parsed p ON p.code = r.pack_code
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
    SELECT m.*, b.product_id, b.lot_number, b.expiry_on, b.released_on,
           CASE
             WHEN m._rank IS NULL THEN 'missing_key'
             WHEN m._rank > 1 THEN 'superseded'
             WHEN m.pack_code IS NULL THEN 'missing_value'
             WHEN m._parse_error IS NOT NULL THEN m._parse_error
             WHEN m._at IS NULL THEN 'bad_timestamp'
             WHEN m._qty IS NULL OR m._qty < 1 THEN 'bad_quantity'
             WHEN $check_clock AND m._at > $clock THEN 'after_run_clock'
             WHEN m.patient_ref IS NULL THEN 'missing_patient'
             WHEN m._system = 'gs1' AND m._gtin NOT IN (SELECT gtin FROM product WHERE gtin IS NOT NULL) THEN 'unknown_gtin'
             WHEN m._system = 'nmpa' AND m._nmpa NOT IN (SELECT nmpa_drug_code FROM product WHERE nmpa_drug_code IS NOT NULL)
                  THEN 'unknown_nmpa_drug_code'
             WHEN m.batch_id IS NULL THEN 'unknown_serial'
             WHEN m._lot IS NOT NULL AND m._lot <> b.lot_number THEN 'lot_mismatch'
             WHEN $check_release AND m._at::DATE < b.released_on THEN 'delivered_before_release'
             WHEN $check_expiry AND m._at::DATE > b.expiry_on THEN 'expired_at_delivery'
           END AS _reason
    FROM matched m LEFT JOIN batch b ON b.batch_id = m.batch_id
)
SELECT * FROM reasoned
"""

# the same pack dispensed twice: the first delivery (by time, then delivery_id) stands, later ones are quarantined
_DISPENSED_TWICE_SQL = """
UPDATE _dl_resolved SET _reason = 'pack_already_dispensed'
WHERE _rid IN (
    SELECT _rid FROM (
        SELECT _rid, row_number() OVER (PARTITION BY _pack ORDER BY _at, delivery_id) AS _n
        FROM _dl_resolved WHERE _reason IS NULL)
    WHERE _n > 1)
"""

#: distinct scanned codes parsed per chunk (bounds the parser's Python memory)
_PARSE_CHUNK = 250_000


def _parse_scanned_codes(con: duckdb.DuckDBPyConnection) -> None:
    """The temp table _dl_parsed: each distinct scanned code of _dl_raw with its parse
    (:func:`~warehouse.linkage.pack_codes.parse_pack_codes` on the scan text), chunk by chunk."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dl_codes AS "
        "SELECT code, row_number() OVER (ORDER BY code) - 1 AS _n FROM "
        "(SELECT DISTINCT pack_code AS code FROM _dl_raw WHERE pack_code IS NOT NULL)"
    )
    (n,) = con.execute("SELECT count(*) FROM _dl_codes").fetchone()
    created = False
    for start in range(0, max(n, 1), _PARSE_CHUNK):
        codes = con.execute(
            "SELECT code FROM _dl_codes WHERE _n >= ? AND _n < ? ORDER BY _n", [start, start + _PARSE_CHUNK]
        ).pl()["code"]
        scans = codes.to_frame("code").select("code", _scan_text(pl.col("code")).alias("scan"))
        parsed = pl.concat([scans, parse_pack_codes(scans["scan"]).drop("code")], how="horizontal")
        con.register("_dl_chunk", parsed.to_arrow())
        try:
            if created:
                con.execute("INSERT INTO _dl_parsed SELECT * FROM _dl_chunk")
            else:
                con.execute("CREATE OR REPLACE TEMP TABLE _dl_parsed AS SELECT * FROM _dl_chunk")
                created = True
        finally:
            con.unregister("_dl_chunk")
    con.execute("DROP TABLE _dl_codes")


# a CSV field as written back in a redacted raw copy
_CSV_FIELD = "CASE WHEN {c} IS NULL THEN '' WHEN regexp_matches({c}, '[\",\n\r]') THEN '\"' || replace({c}, '\"', '\"\"') || '\"' ELSE {c} END"


def _redacted_raw_sql() -> str:
    """The delivery row as CSV, patient_ref replaced by its pseudonym (same key as the warehouse)."""
    fields = [
        "'pseudonym:' || left(sha256($salt || patient_ref), 32)" if c == "patient_ref" else _CSV_FIELD.format(c=c)
        for c in DELIVERY_COLUMNS
    ]
    return " || ',' || ".join(f"coalesce({f}, '')" for f in fields)


def _mark_excess(con: duckdb.DuckDBPyConnection) -> int:
    """Rule within_released_units: in each batch whose valid deliveries pass units_released, the
    deliveries beyond it (greedy in delivery order, plausibility.greedy_excess) are quarantined."""
    over = con.sql(
        """
        SELECT r.batch_id, r.delivery_id, r._qty, b.units_released
        FROM _dl_resolved r JOIN batch b USING (batch_id)
        WHERE r._reason IS NULL AND b.units_released IS NOT NULL AND r.batch_id IN (
            SELECT batch_id FROM _dl_resolved x JOIN batch y USING (batch_id) WHERE x._reason IS NULL
            GROUP BY batch_id, y.units_released HAVING sum(x._qty) > y.units_released)
        ORDER BY r.batch_id, r._at, r.delivery_id
        """
    ).pl()
    if over.is_empty():
        return 0
    excess: list[str] = []
    for (_,), part in over.group_by(["batch_id"], maintain_order=True):
        flags = plausibility.greedy_excess(part["_qty"].to_list(), int(part["units_released"][0]))
        excess.extend(d for d, f in zip(part["delivery_id"].to_list(), flags, strict=True) if f)
    con.register("_excess", pl.DataFrame({"delivery_id": excess}).to_arrow())
    con.execute(
        f"UPDATE _dl_resolved SET _reason = '{plausibility.reason('within_released_units')}' "
        "WHERE _reason IS NULL AND delivery_id IN (SELECT delivery_id FROM _excess)"
    )
    con.unregister("_excess")
    return len(excess)


def _read_delivery_files(con: duckdb.DuckDBPyConnection, files) -> tuple[list[FileAccount], list, list[pl.DataFrame]]:
    """Every file into the temp table _dl_raw; (accounts, CsvRead per file or None, quarantine frames)."""
    cols = ", ".join(f"{c} VARCHAR" for c in DELIVERY_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dl_raw ({cols}, _file VARCHAR)")
    accounts, reads, quarantined = [], [], []
    for f in files:
        acc = FileAccount(f, "csv")
        accounts.append(acc)
        try:
            read = read_csv_file(con, f, DELIVERY_COLUMNS, "_dl_raw")
        except FileRejected as exc:
            acc.error = f"{exc.reason}: {exc.detail}"
            quarantined.append(file_quarantine(f, exc))
            reads.append(None)
            continue
        acc.rows_read = read.rows_read
        reads.append(read)
        quarantined.append(read.rejects)
    return accounts, reads, quarantined


#: DuckDB memory limit while deliveries load (``PVTRACE_LOAD_MEMORY_LIMIT``; a DuckDB size such as ``1500MB`` or
#: ``4GB``, or ``none``)
LOAD_MEMORY_LIMIT_ENV = "PVTRACE_LOAD_MEMORY_LIMIT"
DEFAULT_LOAD_MEMORY_LIMIT = "2GB"


@contextlib.contextmanager
def load_memory_limit(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's memory_limit set to :data:`LOAD_MEMORY_LIMIT_ENV` (default :data:`DEFAULT_LOAD_MEMORY_LIMIT`) for
    the block, then put back: what can spill (hash joins, sorts, windows) spills to the database's temp
    directory instead of holding the whole inbox in memory."""
    limit = os.environ.get(LOAD_MEMORY_LIMIT_ENV, DEFAULT_LOAD_MEMORY_LIMIT).strip()
    if limit.lower() == "none":
        yield
        return
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*[KMGT]?i?B", limit, flags=re.IGNORECASE):
        raise ValueError(f"{LOAD_MEMORY_LIMIT_ENV}={limit!r}: expected a size such as 1500MB or 4GB, or none")
    (previous,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.execute(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        # RESET gives back DuckDB's default exactly (its printed size is rounded); a limit the caller had set
        # is set again from its printed size
        con.execute("RESET memory_limit")
        if con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != previous:
            con.execute(f"SET memory_limit = '{previous}'")


def load_deliveries(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    with load_memory_limit(con):
        return _load_deliveries(con, inbox, salt)


def _load_deliveries(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    files = inbox_files(inbox, "deliveries")
    accounts, reads, quarantined = _read_delivery_files(con, files)
    by_file = {str(f.path): r for f, r in zip(files, reads, strict=True)}
    _parse_scanned_codes(con)
    con.execute(
        _RESOLVE_SQL,
        {
            "clock": run_clock(),
            "check_clock": plausibility.enabled("not_after_clock"),
            "strict_qty": plausibility.enabled("quantity_positive_integer"),
            "check_release": plausibility.enabled("delivered_after_release"),
            "check_expiry": plausibility.enabled("delivered_before_expiry"),
        },
    )
    con.execute("DROP TABLE _dl_parsed")
    con.execute(_DISPENSED_TWICE_SQL)
    if plausibility.enabled("within_released_units"):
        _mark_excess(con)
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
    quarantined.append(
        quarantine_frame(
            con.execute(
                f"SELECT _file AS source_file, _rid, delivery_id AS record_key, _reason AS reason, "
                f"'pack code ' || coalesce(pack_code, '') || CASE WHEN _reason = 'bad_quantity' "
                f"THEN ', quantity ' || coalesce(quantity, '') ELSE '' END AS detail, {_redacted_raw_sql()} AS raw "
                "FROM _dl_resolved WHERE _reason IS NOT NULL ORDER BY _rid",
                {"salt": salt},
            )
            .pl()
            .pipe(
                lambda q: q.with_columns(
                    pl.Series(
                        "line",
                        [by_file[f].line_of(r) for f, r in zip(q["source_file"], q["_rid"], strict=True)],
                        dtype=pl.Int64,
                    )
                )
            )
        )
    )
    loaded = dict(con.sql("SELECT _file, count(*) FROM _dl_resolved WHERE _reason IS NULL GROUP BY 1").fetchall())
    con.execute("DROP TABLE _dl_resolved")
    con.execute("DROP TABLE _dl_raw")
    q = pl.concat(quarantined)
    counts = {"deliveries": sum(loaded.values()), "quarantined": replace_quarantine(con, "deliveries", q)}
    counts.update(write_manifest(con, "deliveries", account(accounts, loaded, q)))
    record_ingested(con, files)
    return counts


_LOG_TYPES = {
    "log_id": pl.String,
    "patient_ref": pl.String,
    "delivery_id": pl.String,
    "week_start": pl.Date,
    "doses_taken": pl.Int32,
    "doses_missed": pl.Int32,
}


def _known_deliveries(con: duckdb.DuckDBPyConnection, ids: pl.Series) -> pl.Series:
    """The distinct ids among ``ids`` that name a loaded delivery, found by the warehouse (the logs' distinct ids
    semi-joined against ``delivery``): the delivery table (~10^9 rows a year nationally) never comes into Python."""
    wanted = pl.DataFrame({"delivery_id": ids.drop_nulls().unique()}, schema={"delivery_id": pl.String})
    con.register("_ml_delivery_ids", wanted.to_arrow())
    try:
        return con.sql(
            "SELECT delivery_id FROM _ml_delivery_ids WHERE delivery_id IN (SELECT delivery_id FROM delivery)"
        ).pl()["delivery_id"]
    finally:
        con.unregister("_ml_delivery_ids")


def load_medication_logs(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    files = inbox_files(inbox, "medication_logs", required=False)
    logs, accounts, quarantined = read_typed_parquet(files, _LOG_TYPES)
    has_key = pl.col("log_id").is_not_null() & (pl.col("log_id").str.strip_chars() != "")
    keyed, unkeyed = logs.filter(has_key), logs.filter(~has_key)
    logs, superseded = dedupe_last_wins(keyed, ["log_id"])
    deliveries = _known_deliveries(con, logs["delivery_id"]).implode()
    clock = run_clock().date()
    logs = logs.with_columns(
        pl.when(pl.col("_bad_type"))
        .then(pl.lit("invalid_value"))
        .when(pl.col("week_start").is_null() | pl.col("patient_ref").is_null())
        .then(pl.lit("missing_value"))
        .when(pl.lit(plausibility.enabled("not_after_clock")) & (pl.col("week_start") > clock))
        .then(pl.lit(plausibility.reason("not_after_clock")))
        .when(~pl.col("delivery_id").is_in(deliveries))
        .then(pl.lit("unknown_delivery"))
        .when((pl.col("doses_taken") < 0) | (pl.col("doses_missed") < 0))
        .then(pl.lit("negative_doses"))
        .alias("_reason")
    )
    good = logs.filter(pl.col("_reason").is_null())
    redacted = pl.format(
        "log_id={} patient_ref={} delivery_id={} week_start={} doses_taken={} doses_missed={}",
        *[
            (pl.lit("pseudonym:") + pseudonymise(pl.col(c), salt)) if c == "patient_ref" else pl.col(c)
            for c in MEDICATION_LOG_COLUMNS
        ],
    )

    def _q(frame: pl.DataFrame, reason: pl.Expr, detail: pl.Expr) -> pl.DataFrame:
        return quarantine_frame(
            frame.select(
                pl.col("_file").alias("source_file"),
                pl.col("_row").alias("line"),  # the row of the Parquet file
                pl.col("log_id").alias("record_key"),
                reason.alias("reason"),
                pl.format("row {}: {}", pl.col("_row"), detail).alias("detail"),
                redacted.alias("raw"),
            )
        )

    quarantined += [
        _q(
            logs.filter(pl.col("_reason").is_not_null()),
            pl.col("_reason"),
            pl.format("delivery {}", pl.col("delivery_id")),
        ),
        _q(unkeyed, pl.lit("missing_key"), pl.lit("no log_id")),
        _q(superseded, pl.lit("superseded"), pl.lit("log_id delivered again later (the later row is loaded)")),
    ]
    q = pl.concat(quarantined) if quarantined else quarantine_frame([])
    written = good.select(
        "log_id",
        pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"),
        "delivery_id",
        "week_start",
        "doses_taken",
        "doses_missed",
    )
    counts = {
        "medication_logs": replace_rows(con, "medication_log", written),
        "quarantined": replace_quarantine(con, "medication_logs", q),
    }
    loaded = counts_by_file(good["_file"]) if good.height else {}
    counts.update(write_manifest(con, "medication_logs", account(accounts, loaded, q)))
    record_ingested(con, files)
    return counts

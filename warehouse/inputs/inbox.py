"""The inbox on disk: which files feed which table, their hashes, and replace-style writes.

Every loader reads *all* files of its kind and replaces its tables inside one transaction,
so re-running a load is idempotent by construction (nothing is appended twice) and a file
re-delivered with corrections simply wins. Keys are de-duplicated with "last file wins"; the
rows a later one supersedes are quarantined as ``superseded`` so that nothing vanishes.

Row accounting (issue 12): every loader writes one ``load_manifest`` row per file with rows
read / loaded / quarantined; for every file, read = loaded + quarantined (an asset check
verifies it against the tables). A file that cannot be read at all (empty, undecodable
header, missing columns, corrupt Parquet, truncated document) is quarantined whole
(:class:`FileRejected`), the run goes on. Our own CSV formats are read with the column names
of their header and every value as text — never a guessed dialect — and a malformed row
(wrong field count, undecodable bytes, a line over :data:`CSV_MAX_LINE_BYTES`) is quarantined
on its own with its line number. Raw rows kept in quarantine are redacted
(:func:`redact_text`): no patient reference is stored or put in an error message.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

# kind -> (sub-folder, glob)
INBOX_LAYOUT: dict[str, tuple[str, str]] = {
    "manufacturers": ("reference", "manufacturers.csv"),
    "products": ("reference", "products.csv"),
    "batches": ("reference", "batches.csv"),
    "packs": ("packs", "*.parquet"),
    "supply": ("supply", "*.jsonld"),
    "deliveries": ("deliveries", "*.csv"),
    "medication_logs": ("medication_logs", "*.parquet"),
    "cases": ("cases", "*.jsonl"),
}


class InboxError(ValueError):
    """The inbox is missing something a load needs (a clear message, not a stack of nulls)."""


@dataclass(frozen=True)
class InboxFile:
    path: Path
    kind: str
    sha256: str
    n_bytes: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inbox_files(inbox: Path, kind: str, *, required: bool = True) -> list[InboxFile]:
    """The files of one kind, sorted by name (so "last file wins" is well defined)."""
    folder, pattern = INBOX_LAYOUT[kind]
    paths = sorted((Path(inbox) / folder).glob(pattern))
    if required and not paths:
        raise InboxError(f"no {kind} files: expected {Path(inbox) / folder / pattern} (see docs/inbox-format.md)")
    return [InboxFile(p, kind, sha256_of(p), p.stat().st_size) for p in paths]


def record_ingested(con: duckdb.DuckDBPyConnection, files: list[InboxFile]) -> None:
    """Lineage: which file (and which content) fed the warehouse. Replaces the kind's rows."""
    if not files:
        return
    kind = files[0].kind
    con.execute("DELETE FROM ingested_file WHERE kind = ?", [kind])
    con.executemany(
        "INSERT INTO ingested_file (path, kind, sha256, n_bytes) VALUES (?, ?, ?, ?)",
        [(str(f.path), f.kind, f.sha256, f.n_bytes) for f in files],
    )


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, where: str | None = None) -> int:
    """Replace the content of ``table`` (only the rows matching the SQL predicate ``where``, if
    given) with ``frame``, columns matched by name."""
    con.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""))
    if frame.height:
        con.register("_incoming", frame.to_arrow())
        cols = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
        con.unregister("_incoming")
    return frame.height


QUARANTINE_COLUMNS = {
    "source_file": pl.String,
    "line": pl.Int64,
    "record_key": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "raw": pl.String,
}


def quarantine_frame(rows: list[dict] | pl.DataFrame) -> pl.DataFrame:
    """A frame with the quarantine columns (missing ones null), from dicts or a frame."""
    frame = pl.DataFrame(rows) if isinstance(rows, list) else rows
    if frame.height == 0:
        return pl.DataFrame(schema=QUARANTINE_COLUMNS)
    return frame.select(
        [
            (pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t)).alias(c)
            for c, t in QUARANTINE_COLUMNS.items()
        ]
    )


def replace_quarantine(con: duckdb.DuckDBPyConnection, stage: str, frame: pl.DataFrame) -> int:
    """Replace the quarantine rows of one stage (so a re-run reports the same rows once)."""
    con.execute("DELETE FROM quarantine WHERE stage = ?", [stage])
    frame = quarantine_frame(frame)
    if frame.height:
        con.register("_q", frame.to_arrow())
        con.execute(
            "INSERT INTO quarantine (stage, source_file, line, record_key, reason, detail, raw) "
            "SELECT ?, source_file, line, record_key, reason, detail, raw FROM _q",
            [stage],
        )
        con.unregister("_q")
    return frame.height


def dedupe_last_wins(frame: pl.DataFrame, key: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the last row per key (rows are in file order); return (kept, superseded), both in row order.

    One pass marks each key's last row (no unique-then-anti-join over a row index)."""
    last = frame.select((pl.col(key[0]) if len(key) == 1 else pl.struct(key)).is_last_distinct()).to_series()
    return frame.filter(last), frame.filter(~last)


def superseded_rows(
    superseded: pl.DataFrame, key: str, file_col: str = "_file", line_col: str | None = None
) -> pl.DataFrame:
    """Quarantine rows for rows a later delivery of the same key replaced (last file wins)."""
    return quarantine_frame(
        superseded.select(
            pl.col(file_col).alias("source_file"),
            (pl.col(line_col) if line_col else pl.lit(None, pl.Int64)).alias("line"),
            pl.col(key).cast(pl.String).alias("record_key"),
            pl.lit("superseded").alias("reason"),
            pl.format("{} {} delivered again later (the later row is loaded)", pl.lit(key), pl.col(key)).alias(
                "detail"
            ),
        )
    )


# ---- the run's clock ----------------------------------------------------------------------------

#: ISO date or timestamp that stands for "now" in a run (tests, the demo, a re-run of an old day)
CLOCK_ENV = "PVTRACE_CLOCK"


def parse_clock(text: str) -> dt.datetime:
    """``2025-12-31`` (the end of that day, UTC) or an ISO timestamp (UTC when naive)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(23, 59, 59, 999999), tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={text!r} is not an ISO date or timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def run_clock() -> dt.datetime:
    """The run's clock (timezone-aware, UTC): ``PVTRACE_CLOCK`` when set, else now. Nothing
    loaded may lie after it, and the data lock point can therefore never pass it."""
    text = os.environ.get(CLOCK_ENV)
    return parse_clock(text) if text else dt.datetime.now(dt.UTC)


# ---- redaction ----------------------------------------------------------------------------------

#: fields of our formats that identify a patient: in a quarantined raw copy they become the pseudonym
IDENTIFIER_FIELDS = ("patient_ref",)
_JSON_ID = re.compile(r'("(?:' + "|".join(IDENTIFIER_FIELDS) + r')"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\s]+)')


def pseudonym_of(ref: str | None, salt: str) -> str | None:
    """The same key as warehouse.pseudonym.pseudonymise, for one value."""
    if ref is None:
        return None
    return hashlib.sha256(salt.encode() + ref.encode()).hexdigest()[:32]


def redact_text(raw: str | None, salt: str, refs: list[str | None] = ()) -> str | None:
    """A raw JSON/text row with every identifier replaced by ``pseudonym:<key>``: the values of
    ``"patient_ref": ...`` members (even in a truncated line), and any of ``refs`` found in the
    text (a reference repeated in a narrative)."""
    if raw is None:
        return None

    def _sub(m: re.Match) -> str:
        value = m.group(2)
        if value == "null":
            return m.group(0)
        inner = value.strip('"')
        return f'{m.group(1)}"pseudonym:{pseudonym_of(inner, salt)}"'

    out = _JSON_ID.sub(_sub, raw)
    for ref in refs:
        if ref and len(ref) >= 3 and ref in out:
            out = out.replace(ref, f"pseudonym:{pseudonym_of(ref, salt)}")
    return out


def redacted_csv_row(values: list[str | None], columns: list[str], salt: str) -> str:
    """A well-formed CSV row, its identifier columns replaced by their pseudonym."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(
        [
            (f"pseudonym:{pseudonym_of(v, salt)}" if c in IDENTIFIER_FIELDS and v is not None else v)
            for c, v in zip(columns, values, strict=True)
        ]
    )
    return buf.getvalue()


def safe_error(exc: BaseException) -> str:
    """An exception as one line that carries no data row: DuckDB and Arrow quote the offending
    line in their messages, so only the exception type and the message's first clause are kept."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = re.split(r"(?i)original line|line contents|\bvalue\b|: \"|: '", first)[0]
    return f"{type(exc).__name__}: {first[:160]}".rstrip(": ")


# ---- file-level rejection and the load manifest -------------------------------------------------


class FileRejected(Exception):
    """A whole file cannot be read; it is quarantined with this reason and the run goes on."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def file_quarantine(f: InboxFile, exc: FileRejected) -> pl.DataFrame:
    return quarantine_frame(
        [{"source_file": str(f.path), "record_key": None, "reason": exc.reason, "detail": f"whole file: {exc.detail}"}]
    )


@dataclass
class FileAccount:
    """One load_manifest row: what happened to one file."""

    file: InboxFile
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_fallback_decoded: int = 0
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "rejected"
        return "loaded" if self.rows_quarantined == 0 else "partial"


def counts_by_file(files: pl.Series | list) -> dict[str, int]:
    vc = pl.Series("f", files, dtype=pl.String).value_counts()
    return dict(zip(vc["f"].to_list(), vc["count"].to_list(), strict=True))


def account(accounts: list[FileAccount], loaded: dict[str, int], quarantine: pl.DataFrame) -> list[FileAccount]:
    """Fill rows_loaded (``loaded``: rows written per source file) and rows_quarantined (the
    quarantine rows naming the file; file-level rejections carry no row) of every account."""
    rows = quarantine.filter(~pl.col("detail").fill_null("").str.starts_with("whole file:"))["source_file"]
    n_q = counts_by_file(rows) if len(rows) else {}
    for a in accounts:
        a.rows_loaded = int(loaded.get(str(a.file.path), 0))
        a.rows_quarantined = int(n_q.get(str(a.file.path), 0))
    return accounts


def write_manifest(con: duckdb.DuckDBPyConnection, kind: str, accounts: list[FileAccount]) -> dict[str, int]:
    """Replace the kind's load_manifest rows; return the totals (for the asset's metadata)."""
    con.execute("DELETE FROM load_manifest WHERE kind = ?", [kind])
    if accounts:  # one insert from a frame: executemany costs milliseconds per row in DuckDB
        rows = pl.DataFrame(
            {
                "kind": [kind] * len(accounts),
                "file": [str(a.file.path) for a in accounts],
                "sha256": [a.file.sha256 for a in accounts],
                "format": [a.format for a in accounts],
                "n_bytes": [a.file.n_bytes for a in accounts],
                "rows_read": [a.rows_read for a in accounts],
                "rows_loaded": [a.rows_loaded for a in accounts],
                "rows_quarantined": [a.rows_quarantined for a in accounts],
                "rows_fallback_decoded": [a.rows_fallback_decoded for a in accounts],
                "status": [a.status for a in accounts],
                "error": [a.error for a in accounts],
            },
            schema_overrides={"sha256": pl.String, "error": pl.String, "n_bytes": pl.Int64},
        )
        con.register("_manifest", rows.to_arrow())
        con.execute(f"INSERT INTO load_manifest ({', '.join(rows.columns)}) SELECT * FROM _manifest")
        con.unregister("_manifest")
    return {
        f"{kind}_files_rejected": sum(a.status == "rejected" for a in accounts),
        f"{kind}_rows_read": sum(a.rows_read for a in accounts),
    }


# ---- our CSV formats: explicit columns, every value text, malformed rows quarantined alone -------

#: a CSV line longer than this is quarantined on its own (``line_too_long``)
CSV_MAX_LINE_BYTES = 2 * 1024 * 1024
_CSV_REJECT_REASONS = {
    "MISSING COLUMNS": "wrong_field_count",
    "TOO MANY COLUMNS": "wrong_field_count",
    "INVALID ENCODING": "bad_encoding",
    "LINE SIZE OVER MAXIMUM": "line_too_long",
}


@dataclass
class CsvRead:
    """One CSV file appended to a table (see :func:`read_csv_file`): rows read, the malformed rows
    (quarantine frame, with their physical line), and what maps a good row to its line."""

    rows_read: int
    rejects: pl.DataFrame  # quarantine columns
    first_rowid: int | None  # rowid of the file's first good row in the table
    reject_lines: list[int]
    lines_exact: bool  # every record is one line (no blank lines, no quoted newlines)

    def line_of(self, rowid: int) -> int | None:
        """The physical line of the good row stored at ``rowid``: the k-th good row sits after the
        rejects r_i with r_i - 1 - i < k (i = 1, 2, ...). None when records do not map onto lines."""
        if not self.lines_exact or self.first_rowid is None:
            return None
        k = rowid - self.first_rowid + 1
        before = sum(1 for i, r in enumerate(self.reject_lines, start=1) if r - 1 - i < k)
        return k + 1 + before


def csv_header(f: InboxFile, required: list[str]) -> list[str]:
    """The header's column names; FileRejected when the file is empty, undecodable or lacks a column."""
    if f.n_bytes == 0:
        raise FileRejected("empty_file", "0 bytes")
    with f.path.open("rb") as fh:
        first = fh.readline(CSV_MAX_LINE_BYTES + 1)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected("bad_encoding", f"header is not UTF-8 (byte {exc.start})") from None
    lines = text.splitlines()
    try:
        header = next(csv.reader(lines[:1]), [])
    except csv.Error as exc:
        raise FileRejected("bad_header", f"the header is not a CSV line ({exc})") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise FileRejected("empty_file", "no header line")
    missing = [c for c in required if c not in header]
    if missing:
        raise FileRejected("missing_columns", f"missing columns {missing} (see docs/inbox-format.md)")
    if len(set(header)) != len(header) or not all(header):
        raise FileRejected("bad_header", "blank or repeated column names in the header")
    return header


def _count_lines(path: Path, n_bytes: int) -> int:
    if n_bytes == 0:
        return 0
    n, last = 0, b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 23), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def read_csv_file(
    con: duckdb.DuckDBPyConnection, f: InboxFile, columns: list[str], table: str, *, optional: tuple = ()
) -> CsvRead:
    """Append one of our CSV files to ``table`` (columns ``columns`` as text, then ``_file``):
    ``columns`` must all be in the header except those in ``optional`` (filled with null).

    DuckDB's reader with the header's names, all VARCHAR, ``auto_detect = false`` (comma,
    double quote, RFC 4180 escaping: no sniffing) and ``store_rejects``: a row with a wrong
    field count, undecodable bytes or over CSV_MAX_LINE_BYTES lands in the rejects table with
    its line; its raw text is not kept (identifier positions are unknown in a malformed row).
    The table's rowids keep file order (insertion order is preserved), so a good row's line
    is recovered with :meth:`CsvRead.line_of` for the few rows that need one.
    """
    header = csv_header(f, [c for c in columns if c not in optional])
    spec = "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for c in header) + "}"
    errors, scans = f"{table}_rej_errors", f"{table}_rej_scans"
    select = ", ".join(f'"{c}"' if c in header else f'NULL AS "{c}"' for c in columns)
    before = con.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    try:
        con.execute(
            f"""INSERT INTO {table}
            SELECT {select}, ?::VARCHAR FROM read_csv(?, columns = {spec}, header = true, auto_detect = false,
                delim = ',', quote = '"', escape = '"', store_rejects = true, rejects_table = '{errors}',
                rejects_scan = '{scans}', max_line_size = {CSV_MAX_LINE_BYTES})""",
            [str(f.path), str(f.path)],
        )
        rejects = con.sql(
            f"SELECT line, error_type::VARCHAR AS error_type, error_message FROM {errors} ORDER BY line"
        ).pl()
    except duckdb.Error as exc:
        raise FileRejected("unreadable_csv", safe_error(exc)) from None
    finally:
        con.execute(f"DROP TABLE IF EXISTS {errors}")
        con.execute(f"DROP TABLE IF EXISTS {scans}")
    # several errors can be reported for one line: one quarantine row per line
    rejects = rejects.group_by("line", maintain_order=True).first()
    first, last, good = con.execute(
        f"SELECT min(rowid), max(rowid), count(*) FROM {table} WHERE rowid > ?", [-1 if before is None else before]
    ).fetchone()
    q = quarantine_frame(
        rejects.select(
            pl.lit(str(f.path)).alias("source_file"),
            pl.col("line").cast(pl.Int64),
            pl.lit(None, pl.String).alias("record_key"),
            pl.col("error_type").replace_strict(_CSV_REJECT_REASONS, default="malformed_row").alias("reason"),
            pl.format(
                "line {}: {}",
                pl.col("line"),
                pl.col("error_message").str.replace(r"(?s)Actual Size.*$", "").str.slice(0, 120),
            ).alias("detail"),
        )
    )
    return CsvRead(
        rows_read=good + rejects.height,
        rejects=q,
        first_rowid=first,
        reject_lines=rejects["line"].cast(pl.Int64).to_list(),
        lines_exact=_count_lines(f.path, f.n_bytes) == 1 + good + rejects.height,
    )


# ---- Parquet ------------------------------------------------------------------------------------


def read_parquet_file(f: InboxFile, columns: list[str]) -> pl.DataFrame:
    """One Parquet file, the named columns only; FileRejected when empty, corrupt or lacking a column."""
    if f.n_bytes == 0:
        raise FileRejected("empty_file", "0 bytes")
    try:
        schema = pl.read_parquet_schema(f.path)
    except Exception as exc:  # polars/arrow raise several types for a corrupt footer
        raise FileRejected("corrupt_parquet", safe_error(exc)) from None
    missing = [c for c in columns if c not in schema]
    if missing:
        raise FileRejected("missing_columns", f"missing columns {missing} (see docs/inbox-format.md)")
    try:
        return pl.read_parquet(f.path, columns=columns)
    except Exception as exc:
        raise FileRejected("corrupt_parquet", safe_error(exc)) from None


def read_typed_parquet(
    files: list[InboxFile], types: dict[str, pl.DataType], prepare=None
) -> tuple[pl.DataFrame, list[FileAccount], list[pl.DataFrame]]:
    """Every Parquet file of one input, accounted for: (rows cast to ``types`` with ``_file``, ``_row`` and
    ``_bad_type`` — a value present but not castable — , one account per file, file-level quarantine frames).

    A file :func:`read_parquet_file` rejects is quarantined whole; ``prepare`` (frame -> frame) normalises a
    file's columns before the cast (e.g. time zones)."""
    columns = list(types)
    parts, accounts, rejected = [], [], []
    for f in files:
        acc = FileAccount(f, "parquet")
        accounts.append(acc)
        try:
            frame = read_parquet_file(f, columns)
        except FileRejected as exc:
            acc.error = f"{exc.reason}: {exc.detail}"
            rejected.append(file_quarantine(f, exc))
            continue
        acc.rows_read = frame.height
        if prepare is not None:
            frame = prepare(frame)
        cast = frame.select(pl.col(c).cast(t, strict=False) for c, t in types.items())
        bad = pl.any_horizontal(frame[c].is_not_null() & cast[c].is_null() for c in columns)
        parts.append(
            cast.with_columns(
                pl.lit(str(f.path)).alias("_file"),
                pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_row"),
                bad.alias("_bad_type"),
            )
        )
    schema = {**types, "_file": pl.String, "_row": pl.Int64, "_bad_type": pl.Boolean}
    return (pl.concat(parts) if parts else pl.DataFrame(schema=schema)), accounts, rejected

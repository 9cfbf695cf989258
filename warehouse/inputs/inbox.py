"""The inbox on disk: which files feed which table, their hashes, and replace-style writes.

Every loader reads *all* files of its kind and replaces its tables inside one transaction,
so re-running a load is idempotent by construction (nothing is appended twice) and a file
re-delivered with corrections simply wins. Keys are de-duplicated with "last file wins".
"""

from __future__ import annotations

import hashlib
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
            "INSERT INTO quarantine (stage, source_file, record_key, reason, detail, raw) "
            "SELECT ?, source_file, record_key, reason, detail, raw FROM _q",
            [stage],
        )
        con.unregister("_q")
    return frame.height

"""Delimited text into DuckDB temp tables, with unreadable lines kept for the quarantine.

DuckDB's ``read_csv(..., store_rejects=true)`` keeps going past a malformed line and records
it (line number, raw text, error) in a rejects table; those become quarantine rows instead of
either stopping the load or vanishing. Column names are lower-cased (FAERS headers vary in
case between quarters) without DuckDB's ``normalize_names``, which would rename ``case``.

**Encodings.** Files are UTF-8 (a BOM is allowed). A file with bytes that are not UTF-8 is
decoded line by line: UTF-8 where the line is valid, else Windows-1252 (VAERS free text and
old FAERS quarters carry cp1252 punctuation such as 0x92 ’ and 0x96 –; cp1252 is a superset of
Latin-1 for printable characters), else Latin-1 (the five bytes cp1252 leaves undefined). The
decoded copy is what DuckDB reads; the number of lines decoded each way is reported per file
(``encoding_fallbacks`` in the ingest counts).
"""

from __future__ import annotations

import codecs
import itertools
import tempfile
from pathlib import Path

import duckdb

from warehouse.inputs.regulator import IngestError, InputFile, sql_str

_CHUNK = 1 << 24

_counter = itertools.count()


def read_delimited(
    con: duckdb.DuckDBPyConnection,
    files: list[InputFile],
    table: str,
    *,
    delim: str,
    quote: str,
    fallbacks: dict | None = None,
    keep: frozenset[str] | None = None,
) -> int:
    """Create TEMP ``table`` (all VARCHAR, lower-case columns, plus ``_file`` = lineage name).

    ``keep``: when given, only the columns whose lower-cased name is in it are stored (the reader
    uses no other; DuckDB then does not materialise the rest). Every line is still parsed, so
    unparsable lines are found whichever columns are kept.

    Several files (e.g. quarters) are stacked by column name. Lines DuckDB cannot parse go to
    ``stg_quarantine`` (reason ``unparsable_line``). Non-UTF-8 lines are decoded as cp1252, else
    Latin-1 (module docstring); ``fallbacks[file name]`` receives ``{"cp1252": n, "latin-1": n}``
    when any line needed it. A file DuckDB cannot read at all raises :class:`IngestError` naming it.
    Returns the number of rows read.
    """
    parts = []
    for f in files:
        part = f"{table}_{next(_counter)}"
        with _utf8(f) as (local, counts):
            try:
                _read_one(con, f, local, part, delim=delim, quote=quote, keep=keep)
            except duckdb.Error as exc:
                raise IngestError(f"{f.name}: cannot read as a {delim!r}-delimited file ({_one_line(exc)})") from None
        if counts and fallbacks is not None:
            fallbacks[f.name] = counts
        parts.append(part)
    con.execute(f"DROP TABLE IF EXISTS {table}")
    if len(parts) == 1:
        con.execute(f"ALTER TABLE {parts[0]} RENAME TO {table}")
    else:
        con.execute(f"CREATE TEMP TABLE {table} AS " + " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts))
        for p in parts:
            con.execute(f"DROP TABLE {p}")
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


class _utf8:
    """Context manager: (path DuckDB should read, fallback counts or {}). UTF-8 files are read in
    place; others get a decoded UTF-8 copy in a temp file, removed on exit."""

    def __init__(self, f: InputFile):
        self.f = f
        self.tmp: Path | None = None

    def __enter__(self) -> tuple[Path, dict]:
        if _is_utf8(self.f.local):
            return self.f.local, {}
        counts = {"cp1252": 0, "latin-1": 0}
        fd, name = tempfile.mkstemp(prefix="pvtrace_decoded_", suffix=".csv")
        self.tmp = Path(name)
        with open(fd, "w", encoding="utf-8", newline="") as out, open(self.f.local, "rb") as src:
            for line in src:
                try:
                    out.write(line.decode("utf-8"))
                    continue
                except UnicodeDecodeError:
                    pass
                try:
                    out.write(line.decode("cp1252"))
                    counts["cp1252"] += 1
                except UnicodeDecodeError:
                    out.write(line.decode("latin-1"))
                    counts["latin-1"] += 1
        return self.tmp, counts

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as fh:
        try:
            while chunk := fh.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _read_one(
    con: duckdb.DuckDBPyConnection,
    f: InputFile,
    local: Path,
    table: str,
    *,
    delim: str,
    quote: str,
    keep: frozenset[str] | None = None,
) -> None:
    rej, scan = f"{table}_rej", f"{table}_rejscan"
    escape = "''" if quote == "" else sql_str(quote)
    source = (
        f"read_csv({sql_str(local)}, delim={sql_str(delim)}, header=true, all_varchar=true, "
        f"quote={sql_str(quote)}, escape={escape}, null_padding=true, encoding='utf-8'"
    )
    # names first (the sniffer only), then one pass that lower-cases them and adds the lineage
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source})").fetchall()]
    select = ", ".join(f'"{c}" AS "{c.strip().lower()}"' for c in columns if keep is None or c.strip().lower() in keep)
    select = f"{select}, " if select else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT {select}{sql_str(f.name)} AS _file
        FROM {source}, store_rejects=true, rejects_table={sql_str(rej)}, rejects_scan={sql_str(scan)})"""
    )
    con.execute(
        f"""INSERT INTO stg_quarantine
        SELECT ?, 'line ' || line, 'unparsable_line', error_type || ': ' || error_message, left(csv_line, 4000)
        FROM {rej}""",
        [f.name],
    )
    con.execute(f"DROP TABLE IF EXISTS {rej}")
    con.execute(f"DROP TABLE IF EXISTS {scan}")


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return any(r[0] == column for r in con.execute(f"DESCRIBE {table}").fetchall())

"""Delimited text into DuckDB temp tables, with unreadable lines kept for the quarantine.

DuckDB's ``read_csv(..., store_rejects=true)`` keeps going past a malformed line and records
it (line number, raw text, error) in a rejects table; those become quarantine rows instead of
either stopping the load or vanishing. Column names are lower-cased (FAERS headers vary in
case between quarters) without DuckDB's ``normalize_names``, which would rename ``case``.
"""

from __future__ import annotations

import itertools

import duckdb

from warehouse.inputs.regulator import InputFile, sql_str

_counter = itertools.count()


def read_delimited(
    con: duckdb.DuckDBPyConnection,
    files: list[InputFile],
    table: str,
    *,
    delim: str,
    quote: str,
    encoding: str = "utf-8",
) -> int:
    """Create TEMP ``table`` (all VARCHAR, lower-case columns, plus ``_file`` = lineage name).

    Several files (e.g. quarters) are stacked by column name. Lines DuckDB cannot parse go to
    ``stg_quarantine`` (reason ``unparsable_line``). A file that is not valid UTF-8 is re-read
    as Latin-1 (VAERS is Latin-1; old FAERS quarters too). Returns the number of rows read.
    """
    parts = []
    for f in files:
        part = f"{table}_{next(_counter)}"
        _read_one(con, f, part, delim=delim, quote=quote, encoding=encoding)
        parts.append(part)
    con.execute(f"DROP TABLE IF EXISTS {table}")
    if len(parts) == 1:
        con.execute(f"ALTER TABLE {parts[0]} RENAME TO {table}")
    else:
        con.execute(f"CREATE TEMP TABLE {table} AS " + " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts))
        for p in parts:
            con.execute(f"DROP TABLE {p}")
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _read_one(
    con: duckdb.DuckDBPyConnection, f: InputFile, table: str, *, delim: str, quote: str, encoding: str
) -> None:
    rej, scan = f"{table}_rej", f"{table}_rejscan"
    escape = "''" if quote == "" else sql_str(quote)

    def source(enc: str) -> str:
        return (
            f"read_csv({sql_str(f.local)}, delim={sql_str(delim)}, header=true, all_varchar=true, "
            f"quote={sql_str(quote)}, escape={escape}, null_padding=true, encoding={sql_str(enc)}"
        )

    def scan_into(enc: str) -> None:
        # names first (the sniffer only), then one pass that lower-cases them and adds the lineage
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source(enc)})").fetchall()]
        select = ", ".join(f'"{c}" AS "{c.strip().lower()}"' for c in columns)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT {select}, {sql_str(f.name)} AS _file
            FROM {source(enc)}, store_rejects=true, rejects_table={sql_str(rej)}, rejects_scan={sql_str(scan)})"""
        )

    scan_into(encoding)
    if encoding != "latin-1":
        (bad_unicode,) = con.execute(f"SELECT count(*) FROM {rej} WHERE error_type = 'INVALID UNICODE'").fetchone()
        if bad_unicode:
            con.execute(f"DROP TABLE IF EXISTS {rej}")
            con.execute(f"DROP TABLE IF EXISTS {scan}")
            scan_into("latin-1")
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

"""Load a MedDRA release (ASCII distribution files) into the warehouse (issue 17).

MedDRA ships each release and language as ``$``-delimited text files, one record a line, every field followed
by ``$`` (so a line ends in ``$``), CRLF line ends; English and Western European languages in an extended-ASCII
code page, the other languages in UTF-8. Columns per file as listed in MedDRA's "Distribution File Format"
document ([M]: checked against public loaders' column names, not against a licensed release here):

=================  ===========================================================================================
llt.asc            llt_code, llt_name, pt_code, llt_whoart_code, llt_harts_code, llt_costart_sym, llt_icd9_code,
                   llt_icd9cm_code, llt_icd10_code, llt_currency (Y/N), llt_jart_code
pt.asc             pt_code, pt_name, null_field, pt_soc_code (primary SOC), pt_whoart_code, pt_harts_code,
                   pt_costart_sym, pt_icd9_code, pt_icd9cm_code, pt_icd10_code, pt_jart_code
hlt.asc, hlgt.asc  code, name, whoart, harts, costart, icd9, icd9cm, icd10, jart
soc.asc            soc_code, soc_name, soc_abbrev, whoart, harts, costart, icd9, icd9cm, icd10, jart
hlt_pt.asc         hlt_code, pt_code          hlgt_hlt.asc  hlgt_code, hlt_code      soc_hlgt.asc  soc_code, hlgt_code
mdhier.asc         pt_code, hlt_code, hlgt_code, soc_code, pt_name, hlt_name, hlgt_name, soc_name, soc_abbrev,
                   null_field, pt_soc_code, primary_soc_fg (Y/N)
smq_list.asc       smq_code, smq_name, smq_level, smq_description, smq_source, smq_note, MedDRA_version, status,
                   smq_algorithm
smq_content.asc    smq_code, term_code, term_level (4 PT, 5 LLT, 0 a sub-SMQ), term_scope (1 broad, 2 narrow,
                   0 sub-SMQ), term_category, term_weight, term_status (A/I), term_addition_version,
                   term_last_modified_version
meddra_release.asc version, language, ...
=================  ===========================================================================================

Every release is kept under its (version, language): several side by side, a re-load of the same one replaces
it. A line that cannot be read (wrong field count, a non-numeric code, an LLT whose PT is not in pt.asc, a
hierarchy row naming an unknown term) goes to ``quarantine`` (stage ``meddra``) with the reason; the counts say
how many rows were read, loaded and quarantined per file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

# file -> (columns kept: (name, field index)), number of fields, integer columns)
_FILES: dict[str, tuple[dict[str, int], int, tuple[str, ...]]] = {
    "soc.asc": ({"soc_code": 0, "soc_name": 1, "soc_abbrev": 2}, 10, ("soc_code",)),
    "hlgt.asc": ({"hlgt_code": 0, "hlgt_name": 1}, 9, ("hlgt_code",)),
    "hlt.asc": ({"hlt_code": 0, "hlt_name": 1}, 9, ("hlt_code",)),
    "pt.asc": ({"pt_code": 0, "pt_name": 1, "pt_soc_code": 3}, 11, ("pt_code", "pt_soc_code")),
    "llt.asc": ({"llt_code": 0, "llt_name": 1, "pt_code": 2, "llt_currency": 9}, 11, ("llt_code", "pt_code")),
    "soc_hlgt.asc": ({"soc_code": 0, "hlgt_code": 1}, 2, ("soc_code", "hlgt_code")),
    "hlgt_hlt.asc": ({"hlgt_code": 0, "hlt_code": 1}, 2, ("hlgt_code", "hlt_code")),
    "hlt_pt.asc": ({"hlt_code": 0, "pt_code": 1}, 2, ("hlt_code", "pt_code")),
    "mdhier.asc": (
        {"pt_code": 0, "hlt_code": 1, "hlgt_code": 2, "soc_code": 3, "primary_soc_fg": 11},
        12,
        ("pt_code", "hlt_code", "hlgt_code", "soc_code"),
    ),
    "smq_list.asc": (
        {"smq_code": 0, "smq_name": 1, "smq_level": 2, "smq_status": 7, "smq_algorithm": 8},
        9,
        ("smq_code", "smq_level"),
    ),
    "smq_content.asc": (
        {"smq_code": 0, "term_code": 1, "term_level": 2, "term_scope": 3, "term_status": 6},
        9,
        ("smq_code", "term_code", "term_level", "term_scope"),
    ),
}
REQUIRED = (
    "soc.asc",
    "hlgt.asc",
    "hlt.asc",
    "pt.asc",
    "llt.asc",
    "soc_hlgt.asc",
    "hlgt_hlt.asc",
    "hlt_pt.asc",
    "mdhier.asc",
)
LANGUAGE_CODES = {"english": "en", "chinese": "zh", "japanese": "ja"}  # others are kept as written, lower case


class MeddraLoadError(ValueError):
    """The folder is not a MedDRA ASCII release (a required file is missing or no version can be told)."""


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # English / Western European releases: extended ASCII
        text = raw.decode("cp1252", errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def _split(line: str, n_fields: int) -> list[str] | None:
    fields = line.split("$")
    if len(fields) == n_fields + 1 and fields[-1] == "":
        fields = fields[:-1]
    return fields if len(fields) == n_fields else None


def _find(folder: Path, name: str) -> Path | None:
    """The file in the folder or its MedAscii/ascii-NNN subfolder, any letter case."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name.lower() == name:
            return p
    return None


def release_of(folder: Path) -> tuple[str, str]:
    """(version, language code) from ``meddra_release.asc``."""
    p = _find(folder, "meddra_release.asc")
    if p is None:
        raise MeddraLoadError(f"{folder}: no meddra_release.asc; give --version and --language")
    fields = _read_lines(p)[0].split("$")
    if len(fields) < 2 or not fields[0].strip():
        raise MeddraLoadError(f"{p}: cannot read the version and language from {fields[:2]!r}")
    lang = fields[1].strip()
    return fields[0].strip(), LANGUAGE_CODES.get(lang.lower(), lang.lower())


def _parse(path: Path, spec) -> tuple[pl.DataFrame, list[tuple[str, str, str]]]:
    cols, n_fields, ints = spec
    good: dict[str, list] = {c: [] for c in cols}
    bad: list[tuple[str, str, str]] = []  # (record key, reason, raw line)
    for i, line in enumerate(_read_lines(path), start=1):
        fields = _split(line, n_fields)
        if fields is None:
            bad.append((f"line {i}", f"expected {n_fields} $-delimited fields, found {len(line.split('$'))}", line))
            continue
        values = {c: fields[j].strip() for c, j in cols.items()}
        try:
            for c in ints:
                values[c] = int(values[c])
        except ValueError:
            bad.append((f"line {i}", f"non-numeric code in {c}: {values[c]!r}", line))
            continue
        for c in cols:
            good[c].append(values[c])
    schema = {c: (pl.Int64 if c in ints else pl.Utf8) for c in cols}
    return pl.DataFrame(good, schema=schema), bad


def load_release(
    con: duckdb.DuckDBPyConnection, folder: str | Path, *, version: str | None = None, language: str | None = None
) -> dict:
    """Load one MedDRA ASCII release folder; returns counts per file (read, loaded, quarantined).

    Re-loading the same (version, language) replaces it; other releases stay."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MeddraLoadError(f"{folder}: not a folder")
    missing = [f for f in REQUIRED if _find(folder, f) is None]
    if missing:
        raise MeddraLoadError(f"{folder}: not a MedDRA ASCII release, missing {', '.join(missing)}")
    if version is None or language is None:
        v, lang = release_of(folder)
        version, language = version or v, language or lang
    frames: dict[str, pl.DataFrame] = {}
    quarantine: list[tuple[str, str, str, str]] = []
    counts: dict[str, dict[str, int]] = {}
    for name, spec in _FILES.items():
        path = _find(folder, name)
        if path is None:  # SMQ files are optional (not every licence includes them)
            continue
        df, bad = _parse(path, spec)
        frames[name] = df
        quarantine += [(str(path.name), k, r, raw) for k, r, raw in bad]
        counts[name] = {"read": df.height + len(bad), "quarantined": len(bad)}

    def drop_orphans(name: str, col: str, known: pl.Series, what: str) -> None:
        df = frames.get(name)
        if df is None:
            return
        orphan = ~df[col].is_in(known.implode()) if df.height else pl.Series([], dtype=pl.Boolean)
        for row in df.filter(orphan).iter_rows(named=True):
            quarantine.append((name, f"{col} {row[col]}", f"{col} {row[col]} is not in {what}", str(row)))
            counts[name]["quarantined"] += 1
        frames[name] = df.filter(~orphan)

    pts, hlts, hlgts, socs = (
        frames[f][c]
        for f, c in (("pt.asc", "pt_code"), ("hlt.asc", "hlt_code"), ("hlgt.asc", "hlgt_code"), ("soc.asc", "soc_code"))
    )
    drop_orphans("llt.asc", "pt_code", pts, "pt.asc")
    drop_orphans("pt.asc", "pt_soc_code", socs, "soc.asc")
    for f, pairs in (
        ("hlt_pt.asc", (("hlt_code", hlts, "hlt.asc"), ("pt_code", pts, "pt.asc"))),
        ("hlgt_hlt.asc", (("hlgt_code", hlgts, "hlgt.asc"), ("hlt_code", hlts, "hlt.asc"))),
        ("soc_hlgt.asc", (("soc_code", socs, "soc.asc"), ("hlgt_code", hlgts, "hlgt.asc"))),
        (
            "mdhier.asc",
            (
                ("pt_code", pts, "pt.asc"),
                ("hlt_code", hlts, "hlt.asc"),
                ("hlgt_code", hlgts, "hlgt.asc"),
                ("soc_code", socs, "soc.asc"),
            ),
        ),
    ):
        for col, known, what in pairs:
            drop_orphans(f, col, known, what)
    if "smq_content.asc" in frames and "smq_list.asc" in frames:
        drop_orphans("smq_content.asc", "smq_code", frames["smq_list.asc"]["smq_code"], "smq_list.asc")

    key = [version, language]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in (
            "meddra_term",
            "meddra_llt",
            "meddra_hierarchy",
            "meddra_smq",
            "meddra_smq_term",
            "meddra_release",
        ):
            con.execute(f"DELETE FROM {table} WHERE meddra_version = ? AND language = ?", key)
        con.execute("DELETE FROM quarantine WHERE stage = 'meddra' AND record_key LIKE ?", [f"{version}/{language}/%"])
        terms = pl.concat(
            [
                frames[f].select(level=pl.lit(lvl), code=pl.col(f"{lvl}_code"), name=pl.col(f"{lvl}_name"))
                for f, lvl in (("soc.asc", "soc"), ("hlgt.asc", "hlgt"), ("hlt.asc", "hlt"), ("pt.asc", "pt"))
            ]
        ).with_columns(meddra_version=pl.lit(version), language=pl.lit(language))
        _insert(con, "meddra_term", terms)
        llt = (
            frames["llt.asc"]
            .select("llt_code", "llt_name", "pt_code", current=pl.col("llt_currency").str.to_uppercase() == "Y")
            .with_columns(meddra_version=pl.lit(version), language=pl.lit(language))
        )
        _insert(con, "meddra_llt", llt)
        hier = (
            frames["mdhier.asc"]
            .select(
                "pt_code",
                "hlt_code",
                "hlgt_code",
                "soc_code",
                primary_soc=pl.col("primary_soc_fg").str.to_uppercase() == "Y",
            )
            .with_columns(meddra_version=pl.lit(version), language=pl.lit(language))
        )
        _insert(con, "meddra_hierarchy", hier)
        if "smq_list.asc" in frames:
            smq = frames["smq_list.asc"].with_columns(meddra_version=pl.lit(version), language=pl.lit(language))
            _insert(con, "meddra_smq", smq)
        if "smq_content.asc" in frames:
            smqt = frames["smq_content.asc"].with_columns(meddra_version=pl.lit(version), language=pl.lit(language))
            _insert(con, "meddra_smq_term", smqt)
        if quarantine:
            con.executemany(
                "INSERT INTO quarantine (stage, source_file, record_key, reason, raw) VALUES ('meddra', ?, ?, ?, ?)",
                [(f, f"{version}/{language}/{k}", r, raw) for f, k, r, raw in quarantine],
            )
        con.execute(
            "INSERT INTO meddra_release (meddra_version, language, source) VALUES (?, ?, ?)",
            [version, language, folder.name],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    for name, df in frames.items():
        counts[name]["loaded"] = df.height
    return {"meddra_version": version, "language": language, "files": counts}


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    con.register("_meddra_rows", df)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _meddra_rows")
    finally:
        con.unregister("_meddra_rows")


def releases(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Loaded (version, language) pairs, newest load first."""
    return [
        tuple(r)
        for r in con.execute("SELECT meddra_version, language FROM meddra_release ORDER BY loaded_at DESC").fetchall()
    ]

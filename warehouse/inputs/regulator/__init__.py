"""Readers of public adverse-event formats, one module per format.

Each reader *stages* one input (a file, a zip or a folder) into temporary DuckDB tables of
one common shape; :mod:`warehouse.inputs.regulator.ingest` then validates, normalises lots and drug names and
writes the case tables in one transaction. The staged shape:

``stg_case``      case_id, version, received_on, source, reporter_qualification, country,
                  age_years, sex, serious, seriousness, outcome, narrative, onset_date,
                  source_file
``stg_drug``      case_id, version, drug_seq, role, product_name_reported,
                  ingredient_reported, ingredient_method, lot_raw, start_date
``stg_reaction``  case_id, version, reaction_seq, pt, soc, onset_date, meddra_code,
                  meddra_version
``stg_quarantine`` source_file, record_key, reason, detail, raw
``stg_deleted``   case_id, source_file  (cases the source says were deleted or nullified)

``_doc`` (case, drug and reaction tables; optional) numbers the source document a row came
from (one ICSR, one openFDA report) in reading order: when one input carries the same case
version twice, the last document wins and the earlier one is quarantined *with* its drugs and
reactions. FAERS numbers each quarter (a report repeated in a later quarter wins); VAERS
resolves repeats itself and leaves it null.

Case ids carry a format prefix (``FAERS-``, ``AERS-``, ``VAERS-``, ``E2B-``, ``OPENFDA-``) so
that cases from different sources never collide and a second file of the same source adds
to, or updates, the first (see :mod:`warehouse.inputs.regulator.ingest`).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

FORMATS = ("faers", "vaers", "e2b", "openfda")


class IngestError(ValueError):
    """Input that cannot be ingested at all (missing path, wrong format, no expected files)."""


@dataclass
class InputFile:
    """One readable file: ``local`` on disk (extracted when it came from a zip), ``name`` for lineage."""

    local: Path
    name: str  # "path/to/file" or "path/to/archive.zip!member"


@dataclass
class StageInfo:
    """What a reader wants the orchestrator to report beyond the counts."""

    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class InputSet:
    """A path (file, zip or folder) opened as a flat list of files; zips are extracted to a temp dir.

    Use as a context manager so extracted files are removed afterwards.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tmp: str | None = None
        self.files: list[InputFile] = []
        self.inputs: list[Path] = []  # the files as given (zips, plain files) for ingested_file

    def __enter__(self) -> InputSet:
        if not self.path.exists():
            raise IngestError(f"input path {str(self.path)!r} does not exist")
        candidates = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
        for p in candidates:
            if zipfile.is_zipfile(p):
                self._extract(p)
            else:
                self.inputs.append(p)
                self.files.append(InputFile(p, str(p)))
        if not self.files:
            raise IngestError(f"no files found in {str(self.path)!r}")
        return self

    def _extract(self, archive: Path) -> None:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="pvtrace_ingest_")
        self.inputs.append(archive)
        target = Path(self._tmp) / f"z{len(self.inputs)}"
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    # never trust member paths: flatten to a safe relative path
                    rel = Path(*[part for part in Path(info.filename).parts if part not in ("..", "/", "\\")])
                    out = target / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    self.files.append(InputFile(out, f"{archive}!{info.filename}"))
        except zipfile.BadZipFile as exc:
            raise IngestError(f"{archive}: not a readable zip ({exc})") from None

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


# ---- staging tables ---------------------------------------------------------------------

STAGING_DDL = {
    "stg_case": """
        CREATE OR REPLACE TEMP TABLE stg_case (
            case_id VARCHAR, version INTEGER, received_on DATE, source VARCHAR,
            reporter_qualification VARCHAR, country VARCHAR, age_years DOUBLE, sex VARCHAR,
            serious BOOLEAN, seriousness VARCHAR[], outcome VARCHAR, narrative VARCHAR,
            onset_date DATE, source_file VARCHAR, _doc BIGINT, region VARCHAR)""",
    "stg_drug": """
        CREATE OR REPLACE TEMP TABLE stg_drug (
            case_id VARCHAR, version INTEGER, drug_seq INTEGER, role VARCHAR,
            product_name_reported VARCHAR, ingredient_reported VARCHAR, ingredient_method VARCHAR,
            lot_raw VARCHAR, start_date DATE, _doc BIGINT)""",
    "stg_reaction": """
        CREATE OR REPLACE TEMP TABLE stg_reaction (
            case_id VARCHAR, version INTEGER, reaction_seq INTEGER, pt VARCHAR, soc VARCHAR,
            onset_date DATE, meddra_code VARCHAR, meddra_version VARCHAR, _doc BIGINT)""",
    "stg_quarantine": """
        CREATE OR REPLACE TEMP TABLE stg_quarantine (
            source_file VARCHAR, record_key VARCHAR, reason VARCHAR, detail VARCHAR, raw VARCHAR)""",
    "stg_deleted": """
        CREATE OR REPLACE TEMP TABLE stg_deleted (case_id VARCHAR, source_file VARCHAR)""",
}

STAGING_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "stg_case": {
        "case_id": pl.String,
        "version": pl.Int32,
        "received_on": pl.Date,
        "source": pl.String,
        "reporter_qualification": pl.String,
        "country": pl.String,
        "age_years": pl.Float64,
        "sex": pl.String,
        "serious": pl.Boolean,
        "seriousness": pl.List(pl.String),
        "outcome": pl.String,
        "narrative": pl.String,
        "onset_date": pl.Date,
        "source_file": pl.String,
        "_doc": pl.Int64,
        "region": pl.String,
    },
    "stg_drug": {
        "case_id": pl.String,
        "version": pl.Int32,
        "drug_seq": pl.Int32,
        "role": pl.String,
        "product_name_reported": pl.String,
        "ingredient_reported": pl.String,
        "ingredient_method": pl.String,
        "lot_raw": pl.String,
        "start_date": pl.Date,
        "_doc": pl.Int64,
    },
    "stg_reaction": {
        "case_id": pl.String,
        "version": pl.Int32,
        "reaction_seq": pl.Int32,
        "pt": pl.String,
        "soc": pl.String,
        "onset_date": pl.Date,
        "meddra_code": pl.String,
        "meddra_version": pl.String,
        "_doc": pl.Int64,
    },
    "stg_quarantine": {
        "source_file": pl.String,
        "record_key": pl.String,
        "reason": pl.String,
        "detail": pl.String,
        "raw": pl.String,
    },
    "stg_deleted": {"case_id": pl.String, "source_file": pl.String},
}


def create_staging(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in STAGING_DDL.values():
        con.execute(ddl)


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> int:
    """Append Python rows (from the XML/JSON readers) to a staging table, columns by name."""
    if not rows:
        return 0
    schema = STAGING_SCHEMAS[table]
    frame = pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")
    con.register("_rows", frame.to_arrow())
    cols = ", ".join(schema)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows")
    con.unregister("_rows")
    return frame.height


def sql_str(value: str) -> str:
    """A SQL string literal (file paths go into read_csv, which takes no parameters there)."""
    return "'" + str(value).replace("'", "''") + "'"

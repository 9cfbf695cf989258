"""VAERS CSV (VAERSDATA + VAERSVAX + VAERSSYMPTOMS) → staging, and per-lot reporting counts.

Comma-separated, double-quoted; UTF-8, or Windows-1252 in the free text of some years (decoded
line by line, see :mod:`warehouse.inputs.regulator._csv`; the count is reported). Files are grouped by their name prefix
(``1990VAERSDATA.csv`` … → group ``1990``); a folder may hold several years. The current
35-column VAERSDATA layout and older ones (the 29-column 1990 file) are both read: columns a
layout lacks are simply null.

* Age: ``AGE_YRS`` as given (fractions of a year for infants: 0.2 = about 2 months), else the
  calculated ``CAGE_YR`` + ``CAGE_MO`` (CAGE_MO is the fraction of a year, ``.2``); region = ``STATE``.
* Case id ``VAERS-<VAERS_ID as an integer>`` (the 1990 files write ``025001``, later ones
  ``794156``); version 1 (VAERS publishes one row per report, no follow-up versions).
* Seriousness: DIED → death, L_THREAT → life_threatening, HOSPITAL/X_STAY →
  hospitalisation, DISABLE → disability, BIRTH_DEFECT → congenital_anomaly (ER/office visits
  are not serious criteria). Outcome: fatal if DIED, else RECOVD Y/N/U → recovered /
  not_recovered / unknown. Country ``US`` for the domestic yearly files (foreign reports come
  in VAERS's separate NonDomestic files, left without a country).
* VAERSVAX rows → case_drug, role suspect (every vaccine on a VAERS report is a suspect),
  product = VAX_NAME, ingredient = the vaccine type code (VAX_TYPE, e.g. ``hepb``, ``dtp``,
  mapping_method ``vaers_vax_type``), lot = VAX_LOT, start date = VAX_DATE.
* VAERSSYMPTOMS: SYMPTOM1..5 (+ SYMPTOMVERSION1..5 = MedDRA version) per row; a report with
  more than five symptoms continues on further rows, so reactions are unpivoted and numbered
  per report across rows.
* **A group without VAERSDATA** (``data/vaers/2019_partial``): cases are built from the ids in
  VAX and SYMPTOMS with unknown demographics and seriousness (null, not "not serious"), and
  ``received_on`` = 1 January of the file year (VAERS yearly files hold the reports received
  that year; the exact date is unknown). The ingest says so in ``warnings``.

:func:`vaers_lot_counts` gives **reporting counts per lot — numbers of reports, not rates**:
VAERS has no denominator (doses administered per lot are unknown), so a large count may only
mean a large lot. They are stored per source file in the ``vaers_lot_counts`` table.
"""

from __future__ import annotations

import re
from pathlib import PurePath

import duckdb
import polars as pl

from warehouse.inputs.inbox import sha256_of
from warehouse.inputs.regulator import IngestError, InputFile, InputSet, StageInfo
from warehouse.inputs.regulator._csv import has_column, read_delimited

_FILE_RE = re.compile(r"^(.*?)VAERS(DATA|VAX|SYMPTOMS)\.csv$", re.IGNORECASE)
MEASURE = "reporting count (number of reports; no exposure denominator, not a rate)"
DATA_COLUMNS = (
    "vaers_id",
    "recvdate",
    "state",
    "age_yrs",
    "cage_yr",
    "cage_mo",
    "sex",
    "symptom_text",
    "died",
    "l_threat",
    "hospital",
    "x_stay",
    "disable",
    "recovd",
    "vax_date",
    "onset_date",
    "birth_defect",
)


def classify(files: list[InputFile]) -> dict[str, dict[str, InputFile]]:
    groups: dict[str, dict[str, InputFile]] = {}
    for f in files:
        m = _FILE_RE.match(PurePath(f.local).name)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2).lower()] = f
    return groups


def _yes(col: str) -> str:
    return f"upper(trim(coalesce({col}, ''))) = 'Y'"


def _mdy(col: str) -> str:
    return f"try_strptime(trim({col}), '%m/%d/%Y')::DATE"


def stage(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> StageInfo:
    info = StageInfo()
    groups = classify(inputs.files)
    usable = {g: kinds for g, kinds in groups.items() if "vax" in kinds or "symptoms" in kinds}
    if not usable:
        raise IngestError(
            f"{inputs.path}: no VAERS files found (expected e.g. 1990VAERSDATA.csv, 1990VAERSVAX.csv, "
            f"1990VAERSSYMPTOMS.csv; found {', '.join(PurePath(f.local).name for f in inputs.files[:8])})"
        )
    con.execute("""CREATE OR REPLACE TEMP TABLE vaers_vax_rows (
        case_id VARCHAR, drug_seq INTEGER, vax_type VARCHAR, vax_manu VARCHAR, lot_raw VARCHAR, vax_file VARCHAR)""")
    for group, kinds in sorted(usable.items()):
        _stage_group(con, group, kinds, info)
    info.extra["vaers_groups"] = sorted(usable)
    return info


def _stage_group(con: duckdb.DuckDBPyConnection, group: str, kinds: dict[str, InputFile], info: StageInfo) -> None:
    label = group or "(no prefix)"
    for kind, f in kinds.items():
        read_delimited(
            con, [f], f"vaers_{kind}", delim=",", quote='"', fallbacks=info.extra.setdefault("encoding_fallbacks", {})
        )
    for kind in ("vax", "symptoms"):
        if kind not in kinds:
            con.execute(f"CREATE OR REPLACE TEMP TABLE vaers_{kind} (vaers_id VARCHAR, _file VARCHAR)")
    for col in ("vax_type", "vax_manu", "vax_lot", "vax_name"):
        if not has_column(con, "vaers_vax", col):
            con.execute(f"ALTER TABLE vaers_vax ADD COLUMN {col} VARCHAR")
    for k in range(1, 6):
        for col in (f"symptom{k}", f"symptomversion{k}"):
            if not has_column(con, "vaers_symptoms", col):
                con.execute(f"ALTER TABLE vaers_symptoms ADD COLUMN {col} VARCHAR")
    vid = "'VAERS-' || try_cast(trim(vaers_id) AS BIGINT)::VARCHAR"

    if "data" in kinds:
        for col in DATA_COLUMNS:
            if not has_column(con, "vaers_data", col):
                con.execute(f"ALTER TABLE vaers_data ADD COLUMN {col} VARCHAR")
        country = "NULL" if "nondomestic" in group.lower() else "'US'"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE vaers_case AS
            SELECT {vid} AS case_id, vaers_id, {_mdy("recvdate")} AS received_on,
                   {_mdy("onset_date")} AS onset_date, {_mdy("vax_date")} AS vax_date,
                   list_filter([CASE WHEN {_yes("died")} THEN 'death' END,
                                CASE WHEN {_yes("l_threat")} THEN 'life_threatening' END,
                                CASE WHEN {_yes("hospital")} OR {_yes("x_stay")} THEN 'hospitalisation' END,
                                CASE WHEN {_yes("disable")} THEN 'disability' END,
                                CASE WHEN {_yes("birth_defect")} THEN 'congenital_anomaly' END], x -> x IS NOT NULL)
                       AS seriousness,
                   CASE WHEN {_yes("died")} THEN 'fatal' WHEN upper(trim(recovd)) = 'Y' THEN 'recovered'
                        WHEN upper(trim(recovd)) = 'N' THEN 'not_recovered' WHEN upper(trim(recovd)) = 'U' THEN 'unknown'
                   END AS outcome,
                   coalesce(try_cast(age_yrs AS DOUBLE),
                            try_cast(cage_yr AS DOUBLE) + coalesce(try_cast(cage_mo AS DOUBLE), 0)) AS age_years,
                   CASE upper(trim(sex)) WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' END AS sex,
                   nullif(trim(symptom_text), '') AS narrative, {country} AS country,
                   nullif(upper(trim(state)), '') AS region, _file,
                   row_number() OVER (PARTITION BY {vid}) AS _n
            FROM vaers_data"""
        )
        con.execute(
            """INSERT INTO stg_quarantine
            SELECT _file, 'VAERS_ID ' || coalesce(vaers_id, '?'),
                   CASE WHEN case_id IS NULL THEN 'missing_case_key' WHEN _n > 1 THEN 'duplicate_case_version'
                        ELSE 'missing_received_date' END,
                   CASE WHEN case_id IS NULL THEN 'VAERS_ID is not a number' WHEN _n > 1 THEN 'VAERS_ID twice in VAERSDATA'
                        ELSE 'RECVDATE is not a valid mm/dd/yyyy date' END, NULL
            FROM vaers_case WHERE case_id IS NULL OR _n > 1 OR received_on IS NULL"""
        )
        con.execute("DELETE FROM vaers_case WHERE case_id IS NULL OR _n > 1 OR received_on IS NULL")
        con.execute(
            """INSERT INTO stg_case
            SELECT case_id, 1, received_on, 'regulator', NULL, country,
                   CASE WHEN age_years BETWEEN 0 AND 130 THEN age_years END, sex,
                   len(seriousness) > 0, seriousness, outcome, narrative, onset_date, _file, NULL, region
            FROM vaers_case"""
        )
    else:
        year = re.search(r"(19|20)\d{2}", group)
        ids = f"SELECT {vid} AS case_id, _file FROM vaers_vax UNION ALL SELECT {vid}, _file FROM vaers_symptoms"
        if year is None:
            con.execute(
                f"""INSERT INTO stg_quarantine
                SELECT any_value(_file), case_id, 'missing_received_date',
                       'no VAERSDATA file and no year in the file name: received date unknown', NULL
                FROM ({ids}) WHERE case_id IS NOT NULL GROUP BY case_id"""
            )
            con.execute("CREATE OR REPLACE TEMP TABLE vaers_case (case_id VARCHAR, onset_date DATE, vax_date DATE)")
        else:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE vaers_case AS
                SELECT case_id, NULL::DATE AS onset_date, NULL::DATE AS vax_date, min(_file) AS _file
                FROM ({ids}) WHERE case_id IS NOT NULL GROUP BY case_id"""
            )
            con.execute(
                f"""INSERT INTO stg_case
                SELECT case_id, 1, make_date({int(year.group(0))}, 1, 1), 'regulator', NULL, NULL, NULL, NULL,
                       NULL, []::VARCHAR[], NULL, NULL, NULL, _file, NULL, NULL
                FROM vaers_case"""
            )
            (n,) = con.execute("SELECT count(*) FROM vaers_case").fetchone()
            info.warnings.append(
                f"VAERS {label}: no VAERSDATA file — {n:,} cases built from the VAX/SYMPTOMS ids with unknown age, sex, "
                f"seriousness and outcome; received_on set to {year.group(0)}-01-01 (the file year; exact date unknown)"
            )

    # ---- VAX → drugs ---------------------------------------------------------------------------
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE vaers_vax_k AS
        SELECT {vid} AS case_id, vaers_id, nullif(trim(vax_type), '') AS vax_type, nullif(trim(vax_manu), '') AS vax_manu,
               nullif(trim(vax_lot), '') AS vax_lot, nullif(trim(vax_name), '') AS vax_name, _file,
               row_number() OVER () AS _row
        FROM vaers_vax"""
    )
    con.execute(
        """INSERT INTO stg_quarantine
        SELECT v._file, 'VAERS_ID ' || coalesce(v.vaers_id, '?'),
               CASE WHEN c.case_id IS NULL THEN 'orphan_drug' ELSE 'missing_drug_name' END,
               CASE WHEN c.case_id IS NULL THEN 'VAERSVAX row whose VAERS_ID has no VAERSDATA row'
                    ELSE 'neither VAX_TYPE nor VAX_NAME' END,
               concat_ws(',', v.vaers_id, v.vax_type, v.vax_manu, v.vax_lot, v.vax_name)
        FROM vaers_vax_k v LEFT JOIN vaers_case c USING (case_id)
        WHERE c.case_id IS NULL OR (v.vax_type IS NULL AND v.vax_name IS NULL)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE vaers_vax_ok AS
        SELECT v.*, c.vax_date, row_number() OVER (PARTITION BY v.case_id ORDER BY v._row) AS drug_seq
        FROM vaers_vax_k v JOIN vaers_case c USING (case_id)
        WHERE NOT (v.vax_type IS NULL AND v.vax_name IS NULL)"""
    )
    con.execute(
        """INSERT INTO stg_drug
        SELECT case_id, 1, drug_seq, 'suspect', coalesce(vax_name, vax_type), vax_type,
               CASE WHEN vax_type IS NOT NULL THEN 'vaers_vax_type' END, vax_lot, vax_date, NULL
        FROM vaers_vax_ok"""
    )
    con.execute(
        """INSERT INTO vaers_vax_rows
        SELECT case_id, drug_seq, coalesce(vax_type, 'UNKNOWN'), coalesce(vax_manu, 'UNKNOWN'), vax_lot, _file
        FROM vaers_vax_ok"""
    )

    # ---- SYMPTOMS → reactions ------------------------------------------------------------------
    unpivot = " UNION ALL ".join(
        f"SELECT {vid} AS case_id, vaers_id, _file, _row, {k} AS pos, nullif(trim(symptom{k}), '') AS pt, "
        f"nullif(trim(symptomversion{k}), '') AS meddra_version FROM vaers_sym_k"
        for k in range(1, 6)
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE vaers_sym_k AS SELECT *, row_number() OVER () AS _row FROM vaers_symptoms"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE vaers_sym_long AS {unpivot}")
    con.execute(
        """INSERT INTO stg_quarantine
        SELECT any_value(s._file), 'VAERS_ID ' || coalesce(any_value(s.vaers_id), '?'),
               CASE WHEN any_value(c.case_id) IS NULL THEN 'orphan_reaction' ELSE 'missing_pt' END,
               CASE WHEN any_value(c.case_id) IS NULL THEN 'VAERSSYMPTOMS row whose VAERS_ID has no VAERSDATA row'
                    ELSE 'VAERSSYMPTOMS row without any symptom' END, NULL
        FROM vaers_sym_long s LEFT JOIN vaers_case c USING (case_id)
        GROUP BY s._row
        HAVING any_value(c.case_id) IS NULL OR count(s.pt) = 0"""
    )
    con.execute(
        """INSERT INTO stg_reaction
        SELECT s.case_id, 1, row_number() OVER (PARTITION BY s.case_id ORDER BY s._row, s.pos), s.pt, NULL,
               c.onset_date, NULL, s.meddra_version, NULL
        FROM vaers_sym_long s JOIN vaers_case c USING (case_id)
        WHERE s.pt IS NOT NULL"""
    )


def store_lot_counts(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> int:
    """Replace this input's rows of ``vaers_lot_counts`` (keyed by the VAX file's sha256); return rows."""
    files = con.execute("SELECT DISTINCT vax_file FROM vaers_vax_rows").fetchall()
    by_name = {f.name: f for f in inputs.files}
    shas = {name: sha256_of(by_name[name].local) for (name,) in files if name in by_name}
    con.register(
        "_shas",
        pl.DataFrame(
            {"vax_file": list(shas), "sha": list(shas.values())}, schema={"vax_file": pl.String, "sha": pl.String}
        ).to_arrow(),
    )
    con.execute("DELETE FROM vaers_lot_counts WHERE source_sha256 IN (SELECT sha FROM _shas)")
    con.execute(
        f"""INSERT INTO vaers_lot_counts
        SELECT s.sha, v.vax_file, v.vax_type, v.vax_manu, lot,
               count(DISTINCT v.case_id), count(DISTINCT v.case_id) FILTER (WHERE c.serious),
               count(DISTINCT v.case_id) FILTER (WHERE list_contains(c.seriousness, 'death')), '{MEASURE}'
        FROM vaers_vax_rows v
        JOIN stg_lot l ON l.lot_raw = v.lot_raw AND l.usable
        JOIN stg_case c USING (case_id)
        JOIN _shas s USING (vax_file),
        LATERAL (SELECT unnest(l.lots) AS lot)
        GROUP BY ALL"""
    )
    con.unregister("_shas")
    return con.execute(
        "SELECT count(*) FROM vaers_lot_counts WHERE source_sha256 IN (SELECT unnest(?))", [list(shas.values())]
    ).fetchone()[0]


def vaers_lot_counts(con: duckdb.DuckDBPyConnection, lot: str | None = None, *, min_reports: int = 1) -> pl.DataFrame:
    """VAERS reports per (vaccine type, manufacturer, normalised lot), summed over ingested files.

    **Counts without denominators**: numbers of reports, not rates — VAERS does not know how
    many doses of a lot were given. ``lot`` (normalised like every lot, e.g. ``"586A4"``) filters.
    """
    where = "WHERE lot = ?" if lot is not None else ""
    params = [lot] if lot is not None else []
    return con.execute(
        f"""SELECT vax_type, vax_manu, lot, sum(reports)::BIGINT AS reports, sum(serious_reports)::BIGINT AS serious_reports,
                   sum(deaths)::BIGINT AS deaths, any_value(measure) AS measure
        FROM vaers_lot_counts {where}
        GROUP BY vax_type, vax_manu, lot HAVING sum(reports) >= {int(min_reports)}
        ORDER BY reports DESC, vax_type, vax_manu, lot""",
        params,
    ).pl()

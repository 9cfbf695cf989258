"""FAERS quarterly ASCII extracts (current FAERS layout and the legacy AERS one) → staging.

Files are ``$``-delimited with a header row and no quoting; names vary in case
(``DEMO17Q2.txt``, ``demo04q1.txt``); one or several quarters may sit in a zip or a folder.

Each quarter (the ``yyQq`` in the file names) is staged on its own, so a folder may mix
layouts; when the same report comes in two quarters, the later quarter's copy wins (its rows
carry the quarter as ``_doc``). Column names are lower-cased and stripped (the 2012Q4 DEMO header
has `` rept_dt`` with a leading blank), then resolved per quarter by :data:`ALIASES`.

Sources. [ASC] FDA, "ASC_NTS.DOC" for the FAERS Quarterly Data Extract, last revised April 2015
(QDE 2014Q3): section C (data elements), section F "Legacy AERS (LAERS) vs. FDA AERS (FAERS) ASCII
Tag Comparison Tables", section G (revision history: "Modified field header from GNDR_COD to SEX",
PROD_AI/AUTH_NUM/LIT_REF/AGE_GRP/DRUG_REC_ACT added in the 2014Q3 extract). [FAQ] FDA, FAQs for the
FAERS QDE, July 2020 (ISR → PRIMARYID/CASEVERSION). [OBS] not in FDA's text: observed in FDA's files
and reported by public loaders of the full archive (a quarter-by-quarter "mess log" of a FAERS
loader; the faers R package renaming ``outc_cod``/``outc_code``), never seen by us in a real file.

===============  =============================  =====================================  ==========
concept          legacy AERS (2004Q1 – 2012Q3)  FAERS (2012Q4 on)                      source
===============  =============================  =====================================  ==========
report key       ``isr``                        ``primaryid``                          [ASC] F
case / version   ``case`` / the ISR             ``caseid`` / ``caseversion``           [ASC] F
sex              ``gndr_cod``                   ``gndr_cod`` to 2014Q2, ``sex`` from   [ASC] F, G
                                                2014Q3
outcome code     ``outc_cod``                   ``outc_cod``; ``outc_code`` in 2012Q4  [ASC] F; [OBS]
lot              ``lot_num``                    ``lot_num``; ``lot_nbr`` in 2012Q4     [ASC] F; [OBS]
ingredient       —                              ``prod_ai`` (2014Q3 on)                [ASC] C, G
THER drug seq    ``drug_seq``                   ``dsg_drug_seq``                       [ASC] F
country          ``reporter_country``           ``reporter_country``, ``occr_country`` [ASC] F
                 (late quarters)                (new)
literature ref   —                              ``lit_ref`` (2014Q3 on)                [ASC] G
===============  =============================  =====================================  ==========

Not confirmed and so no longer accepted: ``lot_no`` (an alias written from memory; no FDA text or
file shows it). Legacy files end every line with a ``$`` (one empty field more than named) [OBS].
Files named ``DEMO18Q1_new.txt`` (FDA re-issued 2018Q1) are read like ``DEMO18Q1.txt``; other
files in the extract (``ASC_NTS.pdf``, ``STAT*.txt``, ``INDI``) are ignored. Deleted-case lists
(from 2019Q1) have been named ``ADR19Q1DeletedCases.txt``, ``20Q4DeletedCases.txt``,
``DELETE21Q4.txt`` and ``AllDeletedCases.txt``, in a ``deleted``/``Deleted``/``DELETED`` folder [OBS]:
any ``.txt`` whose name contains ``delet`` or that sits in such a folder is read as one.

* Current layout (2012Q4 on): report key ``primaryid`` = caseid + caseversion; case id
  ``FAERS-<caseid>``, version ``caseversion``.
* Legacy AERS (≤ 2012Q3): report key ``isr``, case ``case``; case id ``AERS-<case>`` and
  version = the ISR number (FDA assigns ISRs in increasing order, so the highest ISR of a case
  is its latest report). Legacy case numbers are kept in their own namespace because an ISR is
  not comparable with a FAERS ``caseversion``.
* Seriousness from OUTC (DE death, LT life-threatening, HO hospitalisation, DS disability,
  CA congenital anomaly, RI required intervention, OT other serious); outcome ``fatal`` when DE.
* Report source RPSR ``LIT`` (or a DEMO ``lit_ref``) → source ``literature``; else ``regulator``.
* Drug role PS/SS → suspect, C → concomitant, I → interacting; ``prod_ai`` (current layout
  only) is the active ingredient as FDA coded it; ``lot_num`` the lot as reported; the THER
  start date of the same drug sequence when it is a full date.
* Deleted-case lists (above; one caseid per line) → ``stg_deleted``.

Quarantined, never dropped: unparsable lines, DEMO rows without a case id/version or a
received date (``fda_dt``), a second DEMO row for the same report, DRUG/REAC/OUTC rows whose
report key has no DEMO row, DRUG rows without a name or with an unknown role, REAC rows
without a PT, unknown OUTC codes.
"""

from __future__ import annotations

import re
from pathlib import PurePath

import duckdb

from warehouse.inputs.regulator import IngestError, InputFile, InputSet, StageInfo
from warehouse.inputs.regulator._csv import has_column, read_delimited

_TABLE_RE = re.compile(r"^(demo|drug|reac|outc|rpsr|ther|indi)(\d{2}q\d)(?:_new)?\.txt$", re.IGNORECASE)
_QUARTER_RE = re.compile(r"(\d{2})q(\d)", re.IGNORECASE)
_DELETED_RE = re.compile(r"delet", re.IGNORECASE)
REQUIRED = ("demo", "drug", "reac")

OUTC_SERIOUSNESS = {
    "DE": "death",
    "LT": "life_threatening",
    "HO": "hospitalisation",
    "DS": "disability",
    "CA": "congenital_anomaly",
    "RI": "required_intervention",
    "OT": "other_medically_important",
}
ROLE = {"PS": "suspect", "SS": "suspect", "C": "concomitant", "I": "interacting"}
QUALIFICATION = {
    "MD": "physician",
    "PH": "pharmacist",
    "OT": "other_hcp",
    "HP": "other_hcp",
    "LW": "lawyer",
    "CN": "consumer",
}
# age_cod → years per unit
AGE_UNIT_YEARS = {
    "DEC": 10.0,
    "YR": 1.0,
    "YRS": 1.0,
    "MON": 1 / 12,
    "WK": 7 / 365.25,
    "DY": 1 / 365.25,
    "HR": 1 / 8766,
    "MIN": 1 / 525960,
}
#: Column names per concept, first present wins (lower-cased headers); sources in the module docstring.
ALIASES = {
    "sex": ("sex", "gndr_cod"),
    "outc": ("outc_cod", "outc_code"),
    "lot": ("lot_num", "lot_nbr"),
    "country": ("reporter_country", "occr_country"),
    "ther_seq": ("dsg_drug_seq", "drug_seq"),
}


#: The columns the staging below reads, per table (every alias of :data:`ALIASES` included); the
#: others (dose, route, manufacturer numbers, ...) are not stored. INDI is parsed for unreadable
#: lines only.
_KEYS = ("primaryid", "isr", "case", "caseid")
COLUMNS = {
    "demo": frozenset(
        (*_KEYS, "caseversion", "fda_dt", "init_fda_dt", "rept_dt", "mfr_dt", "event_dt", "age", "age_cod")
        + ALIASES["sex"]
        + ALIASES["country"]
        + ("occp_cod", "lit_ref")
    ),
    "drug": frozenset((*_KEYS, "drug_seq", "role_cod", "drugname", "prod_ai") + ALIASES["lot"]),
    "reac": frozenset((*_KEYS, "pt")),
    "outc": frozenset(_KEYS + ALIASES["outc"]),
    "rpsr": frozenset((*_KEYS, "rpsr_cod")),
    "ther": frozenset((*_KEYS, "start_dt") + ALIASES["ther_seq"]),
    "indi": frozenset(_KEYS),
}


def classify(files: list[InputFile]) -> tuple[dict[str, dict[str, list[InputFile]]], list[InputFile]]:
    """FAERS files by quarter (``"17q2"``) and table (demo, drug, ...), and the deleted-case lists."""
    quarters: dict[str, dict[str, list[InputFile]]] = {}
    deleted: list[InputFile] = []
    for f in files:
        base = PurePath(f.local).name
        m = _TABLE_RE.match(base)
        if m:
            quarters.setdefault(m.group(2).lower(), {}).setdefault(m.group(1).lower(), []).append(f)
        elif base.lower().endswith(".txt") and (
            _DELETED_RE.search(base) or any(p.lower() == "deleted" for p in PurePath(f.name).parts[:-1])
        ):
            deleted.append(f)
    return quarters, deleted


def quarter_order(tag: str) -> int:
    """``"04q1"`` → 20041, ``"97q4"`` → 19974: chronological order of quarter tags."""
    yy, q = int(tag[:2]), int(tag[3])
    return ((1900 if yy >= 90 else 2000) + yy) * 10 + q


def _first(con: duckdb.DuckDBPyConnection, table: str, concept: str) -> str | None:
    return next((c for c in ALIASES[concept] if has_column(con, table, c)), None)


def _map_sql(column: str, mapping: dict[str, str]) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return f"CASE upper(trim({column})) {cases} END"


def _date8(column: str) -> str:
    """A FAERS date (CCYYMMDD, or partial CCYY / CCYYMM) → DATE only when complete and valid."""
    return f"CASE WHEN length(trim({column})) = 8 THEN try_strptime(trim({column}), '%Y%m%d')::DATE END"


def stage(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> StageInfo:
    info = StageInfo()
    quarters, deleted = classify(inputs.files)
    found = {t for tables in quarters.values() for t in tables}
    missing = [t.upper() for t in REQUIRED if t not in found]
    if missing:
        raise IngestError(
            f"{inputs.path}: no FAERS {', '.join(missing)} file found (expected e.g. DEMO17Q2.txt, DRUG17Q2.txt, "
            f"REAC17Q2.txt, `$`-delimited; found {len(inputs.files)} files: "
            f"{', '.join(PurePath(f.local).name for f in inputs.files[:8])})"
        )
    layouts: dict[str, str] = {}
    for tag in sorted(quarters, key=quarter_order):
        tables = quarters[tag]
        absent = [t.upper() for t in REQUIRED if t not in tables]
        if absent:
            raise IngestError(f"{inputs.path}: quarter {tag.upper()} has no {', '.join(absent)} file")
        layouts[tag] = _stage_quarter(con, inputs, tables, quarter_order(tag), info)
    kinds = set(layouts.values())
    info.extra["layout"] = kinds.pop() if len(kinds) == 1 else "mixed"
    info.extra["quarters"] = {tag.upper(): layout for tag, layout in layouts.items()}
    _stage_deleted(con, deleted, layouts, info)
    return info


def _stage_quarter(
    con: duckdb.DuckDBPyConnection, inputs: InputSet, tables: dict[str, list[InputFile]], doc: int, info: StageInfo
) -> str:
    """Stage one quarter's files; return its layout (``faers`` or ``legacy_aers``)."""
    for name, files in tables.items():
        read_delimited(
            con,
            files,
            f"faers_{name}",
            delim="$",
            quote="",
            fallbacks=info.extra.setdefault("encoding_fallbacks", {}),
            keep=COLUMNS[name],
        )
    for name in ("outc", "rpsr", "ther"):
        if name not in tables:
            con.execute(f"DROP TABLE IF EXISTS faers_{name}")
    legacy = not has_column(con, "faers_demo", "primaryid")
    if legacy and not (has_column(con, "faers_demo", "isr") and has_column(con, "faers_demo", "case")):
        raise IngestError(f"{inputs.path}: DEMO has neither primaryid (FAERS) nor isr/case (legacy AERS) columns")

    def col(table: str, name: str, cast: str = "VARCHAR") -> str:
        """The column when this quarter has it, else a typed NULL (columns FDA added or dropped)."""
        return name if name and has_column(con, table, name) else f"NULL::{cast}"

    if legacy:
        key, prefix = "isr", "AERS-"
        case_col, version_sql = '"case"', "try_cast(trim(isr) AS INTEGER)"
    else:
        key, prefix = "primaryid", "FAERS-"
        case_col = "caseid"
        caseversion = col("faers_demo", "caseversion")
        version_sql = (
            f"coalesce(try_cast(trim({caseversion}) AS INTEGER), "
            "try_cast(substr(trim(primaryid), length(trim(caseid)) + 1) AS INTEGER))"
        )
    sex_col = col("faers_demo", _first(con, "faers_demo", "sex"))
    country_cols = [c for c in ALIASES["country"] if has_column(con, "faers_demo", c)]
    country_sql = (
        f"coalesce({', '.join(f'nullif(trim({c}), {chr(39) * 2})' for c in country_cols)})"
        if country_cols
        else "NULL::VARCHAR"
    )
    for name in ("drug", "reac", "outc", "rpsr", "ther"):
        if name in tables and not has_column(con, f"faers_{name}", key):
            raise IngestError(f"{inputs.path}: {name.upper()} has no {key} column; mixed FAERS and AERS layouts?")
    lit_sql = "nullif(trim(lit_ref), '') IS NOT NULL" if has_column(con, "faers_demo", "lit_ref") else "false"
    age_sql = " ".join(f"WHEN '{k}' THEN {v!r}" for k, v in AGE_UNIT_YEARS.items())
    dates = [c for c in ("fda_dt", "init_fda_dt", "rept_dt", "mfr_dt") if has_column(con, "faers_demo", c)]
    received_sql = f"coalesce({', '.join(_date8(c) for c in dates)})" if dates else "NULL::DATE"
    order_dt = "fda_dt DESC NULLS LAST" if "fda_dt" in dates else "1"

    # ---- DEMO → reports ---------------------------------------------------------------------
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE faers_report AS
        SELECT trim({key}) AS rid, nullif(trim({case_col}), '') AS caseid, {version_sql} AS version,
               {received_sql} AS received_on,
               {_date8(col("faers_demo", "event_dt"))} AS onset_date,
               try_cast(trim({col("faers_demo", "age")}) AS DOUBLE)
                   * CASE upper(trim({col("faers_demo", "age_cod")})) {age_sql} END AS age_years,
               CASE upper(trim({sex_col})) WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' END AS sex,
               {_map_sql(col("faers_demo", "occp_cod"), QUALIFICATION)} AS reporter_qualification,
               {country_sql} AS country, {lit_sql} AS has_lit_ref, _file,
               row_number() OVER (PARTITION BY trim({key}) ORDER BY {order_dt}) AS _dup
        FROM faers_demo"""
    )
    con.execute(
        f"""INSERT INTO stg_quarantine
        SELECT _file, '{key} ' || coalesce(rid, '?'),
               CASE WHEN rid IS NULL OR rid = '' OR caseid IS NULL OR version IS NULL THEN 'missing_case_key'
                    WHEN _dup > 1 THEN 'duplicate_report_row'
                    ELSE 'missing_received_date' END,
               CASE WHEN rid IS NULL OR rid = '' OR caseid IS NULL OR version IS NULL
                        THEN 'DEMO row without {key}, case id or version'
                    WHEN _dup > 1 THEN 'a second DEMO row for the same {key}: the first (latest fda_dt) is kept'
                    ELSE 'no valid fda_dt/rept_dt/mfr_dt date (CCYYMMDD)' END,
               NULL
        FROM faers_report
        WHERE rid IS NULL OR rid = '' OR caseid IS NULL OR version IS NULL OR _dup > 1 OR received_on IS NULL"""
    )
    con.execute(
        """DELETE FROM faers_report
        WHERE rid IS NULL OR rid = '' OR caseid IS NULL OR version IS NULL OR _dup > 1 OR received_on IS NULL"""
    )

    # ---- OUTC → seriousness --------------------------------------------------------------------
    if "outc" in tables:
        outc_col = col("faers_outc", _first(con, "faers_outc", "outc"))
        con.execute(f"""CREATE OR REPLACE TEMP TABLE faers_outc_k AS
            SELECT trim({key}) AS rid, upper(trim({outc_col})) AS code, _file FROM faers_outc""")
        con.execute(
            f"""INSERT INTO stg_quarantine
            SELECT _file, '{key} ' || rid, CASE WHEN r.rid IS NULL THEN 'orphan_outcome' ELSE 'invalid_value' END,
                   CASE WHEN r.rid IS NULL THEN 'OUTC row whose {key} has no DEMO row'
                        ELSE 'unknown outc_cod ' || coalesce(o.code, 'NULL') END, o.code
            FROM faers_outc_k o LEFT JOIN (SELECT rid FROM faers_report) r USING (rid)
            WHERE r.rid IS NULL OR o.code IS NULL OR o.code NOT IN ({", ".join(f"'{c}'" for c in OUTC_SERIOUSNESS)})"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE faers_serious AS
            SELECT rid, list(DISTINCT {_map_sql("code", OUTC_SERIOUSNESS)} ORDER BY {_map_sql("code", OUTC_SERIOUSNESS)})
                       FILTER (WHERE {_map_sql("code", OUTC_SERIOUSNESS)} IS NOT NULL) AS seriousness
            FROM faers_outc_k GROUP BY rid"""
        )
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE faers_serious (rid VARCHAR, seriousness VARCHAR[])")
    if "rpsr" in tables:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE faers_lit AS
            SELECT DISTINCT trim({key}) AS rid FROM faers_rpsr WHERE upper(trim(rpsr_cod)) = 'LIT'""")
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE faers_lit (rid VARCHAR)")

    con.execute(
        f"""INSERT INTO stg_case
        SELECT '{prefix}' || r.caseid, r.version, r.received_on,
               CASE WHEN r.has_lit_ref OR l.rid IS NOT NULL THEN 'literature' ELSE 'regulator' END,
               r.reporter_qualification, r.country,
               CASE WHEN r.age_years BETWEEN 0 AND 130 THEN round(r.age_years, 3) END, r.sex,
               coalesce(len(s.seriousness), 0) > 0, coalesce(s.seriousness, []::VARCHAR[]),
               CASE WHEN list_contains(s.seriousness, 'death') THEN 'fatal' END, NULL, r.onset_date, r._file, {doc}, NULL
        FROM faers_report r LEFT JOIN faers_serious s USING (rid) LEFT JOIN faers_lit l USING (rid)"""
    )

    # ---- DRUG (+ THER start dates) -------------------------------------------------------------
    prod_ai = "nullif(trim(d.prod_ai), '')" if has_column(con, "faers_drug", "prod_ai") else "NULL::VARCHAR"
    lot_col = _first(con, "faers_drug", "lot")
    lot = f"nullif(trim(d.{lot_col}), '')" if lot_col else "NULL::VARCHAR"
    if "ther" in tables:
        seq_col = col("faers_ther", _first(con, "faers_ther", "ther_seq"))
        con.execute(f"""CREATE OR REPLACE TEMP TABLE faers_start AS
            SELECT trim({key}) AS rid, trim({seq_col}) AS drug_seq, min({_date8(col("faers_ther", "start_dt"))}) AS start_date
            FROM faers_ther GROUP BY ALL""")
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE faers_start (rid VARCHAR, drug_seq VARCHAR, start_date DATE)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE faers_drug_k AS
        SELECT trim(d.{key}) AS rid, trim(d.drug_seq) AS drug_seq_raw, upper(trim(d.role_cod)) AS role_cod,
               nullif(trim(d.drugname), '') AS drugname, {prod_ai} AS prod_ai, {lot} AS lot_num, d._file,
               r.caseid, r.version, r.rid IS NOT NULL AS has_demo
        FROM faers_drug d LEFT JOIN (SELECT rid, caseid, version FROM faers_report) r ON r.rid = trim(d.{key})"""
    )
    con.execute(
        f"""INSERT INTO stg_quarantine
        SELECT _file, '{key} ' || coalesce(rid, '?') || ' drug_seq ' || coalesce(drug_seq_raw, '?'),
               CASE WHEN NOT has_demo THEN 'orphan_drug' WHEN drugname IS NULL AND prod_ai IS NULL THEN 'missing_drug_name'
                    ELSE 'invalid_role' END,
               CASE WHEN NOT has_demo THEN 'DRUG row whose {key} has no (valid) DEMO row'
                    WHEN drugname IS NULL AND prod_ai IS NULL THEN 'neither drugname nor prod_ai'
                    ELSE 'role_cod ' || coalesce(role_cod, 'NULL') || ' not PS/SS/C/I' END,
               concat_ws('$', rid, drug_seq_raw, role_cod, drugname, prod_ai, lot_num)
        FROM faers_drug_k
        WHERE NOT has_demo OR (drugname IS NULL AND prod_ai IS NULL) OR role_cod IS NULL
           OR role_cod NOT IN ('PS', 'SS', 'C', 'I')"""
    )
    con.execute(
        f"""INSERT INTO stg_drug
        SELECT '{prefix}' || d.caseid, d.version,
               row_number() OVER (PARTITION BY d.rid ORDER BY try_cast(d.drug_seq_raw AS BIGINT), d.drug_seq_raw),
               {_map_sql("d.role_cod", ROLE)}, coalesce(d.drugname, d.prod_ai), d.prod_ai,
               CASE WHEN d.prod_ai IS NOT NULL THEN 'faers_prod_ai' END, d.lot_num, t.start_date, {doc}
        FROM faers_drug_k d LEFT JOIN faers_start t ON t.rid = d.rid AND t.drug_seq = d.drug_seq_raw
        WHERE d.has_demo AND NOT (d.drugname IS NULL AND d.prod_ai IS NULL) AND d.role_cod IN ('PS', 'SS', 'C', 'I')"""
    )

    # ---- REAC ----------------------------------------------------------------------------------
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE faers_reac_k AS
        SELECT trim(x.{key}) AS rid, nullif(trim(x.pt), '') AS pt, x._file, r.caseid, r.version, r.onset_date,
               r.rid IS NOT NULL AS has_demo, x.rowid AS _row
        FROM faers_reac x LEFT JOIN (SELECT rid, caseid, version, onset_date FROM faers_report) r
          ON r.rid = trim(x.{key})"""
    )
    con.execute(
        f"""INSERT INTO stg_quarantine
        SELECT _file, '{key} ' || coalesce(rid, '?'),
               CASE WHEN NOT has_demo THEN 'orphan_reaction' ELSE 'missing_pt' END,
               CASE WHEN NOT has_demo THEN 'REAC row whose {key} has no (valid) DEMO row' ELSE 'REAC row without pt' END,
               concat_ws('$', rid, pt)
        FROM faers_reac_k WHERE NOT has_demo OR pt IS NULL"""
    )
    con.execute(
        f"""INSERT INTO stg_reaction
        SELECT '{prefix}' || caseid, version, row_number() OVER (PARTITION BY rid ORDER BY _row), pt, NULL,
               onset_date, NULL, NULL, {doc}
        FROM faers_reac_k WHERE has_demo AND pt IS NOT NULL"""
    )

    return "legacy_aers" if legacy else "faers"


def _stage_deleted(
    con: duckdb.DuckDBPyConnection, deleted: list[InputFile], layouts: dict[str, str], info: StageInfo
) -> None:
    """Deleted-case lists: one case id per line (FAERS only; a legacy quarter's list names AERS cases)."""
    for f in deleted:
        tag = _QUARTER_RE.search(PurePath(f.local).name)
        legacy = tag is not None and layouts.get(tag.group(0).lower()) == "legacy_aers"
        ids = []
        with open(f.local, encoding="latin-1") as fh:
            for line in fh:
                token = line.strip().split("$")[0].strip()
                if token.isdigit():
                    ids.append(token)
        if ids:
            con.execute(
                "INSERT INTO stg_deleted SELECT ? || unnest(?), ?",
                ["AERS-" if legacy else "FAERS-", ids, f.name],
            )
        info.extra.setdefault("deleted_lists", []).append(f.name)

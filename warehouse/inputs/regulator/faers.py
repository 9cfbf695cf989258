"""FAERS quarterly ASCII extracts (current FAERS layout and the legacy AERS one) → staging.

Files are ``$``-delimited with a header row and no quoting; names vary in case
(``DEMO17Q2.txt``, ``demo04q1.txt``); one or several quarters may sit in a zip or a folder.

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
* Deleted-case lists (files named ``DELETE*``/``DELE*`` or in a ``deleted`` folder, one caseid
  per line) → ``stg_deleted``.

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

_TABLE_RE = re.compile(r"^(demo|drug|reac|outc|rpsr|ther|indi)\d{2}q\d\.txt$", re.IGNORECASE)
_DELETED_RE = re.compile(r"^dele", re.IGNORECASE)
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
AGE_UNIT_YEARS = {"DEC": 10.0, "YR": 1.0, "MON": 1 / 12, "WK": 7 / 365.25, "DY": 1 / 365.25, "HR": 1 / 8766}


def classify(files: list[InputFile]) -> tuple[dict[str, list[InputFile]], list[InputFile]]:
    """FAERS files by table (demo, drug, ...) and the deleted-case lists."""
    tables: dict[str, list[InputFile]] = {}
    deleted: list[InputFile] = []
    for f in files:
        base = PurePath(f.local).name
        m = _TABLE_RE.match(base)
        if m:
            tables.setdefault(m.group(1).lower(), []).append(f)
        elif base.lower().endswith(".txt") and (
            _DELETED_RE.match(base) or any(p.lower() == "deleted" for p in PurePath(f.name).parts[:-1])
        ):
            deleted.append(f)
    return tables, deleted


def _map_sql(column: str, mapping: dict[str, str]) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return f"CASE upper(trim({column})) {cases} END"


def _date8(column: str) -> str:
    """A FAERS date (CCYYMMDD, or partial CCYY / CCYYMM) → DATE only when complete and valid."""
    return f"CASE WHEN length(trim({column})) = 8 THEN try_strptime(trim({column}), '%Y%m%d')::DATE END"


def stage(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> StageInfo:
    info = StageInfo()
    tables, deleted = classify(inputs.files)
    missing = [t.upper() for t in REQUIRED if t not in tables]
    if missing:
        raise IngestError(
            f"{inputs.path}: no FAERS {', '.join(missing)} file found (expected e.g. DEMO17Q2.txt, DRUG17Q2.txt, "
            f"REAC17Q2.txt, `$`-delimited; found {len(inputs.files)} files: "
            f"{', '.join(PurePath(f.local).name for f in inputs.files[:8])})"
        )
    for name, files in tables.items():
        read_delimited(con, files, f"faers_{name}", delim="$", quote="")
    legacy = not has_column(con, "faers_demo", "primaryid")
    if legacy and not (has_column(con, "faers_demo", "isr") and has_column(con, "faers_demo", "case")):
        raise IngestError(f"{inputs.path}: DEMO has neither primaryid (FAERS) nor isr/case (legacy AERS) columns")
    info.extra["layout"] = "legacy_aers" if legacy else "faers"

    if legacy:
        key, prefix = "isr", "AERS-"
        case_col, version_sql, sex_col = '"case"', "try_cast(trim(isr) AS INTEGER)", "gndr_cod"
        country_sql = "NULL::VARCHAR"
    else:
        key, prefix = "primaryid", "FAERS-"
        case_col, sex_col = "caseid", "sex"
        version_sql = (
            "coalesce(try_cast(trim(caseversion) AS INTEGER), "
            "try_cast(substr(trim(primaryid), length(trim(caseid)) + 1) AS INTEGER))"
        )
        country_sql = "nullif(trim(reporter_country), '')"
    for name in ("drug", "reac", "outc", "rpsr", "ther"):
        if name in tables and not has_column(con, f"faers_{name}", key):
            raise IngestError(f"{inputs.path}: {name.upper()} has no {key} column; mixed FAERS and AERS layouts?")
    lit_sql = "nullif(trim(lit_ref), '') IS NOT NULL" if has_column(con, "faers_demo", "lit_ref") else "false"
    age_sql = " ".join(f"WHEN '{k}' THEN {v!r}" for k, v in AGE_UNIT_YEARS.items())

    # ---- DEMO → reports ---------------------------------------------------------------------
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE faers_report AS
        SELECT trim({key}) AS rid, nullif(trim({case_col}), '') AS caseid, {version_sql} AS version,
               coalesce({_date8("fda_dt")}, {_date8("init_fda_dt") if not legacy else "NULL::DATE"},
                        {_date8("rept_dt")}, {_date8("mfr_dt")}) AS received_on,
               {_date8("event_dt")} AS onset_date,
               try_cast(trim(age) AS DOUBLE) * CASE upper(trim(age_cod)) {age_sql} END AS age_years,
               CASE upper(trim({sex_col})) WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' END AS sex,
               {_map_sql("occp_cod", QUALIFICATION)} AS reporter_qualification,
               {country_sql} AS country, {lit_sql} AS has_lit_ref, _file,
               row_number() OVER (PARTITION BY trim({key}) ORDER BY fda_dt DESC NULLS LAST) AS _dup
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
        con.execute(f"""CREATE OR REPLACE TEMP TABLE faers_outc_k AS
            SELECT trim({key}) AS rid, upper(trim(outc_cod)) AS code, _file FROM faers_outc""")
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
               CASE WHEN list_contains(s.seriousness, 'death') THEN 'fatal' END, NULL, r.onset_date, r._file, NULL
        FROM faers_report r LEFT JOIN faers_serious s USING (rid) LEFT JOIN faers_lit l USING (rid)"""
    )

    # ---- DRUG (+ THER start dates) -------------------------------------------------------------
    prod_ai = "nullif(trim(d.prod_ai), '')" if has_column(con, "faers_drug", "prod_ai") else "NULL::VARCHAR"
    lot = "nullif(trim(d.lot_num), '')" if has_column(con, "faers_drug", "lot_num") else "NULL::VARCHAR"
    if "ther" in tables:
        seq_col = "dsg_drug_seq" if has_column(con, "faers_ther", "dsg_drug_seq") else "drug_seq"
        con.execute(f"""CREATE OR REPLACE TEMP TABLE faers_start AS
            SELECT trim({key}) AS rid, trim({seq_col}) AS drug_seq, min({_date8("start_dt")}) AS start_date
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
               CASE WHEN d.prod_ai IS NOT NULL THEN 'faers_prod_ai' END, d.lot_num, t.start_date, NULL
        FROM faers_drug_k d LEFT JOIN faers_start t ON t.rid = d.rid AND t.drug_seq = d.drug_seq_raw
        WHERE d.has_demo AND NOT (d.drugname IS NULL AND d.prod_ai IS NULL) AND d.role_cod IN ('PS', 'SS', 'C', 'I')"""
    )

    # ---- REAC ----------------------------------------------------------------------------------
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE faers_reac_k AS
        SELECT trim(x.{key}) AS rid, nullif(trim(x.pt), '') AS pt, x._file, r.caseid, r.version, r.onset_date,
               r.rid IS NOT NULL AS has_demo, row_number() OVER () AS _row
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
               onset_date, NULL, NULL, NULL
        FROM faers_reac_k WHERE has_demo AND pt IS NOT NULL"""
    )

    # ---- deleted-case lists --------------------------------------------------------------------
    for f in deleted:
        ids = []
        with open(f.local, encoding="latin-1") as fh:
            for line in fh:
                token = line.strip().split("$")[0].strip()
                if token.isdigit():
                    ids.append(token)
        if ids:
            con.execute(
                "INSERT INTO stg_deleted SELECT ? || unnest(?), ?",
                [prefix, ids, f.name],
            )
        info.extra.setdefault("deleted_lists", []).append(f.name)
    return info

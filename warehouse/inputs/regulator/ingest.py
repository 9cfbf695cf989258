"""Ingest public adverse-event files (FAERS, VAERS, E2B(R3), openFDA) into the warehouse.

    ingest(path, fmt, warehouse) -> counts            (the ``pvtrace ingest`` command)

Read → validate/quarantine → write the case tables, all in one DuckDB transaction. A reader in
:mod:`warehouse.inputs.regulator` stages the input; this module then

1. quarantines what the case tables cannot hold (a second row for the same case version, drug
   or reaction rows without their case, a reaction without a term, a case without a received
   date) — with the reason, never dropped silently;
2. cleans lot numbers with the named rules of :mod:`warehouse.linkage.lot_rules` (junk such as
   UNKNOWN, N/K, "don't know" sentences or a manufacturer's name → no lot; an expiry typed after
   the lot → ``case_drug.lot_expiry``; ``case_drug.lot_reported`` keeps the reported text only
   when at least one usable lot survives);
3. maps drug names to an active ingredient (``case_drug.ingredient``, lower case like the
   product table, with ``mapping_method``): the ingredient the source itself coded (FAERS
   ``prod_ai``, openFDA ``openfda.substance_name``/``generic_name``, E2B G.k.2.3.r.1, VAERS
   vaccine type) → our product table (:func:`warehouse.linkage.products.map_reported_products`,
   which also sets ``product_id``) → an openFDA harmonisation file (brand/generic name →
   substance, e.g. ``harmonized.small.json``) when one is given → ``unmapped``;
4. writes case versions, flags deleted cases and suggests duplicates (below).

**Keys and idempotency (additive, not replace).** Case ids are namespaced by source
(``FAERS-<caseid>``, ``AERS-<case>``, ``VAERS-<id>``, ``E2B-<C.1.1>``, ``OPENFDA-<id>``). Each
ingest deletes, then re-inserts, exactly the (case_id, version) rows it carries — only those
whose content (a hash of the case row and of its drug and reaction rows) differs from what is
stored, because deleting from DuckDB tables with a primary key is slow — then recomputes
``is_latest`` for the cases it touched. So ingesting the same file twice changes
nothing, a second quarter adds its cases, and a newer version of a case supersedes the older
one whichever file it came from. Quarantine rows are replaced per input file (stage
``ingest:<format>``), ``ingested_file`` gets one row per input file (kind ``ingest:<format>``).

**Deleted cases** (FAERS deleted-case lists, E2B nullification C.1.11.1 = 1) go to
``case_deleted``; all their versions keep ``is_latest = false`` — kept for audit, out of the
statistics.

**Duplicates**: a probabilistic suggestion, never a deletion. Within a source namespace,
latest cases blocked on same sex, same age (whole months under 2 years, else whole years — see
:data:`DUPLICATE_AGE_KEY`), never two known different countries or states (VAERS ``STATE``), same
earliest reaction onset and the same first (alphabetical) suspect ingredient are scored ``0.6 + 0.2·J(ingredients) +
0.2·J(PTs)`` (J = Jaccard overlap of all ingredients / PTs). Pairs scoring ≥ 0.8 go
to ``case_duplicate_suggestion``; ≥ 0.9 also sets ``duplicate_of`` on the later case (received
later, ties: higher id). Cases without sex, age, onset or a suspect drug are never flagged.

**Counts returned (the ``--json`` line)** describe *this input*, taking per case its latest
version within the input and leaving out deleted cases:

- ``cases``: distinct cases; ``case_versions``: case-version rows written;
- ``drugs`` / ``reactions``: case_drug / case_reaction rows **of those latest versions**
  (rows of superseded versions are stored too but not counted here);
- ``lots``: of those drug rows, the ones with a usable lot after normalisation;
- ``lots_rejected``: per rule of :data:`warehouse.linkage.lot_rules.LOT_RULES`, how many typed lots
  (parts of a lot field) of those drug rows the rule rejected; ``lot_expiry_split``: drug rows whose
  lot field carried an expiry, now in ``case_drug.lot_expiry`` (``YYYY-MM``);
- ``quarantined``: quarantine rows from this input;
- plus ``deleted_cases``, ``duplicates_flagged`` (namespace-wide), ``ingredient_mapping``
  (rows per method), ``unmapped_drugs`` (count, distinct names, top names), ``warnings``,
  and ``warehouse`` totals after the ingest.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import sha256_of
from warehouse.inputs.namespaces import EXTERNAL_NAMESPACES
from warehouse.inputs.regulator import FORMATS, IngestError, InputSet, StageInfo, create_staging
from warehouse.linkage.lot_rules import LOT_RULES, clean_lots_expr
from warehouse.linkage.products import map_reported_products
from warehouse.schema import connect

__all__ = ["FORMATS", "IngestError", "ingest", "ingest_into"]

NAMESPACES = EXTERNAL_NAMESPACES
DUPLICATE_FLAG_SCORE = 0.9
DUPLICATE_SUGGEST_SCORE = 0.8
#: Ages compared at their real resolution: infants (under 2 years) by whole month — VAERS gives
#: AGE_YRS in tenths of a year (0.2 vs 0.8 are different infants), FAERS in months/weeks/days —
#: everyone else by whole year.
DUPLICATE_AGE_KEY = "CASE WHEN age_years < 2 THEN 'm' || round(age_years * 12)::BIGINT::VARCHAR ELSE 'y' || floor(age_years)::BIGINT::VARCHAR END"
TOP_UNMAPPED = 10


def ingest(path: str | Path, fmt: str, warehouse: str | Path, *, harmonisation: str | Path | None = None) -> dict:
    """Load one file, zip or folder of format ``fmt`` into the warehouse file (created if needed)."""
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not Path(path).exists():
        raise IngestError(f"input path {str(path)!r} does not exist")
    if harmonisation is not None and not Path(harmonisation).is_file():
        raise IngestError(f"harmonisation file {str(harmonisation)!r} does not exist")
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    con = connect(str(warehouse))
    try:
        return ingest_into(con, path, fmt, harmonisation=harmonisation)
    finally:
        con.close()


def ingest_into(
    con: duckdb.DuckDBPyConnection, path: str | Path, fmt: str, *, harmonisation: str | Path | None = None
) -> dict:
    """:func:`ingest` on an open connection (schema already ensured)."""
    t0 = time.perf_counter()
    reader = importlib.import_module(f"warehouse.inputs.regulator.{fmt}")
    con.execute("SET enable_progress_bar = false")  # the --json line must stay the last thing printed
    try:
        with InputSet(path) as inputs:
            con.execute("BEGIN TRANSACTION")
            try:
                create_staging(con)
                info = reader.stage(con, inputs)
                _encoding_warnings(info)
                counts = _write(con, fmt, inputs, info, harmonisation)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    except IngestError:
        raise
    except Exception as exc:
        # the documented contract: whatever the input, an IngestError naming it (one line), never a traceback
        text = " ".join(str(exc).split())[:300]
        raise IngestError(f"{path}: cannot ingest as {fmt} ({type(exc).__name__}: {text})") from exc
    counts["seconds"] = round(time.perf_counter() - t0, 3)
    return counts


def _encoding_warnings(info: StageInfo) -> None:
    for name, n in info.extra.get("encoding_fallbacks", {}).items():
        info.warnings.append(
            f"{name}: {n['cp1252']:,} lines decoded as Windows-1252 and {n['latin-1']:,} as Latin-1 (not UTF-8)"
        )


# ---- validation ---------------------------------------------------------------------------


def _validate(con: duckdb.DuckDBPyConnection) -> None:
    """Generic checks on the staged rows: whatever the case tables cannot hold is quarantined.

    Only the offending rows are materialised (with their ``rowid``) and deleted from the staging
    tables: on a clean input, the common case, no staging table is copied again."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_case_bad AS
        SELECT _rid, source_file, case_id, version, received_on, _doc FROM (
            SELECT rowid AS _rid, source_file, case_id, version, received_on, _doc,
                   row_number() OVER (PARTITION BY case_id, version ORDER BY _doc DESC NULLS LAST) AS _n
            FROM stg_case)
        WHERE case_id IS NULL OR version IS NULL OR received_on IS NULL OR _n > 1"""
    )
    con.execute(
        """INSERT INTO stg_quarantine
        SELECT source_file, case_id || ' v' || coalesce(version::VARCHAR, '?'),
               CASE WHEN case_id IS NULL OR version IS NULL THEN 'missing_case_key'
                    WHEN received_on IS NULL THEN 'missing_received_date' ELSE 'duplicate_case_version' END,
               CASE WHEN case_id IS NULL OR version IS NULL THEN 'no case id or version'
                    WHEN received_on IS NULL THEN 'no received date'
                    ELSE 'the same case version again later in this input: the later document is kept' END
                   || CASE WHEN _doc IS NOT NULL THEN ' (this document''s drugs and reactions are set aside with it)'
                           ELSE '' END,
               NULL
        FROM stg_case_bad"""
    )
    if con.execute("SELECT count(*) FROM stg_case_bad").fetchone()[0]:
        for table in ("stg_drug", "stg_reaction"):
            con.execute(
                f"""DELETE FROM {table} t
                USING (SELECT case_id, version, _doc FROM stg_case_bad WHERE _doc IS NOT NULL) b
                WHERE t.case_id = b.case_id AND t.version = b.version AND t._doc = b._doc"""
            )
        con.execute("DELETE FROM stg_case WHERE rowid IN (SELECT _rid FROM stg_case_bad)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stg_case_keys_ok AS SELECT DISTINCT case_id, version, true AS _ok FROM stg_case"
    )
    for table, what, seq, value in (
        ("stg_drug", "drug", "drug_seq", "role"),
        ("stg_reaction", "reaction", "reaction_seq", "pt"),
    ):
        missing_value = "x.role IS NULL" if what == "drug" else "x.pt IS NULL OR trim(x.pt) = ''"
        reason_value = "'invalid_role'" if what == "drug" else "'missing_pt'"
        # one pass numbers the rows, joins their case and keeps only the offending ones
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table}_bad AS
            SELECT * FROM (
                SELECT x._rid, x.case_id, x.version, x.{seq}, c._ok IS NULL AS _orphan, x._n > 1 AS _dup,
                       coalesce({missing_value}, false) AS _missing
                FROM (SELECT rowid AS _rid, case_id, version, {seq}, {value},
                             row_number() OVER (PARTITION BY case_id, version, {seq}) AS _n FROM {table}) x
                LEFT JOIN stg_case_keys_ok c USING (case_id, version))
            WHERE _orphan OR _dup OR _missing"""
        )
        con.execute(
            f"""INSERT INTO stg_quarantine
            SELECT NULL, case_id || ' v' || coalesce(version::VARCHAR, '?') || ' {what} ' || coalesce({seq}::VARCHAR, '?'),
                   CASE WHEN _orphan THEN 'orphan_{what}' WHEN _dup THEN 'duplicate_{what}_seq' ELSE {reason_value} END,
                   CASE WHEN _orphan THEN '{what} row without a valid case version in this input'
                        WHEN _dup THEN 'the same {seq} twice' ELSE 'required value missing' END, NULL
            FROM {table}_bad"""
        )
        if con.execute(f"SELECT count(*) FROM {table}_bad").fetchone()[0]:
            con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT _rid FROM {table}_bad)")
        con.execute(f"DROP TABLE {table}_bad")


# ---- lots and ingredients ----------------------------------------------------------------


def _lot_map(con: duckdb.DuckDBPyConnection) -> None:
    """Clean each distinct reported lot once (in polars, with the shared rules of
    :mod:`warehouse.linkage.lot_rules`): the lots, the expiry split off, the rules that rejected parts."""
    raw = con.sql("SELECT DISTINCT lot_raw FROM stg_drug WHERE lot_raw IS NOT NULL").pl()
    lots = raw.with_columns(clean_lots_expr("lot_raw").alias("_c")).select(
        "lot_raw",
        pl.col("_c").struct.field("lots"),
        pl.col("_c").struct.field("expiry"),
        pl.col("_c").struct.field("rejected"),
    )
    con.register("_lots", lots.to_arrow())
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_lot AS
        SELECT lot_raw, lots, len(lots) > 0 AS usable, expiry, rejected FROM _lots"""
    )
    con.unregister("_lots")


def _harmonisation_map(path: str | Path | None) -> pl.DataFrame:
    """openFDA harmonisation records (JSON lines or array): brand/generic name → substance."""
    schema = {"_key": pl.String, "_ingredient": pl.String}
    if path is None:
        return pl.DataFrame(schema=schema)
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    records = json.loads(text) if stripped.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    rows = []
    for r in records:
        substance = r.get("substance_name") or r.get("generic_name")
        if isinstance(substance, list):
            substance = "; ".join(substance)
        if not substance:
            continue
        for name in (r.get("brand_name"), r.get("generic_name")):
            for n in name if isinstance(name, list) else [name]:
                if n:
                    rows.append({"_key": " ".join(str(n).upper().split()), "_ingredient": substance})
    return pl.DataFrame(rows, schema=schema).unique(subset=["_key"], keep="first")


def _ingredient_expr(col: pl.Expr) -> pl.Expr:
    """Ingredient text as stored: lower case, FAERS ``\\`` combination separator → ``; ``."""
    return col.str.to_lowercase().str.replace_all(r"\s*[\\]\s*", "; ").str.replace_all(r"\s+", " ").str.strip_chars()


def _drug_map(con: duckdb.DuckDBPyConnection, harmonisation: str | Path | None) -> None:
    """One mapping row per distinct (product name, source ingredient, source method)."""
    names = con.sql(
        """SELECT DISTINCT product_name_reported, ingredient_reported, ingredient_method FROM stg_drug"""
    ).pl()
    products = con.sql("SELECT product_id, name, ingredient FROM product").pl()
    mapped = map_reported_products(
        names.with_columns(pl.col("product_name_reported").fill_null("").alias("_name_for_map")).rename(
            {"product_name_reported": "_orig", "_name_for_map": "product_name_reported"}
        ),
        products,
    ).rename({"product_name_reported": "_name_for_map", "_orig": "product_name_reported"})
    harm = _harmonisation_map(harmonisation)
    mapped = mapped.with_columns(
        pl.col("product_name_reported").str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars().alias("_key")
    ).join(harm, on="_key", how="left")
    source_ing = _ingredient_expr(pl.col("ingredient_reported"))
    mapped = mapped.with_columns(
        pl.when(pl.col("ingredient_reported").is_not_null())
        .then(source_ing)
        .when(pl.col("mapping_method") != "unmapped")
        .then(pl.col("ingredient"))
        .when(pl.col("_ingredient").is_not_null())
        .then(_ingredient_expr(pl.col("_ingredient")))
        .alias("ingredient_final"),
        pl.when(pl.col("ingredient_reported").is_not_null())
        .then(pl.col("ingredient_method"))
        .when(pl.col("mapping_method") != "unmapped")
        .then(pl.col("mapping_method"))
        .when(pl.col("_ingredient").is_not_null())
        .then(pl.lit("openfda_harmonisation"))
        .otherwise(pl.lit("unmapped"))
        .alias("method_final"),
    ).select(
        "product_name_reported",
        "ingredient_reported",
        "ingredient_method",
        "product_id",
        pl.col("ingredient_final").alias("ingredient"),
        pl.col("method_final").alias("mapping_method"),
    )
    con.register("_drug_map", mapped.to_arrow())
    con.execute("CREATE OR REPLACE TEMP TABLE stg_drug_map AS SELECT * FROM _drug_map")
    con.unregister("_drug_map")


# ---- writing --------------------------------------------------------------------------------


def _write(
    con: duckdb.DuckDBPyConnection, fmt: str, inputs: InputSet, info: StageInfo, harmonisation: str | Path | None
) -> dict:
    _validate(con)
    _lot_map(con)
    _drug_map(con, harmonisation)

    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_drug_final AS
        SELECT d.case_id, d.version, d.drug_seq, d.role, d.product_name_reported, m.product_id, m.ingredient,
               m.mapping_method, CASE WHEN l.usable THEN trim(d.lot_raw) END AS lot_reported,
               NULL::VARCHAR AS pack_code_reported, d.start_date, d.lot_raw, l.expiry AS lot_expiry
        FROM stg_drug d
        LEFT JOIN stg_lot l ON l.lot_raw = d.lot_raw
        LEFT JOIN stg_drug_map m ON m.product_name_reported IS NOT DISTINCT FROM d.product_name_reported
             AND m.ingredient_reported IS NOT DISTINCT FROM d.ingredient_reported
             AND m.ingredient_method IS NOT DISTINCT FROM d.ingredient_method"""
    )
    # Replace exactly the case versions this input carries — and only those whose content
    # differs from what is stored: deleting rows from DuckDB tables with a primary key is slow
    # (index maintenance), and an unchanged re-delivery should cost a read, not a rewrite.
    _changed_keys(con)
    for table in ("case_drug", "case_reaction", "case_reaction_meddra", "case_report"):
        con.execute(f"DELETE FROM {table} t USING stg_replace k WHERE t.case_id = k.case_id AND t.version = k.version")
    con.execute(
        """INSERT INTO case_report (case_id, version, is_latest, received_on, source, reporter_qualification, country,
                                    patient_key, age_years, sex, serious, seriousness, outcome, narrative,
                                    duplicate_of, source_file, region)
        SELECT case_id, version, false, received_on, source, reporter_qualification, country, NULL, age_years, sex,
               serious, seriousness, outcome, narrative, NULL, source_file, region
        FROM stg_case SEMI JOIN stg_write USING (case_id, version)"""
    )
    con.execute(
        """INSERT INTO case_drug (case_id, version, drug_seq, role, product_name_reported, product_id, ingredient,
                                  mapping_method, lot_reported, pack_code_reported, start_date, lot_expiry)
        SELECT case_id, version, drug_seq, role, product_name_reported, product_id, ingredient, mapping_method,
               lot_reported, pack_code_reported, start_date, lot_expiry
        FROM stg_drug_final SEMI JOIN stg_write USING (case_id, version)"""
    )
    con.execute(
        """INSERT INTO case_reaction (case_id, version, reaction_seq, pt, soc, onset_date)
        SELECT case_id, version, reaction_seq, trim(pt), soc, onset_date FROM stg_reaction
        SEMI JOIN stg_write USING (case_id, version)"""
    )
    con.execute(
        """INSERT INTO case_reaction_meddra (case_id, version, reaction_seq, meddra_code, meddra_version)
        SELECT case_id, version, reaction_seq, meddra_code, meddra_version FROM stg_reaction
        SEMI JOIN stg_write USING (case_id, version)
        WHERE meddra_code IS NOT NULL"""
    )
    # deleted / nullified cases, then is_latest for every case this input touched
    con.execute(
        """INSERT OR REPLACE INTO case_deleted (case_id, source_file)
        SELECT case_id, any_value(source_file) FROM stg_deleted GROUP BY case_id"""
    )
    con.execute(
        """UPDATE case_report SET is_latest = (case_report.version = m.max_version AND m.deleted IS NULL)
        FROM (SELECT c.case_id, max(c.version) AS max_version, any_value(d.case_id) AS deleted
              FROM case_report c LEFT JOIN case_deleted d USING (case_id)
              WHERE c.case_id IN (SELECT case_id FROM stg_case UNION SELECT case_id FROM stg_deleted)
              GROUP BY c.case_id) m
        WHERE case_report.case_id = m.case_id"""
    )
    duplicates = _flag_duplicates(con, NAMESPACES[fmt])

    # quarantine: replace this input's rows of this stage
    stage = f"ingest:{fmt}"
    names = [f.name for f in inputs.files] + [str(p) for p in inputs.inputs] + [str(inputs.path)]
    con.execute("DELETE FROM quarantine WHERE stage = ? AND source_file IN (SELECT unnest(?))", [stage, names])
    con.execute(
        """INSERT INTO quarantine (stage, source_file, record_key, reason, detail, raw)
        SELECT ?, coalesce(source_file, ?), record_key, reason, detail, raw FROM stg_quarantine""",
        [stage, str(inputs.path)],
    )
    con.executemany(
        "INSERT OR REPLACE INTO ingested_file (path, kind, sha256, n_bytes, loaded_at) "
        "VALUES (?, ?, ?, ?, current_timestamp)",
        [(str(p.resolve()), stage, sha256_of(p), p.stat().st_size) for p in inputs.inputs],
    )
    if fmt == "vaers":
        from warehouse.inputs.regulator.vaers import store_lot_counts

        info.extra["vaers_lot_counts"] = store_lot_counts(con, inputs)
    return _counts(con, fmt, info, duplicates)


_CASE_HASH = (
    "received_on, source, reporter_qualification, country, age_years, sex, serious, seriousness, outcome, "
    "narrative, source_file, region"
)
_DRUG_HASH = (
    "drug_seq, role, product_name_reported, product_id, ingredient, mapping_method, lot_reported, "
    "pack_code_reported, start_date, lot_expiry"
)
_REACTION_HASH = "reaction_seq, trim(pt), soc, onset_date"


def _changed_keys(con: duckdb.DuckDBPyConnection) -> None:
    """``stg_write``: staged case versions to (re)write; ``stg_replace``: those already stored."""

    def digest(case_table: str, drug_table: str, reaction_table: str, scope: str) -> str:
        return f"""
            SELECT c.case_id, c.version, hash({_CASE_HASH}) AS hc, coalesce(d.hd, 0) AS hd, coalesce(r.hr, 0) AS hr
            FROM {case_table} c {scope}
            LEFT JOIN (SELECT case_id, version, bit_xor(hash({_DRUG_HASH})) AS hd FROM {drug_table} {scope}
                       GROUP BY ALL) d USING (case_id, version)
            LEFT JOIN (SELECT case_id, version, bit_xor(hash({_REACTION_HASH})) AS hr FROM {reaction_table} {scope}
                       GROUP BY ALL) r USING (case_id, version)"""

    scope = "SEMI JOIN stg_case_keys USING (case_id, version)"
    con.execute("CREATE OR REPLACE TEMP TABLE stg_case_keys AS SELECT DISTINCT case_id, version FROM stg_case")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE stg_digest_new AS {digest('stg_case', 'stg_drug_final', 'stg_reaction', '')}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE stg_digest_old AS {digest('case_report', 'case_drug', 'case_reaction', scope)}"
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_write AS
        SELECT n.case_id, n.version, o.case_id IS NOT NULL AS stored
        FROM stg_digest_new n LEFT JOIN stg_digest_old o USING (case_id, version)
        WHERE o.case_id IS NULL OR (n.hc, n.hd, n.hr) IS DISTINCT FROM (o.hc, o.hd, o.hr)"""
    )
    con.execute("CREATE OR REPLACE TEMP TABLE stg_replace AS SELECT case_id, version FROM stg_write WHERE stored")


def _flag_duplicates(con: duckdb.DuckDBPyConnection, prefixes: tuple[str, ...]) -> int:
    """Suggest duplicates within the namespaces (see the module docstring); return how many are flagged."""
    total = 0
    for prefix in prefixes:
        con.execute(
            "UPDATE case_report SET duplicate_of = NULL WHERE starts_with(case_id, ?) AND duplicate_of IS NOT NULL",
            [prefix],
        )
        con.execute("DELETE FROM case_duplicate_suggestion WHERE starts_with(case_id, ?)", [prefix])
        con.execute(
            f"""INSERT INTO case_duplicate_suggestion
            WITH c AS (
                SELECT case_id, version, received_on, sex, {DUPLICATE_AGE_KEY} AS age, country, region
                FROM case_report WHERE is_latest AND starts_with(case_id, $p) AND sex IS NOT NULL AND age_years IS NOT NULL
            ), onset AS (
                SELECT r.case_id, min(r.onset_date) AS onset
                FROM case_reaction r JOIN c USING (case_id, version) GROUP BY r.case_id
            ), key_drug AS (
                SELECT d.case_id,
                       min(coalesce(d.ingredient, lower(d.product_name_reported))) FILTER (WHERE d.role = 'suspect')
                           AS key_drug
                FROM case_drug d JOIN c USING (case_id, version) GROUP BY d.case_id
            ), blocked AS (
                -- the blocking key first (cheap aggregates); the PT and ingredient lists only for the
                -- cases that share their whole key with another case: nobody else can form a pair
                SELECT c.case_id, c.version, c.received_on, c.sex, c.age, c.country, c.region, o.onset, d.key_drug
                FROM c JOIN onset o USING (case_id) JOIN key_drug d USING (case_id)
                WHERE o.onset IS NOT NULL AND d.key_drug IS NOT NULL
                QUALIFY count(*) OVER (PARTITION BY c.sex, c.age, o.onset, d.key_drug) > 1
            ), pts AS (
                SELECT r.case_id, list(DISTINCT lower(r.pt)) AS pts
                FROM case_reaction r JOIN blocked b USING (case_id, version) GROUP BY r.case_id
            ), ings AS (
                SELECT d.case_id, list(DISTINCT coalesce(d.ingredient, lower(d.product_name_reported))) AS ings
                FROM case_drug d JOIN blocked b USING (case_id, version) GROUP BY d.case_id
            ), k AS (
                SELECT b.case_id, b.received_on, b.sex, b.age, b.country, b.region, b.onset, p.pts, i.ings, b.key_drug
                FROM blocked b JOIN pts p USING (case_id) JOIN ings i USING (case_id)
            ), pairs AS (
                SELECT b.case_id, a.case_id AS candidate_of,
                       0.6 + 0.2 * len(list_intersect(a.ings, b.ings)) / greatest(len(list_distinct(list_concat(a.ings, b.ings))), 1)
                           + 0.2 * len(list_intersect(a.pts, b.pts)) / greatest(len(list_distinct(list_concat(a.pts, b.pts))), 1)
                           AS score
                FROM k a JOIN k b ON a.sex = b.sex AND a.age = b.age AND a.onset = b.onset AND a.key_drug = b.key_drug
                 AND (a.received_on < b.received_on OR (a.received_on = b.received_on AND a.case_id < b.case_id))
                 -- two known, different countries or states are two patients, however alike the reports
                 AND coalesce(a.country = b.country, true) AND coalesce(a.region = b.region, true)
            )
            SELECT case_id, candidate_of, round(score, 4),
                   'same sex, age (months under 2 years, else years), country/state, onset and first suspect '
                   || 'ingredient; 0.2 x ingredient overlap + 0.2 x PT overlap'
            FROM pairs WHERE score >= {DUPLICATE_SUGGEST_SCORE}""",
            {"p": prefix},
        )
        con.execute(
            f"""UPDATE case_report SET duplicate_of = s.candidate_of
            FROM (SELECT case_id, candidate_of,
                         row_number() OVER (PARTITION BY case_id ORDER BY score DESC, candidate_of) AS rk
                  FROM case_duplicate_suggestion WHERE starts_with(case_id, ?) AND score >= {DUPLICATE_FLAG_SCORE}) s
            WHERE s.rk = 1 AND case_report.case_id = s.case_id AND case_report.is_latest""",
            [prefix],
        )
        total += con.execute(
            "SELECT count(*) FROM latest_case WHERE starts_with(case_id, ?) AND duplicate_of IS NOT NULL", [prefix]
        ).fetchone()[0]
    return total


def _counts(con: duckdb.DuckDBPyConnection, fmt: str, info: StageInfo, duplicates: int) -> dict:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_latest AS
        SELECT case_id, max(version) AS version FROM stg_case
        WHERE case_id NOT IN (SELECT case_id FROM case_deleted) GROUP BY case_id"""
    )
    cases, versions, deleted = con.execute(
        """SELECT (SELECT count(*) FROM stg_latest), (SELECT count(*) FROM stg_case),
                  (SELECT count(DISTINCT case_id) FROM stg_deleted)"""
    ).fetchone()
    # the latest versions' drug rows, read once: every drug figure below is a pass over this narrow table
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_latest_drug AS
        SELECT d.product_name_reported, d.mapping_method, d.lot_reported IS NOT NULL AS has_lot,
               d.lot_expiry IS NOT NULL AS has_expiry, l.rejected
        FROM stg_drug_final d SEMI JOIN stg_latest USING (case_id, version) LEFT JOIN stg_lot l USING (lot_raw)"""
    )
    drugs, lots, unmapped_rows, expiry_split, distinct_unmapped = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE has_lot), count(*) FILTER (WHERE mapping_method = 'unmapped'),
                  count(*) FILTER (WHERE has_expiry),
                  count(DISTINCT product_name_reported) FILTER (WHERE mapping_method = 'unmapped')
        FROM stg_latest_drug"""
    ).fetchone()
    (reactions,) = con.execute(
        "SELECT count(*) FROM stg_reaction SEMI JOIN stg_latest USING (case_id, version)"
    ).fetchone()
    methods = dict(
        con.execute("SELECT mapping_method, count(*) FROM stg_latest_drug GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    )
    top = con.execute(
        f"""SELECT coalesce(product_name_reported, '(none)') AS name, count(*) AS n FROM stg_latest_drug
        WHERE mapping_method = 'unmapped' GROUP BY 1 ORDER BY n DESC, name LIMIT {TOP_UNMAPPED}"""
    ).fetchall()
    rejected = dict(
        con.execute(
            "SELECT rule, count(*) FROM (SELECT unnest(rejected) AS rule FROM stg_latest_drug) GROUP BY 1"
        ).fetchall()
    )
    con.execute("DROP TABLE stg_latest_drug")
    (quarantined,) = con.execute("SELECT count(*) FROM stg_quarantine").fetchone()
    reasons = dict(con.execute("SELECT reason, count(*) FROM stg_quarantine GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    totals = con.execute(
        """SELECT (SELECT count(*) FROM latest_case), (SELECT count(*) FROM case_report),
                  (SELECT count(*) FROM latest_case_drug), (SELECT count(*) FROM latest_case_reaction),
                  (SELECT count(*) FROM quarantine)"""
    ).fetchone()
    return {
        "format": fmt,
        "cases": cases,
        "case_versions": versions,
        "drugs": drugs,
        "reactions": reactions,
        "lots": lots,
        "lots_rejected": {rule: rejected.get(rule, 0) for rule in LOT_RULES},
        "lot_expiry_split": expiry_split,
        "quarantined": quarantined,
        "quarantine_reasons": reasons,
        "deleted_cases": deleted,
        "duplicates_flagged": duplicates,
        "ingredient_mapping": methods,
        "unmapped_drugs": {
            "rows": unmapped_rows,
            "distinct_names": distinct_unmapped,
            "top": [{"name": n, "rows": c} for n, c in top],
        },
        "warnings": info.warnings,
        **info.extra,
        "warehouse": dict(zip(("cases", "case_versions", "drugs", "reactions", "quarantined"), totals)),
    }

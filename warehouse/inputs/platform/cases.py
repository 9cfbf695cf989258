"""Adverse-event case versions (inbox/cases/*.jsonl) → case_report, case_drug, case_reaction.

Every valid version is kept; ``is_latest`` marks the highest version per case. A line that is
not valid JSON or breaks the contract (docs/inbox-format.md) is quarantined with the reason
and the raw line, never dropped. Reported drug names are mapped to products
(warehouse.linkage.products); suspected duplicates are flagged (``duplicate_of``), not deleted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.inbox import (
    FileAccount,
    account,
    counts_by_file,
    inbox_files,
    quarantine_frame,
    record_ingested,
    redact_text,
    replace_quarantine,
    replace_rows,
    run_clock,
    safe_error,
    write_manifest,
)
from warehouse.inputs.namespaces import inbox_case_sql, is_external_case_id
from warehouse.inputs.platform import plausibility
from warehouse.linkage.products import map_reported_products
from warehouse.pseudonym import pseudonymise
from warehouse.terminology.case_coding import code_case_reactions

SOURCES = {"patient_app", "hcp", "pharmacist", "literature", "regulator"}
QUALIFICATIONS = {"consumer", "physician", "pharmacist", "other_hcp", None}
SERIOUSNESS = {
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "other_medically_important",
}
OUTCOMES = {"recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal", "unknown", None}
ROLES = {"suspect", "concomitant", "interacting"}
DUPLICATE_ONSET_WINDOW_DAYS = 3
VERBATIM_MAX_CHARS = 1000  # a reaction in the reporter's words, not a narrative (issue 17)
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")  # ISO 639 code, optionally a BCP 47 subtag


class CaseRejected(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _date(value, field: str, *, required: bool = False) -> dt.date | None:
    if value is None or value == "":
        if required:
            raise CaseRejected("missing_field", f"{field} is required")
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CaseRejected("bad_date", f"{field}={value!r} is not a valid ISO date") from None


def _one_of(value, allowed) -> bool:
    """Membership that a JSON list or object (unhashable) fails instead of raising TypeError."""
    return (value is None or isinstance(value, str)) and value in allowed


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_case_line(
    line: str, *, clock: dt.date | None = None, onset_rule: bool = True
) -> tuple[dict, list[dict], list[dict]]:
    """One JSON line → (case row, drug rows, reaction rows); raises CaseRejected with a reason.

    ``clock``: no date may lie after it (reason ``after_run_clock``); ``onset_rule``: an onset
    after receipt is ``impossible_date`` (warehouse.inputs.platform.plausibility)."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CaseRejected("bad_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise CaseRejected("bad_json", "a case line must be a JSON object")
    case_id = _text(doc.get("case_id"))
    if not case_id:
        raise CaseRejected("missing_field", "case_id is required")
    if is_external_case_id(case_id):
        raise CaseRejected("invalid_value", f"case_id {case_id!r} uses a prefix reserved for ingested sources")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CaseRejected("invalid_value", f"version={version!r} must be an integer ≥ 1")
    received = _date(doc.get("received_on"), "received_on", required=True)
    if clock is not None and received > clock:
        raise CaseRejected("after_run_clock", f"received_on {received} is after the run's clock {clock}")
    source = doc.get("source")
    if not _one_of(source, SOURCES):
        raise CaseRejected("invalid_value", f"source={source!r} not one of {sorted(SOURCES)}")
    qualification = doc.get("reporter_qualification")
    if not _one_of(qualification, QUALIFICATIONS):
        raise CaseRejected("invalid_value", f"reporter_qualification={qualification!r}")
    sex = doc.get("sex")
    if not _one_of(sex, ("F", "M", None)):
        raise CaseRejected("invalid_value", f"sex={sex!r} must be F, M or null")
    age = doc.get("age_years")
    if age is not None and (not isinstance(age, (int, float)) or isinstance(age, bool) or not 0 <= age <= 120):
        raise CaseRejected("invalid_value", f"age_years={age!r} must be 0–120 or null")
    seriousness = doc.get("seriousness") or []
    if not isinstance(seriousness, list) or not all(_one_of(s, SERIOUSNESS) and s for s in seriousness):
        raise CaseRejected("invalid_value", f"seriousness={seriousness!r}")
    outcome = doc.get("outcome")
    if not _one_of(outcome, OUTCOMES):
        raise CaseRejected("invalid_value", f"outcome={outcome!r}")

    drugs_in = doc.get("drugs") or []
    if not isinstance(drugs_in, list) or not drugs_in:
        raise CaseRejected("missing_drugs", "a case needs at least one drug")
    drugs = []
    for seq, d in enumerate(drugs_in):
        if not isinstance(d, dict):
            raise CaseRejected("invalid_value", f"drugs[{seq}] is not an object")
        if not _one_of(d.get("role"), ROLES):
            raise CaseRejected("invalid_value", f"drugs[{seq}].role={d.get('role')!r}")
        name, code = _text(d.get("product_name")), _text(d.get("pack_code"))
        if not name and not code:
            raise CaseRejected("missing_field", f"drugs[{seq}] needs product_name or pack_code")
        drugs.append(
            {
                "case_id": case_id,
                "version": version,
                "drug_seq": seq,
                "role": d["role"],
                "product_name_reported": name,
                "lot_reported": _text(d.get("lot")),
                "pack_code_reported": code,
                "start_date": _date(d.get("start_date"), f"drugs[{seq}].start_date"),
            }
        )

    reactions_in = doc.get("reactions") or []
    if not isinstance(reactions_in, list) or not reactions_in:
        raise CaseRejected("missing_reactions", "a case needs at least one reaction")
    reactions = []
    for seq, r in enumerate(reactions_in):
        pt = _text(r.get("pt")) if isinstance(r, dict) else None
        # issue 17: a reaction in the reporter's own words (coded during the run when a MedDRA release is loaded)
        words = _text(r.get("verbatim")) if isinstance(r, dict) else None
        if not pt and not words:
            raise CaseRejected("missing_field", f"reactions[{seq}] needs a pt or a verbatim")
        if words and len(words) > VERBATIM_MAX_CHARS:
            raise CaseRejected(
                "invalid_value", f"reactions[{seq}].verbatim is longer than {VERBATIM_MAX_CHARS} characters"
            )
        language = r.get("language")
        if language is not None and not (isinstance(language, str) and _LANGUAGE.fullmatch(language)):
            raise CaseRejected("invalid_value", f"reactions[{seq}].language={language!r} is not a language code")
        onset = _date(r.get("onset_date"), f"reactions[{seq}].onset_date")
        if clock is not None and onset is not None and onset > clock:
            raise CaseRejected("after_run_clock", f"reactions[{seq}].onset_date {onset} is after the run's clock")
        if onset_rule and onset is not None and onset > received:
            raise CaseRejected("impossible_date", f"reactions[{seq}].onset_date {onset} after received_on {received}")
        reactions.append(
            {
                "case_id": case_id,
                "version": version,
                "reaction_seq": seq,
                "pt": pt,
                "soc": _text(r.get("soc")),
                "onset_date": onset,
                "verbatim": words,
                "verbatim_language": language if words else None,
            }
        )

    case = {
        "case_id": case_id,
        "version": version,
        "received_on": received,
        "source": source,
        "reporter_qualification": qualification,
        "country": _text(doc.get("country")),
        "patient_ref": _text(doc.get("patient_ref")),
        "age_years": None if age is None else float(age),
        "sex": sex,
        "serious": bool(seriousness),
        "seriousness": list(seriousness),
        "outcome": outcome,
        "narrative": _text(doc.get("narrative")),
    }
    return case, drugs, reactions


_CASE_SCHEMA = {
    "case_id": pl.String,
    "version": pl.Int32,
    "received_on": pl.Date,
    "source": pl.String,
    "reporter_qualification": pl.String,
    "country": pl.String,
    "patient_ref": pl.String,
    "age_years": pl.Float64,
    "sex": pl.String,
    "serious": pl.Boolean,
    "seriousness": pl.List(pl.String),
    "outcome": pl.String,
    "narrative": pl.String,
    "source_file": pl.String,
}
_DRUG_SCHEMA = {
    "case_id": pl.String,
    "version": pl.Int32,
    "drug_seq": pl.Int32,
    "role": pl.String,
    "product_name_reported": pl.String,
    "lot_reported": pl.String,
    "pack_code_reported": pl.String,
    "start_date": pl.Date,
}
_REACTION_SCHEMA = {
    "case_id": pl.String,
    "version": pl.Int32,
    "reaction_seq": pl.Int32,
    "pt": pl.String,
    "soc": pl.String,
    "onset_date": pl.Date,
    "verbatim": pl.String,
    "verbatim_language": pl.String,
}


#: a case line longer than this is quarantined on its own (``line_too_long``)
CASE_MAX_LINE_BYTES = 2 * 1024 * 1024


def _rejected(f, lineno: int, reason: str, detail: str, raw: str | None, salt: str) -> dict:
    return {
        "source_file": str(f.path),
        "line": lineno,
        "record_key": f"line {lineno}",
        "reason": reason,
        "detail": detail,
        "raw": redact_text(raw[:4000], salt) if raw is not None else None,
    }


def read_case_files(inbox: Path, salt: str = ""):
    """Every case file, line by line: each line is decoded (UTF-8, nothing else: the format says
    so), parsed and checked on its own; a bad line is quarantined with its line number and a
    redacted copy, and the file's other lines load. A file that cannot be opened is quarantined whole."""
    files = inbox_files(inbox, "cases")
    clock = run_clock().date() if plausibility.enabled("not_after_clock") else None
    onset_rule = plausibility.enabled("onset_not_after_receipt")
    cases, drugs, reactions, rejected, accounts = [], [], [], [], []
    for f in files:
        acc = FileAccount(f, "jsonl")
        accounts.append(acc)
        if f.n_bytes == 0:
            acc.error = "empty_file: 0 bytes"
            rejected.append({"source_file": str(f.path), "reason": "empty_file", "detail": "whole file: 0 bytes"})
            continue
        try:
            fh = f.path.open("rb")
        except OSError as exc:
            acc.error = f"unreadable_file: {safe_error(exc)}"
            rejected.append({"source_file": str(f.path), "reason": "unreadable_file", "detail": "whole file"})
            continue
        with fh:
            for lineno, data in enumerate(fh, start=1):
                if not data.strip():
                    continue
                acc.rows_read += 1
                if len(data) > CASE_MAX_LINE_BYTES:
                    rejected.append(
                        _rejected(
                            f, lineno, "line_too_long", f"{len(data):,} bytes > {CASE_MAX_LINE_BYTES:,}", None, salt
                        )
                    )
                    continue
                try:
                    line = data.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
                    rejected.append(
                        _rejected(f, lineno, "bad_encoding", f"not UTF-8 at byte {exc.start} of the line", raw, salt)
                    )
                    continue
                try:
                    case, d, r = parse_case_line(line, clock=clock, onset_rule=onset_rule)
                except CaseRejected as exc:
                    rejected.append(_rejected(f, lineno, exc.reason, exc.detail, line.rstrip("\r\n"), salt))
                    continue
                doc = len(cases)  # ties a case version's drugs and reactions to this very line
                case["source_file"], case["_doc"], case["_line"] = str(f.path), doc, lineno
                cases.append(case)
                drugs.extend({**x, "_doc": doc} for x in d)
                reactions.extend({**x, "_doc": doc} for x in r)
    return (
        pl.DataFrame(cases, schema={**_CASE_SCHEMA, "_doc": pl.Int64, "_line": pl.Int64}),
        pl.DataFrame(drugs, schema={**_DRUG_SCHEMA, "_doc": pl.Int64}),
        pl.DataFrame(reactions, schema={**_REACTION_SCHEMA, "_doc": pl.Int64}),
        quarantine_frame(rejected),
        files,
        accounts,
    )


def load_cases(con: duckdb.DuckDBPyConnection, inbox: Path, salt: str) -> dict[str, int]:
    cases, drugs, reactions, rejected, files, accounts = read_case_files(inbox, salt)
    # the same (case, version) re-delivered: the last line read wins, with its own drugs and reactions
    last = cases.unique(subset=["case_id", "version"], keep="last", maintain_order=True)
    superseded = cases.join(last.select("_doc"), on="_doc", how="anti")
    rejected = pl.concat(
        [
            rejected,
            quarantine_frame(
                superseded.select(
                    "source_file",
                    pl.col("_line").alias("line"),
                    pl.format("{} v{}", "case_id", "version").alias("record_key"),
                    pl.lit("superseded").alias("reason"),
                    pl.lit("the same case_id and version delivered again later (the later line is loaded)").alias(
                        "detail"
                    ),
                )
            ),
        ]
    )
    cases = last.drop("_line")
    kept = cases.select("_doc")
    drugs = drugs.join(kept, on="_doc", how="semi").drop("_doc")
    reactions = reactions.join(kept, on="_doc", how="semi").drop("_doc")
    cases = cases.drop("_doc")

    latest = cases.group_by("case_id").agg(pl.col("version").max().alias("_latest"))
    cases = (
        cases.join(latest, on="case_id")
        .with_columns(
            (pl.col("version") == pl.col("_latest")).alias("is_latest"),
            pseudonymise(pl.col("patient_ref"), salt).alias("patient_key"),
            pl.lit(None, dtype=pl.String).alias("duplicate_of"),
        )
        .drop("_latest", "patient_ref")
    )

    products = con.sql("SELECT product_id, name, ingredient FROM product").pl()
    drugs = map_reported_products(
        drugs.with_columns(pl.col("product_name_reported").fill_null("")), products
    ).with_columns(pl.col("product_name_reported").replace("", None))

    counts = {
        "case_versions": replace_rows(con, "case_report", cases, where=inbox_case_sql()),
        "case_drugs": replace_rows(con, "case_drug", drugs, where=inbox_case_sql()),
        "case_reactions": replace_rows(con, "case_reaction", reactions, where=inbox_case_sql()),
        "quarantined": replace_quarantine(con, "cases", rejected),
    }
    counts.update(code_case_reactions(con))  # issue 17: verbatims -> PTs when a MedDRA release is loaded
    counts["cases"] = con.sql(f"SELECT count(*) FROM latest_case WHERE {inbox_case_sql()}").fetchone()[0]
    counts["duplicates_flagged"] = flag_duplicates(con)
    loaded = counts_by_file(cases["source_file"]) if cases.height else {}
    counts.update(write_manifest(con, "cases", account(accounts, loaded, rejected)))
    record_ingested(con, files)
    return counts


def flag_duplicates(con: duckdb.DuckDBPyConnection, window_days: int = DUPLICATE_ONSET_WINDOW_DAYS) -> int:
    """Flag latest cases that repeat an earlier case; return how many are flagged.

    Two rules, both requiring a shared suspect/interacting ingredient and a shared PT:

    - *same patient*: the same pseudonymous patient key, onsets within ``window_days``;
    - *same patient profile* (a patient key missing on either side, as in most HCP and
      pharmacist reports): the same onset date, country and sex, ages within one year
      (a missing sex or age does not contradict).

    The case received later (ties: higher case id) gets ``duplicate_of`` = the earliest match.
    A flag, never a deletion: statistics exclude flagged cases; an analyst can clear the flag.
    """
    con.execute(f"UPDATE case_report SET duplicate_of = NULL WHERE {inbox_case_sql()}")
    con.execute(
        f"""
        WITH keyed AS (
            SELECT DISTINCT c.case_id, c.received_on, c.patient_key, c.country, c.sex, c.age_years,
                   d.ingredient, r.pt, r.onset_date
            FROM latest_case c
            JOIN latest_case_drug d USING (case_id)
            JOIN latest_case_reaction r USING (case_id)
            WHERE d.ingredient IS NOT NULL AND d.role <> 'concomitant' AND {inbox_case_sql("c.case_id")}
        ),
        -- each rule an equi-join of its own (one join with the OR of both rules compared every
        -- pair of cases sharing an ingredient and a PT: quadratic in the size of those groups)
        matches AS (
            SELECT b.case_id AS dup, a.case_id AS orig, a.received_on AS orig_received_on
            FROM keyed a JOIN keyed b
              ON a.ingredient = b.ingredient AND a.pt = b.pt AND a.patient_key = b.patient_key
            WHERE a.case_id <> b.case_id
              AND (a.received_on < b.received_on OR (a.received_on = b.received_on AND a.case_id < b.case_id))
              AND abs(date_diff('day', coalesce(a.onset_date, a.received_on),
                                coalesce(b.onset_date, b.received_on))) <= {int(window_days)}
            UNION
            SELECT b.case_id AS dup, a.case_id AS orig, a.received_on AS orig_received_on
            FROM keyed a JOIN keyed b
              ON a.ingredient = b.ingredient AND a.pt = b.pt AND a.onset_date = b.onset_date
             AND a.country IS NOT DISTINCT FROM b.country
            WHERE a.case_id <> b.case_id
              AND (a.received_on < b.received_on OR (a.received_on = b.received_on AND a.case_id < b.case_id))
              AND (a.patient_key IS NULL OR b.patient_key IS NULL)
              AND (a.sex IS NULL OR b.sex IS NULL OR a.sex = b.sex)
              AND (a.age_years IS NULL OR b.age_years IS NULL OR abs(a.age_years - b.age_years) <= 1)
        ),
        pairs AS (
            SELECT dup, orig, row_number() OVER (PARTITION BY dup ORDER BY orig_received_on, orig) AS rk
            FROM matches
        )
        UPDATE case_report SET duplicate_of = pairs.orig
        FROM pairs WHERE pairs.rk = 1 AND case_report.case_id = pairs.dup AND case_report.is_latest
        """
    )
    return con.sql(
        f"SELECT count(*) FROM latest_case WHERE duplicate_of IS NOT NULL AND {inbox_case_sql()}"
    ).fetchone()[0]

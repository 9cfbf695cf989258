"""openFDA drug-event JSON (E2B(R2) names, optionally harmonised) → staging.

A file may hold an API download (``{"meta": …, "results": [report, …]}``), a JSON array of
reports, one report object (the ``event.*.json`` samples) or JSON lines. JSON files in the
input that hold no report (schemas, NDC or harmonisation files sitting in the same folder) are
skipped and named in ``warnings``.

* case id ``OPENFDA-<safetyreportid>``; version ``safetyreportversion`` (1 when absent);
  received_on ``receivedate`` (else ``receiptdate``), format 102 CCYYMMDD.
* seriousness flags ``seriousnessdeath`` / ``…lifethreatening`` / ``…hospitalization`` /
  ``…disabling`` / ``…congenitalanomali`` / ``…other`` = "1"; serious = ``serious`` = "1".
  Outcome: fatal on death, else the most severe ``reactionoutcome`` (R2: 1 recovered,
  2 recovering, 3 not recovered, 4 with sequelae, 5 fatal, 6 unknown).
* patient: ``patientonsetage`` × ``patientonsetageunit`` (800 decade, 801 year, 802 month,
  803 week, 804 day, 805 hour), ``patientsex`` 1 M / 2 F; reporter ``primarysource.qualification``
  (1 physician, 2 pharmacist, 3 other HCP, 4 lawyer, 5 consumer), country ``occurcountry``
  else ``primarysource.reportercountry``.
* ``patient.reaction[].reactionmeddrapt`` → PT names; ``patient.drug[]``: role
  ``drugcharacterization`` (1 suspect, 2 concomitant, 3 interacting), ``medicinalproduct``,
  lot ``drugbatchnumb``, start ``drugstartdate`` (format 102); ingredient from the harmonised
  ``openfda.substance_name`` (method ``openfda_substance_name``), else
  ``openfda.generic_name`` (``openfda_generic_name``), else ``activesubstance.activesubstancename``
  (``openfda_activesubstance``).

A report without ``safetyreportid`` or a received date, a reaction without a PT, a drug without
a role are quarantined with the reason (raw JSON kept, cut at 4,000 characters).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import PurePath

import duckdb

from warehouse.inputs.regulator import IngestError, InputFile, InputSet, StageInfo, insert_rows

SERIOUSNESS = {
    "seriousnessdeath": "death",
    "seriousnesslifethreatening": "life_threatening",
    "seriousnesshospitalization": "hospitalisation",
    "seriousnessdisabling": "disability",
    "seriousnesscongenitalanomali": "congenital_anomaly",
    "seriousnessother": "other_medically_important",
}
OUTCOMES = {
    "1": "recovered",
    "2": "recovering",
    "3": "not_recovered",
    "4": "recovered_with_sequelae",
    "5": "fatal",
    "6": "unknown",
}
OUTCOME_SEVERITY = ["fatal", "not_recovered", "recovered_with_sequelae", "recovering", "recovered", "unknown"]
ROLES = {"1": "suspect", "2": "concomitant", "3": "interacting"}
QUALIFICATIONS = {"1": "physician", "2": "pharmacist", "3": "other_hcp", "4": "lawyer", "5": "consumer"}
AGE_UNIT_YEARS = {"800": 10.0, "801": 1.0, "802": 1 / 12, "803": 7 / 365.25, "804": 1 / 365.25, "805": 1 / 8766}


class ReportRejected(ValueError):
    pass


def _s(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = "; ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    text = str(value).strip()
    return text or None


def _date(value, fmt=None) -> dt.date | None:
    text = _s(value)
    if not text or (fmt not in (None, "102")) or len(text) != 8:
        return None
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


class _BadLine:
    """A JSON Lines line that is not JSON: quarantined as one report, the other lines still read."""

    def __init__(self, number: int, error: str):
        self.number, self.error = number, error


def read_reports(f: InputFile) -> list | None:
    """The reports in one JSON file, or None when the file holds no drug-event report.

    Accepts the API's ``{"meta": …, "results": [...]}``, a bare array, one report object, or
    JSON Lines (one report per line; a line that is not JSON becomes a quarantined report).
    """
    try:
        text = f.local.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReportRejected(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = json.loads(text)
        docs = (
            doc["results"]
            if isinstance(doc, dict) and isinstance(doc.get("results"), list)
            else (doc if isinstance(doc, list) else [doc])
        )
    except (json.JSONDecodeError, RecursionError):
        docs = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                docs.append(_BadLine(number, str(exc)))
        if docs and all(isinstance(d, _BadLine) for d in docs):
            raise ReportRejected(f"not JSON or JSON lines: {docs[0].error}") from None
    if not any(isinstance(d, dict) and ("safetyreportid" in d or "patient" in d) for d in docs):
        return None
    return docs


def parse_report(doc: dict, source_file: str) -> tuple[dict, list[dict], list[dict]]:
    if isinstance(doc, _BadLine):
        raise ReportRejected(f"line {doc.number} is not JSON: {doc.error}")
    if not isinstance(doc, dict):
        raise ReportRejected("a report must be a JSON object")
    rid = _s(doc.get("safetyreportid"))
    if not rid:
        raise ReportRejected("no safetyreportid")
    try:
        version = int(_s(doc.get("safetyreportversion")) or 1)
    except ValueError:
        raise ReportRejected(f"safetyreportversion {doc.get('safetyreportversion')!r} is not an integer") from None
    received = _date(doc.get("receivedate"), _s(doc.get("receivedateformat"))) or _date(
        doc.get("receiptdate"), _s(doc.get("receiptdateformat"))
    )
    if received is None:
        raise ReportRejected(f"safetyreportid {rid}: no valid receivedate/receiptdate (CCYYMMDD)")
    case_id = f"OPENFDA-{rid}"
    patient = doc.get("patient") or {}
    seriousness = sorted(v for k, v in SERIOUSNESS.items() if _s(doc.get(k)) == "1")
    age = None
    try:
        factor = AGE_UNIT_YEARS.get(_s(patient.get("patientonsetageunit")) or "801")
        age = float(patient["patientonsetage"]) * factor if patient.get("patientonsetage") not in (None, "") else None
    except (TypeError, ValueError):
        age = None
    source = doc.get("primarysource") or {}
    reactions, outcomes = [], []
    for seq, r in enumerate(patient.get("reaction") or [], start=1):
        r = r if isinstance(r, dict) else {}
        outcome = OUTCOMES.get(_s(r.get("reactionoutcome")) or "")
        if outcome:
            outcomes.append(outcome)
        reactions.append(
            {
                "case_id": case_id,
                "version": version,
                "reaction_seq": seq,
                "pt": _s(r.get("reactionmeddrapt")),
                "meddra_version": _s(r.get("reactionmeddraversionpt")),
            }
        )
    drugs = []
    for seq, d in enumerate(patient.get("drug") or [], start=1):
        d = d if isinstance(d, dict) else {}
        harmonised = d.get("openfda") or {}
        active = (
            (d.get("activesubstance") or {}).get("activesubstancename")
            if isinstance(d.get("activesubstance"), dict)
            else None
        )
        ingredient, method = None, None
        for value, name in (
            (harmonised.get("substance_name"), "openfda_substance_name"),
            (harmonised.get("generic_name"), "openfda_generic_name"),
            (active, "openfda_activesubstance"),
        ):
            if _s(value):
                ingredient, method = _s(value), name
                break
        brand = _s(harmonised.get("brand_name"))
        drugs.append(
            {
                "case_id": case_id,
                "version": version,
                "drug_seq": seq,
                "role": ROLES.get(_s(d.get("drugcharacterization")) or ""),
                "product_name_reported": _s(d.get("medicinalproduct")) or brand or ingredient,
                "ingredient_reported": ingredient,
                "ingredient_method": method,
                "lot_raw": _s(d.get("drugbatchnumb")),
                "start_date": _date(d.get("drugstartdate"), _s(d.get("drugstartdateformat"))),
            }
        )
    case = {
        "case_id": case_id,
        "version": version,
        "received_on": received,
        "source": "regulator",
        "reporter_qualification": QUALIFICATIONS.get(_s(source.get("qualification")) or ""),
        "country": _s(doc.get("occurcountry")) or _s(source.get("reportercountry")),
        "age_years": round(age, 3) if age is not None and 0 <= age <= 130 else None,
        "sex": {"1": "M", "2": "F"}.get(_s(patient.get("patientsex")) or ""),
        "serious": _s(doc.get("serious")) == "1" if _s(doc.get("serious")) else bool(seriousness),
        "seriousness": seriousness,
        "outcome": "fatal" if "death" in seriousness else next((o for o in OUTCOME_SEVERITY if o in outcomes), None),
        "narrative": None,
        "onset_date": None,
        "source_file": source_file,
    }
    return case, drugs, reactions


def stage(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> StageInfo:
    info = StageInfo()
    json_files = [f for f in inputs.files if PurePath(f.local).suffix.lower() in (".json", ".jsonl", ".ndjson")]
    cases, drugs, reactions, quarantine, skipped = [], [], [], [], []
    for f in json_files:
        try:
            docs = read_reports(f)
        except ReportRejected as exc:
            quarantine.append(
                {"source_file": f.name, "record_key": "file", "reason": "unparsable_json", "detail": str(exc)}
            )
            continue
        if docs is None:
            skipped.append(PurePath(f.local).name)
            continue
        for i, doc in enumerate(docs):
            try:
                case, d, r = parse_report(doc, f.name)
            except ReportRejected as exc:
                quarantine.append(
                    {
                        "source_file": f.name,
                        "record_key": f"report #{i + 1}",
                        "reason": "unparsable_report",
                        "detail": str(exc),
                        "raw": json.dumps(doc, default=str)[:4000],
                    }
                )
                continue
            n = len(cases)
            cases.append({**case, "_doc": n})
            drugs.extend({**x, "_doc": n} for x in d)
            reactions.extend({**x, "_doc": n} for x in r)
    if not cases and not quarantine:
        raise IngestError(
            f"{inputs.path}: no openFDA drug-event report (an object with safetyreportid and patient) "
            f"in {len(json_files)} JSON files"
        )
    if not cases and all(q["reason"] == "unparsable_json" for q in quarantine):
        first = quarantine[0]
        raise IngestError(f"{first['source_file']}: cannot read as openFDA JSON ({first['detail']})")
    if skipped:
        info.warnings.append(f"skipped {len(skipped)} JSON files without drug-event reports: {', '.join(skipped)}")
    insert_rows(con, "stg_case", cases)
    insert_rows(con, "stg_drug", drugs)
    insert_rows(con, "stg_reaction", reactions)
    insert_rows(con, "stg_quarantine", quarantine)
    info.extra["reports"] = len(cases)
    return info

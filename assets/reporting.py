"""Signal register → what the regulators receive, per jurisdiction and month (monthly partitions).

For each jurisdiction (NMPA, EMA, FDA, PMDA) and month:

* ``regulatory_report_<j>``: the periodic signal report, HTML and PDF, under ``output/reports/``
  (``periodic_signal_report_<j>_<YYYY-MM>.{html,pdf}``), with the expedited-reporting clock also
  written as a table (``expedited_clock_<j>_<YYYY-MM>.csv``);
* ``e2b_icsr_batch_<j>``: the serious cases of the month as one ICH E2B(R3) batch file under
  ``output/e2b/`` (``e2b_icsr_<j>_<YYYY-MM>.xml``), validated against the ICH schema and the
  regulator's business rules (``reports.e2b.rules``) before it is written; an invalid file goes to
  ``output/e2b/rejected/`` with its errors, the asset's ``ich_schema_valid`` check fails and the report
  says the file was not shipped. The sender comes from ``$PVTRACE_E2B_SENDER`` (``reports.e2b.sender``);
  without it the asset fails with a message saying what to configure.

And once per month, ``ermr_export``: an eRMR-style CSV per active substance under
``output/ermr/<YYYY-MM>/``.

Only these assets are partitioned; the rest of the graph is not. ``dg.materialize`` (and
``dagster asset materialize --select '*'``) refuses a mix without a partition key, so the
``pvtrace`` CLI materialises the unpartitioned graph first, then these assets for each month the
data covers (docs/architecture.md, "Assets and jobs"). The monthly schedule builds the month just ended.
"""

import datetime as dt
import json
import os
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dagster as dg
import polars as pl

from assets.detection import exposure
from assets.ingestion import supply_events
from assets.register import priority_threshold, signal_register
from assets.resources import InboxResource, OutputResource, WarehouseResource
from reports import ermr
from reports.e2b.sender import Sender, SenderConfigError, load_sender
from reports.e2b.terminology import MeddraCoding
from reports.e2b.validation import default_schema_path
from reports.e2b.writer import IcsrBatch, build_batch, write_validated
from reports.expedited import expedited_clock, write_clock_csv
from reports.jurisdictions import JURISDICTION_CODES, JURISDICTIONS, Jurisdiction
from reports.periodic_report import ReportInputs, priority_page_ids, write_periodic_report
from signals.scoring import score_pairs
from warehouse.inputs.inbox import run_clock
from warehouse.queries import report_queries as rq
from warehouse.queries.read_model import data_lock_point
from warehouse.terminology.hierarchy import e2b_llt_mapping

GROUP = "reporting"
# the first month a report can be asked for; the demo world's cases start in January 2024
REPORT_START = os.environ.get("PVTRACE_REPORT_START", "2024-01-01")
# the schedule fires at 04:00 UTC on the 1st for the month just ended (the partition's end + 4 h)
MONTHLY = dg.MonthlyPartitionsDefinition(start_date=REPORT_START, hour_offset=4, timezone="UTC")


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when the code runs from a checkout (``0.1.0+g1f7c0a4``)."""
    try:
        v = version("pvtrace")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{v}+g{sha}{'.dirty' if dirty else ''}" if sha else v
    except (OSError, subprocess.SubprocessError):
        return v


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def period_of(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def _relative_lineage(lineage: pl.DataFrame, inbox: Path) -> pl.DataFrame:
    """Input paths relative to the inbox, so the same files give the same report wherever the inbox lives."""
    root = str(inbox.resolve()).rstrip("/") + "/"
    return lineage.with_columns(
        pl.col("path").map_elements(lambda p: p.removeprefix(root), return_dtype=pl.String)
    ).sort("kind", "path")


def meddra_coding(con) -> MeddraCoding | None:
    """The loaded MedDRA release (English) as the E2B writer's term -> LLT code map; ``None`` when none is loaded."""
    mapping = e2b_llt_mapping(con)
    if not mapping:
        return None
    version = next(iter(mapping.values()))[1]
    return MeddraCoding(version, {term: f"{code:08d}" for term, (code, _) in mapping.items()})


def period_lock_point(con, end: dt.date) -> dt.date:
    """The period end; a period the data does not reach yet locks at the last case received."""
    last = data_lock_point(con)
    return min(end, last) if last else end


def report_inputs(
    con, j: Jurisdiction, start: dt.date, end: dt.date, inbox: Path, *, run_id: str, generated_at: str, version: str
) -> ReportInputs:
    """What one jurisdiction's periodic report of the period ``start``–``end`` shows, read from the warehouse
    (the data lock point: :func:`period_lock_point`); the asset and the report benchmark both build it here."""
    dlp = period_lock_point(con, end)
    signals = rq.period_signals(con, j.market_region, start, dlp)
    ids = signals["signal_id"].to_list()
    return ReportInputs(
        jurisdiction=j,
        period_start=start,
        period_end=end,
        data_lock_point=dlp,
        run_id=run_id,
        generated_at=generated_at,
        code_version=version,
        summary=rq.scope_summary(con, j.market_region, start, dlp),
        signals=signals,
        signal_cases=rq.signal_cases(con, ids, dlp),
        batches=rq.signal_batch_annex(con, ids, dlp),
        clock=expedited_clock(rq.expedited_cases(con, j.market_region, start, dlp), j, dlp),
        lineage=_relative_lineage(rq.input_lineage(con), inbox),
        # full pages for the signals at or above the priority threshold or with a status change (issue 14)
        full_pages=frozenset(priority_page_ids(signals.to_dicts(), threshold := priority_threshold())),
        priority_threshold=threshold,
    )


def e2b_batch_for(
    con,
    j: Jurisdiction,
    start: dt.date,
    end: dt.date,
    *,
    run_created: dt.datetime,
    sender: Sender,
    meddra: MeddraCoding | None = None,
) -> IcsrBatch | None:
    cases = rq.expedited_cases(con, j.market_region, start, end)
    if cases.is_empty():
        return None
    rows = rq.icsr_rows(con, cases["case_id"].to_list())
    return build_batch(
        rows, jurisdiction=j, period_label=f"{start:%Y-%m}", created=run_created, sender=sender, meddra=meddra
    )


def _report_asset(code: str):
    j = JURISDICTIONS[code]

    @dg.asset(
        name=f"regulatory_report_{code}",
        group_name=GROUP,
        kinds={"html", "pdf"},
        partitions_def=MONTHLY,
        deps=[signal_register, exposure, supply_events, f"e2b_icsr_batch_{code}"],
        description=f"Periodic signal report for {j.authority} (HTML + PDF, {' + '.join(j.languages)}), with the "
        "batch traceability annex and the expedited-reporting clock, under output/reports/.",
    )
    def regulatory_report(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, output: OutputResource, inbox: InboxResource
    ) -> dg.MaterializeResult:
        start, end = period_of(context)
        reports = output.folder("reports")
        with warehouse.connect(read_only=True) as con:
            inputs = report_inputs(
                con, j, start, end, inbox.folder, run_id=context.run.run_id, generated_at=_now(), version=code_version()
            )
        signals, clock = inputs.signals, inputs.clock
        clock_path = write_clock_csv(clock, reports / f"expedited_clock_{code}_{start:%Y-%m}.csv")
        inputs.files["clock"] = clock_path.name
        e2b_status = output.folder("e2b") / f"e2b_icsr_{code}_{start:%Y-%m}.status.json"
        if e2b_status.exists():
            status = json.loads(e2b_status.read_text())
            if status.get("status") == "not_exported":
                inputs.e2b_not_exported = status["reason"]
            else:
                inputs.e2b = status
        paths = write_periodic_report(inputs, reports)
        context.log.info(f"{code}: {inputs.stem} with {signals.height} signals, {clock.height} cases on the clock")
        return dg.MaterializeResult(
            metadata={
                "html": dg.MetadataValue.path(str(paths["html"])),
                "pdf": dg.MetadataValue.path(str(paths["pdf"])),
                "clock": dg.MetadataValue.path(str(clock_path)),
                "data_lock_point": str(inputs.data_lock_point),
                "signals": signals.height,
                "new_signals": int((signals["category"] == "new").sum()) if signals.height else 0,
                "expedited_cases": clock.height,
                "overdue": int((clock["status"] == "overdue").sum()) if clock.height else 0,
            }
        )

    return regulatory_report


def _e2b_asset(code: str):
    j = JURISDICTIONS[code]

    @dg.asset(
        name=f"e2b_icsr_batch_{code}",
        group_name=GROUP,
        kinds={"xml"},
        partitions_def=MONTHLY,
        deps=[signal_register],
        check_specs=[
            dg.AssetCheckSpec(
                "ich_schema_valid",
                asset=f"e2b_icsr_batch_{code}",
                description="The batch file validates against the ICH E2B(R3) XSD and has no rejection-level "
                "business-rule finding (reports.e2b.rules)",
            )
        ],
        description=f"ICH E2B(R3) batch file of the month's serious cases for {j.authority}, validated against the ICH "
        "schema before it is written to output/e2b/ (invalid: output/e2b/rejected/, check failed, "
        "and the report says it was not shipped).",
    )
    def e2b_icsr_batch(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, output: OutputResource
    ) -> dg.MaterializeResult:
        start, end = period_of(context)
        folder = output.folder("e2b")
        stem = f"e2b_icsr_{code}_{start:%Y-%m}"
        status_path = folder / f"{stem}.status.json"
        try:
            sender = load_sender()
        except SenderConfigError as exc:
            # PV Trace never invents a sender: without one no E2B file is written (the rest of the run goes on),
            # the status file and a failed (warning) check say what to configure
            (folder / f"{stem}.xml").unlink(missing_ok=True)
            status_path.write_text(
                json.dumps({"status": "not_exported", "reason": str(exc)}, indent=1, sort_keys=True), encoding="utf-8"
            )
            context.log.warning(f"{stem}: no E2B file written: {exc}")
            return dg.MaterializeResult(
                metadata={"icsrs": 0, "status": "not exported: no E2B sender configured"},
                check_results=[
                    dg.AssetCheckResult(
                        check_name="ich_schema_valid",
                        passed=False,
                        severity=dg.AssetCheckSeverity.WARN,
                        description=f"no file written: {exc}",
                    )
                ],
            )
        # N.1.5 / N.2.r.4 / C.1.2 are the run's clock, never after it (a gateway rejects future times)
        created = run_clock().astimezone(dt.UTC).replace(microsecond=0)
        with warehouse.connect(read_only=True) as con:
            dlp = period_lock_point(con, end)
            # without a loaded MedDRA release the status says the file is not gateway-ready
            batch = e2b_batch_for(con, j, start, dlp, run_created=created, sender=sender, meddra=meddra_coding(con))
        if batch is None:
            status_path.unlink(missing_ok=True)
            (folder / f"{stem}.xml").unlink(missing_ok=True)
            return dg.MaterializeResult(
                metadata={"icsrs": 0, "status": "no serious case in scope"},
                check_results=[
                    dg.AssetCheckResult(
                        check_name="ich_schema_valid", passed=True, description="no file: no serious case in scope"
                    )
                ],
            )
        result = write_validated(batch, folder / f"{stem}.xml", schema=default_schema_path(), clock=created)
        status = result.status(batch)
        status_path.write_text(json.dumps(status, indent=1, sort_keys=True), encoding="utf-8")
        check = dg.AssetCheckResult(
            check_name="ich_schema_valid",
            passed=result.valid,
            severity=dg.AssetCheckSeverity.ERROR,
            description="valid"
            if result.valid
            else f"{len(result.errors)} schema or business-rule errors: not shipped, see {result.path}",
            metadata={
                "errors": "\n".join(result.errors[:20]) or "none",
                "not_gateway_ready": "\n".join(status.get("not_gateway_ready", [])) or "none",
            },
        )
        if not result.valid:
            context.log.error(
                f"{stem}.xml failed ICH schema or business-rule validation ({len(result.errors)} errors); written to "
                f"{result.path} and not shipped"
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(result.path)),
                "icsrs": batch.n_icsrs,
                "schema": "valid" if result.valid else "INVALID",
                "gateway_ready": status.get("gateway_ready", False),
                "reactions_without_meddra_code": batch.missing_meddra_codes,
            },
            check_results=[check],
        )

    return e2b_icsr_batch


E2B_ASSETS = [_e2b_asset(code) for code in JURISDICTION_CODES]
REPORT_ASSETS = [_report_asset(code) for code in JURISDICTION_CODES]


@dg.asset(
    group_name=GROUP,
    kinds={"csv"},
    partitions_def=MONTHLY,
    deps=[signal_register],
    description="eRMR-style CSV per active substance (drug–event pairs: new/total, serious, fatal, ROR with its "
    "lower bound, SDR flag) under output/ermr/<YYYY-MM>/.",
)
def ermr_export(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, output: OutputResource
) -> dg.MaterializeResult:
    start, end = period_of(context)
    with warehouse.connect(read_only=True) as con:
        dlp = period_lock_point(con, end)
        counts = rq.substance_event_counts(con, start, dlp)
    if counts.is_empty():
        return dg.MaterializeResult(metadata={"substances": 0})
    # ROR at the DLP from the cumulative 2x2 table (n11 = total count of the pair), EMA's SDR rule on it
    pairs = counts.rename({"ingredient": "drug", "pt": "event"}).with_columns(n11=pl.col("total_count"))
    scored = score_pairs(pairs, prior=None, rules=["ema_sdr"]).scored
    paths = ermr.write_ermr(
        scored.rename({"drug": "ingredient", "event": "pt"}),
        output.folder("ermr", f"{start:%Y-%m}"),
        period=(start, dlp),
    )
    return dg.MaterializeResult(
        metadata={
            "folder": dg.MetadataValue.path(str(output.folder("ermr", f"{start:%Y-%m}"))),
            "substances": len(paths),
            "pairs": scored.height,
            "sdr": int(scored["ema_sdr"].fill_null(False).sum()),
        }
    )


PARTITIONED_ASSETS = [*E2B_ASSETS, *REPORT_ASSETS, ermr_export]

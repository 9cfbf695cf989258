"""``pvtrace``: the command line of PV Trace.

pvtrace generate --out inbox [--seed 42] [--scale 1.0]   write a synthetic world
pvtrace run --inbox inbox --warehouse output/pvtrace.duckdb --output output [--clock 2025-12-31]
pvtrace demo                                             generate, then run, then say where things are
pvtrace ingest --format {faers,vaers,e2b,openfda} PATH --warehouse FILE [--json]
                                                         load public adverse-event files
pvtrace evaluate --inbox inbox --warehouse output/pvtrace.duckdb [--output output]
                                                         detection delay per planted signal and method
pvtrace evaluate --study [--replicates 200] [--seed 14] [--output output]
                                                         operating characteristics vs the oracle
pvtrace detect --warehouse FILE [--output DIR] [--reports latest|all|none]
                                                         scores, register, alerts and reports on whatever the
                                                         warehouse holds (after `pvtrace ingest`; no inbox)
pvtrace meddra load DIR --warehouse FILE [--version V --language L]
                                                         load a MedDRA ASCII release (any version/language)
pvtrace meddra code --warehouse FILE [--language zh|en|ja] [--version V] [--json] TERM...
                                                         code verbatim reaction text to LLT/PT
pvtrace meddra synthetic --out DIR                       write the SYNTHETIC terminology (MedDRA file format)
pvtrace e2b-ack PATH --warehouse FILE [--sent output/e2b [--resubmit]]
                                                         load a gateway's E2B(R3) acknowledgments; each
                                                         shipped ICSR's state (sent/accepted/rejected)
pvtrace dashboard --warehouse FILE [--host 127.0.0.1] [--port 8050] [--tls-cert F --tls-key F]
                  [--trust-proxy ADDR ...]               the analysts' signal review web app
pvtrace dashboard-user add --warehouse FILE --username U --role analyst|viewer|admin|manufacturer
                  [--manufacturer-id M]                  create a dashboard account (password from
                                                         PVTRACE_DASHBOARD_PASSWORD or a prompt)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from assets.resources import DEFAULT_INBOX, DEFAULT_OUTPUT, DEFAULT_WAREHOUSE

# the generation API (run_pipeline, RunFailed, run_reports, report_months, ...) lives in assets.generation, shared
# with the Dagster schedule; imported lazily so that `pvtrace --help` does not load Dagster
_GENERATION_NAMES = {
    "RunFailed",
    "report_months",
    "run_pipeline",
    "run_reports",
    "working_copy",
    "_instance",
    "_run_lock",
}


def __getattr__(name: str):
    if name in _GENERATION_NAMES:
        from assets import generation

        return getattr(generation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_detect(warehouse: str, output: str, *, reports: str = "latest", log_level: str = "WARNING") -> None:
    """Every asset that does not read the platform inbox (links, scores, the register, alerts, traceability),
    then the monthly reports: detection on a warehouse filled by ``pvtrace ingest`` alone (issue 17)."""
    if not Path(warehouse).is_file():
        raise SystemExit(f"pvtrace detect: no warehouse at {warehouse!r} (load one with `pvtrace ingest` first)")
    from assets.generation import _instance, report_months, run_reports

    months = report_months(warehouse, "all")
    # the monthly partitions start at PVTRACE_REPORT_START (the demo world's 2024); a FAERS quarter of 2017 needs
    # them to start at its first month. The partitions are defined when assets.reporting is imported: set it first.
    if months and months[0] < os.environ.get("PVTRACE_REPORT_START", "2024-01-01"):
        if "assets.reporting" in sys.modules:
            raise SystemExit(f"pvtrace detect: set PVTRACE_REPORT_START={months[0]} to report on months before 2024")
        os.environ["PVTRACE_REPORT_START"] = months[0]

    import dagster as dg

    from assets.definitions import ALL_ASSETS, ALL_CHECKS
    from assets.resources import default_resources

    keys = [k for a in ALL_ASSETS if "inbox" not in a.required_resource_keys for k in a.keys]
    here = os.getcwd()  # input lineage in the reports is shown relative to where the command runs
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(*keys),
        resources=default_resources(inbox=here, warehouse=warehouse, output=output),
        instance=_instance(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    for ev in result.get_asset_materialization_events():
        print(f"  asset {ev.event_specific_data.materialization.asset_key.to_user_string()}")
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise SystemExit(f"pvtrace detect: failed at {failed}; see the log above")
    from reports.e2b.sender import ENV as E2B_SENDER_ENV

    skip_e2b = not os.environ.get(E2B_SENDER_ENV)
    if skip_e2b and reports != "none":  # PV Trace never invents a sender for real data (README, E2B section)
        print(f"  E2B(R3) batches skipped: set {E2B_SENDER_ENV} to your sender TOML to write them")
    run_reports(here, warehouse, output, report_months(warehouse, reports), log_level=log_level, skip_e2b=skip_e2b)


def _summary(warehouse: str, output: str) -> None:
    from warehouse.schema import connect

    con = connect(warehouse, read_only=True)
    try:
        cases, deliveries, signals, alerts, quarantined = con.sql(
            "SELECT (SELECT count(*) FROM latest_case), (SELECT count(*) FROM delivery), (SELECT count(*) FROM signal), "
            "(SELECT count(*) FROM alert), (SELECT count(*) FROM quarantine)"
        ).fetchone()
    finally:
        con.close()
    reports = sorted(Path(output, "reports").glob("*.pdf"))
    e2b = sorted(Path(output, "e2b").glob("*.xml"))
    ermr = sorted(Path(output, "ermr").glob("*/*.csv"))
    alert_dirs = sorted(p for p in Path(output, "alerts").glob("*") if p.is_dir())
    print(
        f"\nPV Trace: {cases:,} cases, {deliveries:,} deliveries, {signals:,} signals, {quarantined:,} rows quarantined"
    )
    print(f"  warehouse : {Path(warehouse).resolve()}")
    for r in reports:
        print(f"  report    : {r.resolve()}  (+ .html)")
    print(
        f"  E2B(R3)   : {Path(output, 'e2b').resolve()}  ({len(e2b)} schema- and business-rule-valid batch files; "
        "gateway readiness in each .status.json)"
    )
    print(f"  eRMR      : {Path(output, 'ermr').resolve()}  ({len(ermr)} CSV files, one per substance and month)")
    print(f"  alerts    : {Path(output, 'alerts').resolve()}  ({alerts} alerts for {len(alert_dirs)} manufacturers)")


def _ingest(args) -> int:
    import json

    from warehouse.inputs.regulator.ingest import IngestError, ingest

    try:
        counts = ingest(args.path, args.format, args.warehouse, harmonisation=args.harmonisation)
    except IngestError as exc:
        print(f"pvtrace ingest: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(counts, default=str))
    else:
        print(
            f"{args.format}: {counts['cases']:,} cases ({counts['case_versions']:,} versions), {counts['drugs']:,} drugs, "
            f"{counts['reactions']:,} reactions, {counts['lots']:,} usable lots, {counts['quarantined']:,} quarantined "
            f"-> {Path(args.warehouse).resolve()}"
        )
        for warning in counts.get("warnings", []):
            print(f"  warning: {warning}")
    return 0


def _e2b_ack(args) -> int:
    """Load E2B(R3) acknowledgments; with --sent, print each shipped ICSR's state; with --resubmit, write the
    corrected resubmission of every rejected ICSR (reports.e2b.resubmission) and print the states again."""
    from reports.e2b.resubmission import resubmit_rejected, shipped
    from warehouse.inputs.regulator.e2b_ack import AckError, load_acks, submission_states
    from warehouse.schema import connect

    if args.resubmit and not args.sent:
        print("pvtrace e2b-ack: --resubmit needs --sent (the E2B output folder)", file=sys.stderr)
        return 2
    con = connect(args.warehouse)
    try:
        try:
            counts = load_acks(con, args.path)
        except (AckError, OSError) as exc:
            print(f"pvtrace e2b-ack: {exc}", file=sys.stderr)
            return 2
        print(
            f"{counts['files']} acknowledgment file(s): {counts['acks']} ICSR acknowledgments, "
            f"{counts['accepted']} accepted, {counts['rejected']} rejected"
        )
        if not args.sent:
            return 0
        states = submission_states(con, [s.as_dict() for s in shipped(args.sent)])
        if args.resubmit:
            try:
                rows = resubmit_rejected(args.sent, states, _e2b_rebuild(con), clock=_e2b_clock())
            except ValueError as exc:  # includes a missing sender (SenderConfigError)
                print(f"pvtrace e2b-ack: no resubmission written: {exc}", file=sys.stderr)
                return 2
            for row in rows:
                print(f"  {row['safety_report_id']}  {row['outcome']}" + (f"  -> {row['file']}" if row["file"] else ""))
            states = submission_states(con, [s.as_dict() for s in shipped(args.sent)])
        for row in states:
            reasons = f"  {row['reasons']}" if row["reasons"] and row["state"] != "accepted" else ""
            print(f"  {row['safety_report_id']}  {row['state']}{reasons}")
    finally:
        con.close()
    return 0


def _e2b_clock():
    """The resubmission's clock (N.1.5, N.2.r.4, C.1.2): the run's clock, to the second."""
    import datetime as dt

    from warehouse.inputs.inbox import run_clock

    return run_clock().astimezone(dt.UTC).replace(microsecond=0)


def _e2b_rebuild(con):
    """(jurisdiction, YYYY-MM, clock) -> that month's E2B batch rebuilt from the warehouse as it is now, with the
    configured sender and the loaded MedDRA release (as the monthly E2B asset builds it)."""
    import calendar
    import datetime as dt

    from assets.reporting import e2b_batch_for, meddra_coding, period_lock_point
    from reports.e2b.sender import load_sender
    from reports.jurisdictions import JURISDICTIONS

    sender = load_sender()
    meddra = meddra_coding(con)

    def rebuild(code: str, month: str, clock):
        year, mon = (int(x) for x in month.split("-"))
        start = dt.date(year, mon, 1)
        end = dt.date(year, mon, calendar.monthrange(year, mon)[1])
        return e2b_batch_for(
            con,
            JURISDICTIONS[code],
            start,
            period_lock_point(con, end),
            run_created=clock,
            sender=sender,
            meddra=meddra,
        )

    return rebuild


def _dashboard_user(args) -> int:
    import getpass

    from dashboard.auth import record
    from dashboard.store import add_user

    password = os.environ.get("PVTRACE_DASHBOARD_PASSWORD")
    if not password:
        password = getpass.getpass(f"password for {args.username}: ")
        if password != getpass.getpass("again: "):
            print("pvtrace dashboard-user: the passwords differ", file=sys.stderr)
            return 2
    try:
        add_user(args.warehouse, args.username, password, args.role, manufacturer_id=args.manufacturer_id)
    except ValueError as exc:
        print(f"pvtrace dashboard-user: {exc}", file=sys.stderr)
        return 2
    detail = f"roles {args.role}" + (f", manufacturer {args.manufacturer_id}" if args.manufacturer_id else "")
    record(args.warehouse, "account_saved", args.username.strip(), actor="cli:dashboard-user", detail=detail)
    print(f"dashboard account {args.username!r} ({args.role}) saved for {Path(args.warehouse).resolve()}")
    return 0


def _demo_terminology(inbox: Path, warehouse: str) -> None:
    """The demo codes to the SYNTHETIC terminology (invented codes in MedDRA's file format), loaded like a
    licensed release would be, so its E2B files carry LLT codes and a MedDRA version."""
    from sample_data.terminology import write_terminology
    from warehouse.files import private_dir
    from warehouse.schema import connect
    from warehouse.terminology.meddra import load_release

    private_dir(Path(warehouse).parent)
    con = connect(warehouse)
    try:
        for folder in write_terminology(inbox / "meddra"):
            load_release(con, folder)
    finally:
        con.close()
    print(f"synthetic MedDRA-format terminology (invented codes) loaded from {(inbox / 'meddra').resolve()}")


def _meddra(args) -> int:
    """``pvtrace meddra load|code|synthetic`` (issue 17)."""
    import json

    if args.meddra_command == "synthetic":
        from sample_data.terminology import write_terminology

        for folder in write_terminology(Path(args.out)):
            print(f"synthetic terminology (MedDRA file format, invented content): {folder.resolve()}")
        return 0
    from warehouse.schema import connect
    from warehouse.terminology.coder import Coder, save_coding
    from warehouse.terminology.meddra import MeddraLoadError, load_release

    if args.meddra_command == "load":
        con = connect(args.warehouse)
        try:
            counts = load_release(con, args.dir, version=args.version, language=args.language)
        except MeddraLoadError as exc:
            print(f"pvtrace meddra load: {exc}", file=sys.stderr)
            return 2
        finally:
            con.close()
        files = counts["files"]
        print(
            f"MedDRA {counts['meddra_version']} ({counts['language']}): "
            + ", ".join(f"{f.removesuffix('.asc')} {c['loaded']:,}" for f, c in files.items())
            + f"; {sum(c['quarantined'] for c in files.values()):,} rows quarantined -> {Path(args.warehouse).resolve()}"
        )
        return 0
    if not Path(args.warehouse).is_file():
        print(
            f"pvtrace meddra code: no warehouse at {args.warehouse!r} (pvtrace meddra load DIR first)", file=sys.stderr
        )
        return 2
    con = connect(args.warehouse)
    try:
        coder = Coder(con, args.version, args.language)
        if args.save:
            save_coding(con, coder, args.terms)
    except ValueError as exc:
        print(f"pvtrace meddra code: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    for term in args.terms:
        obj = coder.code_json(term)
        if args.json:
            print(json.dumps(obj, ensure_ascii=False))
        else:
            for p in obj["parts"]:
                code = f"{p['pt_code']} {p['pt_name']} (LLT {p['llt_code']} {p['llt_name']})" if p["pt_code"] else "-"
                flag = "  [review]" if p["needs_review"] else ""
                print(f"{term!r}: {code}  {p['method']} {p['confidence']:.2f}{flag}")
    return 0


def _api_client(args) -> int:
    """``pvtrace api-client add|list|revoke``: verification-API clients (warehouse.stores.api_clients)."""
    from warehouse.stores import api_clients

    if args.client_command == "add":
        try:
            record, key = api_clients.add_client(
                args.warehouse,
                args.name,
                args.scopes,
                args.jurisdiction,
                rate_limit=args.rate_limit or api_clients.DEFAULT_RATE_LIMIT,
                code_limit=args.code_limit or api_clients.DEFAULT_CODE_LIMIT,
            )
        except ValueError as exc:
            print(f"pvtrace api-client: {exc}", file=sys.stderr)
            return 2
        print(
            f"API client {record['name']!r} ({record['client_id']}) scopes {','.join(record['scopes'])}"
            + (f", jurisdiction {record['jurisdiction']}" if record["jurisdiction"] else "")
        )
        print(f"key (shown once, only its SHA-256 is stored): {key}")
        return 0
    if args.client_command == "list":
        for c in api_clients.list_clients(args.warehouse):
            state = f"revoked {c['revoked_at']}" if c["revoked_at"] else "active"
            print(
                f"{c['client_id']}  {c['name']:<24} {','.join(c['scopes']):<20} {c['jurisdiction'] or '-':<3} "
                f"{c['key_prefix']}…  {c['rate_limit']}  codes {c['code_limit']}  {state}"
            )
        return 0
    if api_clients.revoke_client(args.warehouse, args.client):
        print(f"API client {args.client!r} revoked")
        return 0
    print(f"pvtrace api-client: no active client {args.client!r}", file=sys.stderr)
    return 1


def _demo_analyst(warehouse: str) -> None:
    """A demo analyst with a fresh random password, printed once (only the argon2 hash is stored)."""
    import secrets

    from dashboard.store import add_user

    password = secrets.token_urlsafe(12)
    add_user(warehouse, "demo-analyst", password, "analyst")
    exe = sys.argv[0] if Path(sys.argv[0]).name == "pvtrace" else "pvtrace"
    print(
        f"\nSignal review dashboard:  {exe} dashboard --warehouse {warehouse} --port 8050   "
        "(then open http://127.0.0.1:8050)"
    )
    print(f"  log in as  demo-analyst  /  {password}   (analyst: may triage; new password on every demo run)")


def _add_verbatims_flag(parser: argparse.ArgumentParser, default: bool) -> None:
    """Issue 17: patients write their reactions in their own words (coded during the run; the demo loads the
    synthetic terminology)."""
    parser.add_argument(
        "--verbatims",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="patient-app reports carry lay verbatims (zh/en/ja) instead of PT names, coded during the run "
        f"(default {'on' if default else 'off'})",
    )


def _add_event_level_flag(parser: argparse.ArgumentParser) -> None:
    """Issue 17: the MedDRA level disproportionality and the batch methods count at (PVTRACE_EVENT_LEVEL)."""
    from warehouse.terminology.hierarchy import EVENT_LEVEL_ENV, LEVELS

    parser.add_argument(
        "--event-level",
        choices=LEVELS,
        default=None,
        help=f"count events at this MedDRA level (default {EVENT_LEVEL_ENV}, else pt); above pt a MedDRA release must "
        "be loaded; the register stores the level with each signal",
    )


def _apply_event_level(args) -> None:
    from warehouse.terminology.hierarchy import EVENT_LEVEL_ENV

    if getattr(args, "event_level", None):
        os.environ[EVENT_LEVEL_ENV] = args.event_level


def _add_null_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--null",
        action="store_true",
        help="the same world with no planted effect (no product signal, defective batch or cold-chain "
        "excursion): every alert is a false alarm",
    )


def _engine_flag(args) -> None:
    """``--engine`` (run, demo): the engine resource reads PVTRACE_ENGINE (assets/engine.py)."""
    if getattr(args, "engine", None):
        os.environ["PVTRACE_ENGINE"] = args.engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pvtrace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic world (with planted ground truth) into an inbox folder")
    gen.add_argument("--out", default=DEFAULT_INBOX)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--scale", type=float, default=1.0)
    _add_verbatims_flag(gen, default=False)
    _add_null_flag(gen)

    for name, text in (("run", "load the inbox and run the whole graph"), ("demo", "generate a world, then run")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--inbox", default=os.environ.get("PVTRACE_INBOX", DEFAULT_INBOX))
        p.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
        p.add_argument("--output", default=os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT))
        p.add_argument(
            "--clock",
            default=None,
            help="the run's clock (ISO date or timestamp; default PVTRACE_CLOCK, else now): nothing after it loads",
        )
        p.add_argument(
            "--reports",
            choices=["latest", "all", "none"],
            default="latest",
            help="monthly regulator reports to build: the last month with data (default), every month, none",
        )
        p.add_argument(  # issue 15
            "--engine",
            choices=["duckdb", "spark"],
            default=None,
            help="engine of the heavy set-based steps (default PVTRACE_ENGINE, else duckdb); results stay in DuckDB",
        )
        if name == "demo":
            p.add_argument("--seed", type=int, default=42)
            p.add_argument("--scale", type=float, default=1.0)
            _add_verbatims_flag(p, default=True)
            _add_null_flag(p)

    ing = sub.add_parser("ingest", help="load a FAERS/VAERS/E2B(R3)/openFDA file, zip or folder into the warehouse")
    ing.add_argument("path")
    ing.add_argument("--format", required=True, help="faers, vaers, e2b or openfda")
    ing.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    ing.add_argument("--harmonisation", help="openFDA harmonisation JSON (brand/generic name -> substance)")
    ing.add_argument("--json", action="store_true", help="print the counts as one JSON line (the last line)")

    ack = sub.add_parser("e2b-ack", help="load E2B(R3) acknowledgments (.ack) from a regulator's gateway")
    ack.add_argument("path", help="an .ack file or a folder of them")
    ack.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    ack.add_argument("--sent", help="the E2B output folder: print each shipped ICSR's state (sent/accepted/rejected)")
    ack.add_argument(
        "--resubmit",
        action="store_true",
        help="write the corrected resubmission of every rejected ICSR (rebuilt from the warehouse, new message id)",
    )

    dash = sub.add_parser("dashboard", help="serve the signal review dashboard (reads a snapshot of the warehouse)")
    dash.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8050)
    dash.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM); cookies are then always Secure")
    dash.add_argument("--tls-key", help="the certificate's private key (PEM)")
    dash.add_argument(
        "--trust-proxy",
        nargs="+",
        metavar="ADDR",
        help="reverse-proxy addresses or networks whose X-Forwarded-Proto/-For are believed (see the README)",
    )
    du = sub.add_parser("dashboard-user", help="manage dashboard accounts")
    du_sub = du.add_subparsers(dest="user_command", required=True)
    du_add = du_sub.add_parser("add", help="create an account (or reset its password and role)")
    du_add.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    du_add.add_argument("--username", required=True)
    du_add.add_argument(
        "--role", required=True, help="analyst, viewer, admin or manufacturer; several as admin,analyst"
    )
    du_add.add_argument("--manufacturer-id", help="the company a manufacturer account may see (manufacturer role only)")

    api = sub.add_parser("api", help="serve the pack verification API (reads a snapshot of the warehouse)")
    api.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8060)
    api.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (else put a TLS reverse proxy in front)")
    api.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ac = sub.add_parser("api-client", help="manage verification-API clients and their keys")
    ac_sub = ac.add_subparsers(dest="client_command", required=True)
    ac_add = ac_sub.add_parser("add", help="create a client and print its key once")
    ac_add.add_argument("--name", required=True)
    ac_add.add_argument("--scopes", required=True, help="comma-separated: verify, trace, safety")
    ac_add.add_argument("--jurisdiction", help="CN, EU, US or JP (required with the safety scope)")
    ac_add.add_argument("--rate-limit", help="requests, e.g. '20/second;1000/minute' (the default)")
    ac_add.add_argument("--code-limit", help="pack codes verified, e.g. '200000/hour' (the default)")
    ac_list = ac_sub.add_parser("list", help="list clients (never their keys)")
    ac_rev = ac_sub.add_parser("revoke", help="revoke a client's key (by name or id)")
    ac_rev.add_argument("client")
    for p in (ac_add, ac_list, ac_rev):
        p.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))

    det = sub.add_parser("detect", help="scores, register, alerts and reports on the warehouse as it is (no inbox)")
    det.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    det.add_argument("--output", default=os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT))
    det.add_argument("--reports", choices=["latest", "all", "none"], default="latest")
    for p in (det, sub.choices["run"], sub.choices["demo"]):
        _add_event_level_flag(p)

    md = sub.add_parser("meddra", help="load a MedDRA release, code verbatim reaction text")
    md_sub = md.add_subparsers(dest="meddra_command", required=True)
    md_load = md_sub.add_parser("load", help="load MedDRA's $-delimited ASCII files (llt.asc, pt.asc, ... mdhier.asc)")
    md_load.add_argument("dir")
    md_load.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    md_load.add_argument("--version", help="MedDRA version (default: from meddra_release.asc)")
    md_load.add_argument("--language", help="language code, e.g. en, zh, ja (default: from meddra_release.asc)")
    md_code = md_sub.add_parser("code", help="code verbatim text to LLT -> PT (one JSON object per term with --json)")
    md_code.add_argument("terms", nargs="+", metavar="TERM")
    md_code.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    md_code.add_argument("--language", help="one loaded language (default: every language of the version)")
    md_code.add_argument("--version", help="MedDRA version (default: the last loaded)")
    md_code.add_argument("--json", action="store_true")
    md_code.add_argument("--save", action="store_true", help="store the codings (meddra_coding; review queue)")
    md_syn = md_sub.add_parser("synthetic", help="write the synthetic terminology in MedDRA's file format")
    md_syn.add_argument("--out", required=True)

    ev = sub.add_parser(
        "evaluate", help="detection delay, sensitivity and false alerts on a synthetic world's ground truth"
    )
    ev.add_argument("--inbox", default=os.environ.get("PVTRACE_INBOX", DEFAULT_INBOX))
    ev.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    ev.add_argument("--output", default=os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT))
    ev.add_argument(
        "--study", action="store_true", help="count-level simulation study of every batch method against the oracle"
    )
    ev.add_argument("--replicates", type=int, default=200, help="--study: replicates per scenario")
    ev.add_argument("--seed", type=int, default=14, help="--study: random seed")

    args = parser.parse_args(argv)
    _apply_event_level(args)
    from warehouse.files import restrict_umask

    restrict_umask()  # warehouse, snapshot, review store, salt, outputs, Dagster storage: private from the first byte
    _engine_flag(args)
    if args.command == "demo":
        os.environ.setdefault("PVTRACE_DEMO", "1")  # the demo may keep its pseudonym salt beside the warehouse
    if args.command == "evaluate" and args.study:
        from assets.study import run_study

        if args.replicates < 1:
            raise SystemExit("pvtrace evaluate --study: --replicates must be >= 1")
        out = run_study(args.output, replicates=args.replicates, seed=args.seed)
        print(f"written to {out.resolve()}/ (operating_characteristics.csv, study.md, two SVG charts)")
        return 0
    if args.command == "evaluate":
        from assets.evaluation import run_evaluation

        if not Path(args.inbox, "ground_truth.json").is_file():
            raise SystemExit(f"pvtrace evaluate: {args.inbox!r} has no ground_truth.json (generate a world first)")
        if not Path(args.warehouse).is_file():  # nothing to evaluate yet: run the graph first
            from assets.generation import run_pipeline

            run_pipeline(args.inbox, args.warehouse, args.output, quiet=True)
        print(run_evaluation(args.warehouse, args.inbox, args.output))
        print(f"\nwritten to {Path(args.output, 'evaluation').resolve()}/ (evaluation.md and one CSV per table)")
        return 0
    if args.command == "ingest":
        return _ingest(args)
    if args.command == "meddra":
        return _meddra(args)
    if args.command == "detect":
        t0 = time.perf_counter()
        run_detect(args.warehouse, args.output, reports=args.reports)
        print(f"detection finished in {time.perf_counter() - t0:.1f} s")
        _summary(args.warehouse, args.output)
        return 0
    if args.command == "e2b-ack":
        return _e2b_ack(args)
    if args.command == "dashboard":
        from dashboard.app import serve

        serve(
            args.warehouse,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            trust_proxy=args.trust_proxy,
        )
        return 0
    if args.command == "api":
        from api.app import serve as serve_api

        serve_api(args.warehouse, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key)
        return 0
    if args.command == "api-client":
        return _api_client(args)
    if args.command == "dashboard-user":
        return _dashboard_user(args)
    if args.command in ("generate", "demo"):
        from sample_data.world import generate_world

        out = args.out if args.command == "generate" else args.inbox
        t0 = time.perf_counter()
        truth = generate_world(Path(out), seed=args.seed, scale=args.scale, verbatims=args.verbatims, null=args.null)
        counts = truth.get("counts", {})
        print(
            f"synthetic {'null ' if args.null else ''}world (seed {args.seed}, scale {args.scale}) "
            f"written to {Path(out).resolve()} "
            f"in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
        if args.command == "generate":
            return 0
        # the demo's E2B files need a sender: the shipped, clearly-labelled fictitious one unless one is configured
        from reports.e2b.sender import DEMO_SENDER, ENV

        os.environ.setdefault(ENV, str(DEMO_SENDER))
        _demo_terminology(Path(args.inbox), args.warehouse)
    from assets.generation import run_pipeline

    t0 = time.perf_counter()
    try:
        run_pipeline(args.inbox, args.warehouse, args.output, reports=args.reports, clock=args.clock)
    except ValueError as exc:  # a bad --clock / PVTRACE_CLOCK / PVTRACE_PLAUSIBILITY_OFF
        print(f"pvtrace: {exc}", file=sys.stderr)
        return 2
    print(f"pipeline finished in {time.perf_counter() - t0:.1f} s")
    _summary(args.warehouse, args.output)
    if args.command == "demo":
        print("\nOpen the Dagster UI on this warehouse:  make ui   (then http://127.0.0.1:3000)")
        _demo_analyst(args.warehouse)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``pvtrace``: the command line of PV Trace.

pvtrace generate --out inbox [--seed 42] [--scale 1.0]   write a synthetic world
pvtrace run --inbox inbox --warehouse output/pvtrace.duckdb --output output
pvtrace demo                                             generate, then run, then say where things are
pvtrace ingest --format {faers,vaers,e2b,openfda} PATH --warehouse FILE [--json]
pvtrace evaluate --inbox inbox --warehouse output/pvtrace.duckdb [--output output]
                                                         detection delay per planted signal and method
pvtrace evaluate --study [--replicates 200] [--seed 14] [--output output]
                                                         operating characteristics vs the oracle
                                                         load public adverse-event files
pvtrace dashboard --warehouse FILE [--host 127.0.0.1] [--port 8050]
                                                         the analysts' signal review web app
pvtrace detect --warehouse FILE [--output DIR] [--reports latest|all|none]
                                                         scores, register, alerts and reports on whatever the
                                                         warehouse holds (after `pvtrace ingest`; no inbox)
pvtrace meddra load DIR --warehouse FILE [--version V --language L]
                                                         load a MedDRA ASCII release (any version/language)
pvtrace meddra code --warehouse FILE [--language zh|en|ja] [--version V] [--json] TERM...
                                                         code verbatim reaction text to LLT/PT
pvtrace meddra synthetic --out DIR                       write the SYNTHETIC terminology (MedDRA file format)
pvtrace dashboard-user add --warehouse FILE --username U --role analyst|viewer
                                                         create a dashboard account (password from
                                                         PVTRACE_DASHBOARD_PASSWORD or a prompt)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from assets.resources import DEFAULT_INBOX, DEFAULT_OUTPUT, DEFAULT_WAREHOUSE


def _instance():
    """The persistent Dagster instance when DAGSTER_HOME is set (runs then show in the UI)."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if home and Path(home).is_dir():
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def report_months(warehouse: str, which: str) -> list[str]:
    """Partition keys (``YYYY-MM-01``) of the monthly reports to build: the month of the last case received
    (``latest``), every month the data covers (``all``), or none."""
    from warehouse.queries.report_queries import data_months
    from warehouse.schema import connect

    if which == "none":
        return []
    con = connect(warehouse, read_only=True)
    try:
        months = data_months(con)
    finally:
        con.close()
    keys = [m.isoformat() for m in months]
    return keys if which == "all" else keys[-1:]


def run_reports(
    inbox: str, warehouse: str, output: str, partition_keys: list[str], *, quiet: bool = False, log_level: str = "INFO"
) -> list:
    """Materialise the monthly report assets (all jurisdictions, E2B, eRMR) for each partition, in this process."""
    import dagster as dg

    from assets.definitions import ALL_ASSETS, REPORT_ASSETS
    from assets.resources import default_resources

    results = []
    for key in partition_keys:
        t0 = time.perf_counter()
        result = dg.materialize(
            [*ALL_ASSETS, *REPORT_ASSETS],
            selection=dg.AssetSelection.assets(*REPORT_ASSETS),
            partition_key=key,
            resources=default_resources(inbox=inbox, warehouse=warehouse, output=output),
            instance=_instance(),
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        if not result.success:
            failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            raise SystemExit(f"pvtrace: the reports for {key[:7]} failed at {failed}; see the log above")
        for ev in result.get_asset_check_evaluations():
            if not ev.passed:  # an E2B file that failed the ICH schema: written to e2b/rejected/, not shipped
                print(
                    f"  check {ev.asset_key.to_user_string()}:{ev.check_name} FAILED for {key[:7]}: {ev.description}",
                    file=sys.stderr,
                )
        if not quiet:
            print(
                f"  reports {key[:7]}: {len(result.get_asset_materialization_events())} assets in "
                f"{time.perf_counter() - t0:.1f} s"
            )
        results.append(result)
    return results


def run_pipeline(
    inbox: str, warehouse: str, output: str, *, quiet: bool = False, log_level: str = "INFO", reports: str = "latest"
):
    """Materialise the whole graph in this process, then the monthly reports (``reports``: latest, all or none).

    Dagster refuses to materialise partitioned and unpartitioned assets in one call, so the
    unpartitioned graph runs first and the report assets then run once per month partition.
    Returns the Dagster result of the unpartitioned run."""
    import dagster as dg

    from assets.definitions import ALL_ASSETS, ALL_CHECKS
    from assets.resources import default_resources

    if not Path(inbox).is_dir():
        raise SystemExit(f"pvtrace: inbox folder {inbox!r} does not exist (generate one with `pvtrace generate`)")
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=default_resources(inbox=inbox, warehouse=warehouse, output=output),
        instance=_instance(),
        raise_on_error=False,
        # Dagster's step events are DEBUG; INFO keeps what the assets themselves report
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    if not quiet:
        for ev in result.get_asset_materialization_events():
            mat = ev.event_specific_data.materialization
            counts = ", ".join(
                f"{k} {v.value:,}"
                for k, v in mat.metadata.items()
                if isinstance(getattr(v, "value", None), int) and not isinstance(v.value, bool)
            )
            print(f"  asset {mat.asset_key.to_user_string():<28} {counts}")
        for ev in result.get_asset_check_evaluations():
            status = "passed" if ev.passed else f"FAILED ({ev.severity.value})"
            print(f"  check {ev.asset_key.to_user_string()}:{ev.check_name} {status}")
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise SystemExit(f"pvtrace: the run failed at {failed}; see the log above")
    run_reports(inbox, warehouse, output, report_months(warehouse, reports), quiet=quiet, log_level=log_level)
    return result


def run_detect(warehouse: str, output: str, *, reports: str = "latest", log_level: str = "WARNING") -> None:
    """Every asset that does not read the platform inbox (links, scores, the register, alerts, traceability),
    then the monthly reports: detection on a warehouse filled by ``pvtrace ingest`` alone (issue 17)."""
    if not Path(warehouse).is_file():
        raise SystemExit(f"pvtrace detect: no warehouse at {warehouse!r} (load one with `pvtrace ingest` first)")
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
    run_reports(here, warehouse, output, report_months(warehouse, reports), log_level=log_level)


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
    print(f"  E2B(R3)   : {Path(output, 'e2b').resolve()}  ({len(e2b)} schema-valid batch files)")
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


def _dashboard_user(args) -> int:
    import getpass

    from dashboard.store import add_user

    password = os.environ.get("PVTRACE_DASHBOARD_PASSWORD")
    if not password:
        password = getpass.getpass(f"password for {args.username}: ")
        if password != getpass.getpass("again: "):
            print("pvtrace dashboard-user: the passwords differ", file=sys.stderr)
            return 2
    try:
        add_user(args.warehouse, args.username, password, args.role)
    except ValueError as exc:
        print(f"pvtrace dashboard-user: {exc}", file=sys.stderr)
        return 2
    print(f"dashboard account {args.username!r} ({args.role}) saved for {Path(args.warehouse).resolve()}")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pvtrace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic world (with planted ground truth) into an inbox folder")
    gen.add_argument("--out", default=DEFAULT_INBOX)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--scale", type=float, default=1.0)

    for name, text in (("run", "load the inbox and run the whole graph"), ("demo", "generate a world, then run")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--inbox", default=os.environ.get("PVTRACE_INBOX", DEFAULT_INBOX))
        p.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
        p.add_argument("--output", default=os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT))
        p.add_argument(
            "--reports",
            choices=["latest", "all", "none"],
            default="latest",
            help="monthly regulator reports to build: the last month with data (default), every month, none",
        )
        if name == "demo":
            p.add_argument("--seed", type=int, default=42)
            p.add_argument("--scale", type=float, default=1.0)

    ing = sub.add_parser("ingest", help="load a FAERS/VAERS/E2B(R3)/openFDA file, zip or folder into the warehouse")
    ing.add_argument("path")
    ing.add_argument("--format", required=True, help="faers, vaers, e2b or openfda")
    ing.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    ing.add_argument("--harmonisation", help="openFDA harmonisation JSON (brand/generic name -> substance)")
    ing.add_argument("--json", action="store_true", help="print the counts as one JSON line (the last line)")

    dash = sub.add_parser("dashboard", help="serve the signal review dashboard (reads a snapshot of the warehouse)")
    dash.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8050)
    du = sub.add_parser("dashboard-user", help="manage dashboard accounts")
    du_sub = du.add_subparsers(dest="user_command", required=True)
    du_add = du_sub.add_parser("add", help="create an account (or reset its password and role)")
    du_add.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    du_add.add_argument("--username", required=True)
    du_add.add_argument("--role", required=True, choices=["analyst", "viewer"])

    det = sub.add_parser("detect", help="scores, register, alerts and reports on the warehouse as it is (no inbox)")
    det.add_argument("--warehouse", default=os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE))
    det.add_argument("--output", default=os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT))
    det.add_argument("--reports", choices=["latest", "all", "none"], default="latest")

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
    if args.command == "dashboard":
        from dashboard.app import serve

        serve(args.warehouse, host=args.host, port=args.port)
        return 0
    if args.command == "dashboard-user":
        return _dashboard_user(args)
    if args.command in ("generate", "demo"):
        from sample_data.world import generate_world

        out = args.out if args.command == "generate" else args.inbox
        t0 = time.perf_counter()
        truth = generate_world(Path(out), seed=args.seed, scale=args.scale)
        counts = truth.get("counts", {})
        print(
            f"synthetic world (seed {args.seed}, scale {args.scale}) written to {Path(out).resolve()} "
            f"in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
        if args.command == "generate":
            return 0
    t0 = time.perf_counter()
    run_pipeline(args.inbox, args.warehouse, args.output, reports=args.reports)
    print(f"pipeline finished in {time.perf_counter() - t0:.1f} s")
    _summary(args.warehouse, args.output)
    if args.command == "demo":
        print("\nOpen the Dagster UI on this warehouse:  make ui   (then http://127.0.0.1:3000)")
        _demo_analyst(args.warehouse)
    return 0


if __name__ == "__main__":
    sys.exit(main())

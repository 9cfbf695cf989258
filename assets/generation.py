"""Generations: the one way a run of the graph reaches readers, for ``pvtrace run`` and the Dagster schedule alike.

A run builds on a *working copy* of the warehouse (``<warehouse>.next``) and writes its report files
(periodic reports, E2B(R3) batches, eRMR CSVs) into a *staging* folder (``<output>/.staging``); only
when every step, blocking check and report succeeded is the generation published: the working copy
replaces the warehouse with one atomic ``os.replace``, then each staged report folder replaces its
published twin. A failed run removes its working copy and its staging folder, records itself in the
published warehouse (``pipeline_run``: status ``failed``, the failed steps) and raises ``RunFailed``
naming the steps; the previous generation (warehouse and report files) stays as it was. Manufacturer
alerts are built and delivered only after publication, from the published generation.

What is atomic (docs/architecture.md, "Generations"):

* the warehouse: one ``os.replace`` of a checkpointed file (readers see the old file or the new one);
* each report folder (``reports/``, ``e2b/``, ``ermr/``): on Linux one ``renameat2(RENAME_EXCHANGE)``
  swaps the staged folder with the published one, so a reader listing ``output/e2b/`` sees all the old
  files or all the new ones; where the kernel or file system lacks it, two renames (old aside, new in)
  leave a window of microseconds in which the folder is absent, never one with a mix of files;
* not atomic: the three folders with respect to each other and to the warehouse (published one after
  the other, warehouse first, so a crash in between leaves report files of the *previous* generation
  beside the new warehouse, never files of an unpublished one; the next run removes the stale staging
  folder). ``output/alerts/`` is not staged: alerts are written after publication.

The staged folders start as copies of the published ones (not hard links: the report writers
rewrite files in place), so a file the run removes (an E2B batch that is no longer due) is removed
from the published folder too, and a month the run does not rebuild keeps its files.

``daily_detection_job`` (assets/definitions.py, schedule ``daily_detection``) runs
``publish_generation_op``, which calls ``run_pipeline`` — the function ``pvtrace run`` calls.
"""

import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg

from assets.resources import InboxResource, OutputResource, WarehouseResource

# the report folders a run writes before publication (assets/reporting.py); alerts come after it
STAGED_FOLDERS = ("reports", "e2b", "ermr")
STAGING = ".staging"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``, glibc >= 2.28);
    ``False`` where the platform, the C library or the file system does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def stage_output(output: str | Path) -> Path:
    """A fresh staging folder ``<output>/.staging`` holding a copy of each published report folder
    (``STAGED_FOLDERS``); a stale one, left by a run that crashed, is removed first."""
    from warehouse.files import private_dir, restrict_umask

    restrict_umask()
    out = Path(output)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    private_dir(staging)
    for name in STAGED_FOLDERS:
        if (out / name).is_dir():
            shutil.copytree(out / name, staging / name, symlinks=True)
    return staging


def publish_output(staging: Path, output: str | Path) -> dict[str, str]:
    """Move each staged report folder over its published twin, then remove the staging folder.
    Returns how each folder was published: ``exchange`` (one atomic swap), ``rename`` (there was none
    before: one atomic rename) or ``two renames`` (no atomic swap here: old aside, new in)."""
    out = Path(output)
    how: dict[str, str] = {}
    for name in STAGED_FOLDERS:
        new, live = staging / name, out / name
        if not new.is_dir():
            continue
        if not live.exists():
            os.rename(new, live)
            how[name] = "rename"
        elif _exchange(new, live):  # staging/<name> now holds the previous generation's folder
            how[name] = "exchange"
        else:
            os.rename(live, staging / f"{name}.previous")
            os.rename(new, live)
            how[name] = "two renames"
    shutil.rmtree(staging, ignore_errors=True)
    return how


def _process_cpu() -> float:
    """CPU seconds of this process so far (user + system, all threads)."""
    t = os.times()
    return t.user + t.system


def _instance():
    """The persistent Dagster instance when DAGSTER_HOME is set (runs then show in the UI)."""
    home = os.environ.get("DAGSTER_HOME")
    if home and Path(home).is_dir():
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _materialize_with_progress(assets, *, quiet: bool = False, **kwargs):
    """``dg.materialize`` with a progress line per stage as it finishes (stage, seconds, the process's CPU
    seconds during it — all threads; the steps run one after another in this process, and on a busy machine
    the CPU time moves much less than the wall time — and the counts it reported), so a long run visibly
    moves; ``quiet`` runs it plainly."""
    import uuid

    if quiet:
        return dg.materialize(assets, **kwargs)
    instance = kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral()
    selection = kwargs.pop("selection", None)
    counts: dict[str, str] = {}
    cpu_at_start: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_event(record) -> None:
        event = record.get_dagster_event() if record.is_dagster_event else None
        if event is None:
            return
        if event.is_step_start:
            cpu_at_start[event.step_key] = _process_cpu()
        elif event.is_step_materialization:
            meta = event.event_specific_data.materialization.metadata
            counts[event.step_key] = ", ".join(
                f"{k} {v.value:,}"
                for k, v in meta.items()
                if isinstance(getattr(v, "value", None), int) and not isinstance(v.value, bool)
            )
        elif event.is_step_success or event.is_step_failure:
            took = event.event_specific_data.duration_ms / 1000 if event.is_step_success else None
            cpu = _process_cpu() - cpu_at_start.pop(event.step_key, _process_cpu())
            status = f"{took:6.1f} s {cpu:6.1f} s CPU" if took is not None else "FAILED            "
            print(
                f"  [{time.perf_counter() - t0:6.1f} s] {event.step_key:<32} {status}  {counts.get(event.step_key, '')}",
                flush=True,
            )

    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, on_event)
    job = dg.Definitions(
        jobs=[dg.define_asset_job("__ephemeral_asset_job__", selection=selection)],
        assets=assets,
        resources=kwargs.pop("resources", {}),
    ).resolve_job_def("__ephemeral_asset_job__")
    return job.execute_in_process(instance=instance, run_id=run_id, **kwargs)


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
    inbox: str,
    warehouse: str,
    output: str,
    partition_keys: list[str],
    *,
    quiet: bool = False,
    log_level: str = "INFO",
    published: str = "",
    skip_e2b: bool = False,
    instance=None,
) -> list:
    """Materialise the monthly report assets (all jurisdictions, E2B, eRMR) for each partition, in this process
    (``skip_e2b``: without the E2B(R3) batches)."""
    from assets.definitions import ALL_ASSETS, REPORT_ASSETS
    from assets.resources import default_resources

    results = []
    for key in partition_keys:
        t0 = time.perf_counter()
        result = _materialize_with_progress(
            [*ALL_ASSETS, *REPORT_ASSETS],
            quiet=quiet,
            selection=dg.AssetSelection.assets(
                *[a for a in REPORT_ASSETS if not (skip_e2b and a.key.to_user_string().startswith("e2b_"))]
            ),
            partition_key=key,
            resources=default_resources(inbox=inbox, warehouse=warehouse, output=output, published=published),
            instance=instance or _instance(),
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


class RunFailed(SystemExit):
    """A run that published nothing: the previous generation stays; ``failed_steps`` says where."""

    def __init__(self, message: str, failed_steps: list[str]):
        super().__init__(message)
        self.failed_steps = failed_steps


def _failed_steps(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def _checkpointed(path: Path) -> None:
    """Fold a DuckDB write-ahead log into the file, so a byte copy or a rename carries everything."""
    if Path(f"{path}.wal").exists():
        from warehouse.schema import connect

        con = connect(str(path))
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()


def _run_lock(published: Path):
    """One run at a time per warehouse (they would share the working copy): an exclusive lock on
    ``<warehouse>.run.lock``, released when the returned file is closed (or the process ends)."""
    import fcntl

    fh = open(f"{published}.run.lock", "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise SystemExit(
            f"pvtrace: another run is writing a generation of {published}; try again when it ends"
        ) from None
    return fh


def working_copy(warehouse: str) -> tuple[Path, float]:
    """A private copy of the published warehouse (or a fresh path) for a run to write; (path, seconds)."""
    import shutil

    published, work = Path(warehouse), Path(f"{warehouse}.next")
    for stale in (work, Path(f"{work}.wal")):
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if published.exists():
        _checkpointed(published)
        shutil.copyfile(published, work)
    return work, time.perf_counter() - t0


def _record_run(warehouse: Path, row: dict) -> None:
    from warehouse.schema import connect

    con = connect(str(warehouse))
    try:
        con.execute(
            "INSERT INTO pipeline_run (run_id, generation, inbox, inbox_sha256, clock, started_at, finished_at, status, "
            "failed_steps) VALUES ($run_id, $generation, $inbox, $inbox_sha256, $clock, $started_at, $finished_at, "
            "$status, $failed_steps)",
            row,
        )
        if row["status"] == "published":
            con.execute("CHECKPOINT")
    finally:
        con.close()


def _inbox_digest(warehouse: Path) -> str:
    """One hash over the content hashes of every inbox file the generation loaded."""
    import hashlib

    from warehouse.schema import connect

    con = connect(str(warehouse), read_only=True)
    try:
        rows = con.sql("SELECT kind, sha256 FROM load_manifest ORDER BY kind, file").fetchall()
    finally:
        con.close()
    return hashlib.sha256("\n".join(f"{k}:{h}" for k, h in rows).encode()).hexdigest()


def run_pipeline(
    inbox: str,
    warehouse: str,
    output: str,
    *,
    quiet: bool = False,
    log_level: str = "INFO",
    reports: str = "latest",
    clock: str | None = None,
    instance=None,
):
    """Materialise the whole graph in this process, then the monthly reports (``reports``: latest, all or none),
    and publish the result as one new *generation* of the warehouse and its report files — or nothing.

    Generations (module docstring). The graph runs against a working copy (``<warehouse>.next``, a byte
    copy of the published file) and writes its reports into ``<output>/.staging``; only when every step,
    blocking check and report succeeded is the copy checkpointed and moved over the warehouse with one
    atomic ``os.replace``, then the staged report folders over the published ones. Readers that
    open the warehouse therefore see the previous generation or the new one, never a mix of two
    inboxes; a failed run deletes its copy and its staging folder, records itself (``pipeline_run``,
    status ``failed`` and the failed steps) in the published warehouse and raises ``RunFailed`` naming
    the steps. ``instance``: the Dagster instance to run in (default: DAGSTER_HOME's, else ephemeral). Manufacturer
    alerts are built and delivered only after the publication, from the published generation,
    so a failed run never sends one; triage decisions the dashboard applied while the run was
    going are applied again from its journal (idempotent).

    The run's clock (``clock`` or ``PVTRACE_CLOCK``, default now) is fixed once and holds for
    every step: nothing after it loads, so the data lock point cannot pass it.

    Dagster refuses to materialise partitioned and unpartitioned assets in one call, so the
    unpartitioned graph runs first and the report assets then run once per month partition.
    Returns the Dagster result of the unpartitioned run."""
    import datetime as dt

    from assets.alerting import manufacturer_alerts
    from assets.definitions import ALL_ASSETS, ALL_CHECKS
    from assets.resources import default_resources
    from warehouse.inputs.inbox import CLOCK_ENV, parse_clock, run_clock

    if not Path(inbox).is_dir():
        raise SystemExit(f"pvtrace: inbox folder {inbox!r} does not exist (generate one with `pvtrace generate`)")
    fixed = parse_clock(clock) if clock else run_clock()
    previous_clock = os.environ.get(CLOCK_ENV)
    os.environ[CLOCK_ENV] = fixed.isoformat()
    published = Path(warehouse)
    published.parent.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    run_row = {
        "run_id": None,
        "generation": None,
        "inbox": str(Path(inbox).resolve()),
        "inbox_sha256": None,
        "clock": fixed,
        "started_at": started,
        "finished_at": None,
        "status": "failed",
        "failed_steps": None,
    }
    instance = instance or _instance()
    lock = _run_lock(published)
    work, copy_s = working_copy(warehouse)
    staging = None
    try:
        t0 = time.perf_counter()
        staging = stage_output(output)
        stage_s = time.perf_counter() - t0
        result = _materialize_with_progress(
            [*ALL_ASSETS, *ALL_CHECKS],
            quiet=quiet,
            selection=dg.AssetSelection.all() - dg.AssetSelection.assets(manufacturer_alerts),
            resources=default_resources(inbox=inbox, warehouse=str(work), output=str(staging), published=warehouse),
            instance=instance,
            raise_on_error=False,
            # Dagster's step events are DEBUG; INFO keeps what the assets themselves report
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        run_row["run_id"] = result.run_id
        if not quiet:
            _print_result(result)
            print(f"  working copy of the warehouse made in {copy_s:.2f} s, report folders staged in {stage_s:.2f} s")
        if not result.success:
            failed = _failed_steps(result)
            raise RunFailed(
                f"pvtrace: the run failed at {failed}; nothing was published, the previous generation of "
                f"{warehouse} stays in place; see the log above",
                failed,
            )
        try:
            run_reports(
                inbox,
                str(work),
                str(staging),
                report_months(str(work), reports),
                quiet=quiet,
                log_level=log_level,
                published=warehouse,
                instance=instance,
            )
        except SystemExit as exc:
            raise RunFailed(
                f"{exc}; nothing was published, the previous generation stays in place", ["reports"]
            ) from None
        run_row.update(
            status="published",
            inbox_sha256=_inbox_digest(work),
            generation=_next_generation(work),
            finished_at=dt.datetime.now(dt.UTC),
        )
        _record_run(work, run_row)
        os.replace(work, published)
    except BaseException as exc:
        for leftover in (work, Path(f"{work}.wal")):
            leftover.unlink(missing_ok=True)
        if staging is not None:  # no report file of an unpublished run reaches the output folder
            shutil.rmtree(staging, ignore_errors=True)
        run_row.update(
            failed_steps=",".join(getattr(exc, "failed_steps", None) or [type(exc).__name__]),
            finished_at=dt.datetime.now(dt.UTC),
        )
        if published.exists():
            _record_run(published, run_row)
        raise
    else:  # the warehouse is published: its report folders follow, still under the run lock
        try:
            how = publish_output(staging, output)
        except OSError as exc:
            print(
                f"pvtrace: generation {run_row['generation']} of {warehouse} is published but its report files "
                f"could not all be moved into {output} ({exc}); they stay in {staging} until the next run",
                file=sys.stderr,
            )
        else:
            if not quiet and how:
                print("  report folders published: " + ", ".join(f"{k} ({v})" for k, v in how.items()))
    finally:
        lock.close()
        if previous_clock is None:
            os.environ.pop(CLOCK_ENV, None)
        else:
            os.environ[CLOCK_ENV] = previous_clock
    _after_publication(inbox, warehouse, output, log_level=log_level, quiet=quiet, instance=instance)
    return result


def _next_generation(work: Path) -> int:
    from warehouse.schema import connect

    con = connect(str(work), read_only=True)
    try:
        last = con.sql("SELECT max(generation) FROM pipeline_run WHERE status = 'published'").fetchone()[0]
    finally:
        con.close()
    return (last or 0) + 1


def _after_publication(inbox: str, warehouse: str, output: str, *, log_level: str, quiet: bool, instance=None) -> None:
    """Once a generation is published: re-apply the dashboard's triage journal (decisions applied to
    the previous file while the run was going), then build and deliver manufacturer alerts from it."""
    from assets.alerting import manufacturer_alerts
    from assets.definitions import ALL_ASSETS
    from assets.resources import default_resources
    from dashboard.store import apply_pending_to_warehouse

    try:
        apply_pending_to_warehouse(warehouse)
    except Exception as exc:  # the journal keeps them: the dashboard's applier or the next run applies them
        print(f"pvtrace: triage decisions not re-applied now ({type(exc).__name__}); they stay in the journal")
    result = dg.materialize(
        [*ALL_ASSETS],
        selection=dg.AssetSelection.assets(manufacturer_alerts),
        resources=default_resources(inbox=inbox, warehouse=warehouse, output=output),
        instance=instance or _instance(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    if not quiet:
        _print_result(result)
    if not result.success:  # the generation stands; undelivered alerts stay pending in the outbox
        print(
            f"pvtrace: alerting failed at {_failed_steps(result)}; the generation is published, pending alert "
            "deliveries are retried on the next run",
            file=sys.stderr,
        )


def _print_result(result) -> None:
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


def published_generation(warehouse: str) -> int | None:
    """The number of the generation the warehouse holds (``None``: none published yet)."""
    from warehouse.schema import connect

    if not Path(warehouse).is_file():
        return None
    con = connect(warehouse, read_only=True)
    try:
        return con.sql("SELECT max(generation) FROM pipeline_run WHERE status = 'published'").fetchone()[0]
    finally:
        con.close()


class GenerationConfig(dg.Config):
    """A scheduled run's settings: the monthly reports to build with it (``latest``, ``all`` or ``none``:
    the default, as ``monthly_report_job`` builds them) and the run's clock (default: now)."""

    reports: str = "none"
    clock: str | None = None
    log_level: str = "INFO"


@dg.op(
    description="Run the unpartitioned graph on a working copy of the warehouse (reports into a staging folder) and "
    "publish it as a new generation, or nothing; alerts after publication. The same function as `pvtrace run`.",
)
def publish_generation_op(
    context: dg.OpExecutionContext,
    config: GenerationConfig,
    inbox: InboxResource,
    warehouse: WarehouseResource,
    output: OutputResource,
) -> dg.Output[int]:
    if config.reports not in ("latest", "all", "none"):
        raise dg.Failure(description=f"reports must be latest, all or none, not {config.reports!r}")
    before = published_generation(warehouse.path)
    try:
        result = run_pipeline(
            inbox.path,
            warehouse.path,
            output.path,
            quiet=True,
            log_level=config.log_level,
            reports=config.reports,
            clock=config.clock,
            instance=context.instance,
        )
    except RunFailed as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"failed_steps": ", ".join(exc.failed_steps), "published_generation": before or 0},
        ) from None
    except SystemExit as exc:  # another run holds the warehouse, no inbox folder: nothing was published
        raise dg.Failure(description=str(exc), metadata={"published_generation": before or 0}) from None
    generation = published_generation(warehouse.path)
    context.log.info(f"generation {generation} of {warehouse.path} published (graph run {result.run_id})")
    return dg.Output(generation, metadata={"generation": generation, "graph_run_id": result.run_id})

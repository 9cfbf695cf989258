"""The corruption suite: the mini inbox broken one way at a time, then every way at once, then a
failing step on an existing warehouse. Each time the load finishes, every row of every file is
accounted for (read = loaded + quarantined, and the manifest agrees with the tables), the bad
row or file is quarantined with its named reason and line, and nothing else is lost."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from assets.ingestion import ACCOUNTED, accounting_violations
from tests.corruption.common import CORRUPTIONS, load_inbox, manifest
from tests.mini_inbox import CLOCK, write_mini_inbox
from warehouse.inputs.inbox import CLOCK_ENV
from warehouse.schema import connect

RAW_PATIENT_REF = "PAT-"  # every patient reference of the mini inbox starts so


@pytest.fixture(autouse=True)
def _clock(monkeypatch):
    monkeypatch.setenv(CLOCK_ENV, CLOCK)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The clean mini inbox's manifest, per file."""
    import os

    os.environ[CLOCK_ENV] = CLOCK
    try:
        inbox = write_mini_inbox(tmp_path_factory.mktemp("clean") / "inbox")
        con = connect(":memory:")
        load_inbox(con, inbox)
        return manifest(con, inbox)
    finally:
        del os.environ[CLOCK_ENV]


def assert_accounted(con) -> None:
    for kind in ACCOUNTED:
        assert accounting_violations(con, kind) == {}, kind


def assert_no_raw_patient_ref(con) -> None:
    for table, cols in (("quarantine", ["raw", "detail", "record_key"]), ("load_manifest", ["error"])):
        for col in cols:
            n = con.sql(f"SELECT count(*) FROM {table} WHERE contains({col}, '{RAW_PATIENT_REF}')").fetchone()[0]
            assert n == 0, f"{table}.{col} carries a raw patient reference"


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=lambda c: c.name)
def test_a_corruption_is_quarantined_alone_and_every_row_is_accounted_for(tmp_path, corruption, baseline):
    inbox = write_mini_inbox(tmp_path / "inbox")
    corruption.apply(inbox)
    con = connect(":memory:")
    load_inbox(con, inbox)  # finishes: no corruption aborts the load
    assert_accounted(con)
    assert_no_raw_patient_ref(con)
    after = manifest(con, inbox)
    touched = after[corruption.file]
    # every other file loads exactly as in the clean inbox
    for file, row in baseline.items():
        if file != corruption.file:
            assert after[file] == row, file
    path = str(inbox / corruption.file)
    quarantined = con.sql(
        "SELECT reason, line, detail FROM quarantine WHERE source_file = ? ORDER BY line", params=[path]
    ).fetchall()
    if corruption.reason is None:  # nothing wrong: loaded, no rows
        assert touched["status"] == "loaded" and touched["read"] == 0
    elif corruption.line is None:  # the whole file: named, with its reason, no rows
        assert touched["status"] == "rejected" and touched["error"].startswith(corruption.reason)
        assert touched["read"] == touched["loaded"] == touched["quarantined"] == 0
        assert [(r, d.startswith("whole file:")) for r, _, d in quarantined] == [(corruption.reason, True)]
    elif corruption.file in baseline:  # one bad row in a known file: only that row more is quarantined
        clean = baseline[corruption.file]
        assert touched["read"] == clean["read"] + 1
        assert touched["loaded"] == clean["loaded"]
        assert touched["quarantined"] == clean["quarantined"] + 1
        assert (corruption.reason, corruption.line) in [(r, ln) for r, ln, _ in quarantined]
    else:  # a new file with one good and one bad line
        assert (touched["read"], touched["loaded"], touched["quarantined"]) == (2, 1, 1)
        assert [(r, ln) for r, ln, _ in quarantined] == [(corruption.reason, corruption.line)]


def test_line_numbers_after_a_malformed_row_stay_exact(tmp_path):
    """Rows after a rejected line keep their physical line number (the line a person opens)."""
    corruption = next(c for c in CORRUPTIONS if c.name == "short_row")
    inbox = write_mini_inbox(tmp_path / "inbox")
    corruption.apply(inbox)
    pathname = inbox / corruption.file
    lines = pathname.read_text(encoding="utf-8").splitlines()
    con = connect(":memory:")
    load_inbox(con, inbox)
    for key, line in con.sql(
        "SELECT record_key, line FROM quarantine WHERE source_file = ? AND record_key IS NOT NULL",
        params=[str(pathname)],
    ).fetchall():
        assert lines[line - 1].startswith(key + ","), (key, line)


def test_quantity_is_never_rounded_and_an_absurd_quantity_spares_the_batch(tmp_path):
    inbox = write_mini_inbox(tmp_path / "inbox")
    for name in ("quantity_2.7", "quantity_1000000"):
        next(c for c in CORRUPTIONS if c.name == name).apply(inbox)
    con = connect(":memory:")
    load_inbox(con, inbox)
    reasons = dict(con.sql("SELECT record_key, reason FROM quarantine WHERE record_key LIKE 'BAD-%'").fetchall())
    assert reasons == {"BAD-QTY": "bad_quantity", "BAD-MILLION": "exceeds_released_units"}
    # the batch's real delivery, made after the absurd one, is kept; no quantity was rounded
    assert con.sql("SELECT delivery_id, quantity FROM delivery WHERE batch_id = 'B-CN1'").fetchall() == [("D4", 1)]
    assert con.sql("SELECT count(*) FROM delivery WHERE quantity <> 1").fetchone()[0] == 0


def test_a_case_from_2031_does_not_move_the_data_lock_point(tmp_path):
    inbox = write_mini_inbox(tmp_path / "inbox")
    next(c for c in CORRUPTIONS if c.name == "received_2031").apply(inbox)
    con = connect(":memory:")
    load_inbox(con, inbox)
    assert con.sql("SELECT max(received_on) FROM latest_case").fetchone()[0] <= dt.date.fromisoformat(CLOCK)


def test_plausibility_rules_can_be_switched_off_by_name(tmp_path, monkeypatch):
    inbox = write_mini_inbox(tmp_path / "inbox")
    next(c for c in CORRUPTIONS if c.name == "received_2031").apply(inbox)
    monkeypatch.setenv("PVTRACE_PLAUSIBILITY_OFF", "not_after_clock")
    con = connect(":memory:")
    load_inbox(con, inbox)
    assert con.sql("SELECT count(*) FROM case_report WHERE case_id = 'BAD-2031'").fetchone()[0] == 1
    monkeypatch.setenv("PVTRACE_PLAUSIBILITY_OFF", "no_such_rule")
    with pytest.raises(ValueError, match="no_such_rule"):
        load_inbox(connect(":memory:"), inbox)


# ---- whole runs: every corruption at once; a failing step on an existing warehouse ---------------


def _run(inbox: Path, root: Path):
    from assets.cli import run_pipeline

    return run_pipeline(
        str(inbox),
        str(root / "w.duckdb"),
        str(root / "out"),
        quiet=True,
        log_level="ERROR",
        reports="none",
        clock=CLOCK,
    )


@pytest.mark.e2e
def test_a_run_on_an_inbox_broken_every_way_finishes_and_accounts_for_every_row(tmp_path):
    inbox = write_mini_inbox(tmp_path / "inbox")
    for corruption in CORRUPTIONS:
        corruption.apply(inbox)
    result = _run(inbox, tmp_path)
    assert result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed
    ]
    assert not [f for f in failed if f[1] in ("rows_accounted_for", "data_lock_point_not_after_clock")]
    con = connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert_accounted(con)
    assert_no_raw_patient_ref(con)
    reasons = {r for (r,) in con.sql("SELECT DISTINCT reason FROM quarantine").fetchall()}
    assert {c.reason for c in CORRUPTIONS if c.reason} <= reasons
    assert con.sql("SELECT generation, status FROM pipeline_run").fetchall() == [(1, "published")]
    assert not Path(f"{tmp_path / 'w.duckdb'}.next").exists()


@pytest.mark.e2e
def test_a_failing_step_leaves_the_previous_generation_and_sends_no_alert(tmp_path, monkeypatch):
    from assets import ingestion
    from assets.cli import RunFailed

    inbox = write_mini_inbox(tmp_path / "inbox")
    _run(inbox, tmp_path)
    warehouse = tmp_path / "w.duckdb"
    con = connect(str(warehouse), read_only=True)
    before = {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("case_report", "delivery", "signal")}
    con.close()
    alerts_before = sorted(p.name for p in (tmp_path / "out").rglob("*"))

    # a new inbox (more cases) and a step that fails after the cases have loaded
    newer = tmp_path / "newer"
    shutil.copytree(inbox, newer)
    extra = newer / "cases" / "cases_2025-03.jsonl"
    extra.write_text((inbox / "cases" / "cases_2025-02.jsonl").read_text().replace('"C1"', '"C77"'))

    def boom(con):
        raise RuntimeError("case-batch linkage broke")

    monkeypatch.setattr(ingestion, "rebuild_case_batch_links", boom)
    with pytest.raises(RunFailed) as failure:
        _run(newer, tmp_path)
    assert failure.value.failed_steps == ["case_batch_links"]
    assert "case_batch_links" in str(failure.value) and "previous generation" in str(failure.value)

    con = connect(str(warehouse), read_only=True)
    after = {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("case_report", "delivery", "signal")}
    runs = con.sql("SELECT generation, status, failed_steps FROM pipeline_run ORDER BY started_at").fetchall()
    con.close()
    assert after == before  # no case of the newer inbox beside the older deliveries
    assert runs == [(1, "published", None), (None, "failed", "case_batch_links")]
    assert not Path(f"{warehouse}.next").exists()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == alerts_before

    # the fixed step: the newer inbox publishes generation 2, idempotently on a re-run
    monkeypatch.undo()
    monkeypatch.setenv(CLOCK_ENV, CLOCK)
    _run(newer, tmp_path)
    _run(newer, tmp_path)
    con = connect(str(warehouse), read_only=True)
    gens = con.sql("SELECT max(generation) FROM pipeline_run WHERE status = 'published'").fetchone()[0]
    cases = con.sql("SELECT count(*) FROM case_report").fetchone()[0]
    assert gens == 3 and cases > before["case_report"]


def test_a_second_run_on_the_same_warehouse_is_refused_while_one_publishes(tmp_path):
    from assets.cli import _run_lock

    inbox = write_mini_inbox(tmp_path / "inbox")
    held = _run_lock(tmp_path / "w.duckdb")
    try:
        with pytest.raises(SystemExit, match="another run"):
            _run(inbox, tmp_path)
    finally:
        held.close()
    assert not (tmp_path / "w.duckdb").exists() and not Path(f"{tmp_path / 'w.duckdb'}.next").exists()

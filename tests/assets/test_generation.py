"""Generations (assets/generation.py): the report folders are staged and published with the warehouse, and the
Dagster schedule's job publishes through the same function as ``pvtrace run``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.generation import STAGING, _exchange, publish_output, published_generation, stage_output
from tests.mini_inbox import CLOCK, write_mini_inbox
from warehouse.inputs.inbox import CLOCK_ENV
from warehouse.schema import connect


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256 of its bytes)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---- staging and publication of the report folders (no Dagster) ----------------------------------


def test_a_staged_folder_replaces_the_published_one_with_its_writes_and_removals(tmp_path):
    out = tmp_path / "out"
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "r_2024-01.html").write_text("january, generation 1")
    (out / "reports" / "r_2024-02.html").write_text("february, generation 1")
    (out / "e2b").mkdir()
    (out / "e2b" / "e2b_X_2024-02.xml").write_text("<batch/>")
    (out / "alerts").mkdir()
    (out / "alerts" / "a.json").write_text("{}")

    staging = stage_output(out)
    assert staging == out / STAGING
    assert _tree(staging / "reports") == _tree(out / "reports")  # a copy, so untouched months are kept
    (staging / "reports" / "r_2024-02.html").write_text("february, generation 2")  # rewritten in place
    (staging / "e2b" / "e2b_X_2024-02.xml").unlink()  # no longer due
    (staging / "ermr" / "2024-02").mkdir(parents=True)
    (staging / "ermr" / "2024-02" / "ermr_x.csv").write_text("a,b\n")
    assert (out / "reports" / "r_2024-02.html").read_text() == "february, generation 1"  # not a hard link

    how = publish_output(staging, out)

    assert _tree(out) == {
        "reports/r_2024-01.html": hashlib.sha256(b"january, generation 1").hexdigest(),
        "reports/r_2024-02.html": hashlib.sha256(b"february, generation 2").hexdigest(),
        "ermr/2024-02/ermr_x.csv": hashlib.sha256(b"a,b\n").hexdigest(),
        "alerts/a.json": hashlib.sha256(b"{}").hexdigest(),  # not a staged folder: left alone
    }
    assert not staging.exists()
    assert how["ermr"] == "rename"  # nothing published before: one rename
    assert how["reports"] in ("exchange", "two renames") and how["e2b"] == how["reports"]


def test_a_stale_staging_folder_of_a_crashed_run_is_not_published(tmp_path):
    out = tmp_path / "out"
    (out / STAGING / "reports").mkdir(parents=True)
    (out / STAGING / "reports" / "half_written.pdf").write_bytes(b"%PDF-")
    staging = stage_output(out)
    assert list(staging.iterdir()) == []
    publish_output(staging, out)
    assert _tree(out) == {}


def test_exchange_swaps_two_folders_in_one_step_where_the_kernel_offers_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from_a").touch()
    (b / "from_b").touch()
    if not _exchange(a, b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: publication falls back to two renames")
    assert [p.name for p in a.iterdir()] == ["from_b"] and [p.name for p in b.iterdir()] == ["from_a"]
    with pytest.raises(FileNotFoundError):
        _exchange(a, tmp_path / "missing")


# ---- the scheduled job: same generations as `pvtrace run` -----------------------------------------


def _scheduled_run(inbox: Path, root: Path, *, reports: str = "latest") -> dg.ExecuteInProcessResult:
    from assets.definitions import daily_detection_job
    from assets.resources import default_resources

    job = dg.Definitions(
        jobs=[daily_detection_job],
        resources=default_resources(inbox=str(inbox), warehouse=str(root / "w.duckdb"), output=str(root / "out")),
    ).resolve_job_def("daily_detection_job")
    config = {"reports": reports, "clock": CLOCK, "log_level": "ERROR"}
    return job.execute_in_process(
        run_config={"ops": {"publish_generation_op": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return event.event_specific_data.error.message


def _counts(warehouse: Path) -> dict[str, int]:
    con = connect(str(warehouse), read_only=True)
    try:
        return {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("case_report", "delivery", "signal")}
    finally:
        con.close()


@pytest.mark.e2e
def test_the_scheduled_job_publishes_generations_and_a_failed_run_leaves_the_previous_one(tmp_path, monkeypatch):
    from assets import ingestion
    from reports import ermr

    monkeypatch.setenv(CLOCK_ENV, CLOCK)
    warehouse, out = tmp_path / "w.duckdb", tmp_path / "out"
    inbox = write_mini_inbox(tmp_path / "inbox")

    first = _scheduled_run(inbox, tmp_path)
    assert first.success, _failure(first)
    assert published_generation(str(warehouse)) == 1
    assert first.output_for_node("publish_generation_op") == 1
    published = _tree(out)
    assert any(p.startswith("reports/") and p.endswith(".pdf") for p in published)
    assert not (out / STAGING).exists() and not Path(f"{warehouse}.next").exists()
    before = _counts(warehouse)

    # a newer inbox (one more case) and a step that fails mid-graph, after the cases have loaded
    newer = tmp_path / "newer"
    shutil.copytree(inbox, newer)
    (newer / "cases" / "cases_2025-03.jsonl").write_text(
        (inbox / "cases" / "cases_2025-02.jsonl").read_text().replace('"C1"', '"C77"')
    )

    def boom(con):
        raise RuntimeError("case-batch linkage broke")

    with monkeypatch.context() as m:
        m.setattr(ingestion, "rebuild_case_batch_links", boom)
        failed = _scheduled_run(newer, tmp_path)
    assert not failed.success
    assert "case_batch_links" in _failure(failed) and "previous generation" in _failure(failed)
    assert published_generation(str(warehouse)) == 1 and _counts(warehouse) == before
    assert _tree(out) == published  # not one report file of the failed run

    # the graph succeeds but a report fails after others were written: none of them is published
    def broken_ermr(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(ermr, "write_ermr", broken_ermr)
        failed = _scheduled_run(newer, tmp_path)
    assert not failed.success and "reports" in _failure(failed)
    assert published_generation(str(warehouse)) == 1 and _counts(warehouse) == before
    assert _tree(out) == published and not (out / STAGING).exists()
    con = connect(str(warehouse), read_only=True)
    runs = con.sql("SELECT generation, status, failed_steps FROM pipeline_run ORDER BY started_at").fetchall()
    con.close()
    assert runs == [(1, "published", None), (None, "failed", "case_batch_links"), (None, "failed", "reports")]

    second = _scheduled_run(newer, tmp_path)
    assert second.success, _failure(second)
    assert published_generation(str(warehouse)) == 2
    assert _counts(warehouse)["case_report"] > before["case_report"]
    assert _tree(out) != published and not (out / STAGING).exists()

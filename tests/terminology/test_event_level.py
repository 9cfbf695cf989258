"""The run's event level (issue 17): disproportionality and batch methods at HLT/HLGT/SOC/SMQ, the level in the
register, and a register row above PT finding its cases through the read model."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from sample_data.terminology import write_terminology
from signals.batch_detection import heterogeneity_by_level
from tests.browser.world import BATCHES, build_warehouse
from warehouse.queries import read_model
from warehouse.queries.batch_inputs import batch_case_rows
from warehouse.queries.detection_inputs import report_event_counts
from warehouse.schema import connect
from warehouse.stores.signal_register import signal_id, update_register
from warehouse.terminology.hierarchy import EVENT_LEVEL_ENV, refresh_event_map, run_event_level
from warehouse.terminology.meddra import load_release

SMQ = "Hypersensitivity (synthetic SMQ)"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("levels")
    build_warehouse(root / "pv.duckdb")
    con = connect(str(root / "pv.duckdb"))
    # P2's bradycardia cases become allergic reactions under two PTs of one SMQ
    con.execute("UPDATE case_reaction SET pt = 'Urticaria' WHERE pt = 'Bradycardia' AND reaction_seq % 2 = 0")
    con.execute("UPDATE case_reaction SET pt = 'Angioedema' WHERE pt = 'Bradycardia'")
    for f in write_terminology(root / "t", languages=("en",)):
        load_release(con, f)
    refresh_event_map(con)
    yield con
    con.close()


def test_run_level_from_the_environment(monkeypatch):
    monkeypatch.delenv(EVENT_LEVEL_ENV, raising=False)
    assert run_event_level() == "pt"
    monkeypatch.setenv(EVENT_LEVEL_ENV, "SMQ_narrow")
    assert run_event_level() == "smq_narrow"
    monkeypatch.setenv(EVENT_LEVEL_ENV, "llt")
    with pytest.raises(ValueError, match="must be one of"):
        run_event_level()


def test_disproportionality_counts_at_the_level_and_keeps_n(world):
    pt = report_event_counts(world, "product", event_level="pt")
    smq = report_event_counts(world, "product", event_level="smq_narrow")
    soc = report_event_counts(world, "product", event_level="soc")
    assert set(smq["event"]) == {SMQ}  # only grouped PTs become events ...
    assert smq["n"].unique().to_list() == pt["n"].unique().to_list()  # ... every report still counts in N
    p2 = pt.filter(pl.col("drug") == "P2")
    # a report naming Urticaria and Angioedema counts once for the SMQ
    assert smq.filter(pl.col("drug") == "P2")["n11"][0] <= p2["n11"].sum()
    # Lactic acidosis is not in the synthetic release: no SOC event for it (its reports still count in N)
    assert set(soc["event"]) == {"Skin and subcutaneous tissue disorders"} and soc["n"][0] == pt["n"][0]


def test_a_level_above_pt_needs_a_release(tmp_path):
    con = connect(str(tmp_path / "empty.duckdb"))
    try:
        with pytest.raises(ValueError, match="needs a MedDRA release"):
            report_event_counts(con, "product", event_level="hlt")
    finally:
        con.close()


def test_batch_methods_run_on_smq_events(world):
    rows = batch_case_rows(world, event_level="smq_narrow")
    assert set(rows["pt"]) == {SMQ} and rows.select("case_id", "batch").is_duplicated().sum() == 0
    exposure = pl.DataFrame(
        [(prod, b, float(packs), dt.date(2025, 1, 6)) for b, (prod, _, packs, _) in BATCHES.items()],
        schema=["product", "batch", "exposure", "first_week"],
        orient="row",
    )
    scored, _ = heterogeneity_by_level(rows, exposure)["pt"]
    assert set(scored["pt"] if "pt" in scored.columns else scored["event"]) == {SMQ}


def test_register_keeps_the_level_and_smq_signals_find_their_cases(world):
    world.execute("BEGIN TRANSACTION")
    try:
        det = pl.DataFrame(
            {
                "level": ["product", "product"],
                "product_id": ["P2", "P2"],
                "ingredient": [None, None],
                "pt": [SMQ, "Urticaria"],
                "batch_id": [None, None],
                "methods": [["evans"], ["evans"]],
                "figures": ["{}", "{}"],
                "event_level": ["smq_narrow", "pt"],
            }
        )
        update_register(world, det, dt.date(2025, 6, 30), "test")
        rows = dict(world.execute("SELECT pt, event_level FROM signal WHERE product_id = 'P2'").fetchall())
        assert rows[SMQ] == "smq_narrow" and rows["Urticaria"] == "pt"
        sid = signal_id("product", "P2", SMQ, None, "smq_narrow")
        assert sid != signal_id("product", "P2", SMQ, None)  # the level is part of a non-PT id
        cases = read_model.signal_cases(world).filter(pl.col("signal_id") == sid)["case_id"].to_list()
        p2 = world.execute(
            "SELECT DISTINCT case_id FROM pv_case_event(NULL) WHERE product_id = 'P2' ORDER BY 1"
        ).fetchall()
        assert sorted(cases) == [c for (c,) in p2] and cases  # every Urticaria or Angioedema case of P2
    finally:
        world.execute("ROLLBACK")

"""End to end: the null world (``generate_world(null=True)``, ``pvtrace demo --null``) plants nothing,
and the whole graph runs on it, so its alerts can be counted as false alarms."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets.definitions import ALL_ASSETS, ALL_CHECKS
from assets.evaluation import evaluate
from assets.resources import default_resources
from sample_data.world import null_world
from warehouse.schema import connect

pytestmark = pytest.mark.e2e

SCALE = 0.1
SEED = 7


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("null")
    inbox = null_world(root / "inbox", seed=SEED, scale=SCALE)
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=default_resources(inbox=str(inbox), warehouse=str(root / "pv.duckdb"), output=str(root / "out")),
        raise_on_error=True,
    )
    return {"root": root, "inbox": inbox, "result": result}


def test_null_ground_truth_plants_nothing_but_keeps_the_background(world):
    truth = json.loads((world["inbox"] / "ground_truth.json").read_text())
    assert truth["null_world"] is True
    assert truth["signals"] == []  # no product signal, no defective batch, no cold-chain consignment
    assert truth["known_adrs"] and truth["background"]["indication_events"]
    assert truth["background"]["stimulated_reporting"]


def test_pipeline_runs_on_the_null_world_with_no_excursion(world):
    assert world["result"].success
    con = connect(str(world["root"] / "pv.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM latest_case").fetchone()[0] > 0
        assert con.sql("SELECT count(*) FROM supply_event").fetchone()[0] > 0
        assert con.sql("SELECT count(*) FROM cold_chain_excursion").fetchone()[0] == 0
        truth = json.loads((world["inbox"] / "ground_truth.json").read_text())
        tables = evaluate(con, truth)
        assert tables["detection"].height == 0  # nothing planted, nothing to detect
        assert "planted" not in set(tables["product_alerts"]["kind"])
        # every alert on a null world is a false alarm: the evaluation lists them all as such
        assert set(tables["false_alerts"]["kind"].unique()) <= {
            "clean batch",
            "negative control",
            "negative control (batch)",
        }
    finally:
        con.close()

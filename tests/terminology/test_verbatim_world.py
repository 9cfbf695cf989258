"""End to end (issue 17): a synthetic world whose patients write verbatims, coded during the run with the synthetic
terminology loaded; coding precision/recall per language against the world's truth, and the planted batch defect
found through the coded verbatims."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from assets import batch_signals, detection, ingestion, register
from assets.resources import default_resources
from sample_data.terminology import write_terminology
from sample_data.verbatims import TRUTH_FILE
from sample_data.world import generate_world
from warehouse.queries import read_model
from warehouse.schema import connect
from warehouse.terminology.case_coding import coding_scores
from warehouse.terminology.meddra import load_release

pytestmark = pytest.mark.e2e

SCALE, SEED = 0.3, 7


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("verbatim_world")
    truth = generate_world(root / "inbox", seed=SEED, scale=SCALE, verbatims=True)
    con = connect(str(root / "pv.duckdb"))
    for folder in write_terminology(root / "meddra"):
        load_release(con, folder)
    con.close()
    # the graph up to the register (no checks, alerts, traceability records: other tests run those)
    detection_graph = dg.load_assets_from_modules([ingestion, detection, batch_signals, register])
    result = dg.materialize(
        detection_graph,
        resources=default_resources(
            inbox=str(root / "inbox"), warehouse=str(root / "pv.duckdb"), output=str(root / "output")
        ),
        raise_on_error=False,
    )
    con = read_model.install(connect(str(root / "pv.duckdb"), read_only=True))
    assert result.success
    yield {"truth": truth, "con": con, "root": root}
    con.close()


def test_coding_meets_the_goals_per_language(world):
    scores = coding_scores(world["con"], pl.read_parquet(world["root"] / "inbox" / TRUTH_FILE))
    for row in scores.iter_rows(named=True):
        assert row["precision"] >= 0.95 and row["recall"] >= 0.9, row
    assert set(scores["language"]) == {"all", "en", "zh", "ja"}
    uncoded = (
        world["con"]
        .execute(
            "SELECT count(*) FROM case_reaction WHERE pt IS NULL AND (case_id, version, reaction_seq) NOT IN "
            "(SELECT (case_id, version, reaction_seq) FROM case_reaction_coding WHERE pt IS NOT NULL)"
        )
        .fetchone()[0]
    )
    assert 0 < uncoded < 0.06 * scores.filter(pl.col("language") == "all")["reactions"][0]  # the vague phrases


def test_the_planted_defect_is_found_through_coded_verbatims(world):
    con = world["con"]
    defect = next(s for s in world["truth"]["signals"] if s["kind"] == "batch_defect")
    rows = con.execute(
        "SELECT pt, methods FROM signal WHERE level = 'batch' AND batch_id = ?", [defect["batch_id"]]
    ).fetchall()
    assert any(pt in defect["pts"] for pt, _ in rows), rows
    # some of its cases are patients' words, coded
    (coded,) = con.execute(
        "SELECT count(DISTINCT e.case_id) FROM pv_case_event(NULL) e JOIN latest_case_reaction r "
        "ON r.case_id = e.case_id AND r.reaction_seq = e.reaction_seq AND r.pt = e.pt "
        "WHERE e.batch_id = ? AND list_contains(?, e.pt) AND r.verbatim IS NOT NULL",
        [defect["batch_id"], defect["pts"]],
    ).fetchone()
    assert coded > 0

"""Every moved step on both engines, and the signal register of a whole run on each (issue 15).

One small synthetic world goes through the unpartitioned graph (up to the signal register) twice: with the DuckDB engine
(the default) and with the Spark engine (the session of tests/engine/conftest.py). Then each
moved step is run on the DuckDB run's warehouse by both engines and the outputs compared, and
the two runs' stored results are compared table by table.

Float figures: the stratified E is summed in fixed point (warehouse.queries.counts), the same
bits on both engines, so the MGPS prior is fitted on identical input; before, E differed in the
last bits and the prior fit (flat in alpha1) turned that into EB95 differences of up to 2.6e-4.
Every stored table and the register (rows, status and every figure as stored) are compared
exactly.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets import batch_signals, detection, ingestion, register
from assets.resources import default_resources
from sample_data.world import generate_world
from warehouse.engine import engine_from_config
from warehouse.engine.read_model import READ_MODEL_TABLES
from warehouse.linkage.case_batch_links import (
    LINK_TABLES,
    PACK_TABLES,
    decide_links,
    links_expr,
    packs_for_codes,
    reported_values,
)
from warehouse.queries.batch_inputs import BATCH_CASE_TABLES, batch_case_rows
from warehouse.queries.detection_inputs import report_event_counts, report_event_counts_by_cutoff
from warehouse.queries.exposure import EXPOSURE_TABLES, exposure_weekly
from warehouse.schema import connect
from warehouse.stores.signal_register import register_differences

pytestmark = pytest.mark.spark

SCALE, SEED = 0.05, 7
CLOCK = "2026-11-01T00:00:00+00:00"


def _run(root, engine: str) -> str:
    path = str(root / f"{engine}.duckdb")
    resources = default_resources(
        inbox=str(root / "inbox"), warehouse=path, output=str(root / f"out_{engine}"), engine=engine
    )
    # the graph up to the signal register: every step that moved to the engine, and what reads its results (the
    # reports, alerts and checks read the register the same way on either engine and are tested elsewhere)
    graph = dg.load_assets_from_modules([ingestion, detection, batch_signals, register])
    dg.materialize(graph, resources=resources, raise_on_error=True)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("engine_world")
    generate_world(root / "inbox", seed=SEED, scale=SCALE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PVTRACE_CLOCK", CLOCK)
        paths = {engine: _run(root, engine) for engine in ("duckdb", "spark")}
    cons = {engine: connect(path, read_only=True) for engine, path in paths.items()}
    yield cons
    for c in cons.values():
        c.close()


@pytest.fixture(scope="module")
def engines(runs, spark):
    """The DuckDB run's warehouse, seen by the DuckDB engine and (Parquet export) by Spark."""
    con = runs["duckdb"]
    duck = engine_from_config("duckdb", duckdb_con=con)
    spk = engine_from_config("spark", spark=spark)
    spk.load_warehouse(
        con, sorted({*READ_MODEL_TABLES, *EXPOSURE_TABLES, *BATCH_CASE_TABLES, *PACK_TABLES, *LINK_TABLES})
    )
    yield con, duck, spk
    spk.close()
    duck.close()


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c, t in frame.schema.items() if t not in (pl.Float64, pl.Float32) and not isinstance(t, pl.List)]
    return frame.sort(keys, nulls_last=True)


def test_weekly_exposure_is_the_same_on_both_engines(engines):
    con, duck, spk = engines
    a, b = duck.to_polars(exposure_weekly(duck)), spk.to_polars(exposure_weekly(spk))
    assert a.height > 100 and a["packs_delivered"].sum() > 0
    assert_frame_equal(a, b)  # sorted by the keys on both; weeks are Mondays of UTC dates
    assert (a["week"].dt.weekday() == 1).all()
    stored = con.sql("SELECT * FROM exposure_weekly").pl()
    assert_frame_equal(stored, a)


@pytest.mark.parametrize("level", ["product", "ingredient"])
def test_contingency_counts_with_strata_are_the_same_on_both_engines(engines, level):
    con, duck, spk = engines
    a, b = report_event_counts(con, level, duck), report_event_counts(con, level, spk)
    assert a.height > 50
    assert_frame_equal(a.drop("e"), b.drop("e"))
    assert_frame_equal(a.select("e"), b.select("e"), rel_tol=1e-9)


def test_counts_by_cutoff_are_the_same_on_both_engines(engines):
    con, duck, spk = engines
    lo, hi = con.sql("SELECT min(received_on), max(received_on) FROM latest_case").fetchone()
    cutoffs = [lo + (hi - lo) * k / 3 for k in (1, 2, 3)]
    a = report_event_counts_by_cutoff(con, "product", cutoffs, duck)
    b = report_event_counts_by_cutoff(con, "product", cutoffs, spk)
    assert a["cutoff"].n_unique() == 3
    assert_frame_equal(a.drop("e"), b.drop("e"))
    assert_frame_equal(a.select("e"), b.select("e"), rel_tol=1e-9)


def test_batch_case_rows_are_the_same_on_both_engines(engines):
    con, duck, spk = engines
    a, b = batch_case_rows(con, engine=duck), batch_case_rows(con, engine=spk)
    assert a.height > 50 and set(a["attribution"]) == {"case_batch_link", "dispensing_record"}
    assert a["onset_days"].drop_nulls().min() >= 0
    assert_frame_equal(_sorted(a), _sorted(b))


def test_linkage_reads_only_the_packs_the_reported_codes_can_name(engines):
    con, duck, spk = engines
    codes = con.sql("SELECT pack_code_reported FROM case_drug").pl()["pack_code_reported"]
    a, b = packs_for_codes(duck, codes), packs_for_codes(spk, codes)
    assert 0 < a.height < con.sql("SELECT count(*) FROM pack").fetchone()[0] / 5
    assert_frame_equal(_sorted(a), _sorted(b))


def test_case_batch_links_are_decided_once_per_reported_value_and_joined_alike_on_both_engines(engines):
    """The engines hand over the same distinct reported values (far fewer than the case drugs) and
    join the decisions back to the stored links, row for row."""
    con, duck, spk = engines
    stored = con.sql("SELECT * FROM case_batch_link").pl()
    reported = reported_values(duck)
    assert 0 < reported.height < 0.75 * con.sql("SELECT count(*) FROM case_drug").fetchone()[0]
    assert_frame_equal(_sorted(reported), _sorted(reported_values(spk)))
    decisions = decide_links(
        reported,
        con.sql("SELECT product_id, gtin, nmpa_drug_code FROM product").pl(),
        con.sql("SELECT batch_id, product_id, lot_number FROM batch").pl(),
        packs_for_codes(duck, reported["pack_code_reported"]),
    )
    assert stored["method"].n_unique() >= 4
    for eng in (duck, spk):
        d = eng.register("_t_link_decisions", decisions)
        try:
            joined = eng.to_polars(links_expr(eng, d))
        finally:
            eng.drop("_t_link_decisions")
        assert_frame_equal(joined, stored.sort("case_id", "version", "drug_seq"))


def test_a_spark_run_gives_the_same_signal_register_as_a_duckdb_run(runs):
    duck, spk = runs["duckdb"], runs["spark"]
    for table in ("exposure_weekly", "case_batch_link", "sequential_monitoring"):
        a, b = duck.sql(f"SELECT * FROM {table}").pl(), spk.sql(f"SELECT * FROM {table}").pl()
        assert_frame_equal(_sorted(a), _sorted(b), check_exact=True), table
    for table, keys in (
        ("disproportionality_score", ["level", "drug", "event"]),
        ("batch_heterogeneity", ["level", "product_id", "event", "batch_id"]),
    ):
        a = duck.sql(f"SELECT * FROM {table} ORDER BY ALL").pl()
        b = spk.sql(f"SELECT * FROM {table} ORDER BY ALL").pl()
        assert a.height > 0 and a.select(keys).sort(keys).equals(b.select(keys).sort(keys)), table
        # the same bits: E is summed in fixed point (warehouse.queries.counts), so the MGPS prior is fitted on
        # identical input
        assert_frame_equal(a.sort(keys), b.sort(keys), check_exact=True), table
    d = register_differences(duck, spk)
    assert d["rows_a"] > 0 and d["rows_a"] == d["rows_b"]
    assert not d["only_a"] and not d["only_b"] and not d["changed"]
    assert d["figures_compared"] > 0 and d["figures_differing"] == 0, d["examples"]

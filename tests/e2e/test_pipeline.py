"""End to end: a seeded synthetic world through the whole Dagster graph, checked against its planted truth."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets.definitions import ALL_ASSETS, ALL_CHECKS, defs
from assets.resources import default_resources
from sample_data.world import generate_world
from warehouse.schema import connect

pytestmark = pytest.mark.e2e

SCALE = 0.3
SEED = 7
# ground truth names the planted bad scans; the loader names the quarantine reason
QUARANTINE_REASON = {"unknown_nmpa": "unknown_nmpa_drug_code"}
TABLES = [
    "manufacturer",
    "product",
    "batch",
    "pack",
    "supply_event",
    "delivery",
    "medication_log",
    "case_report",
    "case_drug",
    "case_reaction",
    "case_batch_link",
    "quarantine",
    "disproportionality_score",
    "signal",
    "signal_history",
    "alert",
]


def materialise(inbox, warehouse, output):
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=default_resources(inbox=str(inbox), warehouse=str(warehouse), output=str(output)),
        raise_on_error=True,
    )


def table_counts(warehouse) -> dict[str, int]:
    con = connect(str(warehouse), read_only=True)
    try:
        return {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    truth = generate_world(root / "inbox", seed=SEED, scale=SCALE)
    first = materialise(root / "inbox", root / "pv.duckdb", root / "output")
    return {"root": root, "truth": truth, "first": first, "counts": table_counts(root / "pv.duckdb")}


@pytest.fixture()
def con(world):
    c = connect(str(world["root"] / "pv.duckdb"), read_only=True)
    yield c
    c.close()


def test_definitions_load_with_jobs_and_schedules():
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "daily_detection_job",
        "monthly_report_job",
        "daily_landing_job",
    }
    assert "pvtrace_job" not in {j.name for j in defs.resolve_all_job_defs()}  # one job for the graph
    # the lake's daily landing (issue 15) is the only partitioned schedule besides the monthly reports
    assert {s.name for s in defs.schedules} == {"daily_detection", "monthly_report", "daily_landing"}
    assert defs.resolve_schedule_def("monthly_report").cron_schedule == "0 4 1 * *"


def test_every_asset_materialised_and_checks_ran(world):
    result = world["first"]
    assert result.success
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialised == {a for ad in ALL_ASSETS for a in ad.keys}
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert {
        "deliveries_quarantine",
        "cases_quarantine",
        "orphan_case_drugs",
        "linkage_rate",
        "duplicate_rate",
    } <= checks


def test_planted_product_signal_is_found(world, con):
    planted = [s for s in world["truth"]["signals"] if s["kind"] == "product"]
    assert planted
    for s in planted:
        row = con.execute(
            "SELECT methods FROM signal WHERE level = 'product' AND product_id = ? AND pt = ?",
            [s["product_id"], s["pt"]],
        ).fetchone()
        assert row is not None, f"planted signal {s['product_id']} / {s['pt']} not in the register"
        # Evans, EMA SDR and WHO-UMC IC025 find it; FDA's EB05 >= 2 does at scale 1 but not on this
        # small world since the MGPS prior is fitted on a realistic (heterogeneous) background,
        # which shrinks 14 reports vs 3.8 expected to EBGM 2.6, EB05 1.3: MGPS still ranks it up
        assert {"evans", "ema_sdr", "who_umc"} <= set(row[0]), row[0]
        ebgm, eb05 = con.execute(
            "SELECT ebgm, eb05 FROM disproportionality_score WHERE level = 'product' AND drug = ? AND event = ?",
            [s["product_id"], s["pt"]],
        ).fetchone()
        assert ebgm >= 2 and eb05 > 1, (ebgm, eb05)


def test_mgps_prior_is_stored_for_citation(con):
    priors = dict(con.sql("SELECT level, converged FROM mgps_prior").fetchall())
    assert priors == {"product": True, "ingredient": True}
    # EB05 ≤ EB95 always; EBGM (exp E[ln λ]) may fall outside them for a near-degenerate mixture component
    (n,) = con.sql(
        "SELECT count(*) FROM disproportionality_score WHERE eb05 IS NULL OR ebgm IS NULL OR eb05 > eb95"
    ).fetchone()
    assert n == 0


def test_negative_controls_are_not_signals(world, con):
    controls = world["truth"]["negative_controls"]
    assert len(controls) >= 5
    fired = [
        (c["product_id"], c["pt"])
        for c in controls
        if con.execute(
            "SELECT count(*) FROM signal WHERE level = 'product' AND product_id = ? AND pt = ?",
            [c["product_id"], c["pt"]],
        ).fetchone()[0]
    ]
    assert fired == []


def test_bad_inputs_are_quarantined_with_reasons(world, con):
    bad = world["truth"]["bad_inputs"]
    got = {(s, r): n for s, r, n in con.sql("SELECT stage, reason, count(*) FROM quarantine GROUP BY ALL").fetchall()}
    for reason, n in bad["deliveries"].items():
        assert got.get(("deliveries", QUARANTINE_REASON.get(reason, reason)), 0) >= n, (reason, got)
    assert sum(n for (s, _), n in got.items() if s == "cases") == sum(bad["cases"].values())


def test_exposure_counts_every_verified_delivery(con):
    packs, deliveries = con.sql(
        "SELECT (SELECT sum(packs_delivered) FROM exposure_weekly), (SELECT sum(quantity) FROM delivery)"
    ).fetchone()
    assert packs == deliveries > 0


def test_alerts_are_scoped_to_each_manufacturer(world, con):
    alerts_dir = world["root"] / "output" / "alerts"
    owners = dict(con.sql("SELECT p.product_id, p.manufacturer_id FROM product p").fetchall())
    others = dict(con.sql("SELECT name, manufacturer_id FROM product").fetchall())
    lots = {lot: owners[p] for lot, p in con.sql("SELECT lot_number, product_id FROM batch").fetchall()}
    files = sorted(alerts_dir.glob("*/*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text())
        mid = path.parent.name
        assert doc["manufacturer"]["manufacturer_id"] == mid
        text = path.read_text()
        assert "patient_key" not in text and "PAT-" not in text
        for s in doc["signals"]:
            assert owners[s["product_id"]] == mid
            assert all(lots[b["lot_number"]] == mid for b in s["batches"])
        for name, owner in others.items():
            if owner != mid:
                assert f'"{name}"' not in text


def test_rerun_is_idempotent(world):
    root = world["root"]
    before = json.dumps(sorted(p.name for p in (root / "output" / "alerts").rglob("*.json")))
    materialise(root / "inbox", root / "pv.duckdb", root / "output")
    assert table_counts(root / "pv.duckdb") == world["counts"]
    assert json.dumps(sorted(p.name for p in (root / "output" / "alerts").rglob("*.json"))) == before
    con = connect(str(root / "pv.duckdb"), read_only=True)
    try:
        dups = con.sql("SELECT count(*) - count(DISTINCT signal_id || to_status) FROM signal_history").fetchone()[0]
    finally:
        con.close()
    assert dups == 0


def test_planted_duplicates_are_flagged(world, con):
    """Measured on seed 7, scale 0.3: precision 0.95 (111 of 117), recall 0.97 (111 of 114); on the
    homogeneous background it was 0.98 / 0.99: the realistic background has more same-product,
    same-PT reports close in time (e.g. two Cough reports a day apart), the deduplicator's hard case."""
    truth = {tuple(sorted(p)) for p in world["truth"]["duplicates"]}
    flagged = [
        tuple(sorted(r))
        for r in con.sql("SELECT case_id, duplicate_of FROM latest_case WHERE duplicate_of IS NOT NULL").fetchall()
    ]
    hits = sum(f in truth for f in flagged)
    assert hits / len(flagged) >= 0.94 and hits / len(truth) >= 0.95, (hits, len(flagged), len(truth))

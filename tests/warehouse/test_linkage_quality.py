"""Linkage against the synthetic world's known truth, and the world's planted bad scans.

Measured on seed 7, scale 0.3 (see benchmarks/linkage_quality.py for the full table): every
method that picks a batch was right every time (precision 1.0; 3991 of 3991 links), overall
recall 0.61 (0.87 of the case drugs whose reporter gave a lot or a code), patient app 0.74,
HCP 0.51, pharmacist 0.52. The floors below leave room for generator changes, not for a
linkage that starts guessing.
"""

from __future__ import annotations

import json

import pytest

from assets.linkage_evaluation import linkage_quality, load_world
from warehouse.inputs.platform.deliveries import load_deliveries

# ground truth names the planted bad scans; the loader names the quarantine reason
QUARANTINE_REASON = {"unknown_nmpa": "unknown_nmpa_drug_code"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sample_data.world import generate_world

    inbox = tmp_path_factory.mktemp("linkage_world") / "inbox"
    truth = generate_world(inbox, seed=7, scale=0.3)
    con = load_world(inbox)
    yield con, inbox, truth
    con.close()


@pytest.fixture(scope="module")
def quality(world):
    con, inbox, _ = world
    return linkage_quality(con, inbox)


def _by(frame, key):
    return {row[key]: row for row in frame.iter_rows(named=True)}


def test_batch_choosing_methods_are_precise(quality):
    methods = _by(quality["by_method"], "method")
    for method in ("scanned_code", "exact_lot", "normalised_lot"):
        assert methods[method]["linked"] > 100 and methods[method]["precision"] >= 0.99, methods[method]
    assert methods["fuzzy_lot"]["linked"] > 20 and methods["fuzzy_lot"]["precision"] >= 0.95
    assert methods["product_only"]["linked"] == methods["unlinked"]["linked"] == 0
    assert quality["overall"]["precision"] >= 0.99


def test_recall_overall_and_per_source(quality):
    assert quality["overall"]["recall"] >= 0.55
    assert quality["overall"]["recall_given"] >= 0.8
    sources = _by(quality["by_source"], "source")
    assert set(sources) == {"patient_app", "hcp", "pharmacist"}
    assert sources["patient_app"]["recall"] >= 0.65  # scanned codes
    for s in sources.values():
        assert s["recall"] >= 0.45 and s["recall_given"] >= 0.75, s
    shares = quality["by_method"]["recall_share"].sum()
    assert shares == pytest.approx(quality["overall"]["recall"], abs=1e-3)


def test_every_planted_bad_scan_is_quarantined_with_its_reason_and_count(world):
    con, inbox, truth = world
    counts = load_deliveries(con, inbox, "salt")
    got = dict(con.sql("SELECT reason, count(*) FROM quarantine WHERE stage = 'deliveries' GROUP BY 1").fetchall())
    expected = {QUARANTINE_REASON.get(r, r): n for r, n in truth["bad_inputs"]["deliveries"].items()}
    assert all(n > 0 for n in expected.values())  # the generator plants some of each
    assert got == expected
    assert counts["deliveries"] == truth["counts"]["deliveries_valid"]
    assert json.loads((inbox / "ground_truth.json").read_text())["bad_inputs"] == truth["bad_inputs"]

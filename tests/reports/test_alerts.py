"""Alert content: scoping refuses foreign data, ids are content hashes, actions follow the evidence."""

from __future__ import annotations

import json

import polars as pl
import pytest

from reports.alerts import build_alert, recommended_actions, write_alert

SIGNALS = pl.DataFrame({
    "signal_id": ["SIG-1"], "level": ["product"], "product_id": ["P1"], "product_name": ["Glucofin"],
    "ingredient": ["metformin"], "manufacturer_id": ["M1"], "manufacturer_name": ["Acme"], "pt": ["Lactic acidosis"],
    "batch_id": [None], "methods": [["evans", "ema_sdr"]], "figures": [json.dumps({"n11": 12, "prr": 4.2})],
    "first_detected": ["2025-03-31"], "last_detected": ["2025-03-31"], "status": ["new"],
})
BATCHES = pl.DataFrame({
    "signal_id": ["SIG-1", "SIG-1", "SIG-1"], "batch_id": ["B1", "B2", "B3"], "lot_number": ["L1", "L2", "L3"],
    "product_id": ["P1", "P1", "P1"], "site": ["s"] * 3, "units_delivered": [1000, 1000, 1000],
    "cold_chain_excursions": [0, 0, 2], "max_temp_c": [None, None, 19.5], "linked_cases": [10, 1, 1],
    "cases_per_10k_packs": [100.0, 10.0, 10.0], "released_on": ["2024-01-10"] * 3, "expiry_on": ["2026-01-31"] * 3,
    "regions": [["DE-BY"], ["DE-BE"], ["FR-IDF"]], "recall_status": ["none"] * 3,
})
CASES = pl.DataFrame({
    "signal_id": ["SIG-1"], "case_id": ["C1"], "received_on": ["2025-03-01"], "onset_date": ["2025-02-27"],
    "age_band": ["65-74"], "sex": ["F"], "serious": [True], "seriousness": ["hospitalisation"], "outcome": ["recovering"],
    "source": ["hcp"], "batch_id": ["B1"], "link_method": ["exact_lot"],
})
M1 = {"manufacturer_id": "M1", "name": "Acme"}


def test_alert_refuses_signals_of_another_manufacturer():
    with pytest.raises(ValueError, match="other manufacturers"):
        build_alert({"manufacturer_id": "M2", "name": "Other"}, SIGNALS, BATCHES, CASES, "2025-03-31")


def test_alert_refuses_batches_of_a_foreign_product():
    foreign = BATCHES.with_columns(pl.when(pl.col("batch_id") == "B2").then(pl.lit("P9")).otherwise("product_id").alias("product_id"))
    with pytest.raises(ValueError, match="does not own"):
        build_alert(M1, SIGNALS, foreign, CASES, "2025-03-31")


def test_same_content_same_id_and_change_gives_new_id():
    a = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31")
    b = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31")
    c = build_alert(M1, SIGNALS.with_columns(pl.lit("under_review").alias("status")), BATCHES, CASES, "2025-03-31")
    assert a.alert_id == b.alert_id and a.alert_id != c.alert_id


def test_recommended_actions_follow_batch_evidence():
    actions = recommended_actions(BATCHES.drop("signal_id").to_dicts())
    assert any("Quarantine remaining stock of lot L3" in a for a in actions)
    assert any("Investigate lot L1" in a for a in actions)
    assert not any("lot L2" in a for a in actions)
    assert recommended_actions([]) == ["Evaluate the product-level signal; no single lot stands out in the linked cases."]


def test_written_alert_has_no_patient_identifiers(tmp_path):
    alert = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31")
    json_path, html_path = write_alert(alert, tmp_path, "2025-04-01T00:00:00+00:00", supersedes=None)
    doc = json.loads(json_path.read_text())
    assert doc["alert_id"] == alert.alert_id and doc["signals"][0]["batches"][0]["lot_number"] == "L1"
    assert "patient" not in json_path.read_text() and "Glucofin" in html_path.read_text()

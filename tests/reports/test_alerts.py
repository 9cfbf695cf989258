"""Alert content: scoping refuses foreign data, ids follow the alert state, actions follow the evidence,
and a warehouse planted with another company's products and patient keys leaks none of them."""

from __future__ import annotations

import json

import polars as pl
import pytest

from assets.alerting import enqueue_alerts
from reports.alerts import (
    alert_document,
    build_alert,
    document_text,
    recommended_actions,
    render_alert_html,
    write_alert,
)
from tests.reports.alert_fixtures import (
    ACME,
    FORBIDDEN_FOR_ACME,
    FORBIDDEN_FOR_RIVAL,
    RIVAL,
    build_alert_warehouse,
)
from warehouse.queries.alert_evidence import (
    alert_batches,
    alert_case_summaries,
    alert_signals,
    batch_consignments,
    batch_excursions,
    batch_pharmacies,
    case_ref,
)
from warehouse.schema import connect

SIGNALS = pl.DataFrame(
    {
        "signal_id": ["SIG-1"],
        "level": ["product"],
        "product_id": ["P1"],
        "product_name": ["Glucofin"],
        "ingredient": ["metformin"],
        "manufacturer_id": ["M1"],
        "manufacturer_name": ["Acme"],
        "pt": ["Lactic acidosis"],
        "batch_id": [None],
        "methods": [["evans", "ema_sdr"]],
        "figures": [json.dumps({"n11": 12, "prr": 4.2})],
        "first_detected": ["2025-03-31"],
        "last_detected": ["2025-03-31"],
        "status": ["new"],
    },
    schema_overrides={"batch_id": pl.String},
)
BATCHES = pl.DataFrame(
    {
        "signal_id": ["SIG-1", "SIG-1", "SIG-1"],
        "batch_id": ["B1", "B2", "B3"],
        "lot_number": ["L1", "L2", "L3"],
        "product_id": ["P1", "P1", "P1"],
        "site": ["s"] * 3,
        "units_delivered": [1000, 1000, 1000],
        "cold_chain_excursions": [0, 0, 2],
        "max_temp_c": [None, None, 19.5],
        "linked_cases": [10, 1, 1],
        "cases_per_10k_packs": [100.0, 10.0, 10.0],
        "released_on": ["2024-01-10"] * 3,
        "expiry_on": ["2026-01-31"] * 3,
        "regions": [["DE-BY"], ["DE-BE"], ["FR-IDF"]],
        "recall_status": ["none"] * 3,
    }
)
CASES = pl.DataFrame(
    {
        "signal_id": ["SIG-1"],
        "case_ref": ["CASE-X1"],
        "received_on": ["2025-03-01"],
        "onset_date": ["2025-02-27"],
        "age_band": ["65-74"],
        "sex": ["F"],
        "serious": [True],
        "seriousness": ["hospitalisation"],
        "outcome": ["recovering"],
        "source": ["hcp"],
        "batch_id": ["B1"],
        "link_method": ["exact_lot"],
        # columns an upstream change might add: the whitelist must drop them
        "patient_key": ["PATKEY-SECRET"],
        "narrative": ["John Doe felt ill"],
        "case_id": ["CASE-ID-RAW"],
    }
)
M1 = {"manufacturer_id": "M1", "name": "Acme"}


def test_alert_refuses_signals_of_another_manufacturer():
    with pytest.raises(ValueError, match="other manufacturers"):
        build_alert({"manufacturer_id": "M2", "name": "Other"}, SIGNALS, BATCHES, CASES, "2025-03-31")


def test_alert_refuses_batches_of_a_foreign_product():
    foreign = BATCHES.with_columns(
        pl.when(pl.col("batch_id") == "B2").then(pl.lit("P9")).otherwise("product_id").alias("product_id")
    )
    with pytest.raises(ValueError, match="does not own"):
        build_alert(M1, SIGNALS, foreign, CASES, "2025-03-31")


def test_alert_refuses_cases_consignments_and_pharmacies_of_foreign_batches():
    stray_case = CASES.with_columns(pl.lit("B-RIVAL").alias("batch_id"))
    with pytest.raises(ValueError, match="cases of batches it does not own"):
        build_alert(M1, SIGNALS, BATCHES, stray_case, "2025-03-31")
    pharmacies = pl.DataFrame({"batch_id": ["B-RIVAL"], "region": ["FI-18"], "pharmacy_id": ["PH-R"], "units": [1]})
    with pytest.raises(ValueError, match="pharmacies of batches it does not own"):
        build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31", pharmacies=pharmacies)
    forged = SIGNALS.with_columns(pl.lit("B-RIVAL").alias("batch_id"), pl.lit("batch").alias("level"))
    with pytest.raises(ValueError, match="batch signals of batches it does not own"):
        build_alert(M1, forged, BATCHES, CASES, "2025-03-31")


def test_alert_refuses_ingredient_signals_without_a_product():
    ingredient = SIGNALS.with_columns(pl.lit(None, pl.String).alias("product_id"))
    with pytest.raises(ValueError, match="without a product"):
        build_alert(M1, ingredient, BATCHES.clear(), CASES.clear(), "2025-03-31")


def test_same_state_same_id_and_change_gives_new_id_that_supersedes():
    a = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31")
    b = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-04-30")  # a later data lock point alone is no new alert
    c = build_alert(
        M1,
        SIGNALS.with_columns(pl.lit("under_review").alias("status")),
        BATCHES,
        CASES,
        "2025-03-31",
        supersedes=a.alert_id,
        previous_state=a.state,
    )
    assert a.alert_id == b.alert_id and a.alert_id != c.alert_id
    assert c.supersedes == a.alert_id
    assert c.content["changes"]["changed_signals"] == [
        {"signal_id": "SIG-1", "status": ["new", "under_review"], "batches_added": [], "batches_removed": []}
    ]
    fewer = build_alert(M1, SIGNALS, BATCHES.filter(pl.col("batch_id") != "B3"), CASES, "2025-03-31")
    assert fewer.alert_id != a.alert_id  # the batch set is part of the identity


def test_recommended_actions_follow_batch_evidence():
    actions = recommended_actions(BATCHES.drop("signal_id").to_dicts())
    assert any("Quarantine remaining stock of lot L3" in a for a in actions)
    assert any("Investigate lot L1" in a for a in actions)
    assert not any("lot L2" in a for a in actions)
    assert recommended_actions([]) == [
        "Evaluate the product-level signal; no single lot stands out in the linked cases."
    ]
    batch_signal = recommended_actions([{"lot_number": "L9", "implicated_by": ["batch_signal"], "linked_cases": 1}])
    assert "Investigate lot L9" in batch_signal[0] and "recall" in batch_signal[0]


def test_whitelist_drops_patient_keys_narratives_and_raw_case_ids(tmp_path):
    alert = build_alert(M1, SIGNALS, BATCHES, CASES, "2025-03-31")
    text = document_text(alert_document(alert, "2025-04-01T00:00:00+00:00"))
    json_path, html_path = write_alert(text, tmp_path)
    doc = json.loads(json_path.read_text())
    assert doc["alert_id"] == alert.alert_id and doc["signals"][0]["batches"][0]["lot_number"] == "L1"
    assert doc["signals"][0]["cases"][0]["case_ref"] == "CASE-X1"
    for leaked in ("PATKEY", "John Doe", "CASE-ID-RAW", "patient_key", "narrative"):
        assert leaked not in json_path.read_text() and leaked not in html_path.read_text()
    assert "Glucofin" in html_path.read_text()


# ---- against a warehouse planted with leak traps ----------------------------------------------------


@pytest.fixture()
def trapped(tmp_path):
    build_alert_warehouse(tmp_path / "pv.duckdb")
    con = connect(str(tmp_path / "pv.duckdb"))
    yield con
    con.close()


def test_scoped_evidence_reads_only_own_products(trapped):
    signals = alert_signals(trapped, ACME)
    assert sorted(signals["signal_id"]) == ["SIG-A-BATCH", "SIG-A-PROD"]  # not the forged one, not ingredient level
    batches = alert_batches(trapped, ACME)
    assert set(batches["batch_id"]) == {"BAT-A-101", "BAT-A-102"}
    by_signal = {s: sorted(batches.filter(pl.col("signal_id") == s)["batch_id"]) for s in signals["signal_id"]}
    assert by_signal == {"SIG-A-PROD": ["BAT-A-101", "BAT-A-102"], "SIG-A-BATCH": ["BAT-A-102"]}
    cases = alert_case_summaries(trapped, ACME, "salt")
    assert "case_id" not in cases.columns and "patient_key" not in cases.columns
    # CASE-ID-4 links its Acmezol row to the rival's batch: the case counts, the foreign batch does not
    assert set(cases["batch_id"].drop_nulls()) <= {"BAT-A-101", "BAT-A-102"}
    assert case_ref("salt", ACME, "CASE-ID-4") in set(cases["case_ref"])
    assert case_ref("salt", ACME, "CASE-ID-1") != case_ref("salt", RIVAL, "CASE-ID-1")  # no joining across companies
    ids = ["BAT-A-101", "BAT-A-102", "BAT-B-901"]  # even when asked for a rival batch
    assert set(batch_pharmacies(trapped, ACME, ids)["batch_id"]) == {"BAT-A-101", "BAT-A-102"}
    assert set(batch_consignments(trapped, ACME, ids)["consignment_id"]) == {"CNS-A1", "CNS-A2"}
    excursions = batch_excursions(trapped, ACME, ids)
    assert excursions["event_id"].to_list() == ["E1"] and excursions["max_temp_c"].to_list() == [14.5]


def test_alert_documents_leak_nothing_across_companies(trapped):
    trapped.execute("BEGIN TRANSACTION")
    queued = enqueue_alerts(trapped, "salt", "2024-07-02T00:00:00+00:00", __import__("datetime").datetime(2024, 7, 2))
    trapped.execute("COMMIT")
    docs = dict(trapped.sql("SELECT manufacturer_id, document FROM alert").fetchall())
    assert set(docs) == {ACME, RIVAL} and len(queued["new"]) == 2
    for mid, forbidden in ((ACME, FORBIDDEN_FOR_ACME), (RIVAL, FORBIDDEN_FOR_RIVAL)):
        doc = json.loads(docs[mid])
        rendered = docs[mid] + render_alert_html(doc)
        for term in forbidden:
            assert term not in rendered, f"{term!r} leaked into {mid}'s alert"
    acme = json.loads(docs[ACME])
    # what Acme must learn: its lots, where they went, its excursion, de-identified cases
    t = acme["batch_traceability"]
    assert set(t) == {"BAT-A-101", "BAT-A-102"}
    assert {c["consignment_id"] for c in t["BAT-A-101"]["consignments"]} == {"CNS-A1"}
    assert {p["pharmacy_id"] for p in t["BAT-A-101"]["pharmacies"]} == {"PH-A-0", "PH-A-1", "PH-A-2"}
    assert [x["event_id"] for x in t["BAT-A-101"]["excursions"]] == ["E1"]
    prod = next(s for s in acme["signals"] if s["signal_id"] == "SIG-A-PROD")
    assert {c["age_band"] for c in prod["cases"]} == {"18-64"} and all(
        c["case_ref"].startswith("CASE-") for c in prod["cases"]
    )
    assert any(
        "Quarantine remaining stock of lot LOTA1" in a and "consignment(s) CNS-A1" in a
        for a in prod["recommended_actions"]
    )
    batch_sig = next(s for s in acme["signals"] if s["signal_id"] == "SIG-A-BATCH")
    assert [b["lot_number"] for b in batch_sig["batches"]] == ["LOTA2"]
    assert "batch_signal" in batch_sig["batches"][0]["implicated_by"]


def test_reference_channel_columns_are_optional(tmp_path):
    from tests.mini_inbox import write_mini_inbox
    from warehouse.inputs.platform.reference import load_reference

    inbox = write_mini_inbox(tmp_path / "inbox")
    con = connect(str(tmp_path / "pv.duckdb"))
    try:
        load_reference(con, inbox)  # the documented columns only
        assert con.sql("SELECT count(*) FROM manufacturer WHERE alert_channels IS NULL").fetchone()[0] > 0
        path = inbox / "reference" / "manufacturers.csv"
        frame = pl.read_csv(path, infer_schema=False)
        frame.with_columns(
            pl.lit("file, webhook").alias("alert_channels"),
            pl.lit("PVTRACE_WEBHOOK_SECRET_X").alias("alert_webhook_secret_env"),
        ).write_csv(path)
        load_reference(con, inbox)
        assert set(con.sql("SELECT alert_channels, alert_webhook_secret_env FROM manufacturer").fetchall()) == {
            ("file, webhook", "PVTRACE_WEBHOOK_SECRET_X")
        }
    finally:
        con.close()
    from assets.alerting import manufacturer_channels

    assert manufacturer_channels({"alert_channels": "file, webhook"}) == ["file", "webhook"]
    assert manufacturer_channels({"alert_channels": None}) == ["file", "email", "webhook"]

"""Alert content: scoping refuses foreign data, ids follow the alert state, actions follow the evidence,
and a warehouse planted with another company's products and patient keys leaks none of them."""

from __future__ import annotations

import json

import polars as pl
import pytest

from assets.alerting import enqueue_alerts
from reports.alerts import (
    NO_LOT_ACTION,
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


def test_recommended_actions_name_a_lot_only_when_a_batch_test_singles_it_out():
    """L1 ranks first by rate (100 vs 10 per 10k packs, 10 cases) and L3 had excursions, but no batch-level test
    flags either: no lot is named (the old rule named L1 "consider a recall" from its rank alone)."""
    actions = recommended_actions(BATCHES.drop("signal_id").to_dicts())
    assert not any(lot in a for a in actions for lot in ("lot L1", "lot L2", "lot L3"))
    assert "1 other implicated lot(s) had cold-chain excursions" in actions[0]
    assert actions[-1] == NO_LOT_ACTION
    assert recommended_actions([]) == [NO_LOT_ACTION]
    # a batch-level test on the same product and PT names that lot (and its excursions), and only that lot
    flagged = recommended_actions(BATCHES.drop("signal_id").to_dicts(), tested={"B3": ["batch_eb", "batch_exact"]})
    assert "Investigate lot L3: a batch-level test (batch_eb, batch_exact) singles it out" in flagged[0]
    assert "Quarantine remaining stock of lot L3" in flagged[1] and "2 cold-chain excursion(s)" in flagged[1]
    assert not any("lot L1" in a or "lot L2" in a for a in flagged) and NO_LOT_ACTION not in flagged
    batch_signal = recommended_actions([{"lot_number": "L9", "implicated_by": ["batch_signal"], "linked_cases": 1}])
    assert "Investigate lot L9" in batch_signal[0] and "recall" in batch_signal[0]


def _with_batch_signal(status="new", pt="Lactic acidosis"):
    batch_sig = SIGNALS.with_columns(
        pl.lit("SIG-B3").alias("signal_id"),
        pl.lit("batch").alias("level"),
        pl.lit("B3").alias("batch_id"),
        pl.lit(pt).alias("pt"),
        pl.lit(["batch_exact", "maxsprt"]).alias("methods"),
        pl.lit(status).alias("status"),
    )
    batches = pl.concat([BATCHES, BATCHES.filter(pl.col("batch_id") == "B3").with_columns(signal_id=pl.lit("SIG-B3"))])
    return pl.concat([SIGNALS, batch_sig]), batches


def test_product_signal_names_the_lot_of_a_batch_signal_on_the_same_pt_only():
    signals, batches = _with_batch_signal()
    alert = build_alert(M1, signals, batches, CASES, "2025-03-31")
    prod = next(s for s in alert.content["signals"] if s["signal_id"] == "SIG-1")
    assert any(
        "Investigate lot L3: a batch-level test (batch_exact, maxsprt)" in a for a in prod["recommended_actions"]
    )
    assert not any("lot L1" in a for a in prod["recommended_actions"])
    # a batch signal on another PT, or one an analyst refuted, names nothing for this product signal
    for signals, batches in (_with_batch_signal(pt="Nausea"), _with_batch_signal(status="refuted")):
        alert = build_alert(M1, signals, batches, CASES, "2025-03-31")
        prod = next(s for s in alert.content["signals"] if s["signal_id"] == "SIG-1")
        assert not any("lot L" in a for a in prod["recommended_actions"]), prod["recommended_actions"]


def test_alert_carries_signals_above_the_priority_threshold_and_summarises_the_rest():
    signals, batches = _with_batch_signal()
    scored = signals.with_columns(pl.when(pl.col("signal_id") == "SIG-B3").then(0.7).otherwise(0.2).alias("priority"))
    alert = build_alert(M1, scored, batches, CASES, "2025-03-31", priority_threshold=0.4)
    assert [s["signal_id"] for s in alert.content["signals"]] == ["SIG-B3"]
    assert alert.signal_ids == ["SIG-B3"] and alert.batch_ids == ["B3"]
    assert set(alert.content["batch_traceability"]) == {"B3"}  # the lots of the carried signals only
    assert alert.content["other_signals"] == {
        "priority_threshold": 0.4,
        "count": 1,
        "by_product_status": [{"product_id": "P1", "product_name": "Glucofin", "status": "new", "signals": 1}],
    }
    html = render_alert_html(alert_document(alert, "2025-04-01T00:00:00+00:00"))
    assert "Other signals on your products" in html and "priority 0.70" in html
    # an analyst's escalation carries a low-priority signal; no threshold carries everything
    escalated = scored.with_columns(
        pl.when(pl.col("signal_id") == "SIG-1").then(pl.lit("escalated")).otherwise("status").alias("status")
    )
    assert build_alert(M1, escalated, batches, CASES, "2025-03-31", priority_threshold=0.4).signal_ids == [
        "SIG-1",
        "SIG-B3",
    ]
    everything = build_alert(M1, scored, batches, CASES, "2025-03-31")
    assert everything.signal_ids == ["SIG-1", "SIG-B3"] and "other_signals" not in everything.content


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
    # LOTA2 has a batch-level signal on the same PT: named; LOTA1's excursion is no batch test: counted, not named
    actions = prod["recommended_actions"]
    assert any(a.startswith("Investigate lot LOTA2: a batch-level test") for a in actions)
    assert not any("LOTA1" in a for a in actions)
    assert any("1 other implicated lot(s) had cold-chain excursions" in a for a in actions)
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


def test_enqueue_follows_the_priority_threshold(trapped):
    import datetime as dt

    trapped.execute("UPDATE signal SET priority = CASE WHEN signal_id = 'SIG-A-BATCH' THEN 0.8 ELSE 0.1 END")
    trapped.execute("BEGIN TRANSACTION")
    queued = enqueue_alerts(
        trapped, "salt", "2024-07-02T00:00:00+00:00", dt.datetime(2024, 7, 2), priority_threshold=0.4
    )
    trapped.execute("COMMIT")
    docs = dict(trapped.sql("SELECT manufacturer_id, document FROM alert").fetchall())
    assert set(docs) == {ACME, RIVAL} and len(queued["new"]) == 2
    rival = json.loads(docs[RIVAL])  # nothing above the threshold: a summary only
    assert rival["signals"] == [] and rival["other_signals"]["count"] == 1 and rival["batch_traceability"] == {}
    acme = json.loads(docs[ACME])
    assert [s["signal_id"] for s in acme["signals"]] == ["SIG-A-BATCH"]
    assert acme["other_signals"]["count"] == 1 and set(acme["batch_traceability"]) == {"BAT-A-102"}
    # the product signal rising above the threshold is a new alert that supersedes the first
    trapped.execute("UPDATE signal SET priority = 0.5 WHERE signal_id = 'SIG-A-PROD'")
    trapped.execute("BEGIN TRANSACTION")
    again = enqueue_alerts(
        trapped, "salt", "2024-07-03T00:00:00+00:00", dt.datetime(2024, 7, 3), priority_threshold=0.4
    )
    trapped.execute("COMMIT")
    assert len(again["new"]) == 1 and again["unchanged"] == 1  # the rival's summary-only alert is not re-sent
    latest = json.loads(trapped.sql(f"SELECT document FROM alert WHERE alert_id = '{again['new'][0]}'").fetchone()[0])
    first_acme = next(a for a in queued["new"] if a.startswith(f"ALR-{ACME}"))
    assert latest["changes"]["new_signals"] == ["SIG-A-PROD"] and latest["supersedes"] == first_acme

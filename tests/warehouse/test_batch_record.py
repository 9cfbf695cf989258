"""Batch traceability record: exact values on the hand-written inbox, planted batches of a world."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.mini_inbox import write_mini_inbox
from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.deliveries import load_deliveries
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import load_supply_events
from warehouse.linkage.batch_record import batch_traceability_record, build_batch_traceability
from warehouse.linkage.case_batch_links import rebuild_case_batch_links
from warehouse.schema import connect

SALT = "test-salt"


def load_and_link(con, inbox):
    load_reference(con, inbox)
    load_packs(con, inbox)
    load_supply_events(con, inbox)
    load_deliveries(con, inbox, SALT)
    load_cases(con, inbox, SALT)
    rebuild_case_batch_links(con)


@pytest.fixture()
def mini(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    load_and_link(con, write_mini_inbox(tmp_path / "inbox"))
    yield con
    con.close()


def test_record_of_a_batch_on_the_mini_inbox(mini):
    rec = batch_traceability_record(mini, "B-EU1")
    assert {
        k: rec[k]
        for k in (
            "product_id",
            "product_name",
            "manufacturer_name",
            "site",
            "gtin",
            "recall_status",
            "units_released",
            "units_shipped",
            "units_delivered",
            "deliveries",
            "patients",
            "n_regions",
            "n_pharmacies",
            "n_excursions",
            "max_excursion_temp_c",
            "linked_cases",
            "linked_suspect_cases",
            "suspect_cases_per_10k_packs",
        )
    } == {
        "product_id": "P-EU",
        "product_name": "Eurocillin",
        "manufacturer_name": "Euro Pharma GmbH",
        "site": "Berlin",
        "gtin": "09501101530003",
        "recall_status": "none",
        "units_released": 1000,
        "units_shipped": 500.0,
        "units_delivered": 2,
        "deliveries": 2,
        "patients": 2,
        "n_regions": 1,
        "n_pharmacies": 1,
        "n_excursions": 1,
        "max_excursion_temp_c": 31.5,
        "linked_cases": 1,
        "linked_suspect_cases": 1,
        "suspect_cases_per_10k_packs": 5000.0,
    }
    assert (rec["manufactured_on"], rec["released_on"], rec["expiry_on"]) == (
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 15),
        dt.date(2027, 12, 31),
    )
    assert (rec["first_delivery"], rec["last_delivery"]) == (dt.date(2025, 1, 10), dt.date(2025, 1, 11))
    assert rec["regions"] == [{"region": "DE-BY", "country": "DE", "units": 2, "deliveries": 2, "pharmacies": 1}]
    assert rec["pharmacies"] == [
        {
            "pharmacy_id": "PH1",
            "region": "DE-BY",
            "units": 2,
            "first_delivery": dt.date(2025, 1, 10),
            "last_delivery": dt.date(2025, 1, 11),
        }
    ]
    [step] = rec["route"]
    assert (step["biz_step"], step["disposition"], step["quantity"], step["max_temp_c"], step["event_id"]) == (
        "shipping",
        "in_transit",
        500.0,
        31.5,
        "ni:///sha-256;ev1",
    )
    [exc] = rec["excursions"]
    assert (
        exc["event_id"],
        exc["min_temp_c"],
        exc["max_temp_c"],
        exc["storage_max_c"],
        exc["readings_out_of_range"],
        exc["duration_minutes"],
    ) == ("ni:///sha-256;ev1", 20.0, 31.5, 25.0, 1, None)
    # C3 is flagged as a duplicate of C1 and is not counted; C1 counts once (latest version)
    assert rec["linked_reports"] == [
        {"method": "normalised_lot", "reports": 1, "suspect_reports": 1, "case_ids": ["C1"]}
    ]


def test_scanned_code_link_and_nmpa_route(mini):
    us = batch_traceability_record(mini, "B-US1")
    assert us["linked_reports"] == [{"method": "scanned_code", "reports": 1, "suspect_reports": 1, "case_ids": ["C2"]}]
    assert us["route"] == [] and us["units_delivered"] == 1
    cn = batch_traceability_record(mini, "B-CN1")
    assert [(s["biz_step"], s["quantity"]) for s in cn["route"]] == [("commissioning", 900.0)]
    assert cn["linked_reports"] == [] and cn["nmpa_drug_code"] == "8612345"


def test_undelivered_batch_has_empty_lists_not_nulls(mini):
    rec = batch_traceability_record(mini, "B-EU2")
    assert (
        rec["units_delivered"],
        rec["regions"],
        rec["pharmacies"],
        rec["route"],
        rec["excursions"],
        rec["linked_reports"],
        rec["suspect_cases_per_10k_packs"],
    ) == (0, [], [], [], [], [], None)
    with pytest.raises(KeyError):
        batch_traceability_record(mini, "B-NOPE")


def test_table_has_one_row_per_batch_equal_to_the_function(mini):
    counts = build_batch_traceability(mini)
    assert counts == {
        "batches": 4,
        "batches_delivered": 3,
        "batches_with_excursions": 1,
        "batches_recalled_or_quarantined": 0,
        "batches_with_linked_cases": 2,
    }
    cur = mini.execute("SELECT * FROM batch_traceability ORDER BY batch_id")
    names = [c[0] for c in cur.description]
    for row in cur.fetchall():
        rec = dict(zip(names, row))
        assert rec == batch_traceability_record(mini, rec["batch_id"])
    assert build_batch_traceability(mini) == counts  # idempotent


# ---- the synthetic world: the planted batches -----------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sample_data.world import generate_world

    root = tmp_path_factory.mktemp("record_world")
    truth = generate_world(root / "inbox", seed=7, scale=0.3)
    con = connect(str(root / "pv.duckdb"))
    load_and_link(con, root / "inbox")
    build_batch_traceability(con)
    yield con, truth
    con.close()


def _signal(truth, kind):
    return next(s for s in truth["signals"] if s["kind"] == kind)


def test_planted_cold_chain_batch_record(world):
    con, truth = world
    cold = _signal(truth, "cold_chain")
    rec = batch_traceability_record(con, cold["batch_id"])
    assert rec["n_excursions"] == 1 and rec["max_excursion_temp_c"] == cold["max_temp_c"]
    [exc] = rec["excursions"]
    assert (exc["consignment_id"], exc["region"], exc["event_id"]) == (
        cold["consignment_id"],
        cold["region"],
        cold["excursion_event_id"],
    )
    assert cold["region"] in {r["region"] for r in rec["regions"]}
    steps = [(s["biz_step"], s["consignment_id"]) for s in rec["route"]]
    assert steps[0][0] == "commissioning"
    assert ("shipping", cold["consignment_id"]) in steps and ("receiving", cold["consignment_id"]) in steps
    times = [s["event_time"] for s in rec["route"]]
    assert times == sorted(times)
    # the other batches of the world have no excursion
    assert con.sql("SELECT batch_id FROM batch_traceability WHERE n_excursions > 0").fetchall() == [(cold["batch_id"],)]


def test_planted_defective_batch_record(world):
    con, truth = world
    defect = _signal(truth, "batch_defect")
    rec = batch_traceability_record(con, defect["batch_id"])
    assert rec["lot_number"] == defect["lot_number"] and rec["product_id"] == defect["product_id"]
    assert rec["deliveries"] == defect["deliveries"]
    assert str(rec["first_delivery"]) == defect["starts_on"]
    methods = {m["method"]: m["reports"] for m in rec["linked_reports"]}
    assert "scanned_code" in methods and sum(methods.values()) >= rec["linked_cases"] > 0
    # the planted cases (observed_cases, before follow-ups and duplicates) reach the batch record
    assert rec["linked_suspect_cases"] >= 0.8 * defect["observed_cases"]


def test_units_add_up_across_the_world(world):
    con, truth = world
    delivered, deliveries = con.sql("SELECT sum(units_delivered), sum(deliveries) FROM batch_traceability").fetchone()
    assert deliveries == truth["counts"]["deliveries_valid"] and delivered >= deliveries
    over = con.sql("SELECT count(*) FROM batch_traceability WHERE units_delivered > units_shipped").fetchone()[0]
    assert over == 0  # no batch hands out more packs than were shipped

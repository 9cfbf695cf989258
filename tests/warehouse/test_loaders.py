"""Loaders on a hand-written inbox: what is kept, what is quarantined and why, idempotency."""

from __future__ import annotations

import polars as pl
import pytest

from tests.mini_inbox import (
    BAD_CASE_LINES,
    BAD_DELIVERIES,
    GOOD_DELIVERIES,
    write_mini_inbox,
)
from warehouse.inputs.inbox import InboxError
from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.deliveries import load_deliveries, load_medication_logs
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import COLD_CHAIN_EXCURSIONS_SQL, load_supply_events
from warehouse.schema import connect

SALT = "test-salt"


def load_all(con, inbox):
    return {
        "reference": load_reference(con, inbox),
        "packs": load_packs(con, inbox),
        "supply": load_supply_events(con, inbox),
        "deliveries": load_deliveries(con, inbox, SALT),
        "medication_logs": load_medication_logs(con, inbox, SALT),
        "cases": load_cases(con, inbox, SALT),
    }


@pytest.fixture()
def loaded(tmp_path):
    inbox = write_mini_inbox(tmp_path / "inbox")
    con = connect(str(tmp_path / "w.duckdb"))
    counts = load_all(con, inbox)
    yield con, inbox, counts
    con.close()


def quarantined(con, stage):
    return dict(con.execute("SELECT record_key, reason FROM quarantine WHERE stage = ?", [stage]).fetchall())


def test_reference_rows_breaking_the_model_are_quarantined(loaded):
    con, _, counts = loaded
    assert counts["reference"]["products"] == 3 and counts["reference"]["batches"] == 4
    q = quarantined(con, "reference")
    assert q == {"P-BAD": "unknown_manufacturer", "B-ORPHAN": "unknown_product"}


def test_every_good_scan_form_reaches_its_batch(loaded):
    con, _, _ = loaded
    got = dict(con.sql("SELECT delivery_id, batch_id FROM delivery").fetchall())
    assert got == {"D1": "B-EU1", "D2": "B-EU1", "D3": "B-US1", "D4": "B-CN1"}
    assert len(GOOD_DELIVERIES) == 4


def test_bad_scans_are_quarantined_with_their_reason(loaded):
    con, _, counts = loaded
    q = quarantined(con, "deliveries")
    assert q == {row[0]: reason for reason, row in BAD_DELIVERIES.items()}
    assert counts["deliveries"]["quarantined"] == len(BAD_DELIVERIES)


def test_patients_are_pseudonymous(loaded):
    con, _, _ = loaded
    keys = [
        k
        for (k,) in con.sql("SELECT patient_key FROM delivery UNION ALL SELECT patient_key FROM case_report").fetchall()
    ]
    assert keys and all(k and not k.startswith("PAT-") and len(k) == 32 for k in keys)
    # the same patient gets the same key in deliveries and in cases (PAT-1: D1 and case C1)
    (same,) = con.sql(
        "SELECT count(*) FROM delivery d JOIN case_report c USING (patient_key) WHERE d.delivery_id = 'D1' AND c.case_id = 'C1'"
    ).fetchone()
    assert same == 2  # both versions of C1


def test_medication_log_of_a_quarantined_delivery_is_quarantined_not_lost(loaded):
    con, _, counts = loaded
    assert counts["medication_logs"]["medication_logs"] == 2
    assert quarantined(con, "medication_logs") == {"L3": "unknown_delivery"}


def test_case_versions_latest_and_bad_lines(loaded):
    con, _, counts = loaded
    assert counts["cases"]["case_versions"] == 4 and counts["cases"]["cases"] == 3
    latest = dict(con.sql("SELECT case_id, version FROM latest_case").fetchall())
    assert latest == {"C1": 2, "C2": 1, "C3": 1}
    assert sorted(quarantined(con, "cases").values()) == sorted(BAD_CASE_LINES)
    raw = con.sql("SELECT raw FROM quarantine WHERE stage='cases' AND reason='bad_json'").fetchone()[0]
    assert raw == BAD_CASE_LINES["bad_json"]


def test_duplicate_is_flagged_not_deleted(loaded):
    con, _, counts = loaded
    assert counts["cases"]["duplicates_flagged"] == 1
    assert con.sql("SELECT duplicate_of FROM latest_case WHERE case_id = 'C3'").fetchone()[0] == "C1"


def test_reported_names_are_mapped_with_their_method(loaded):
    con, _, _ = loaded
    rows = con.sql(
        "SELECT case_id, drug_seq, product_id, mapping_method FROM latest_case_drug ORDER BY 1, 2"
    ).fetchall()
    assert ("C1", 0, "P-EU", "brand_prefix") in rows or ("C1", 0, "P-EU", "brand") in rows
    assert ("C2", 1, "P-CN", "brand_prefix") in rows


def test_epcis_events_and_cold_chain_excursion(loaded):
    con, _, counts = loaded
    assert counts["supply"]["supply_events"] == 2
    assert quarantined(con, "supply") == {"ni:///sha-256;ev3": "unknown_batch"}
    exc = con.sql(COLD_CHAIN_EXCURSIONS_SQL).pl()
    assert exc["batch_id"].to_list() == ["B-EU1"] and exc["max_temp_c"].to_list() == [31.5]


def test_loading_twice_changes_nothing(loaded):
    con, inbox, first = loaded
    snapshot = {
        t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").pl()
        for t in (
            "manufacturer",
            "product",
            "batch",
            "pack",
            "delivery",
            "medication_log",
            "case_report",
            "case_drug",
            "case_reaction",
            "supply_event",
        )
    }
    q_before = con.sql("SELECT stage, record_key, reason FROM quarantine ORDER BY ALL").pl()
    second = load_all(con, inbox)
    assert second == first
    for table, before in snapshot.items():
        assert con.sql(f"SELECT * FROM {table} ORDER BY ALL").pl().equals(before), table
    assert con.sql("SELECT stage, record_key, reason FROM quarantine ORDER BY ALL").pl().equals(q_before)


def test_missing_inbox_folder_is_a_clear_error(tmp_path):
    con = connect(":memory:")
    with pytest.raises(InboxError, match="manufacturers"):
        load_reference(con, tmp_path)


def test_missing_column_quarantines_the_file_with_a_clear_reason(tmp_path):
    inbox = write_mini_inbox(tmp_path / "inbox")
    path = inbox / "deliveries" / "deliveries_2025-01.csv"
    pl.read_csv(path).drop("patient_ref").write_csv(path)
    con = connect(":memory:")
    load_reference(con, inbox)
    load_packs(con, inbox)
    load_deliveries(con, inbox, SALT)
    reason, detail = con.sql("SELECT reason, detail FROM quarantine WHERE stage = 'deliveries'").fetchone()
    assert reason == "missing_columns" and "patient_ref" in detail
    status, error = con.sql("SELECT status, error FROM load_manifest WHERE kind = 'deliveries'").fetchone()
    assert status == "rejected" and "patient_ref" in error


def test_inbox_reload_keeps_cases_ingested_from_external_sources(tmp_path):
    """`pvtrace ingest` adds FAERS cases; re-loading the inbox must not wipe them (nor their duplicate flags)."""
    from pathlib import Path

    from warehouse.inputs.regulator.ingest import ingest

    faers = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faers" / "faers_ascii_2017q2.zip"
    if not faers.exists():
        pytest.skip("../shared/data is not beside the project")
    inbox = write_mini_inbox(tmp_path / "inbox")
    path = str(tmp_path / "w.duckdb")
    con = connect(path)
    load_reference(con, inbox)
    con.close()
    ingest(faers, "faers", path)
    con = connect(path)
    before = con.sql("SELECT count(*) FROM case_report WHERE starts_with(case_id, 'FAERS-')").fetchone()[0]
    assert before == 100
    load_cases(con, inbox, SALT)
    load_cases(con, inbox, SALT)
    assert con.sql("SELECT count(*) FROM case_report WHERE starts_with(case_id, 'FAERS-')").fetchone()[0] == before
    assert con.sql("SELECT count(*) FROM latest_case WHERE NOT starts_with(case_id, 'FAERS-')").fetchone()[0] == 3
    con.close()


def test_inbox_case_may_not_use_an_external_prefix():
    import json

    from tests.mini_inbox import case
    from warehouse.inputs.platform.cases import CaseRejected, parse_case_line

    with pytest.raises(CaseRejected, match="reserved"):
        parse_case_line(json.dumps(case("FAERS-123")))

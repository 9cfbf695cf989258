"""A small warehouse for the API tests: the hand-written inbox through the real loaders, plus a few
batches, packs, supply events, signals and alerts added so that every pack status and every
jurisdiction rule has a case (seconds, not a pipeline run).

Packs and what verification must answer (as of any date after 2025-01-31 and before 2027-12-31):

==============================  ===================================================
code                            status
==============================  ===================================================
EU S0001, S0002 (B-EU1)         dispensed (delivered D1, D2)
EU S0010 (B-EU1)                active
EU S0003 (B-EU2, exp 2025-01)   expired
EU S0020 (B-EU3)                recalled (recall_status)
EU S0030 (B-EU4)                decommissioned (quarantined: NMVS "locked")
EU S0040 (B-EU5)                decommissioned (a destroying event for every pack)
EU S0010 with lot WRONG         mismatch
EU S9999                        unknown_serial
US U0001 (B-US1)                dispensed
CN ...011 (B-CN1)               dispensed (in DE)
CN ...012 (B-CN1)               active
JP lot-only JP5 (B-JP1)         active, level batch
NDC 59572-215-93                unknown_serial, detail no_serial
==============================  ===================================================
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.mini_inbox import CN_NMPA, EU_GTIN, US_GTIN, hri, nmpa, write_mini_inbox
from warehouse.inputs.platform.deliveries import load_deliveries
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.inputs.platform.supply import load_supply_events
from warehouse.linkage.batch_record import build_batch_traceability
from warehouse.linkage.pack_codes import gs1_check_digit
from warehouse.schema import connect

JP_GTIN = "0491234567890"[:13] + gs1_check_digit("0491234567890"[:13])
UNKNOWN_GTIN = "0761234567890" + gs1_check_digit("0761234567890")
SALT = "api-test-salt"

EU_ACTIVE = hri(EU_GTIN, "271231", "EU1A", "S0010")
EU_DISPENSED = hri(EU_GTIN, "271231", "EU1A", "S0001")
EU_EXPIRED = hri(EU_GTIN, "250131", "EU2B", "S0003")
EU_RECALLED = hri(EU_GTIN, "271231", "EU3C", "S0020")
EU_LOCKED = hri(EU_GTIN, "271231", "EU4D", "S0030")
EU_DESTROYED = hri(EU_GTIN, "271231", "EU5E", "S0040")
EU_LOT_MISMATCH = hri(EU_GTIN, "271231", "WRONG", "S0010")
EU_EXPIRY_MISMATCH = hri(EU_GTIN, "291231", "EU1A", "S0010")
EU_UNKNOWN_SERIAL = hri(EU_GTIN, "271231", "EU1A", "S9999")
UNKNOWN_PRODUCT = hri(UNKNOWN_GTIN, "271231", "X1", "X1")
US_DISPENSED = f"https://id.gs1.org/01/{US_GTIN}/10/US9X/21/U0001?17=271231"
CN_DISPENSED = nmpa("0000000000011")
CN_ACTIVE = nmpa("0000000000012")
JP_LOT_ONLY = f"(01){JP_GTIN}(17)271231(10)JP5"
NDC = "59572-215-93"

EXPECTED = {
    EU_ACTIVE: "active",
    EU_DISPENSED: "dispensed",
    EU_EXPIRED: "expired",
    EU_RECALLED: "recalled",
    EU_LOCKED: "decommissioned",
    EU_DESTROYED: "decommissioned",
    EU_LOT_MISMATCH: "mismatch",
    EU_EXPIRY_MISMATCH: "mismatch",
    EU_UNKNOWN_SERIAL: "unknown_serial",
    UNKNOWN_PRODUCT: "unknown_serial",
    US_DISPENSED: "dispensed",
    CN_DISPENSED: "dispensed",
    CN_ACTIVE: "active",
    JP_LOT_ONLY: "active",
    NDC: "unknown_serial",
}

SIG_B_CN1 = "SIG-B-CN1"  # batch level, CN product shipped and delivered to DE: CN and EU see it
SIG_P_CN = "SIG-P-CN"  # product level, CN product: CN only
SIG_ING = "SIG-ING-METFORMIN"  # ingredient level: metformin is authorised in CN only
SIG_REFUTED = "SIG-P-CN-REFUTED"  # refuted: nobody
SIG_P_EU = "SIG-P-EU"  # product level, EU product: EU only


def build_warehouse(path: Path) -> Path:
    inbox = write_mini_inbox(path.parent / "inbox")
    con = connect(str(path))
    try:
        load_reference(con, inbox)
        con.execute(
            "INSERT INTO manufacturer (manufacturer_id, name, country, region) VALUES ('M-JP', 'Nihon Seiyaku', 'JP', 'JP')"
        )
        con.execute(
            "INSERT INTO product (product_id, name, manufacturer_id, ingredient, region, gtin, storage_min_c, "
            "storage_max_c) VALUES ('P-JP', 'Nihonol', 'M-JP', 'famotidine', 'JP', ?, 1, 30)",
            [JP_GTIN],
        )
        for batch, lot, status, units in (
            ("B-EU3", "EU3C", "recalled", 100),
            ("B-EU4", "EU4D", "quarantined", 100),
            ("B-EU5", "EU5E", "none", 10),
        ):
            con.execute(
                "INSERT INTO batch VALUES (?, 'P-EU', ?, 'Berlin', '2024-01-01', '2027-12-31', '2024-01-15', ?, ?)",
                [batch, lot, units, status],
            )
        con.execute(
            "INSERT INTO batch VALUES ('B-JP1', 'P-JP', 'JP5', 'Osaka', '2024-01-01', '2027-12-31', '2024-01-15', 50, 'none')"
        )
        load_packs(con, inbox)
        for batch, lot, serial in (
            ("B-EU1", "EU1A", "S0010"),
            ("B-EU3", "EU3C", "S0020"),
            ("B-EU4", "EU4D", "S0030"),
            ("B-EU5", "EU5E", "S0040"),
        ):
            con.execute(
                "INSERT INTO pack VALUES (?, 'gs1', ?, ?, ?, NULL, '2024-01-15')",
                [hri(EU_GTIN, "271231", lot, serial), batch, serial, EU_GTIN],
            )
        load_supply_events(con, inbox, validate=False)
        events = [
            # CN batch: commissioned in Suzhou, shipped to a German DC (a cold-chain excursion on the way), received
            (
                "E-C1",
                "commissioning",
                "ADD",
                "active",
                "2024-03-15 00:00:00+00",
                "urn:epc:id:sgln:6901234.00010.0",
                None,
                None,
                None,
                None,
                900,
                None,
            ),
            (
                "E-S1",
                "shipping",
                "OBSERVE",
                "in_transit",
                "2024-03-16 02:00:00+00",
                "urn:epc:id:sgln:6901234.00010.0",
                "urn:epc:id:sgln:6901234.00010.0",
                "urn:epc:id:sgln:4012345.00101.0",
                "CONS-1",
                "DE-BY",
                400,
                31.0,
            ),
            (
                "E-R1",
                "receiving",
                "OBSERVE",
                "in_progress",
                "2024-03-19 10:00:00+00",
                "urn:epc:id:sgln:4012345.00101.0",
                "urn:epc:id:sgln:6901234.00010.0",
                "urn:epc:id:sgln:4012345.00101.0",
                "CONS-1",
                "DE-BY",
                400,
                None,
            ),
            (
                "E-S2",
                "shipping",
                "OBSERVE",
                "in_transit",
                "2024-03-16 03:00:00+00",
                "urn:epc:id:sgln:6901234.00010.0",
                "urn:epc:id:sgln:6901234.00010.0",
                "urn:epc:id:sgln:6909999.00101.0",
                "CONS-2",
                "CN-GD",
                500,
                6.0,
            ),
        ]
        for eid, step, action, disp, at, loc, src, dst, cons, region, qty, tmax in events:
            con.execute(
                "INSERT INTO supply_event (event_id, event_type, action, biz_step, disposition, event_time, read_point, "
                "biz_location, source_location, destination_location, epc_class, nmpa_drug_code, lot_number, batch_id, "
                "quantity, consignment_id, region, min_temp_c, max_temp_c, epcis_event_id, role) VALUES "
                "(?, 'ObjectEvent', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'CN77', 'B-CN1', ?, ?, ?, ?, ?, ?, 'object')",
                [
                    eid,
                    action,
                    step,
                    disp,
                    at,
                    loc,
                    loc,
                    src,
                    dst,
                    f"urn:pvtrace:nmpa:{CN_NMPA}:lot:CN77",
                    CN_NMPA,
                    qty,
                    cons,
                    region,
                    None if tmax is None else 4.0,
                    tmax,
                    "ni:///sha-256;" + eid.lower(),
                ],
            )
        con.execute(
            "INSERT INTO supply_event (event_id, event_type, action, biz_step, disposition, event_time, read_point, "
            "epc_class, gtin, lot_number, batch_id, quantity, epcis_event_id, role) VALUES ('E-D5', 'ObjectEvent', "
            "'DELETE', 'destroying', 'destroyed', '2024-06-01 00:00:00+00', 'urn:epc:id:sgln:4012345.00001.0', ?, ?, "
            "'EU5E', 'B-EU5', 10, 'ni:///sha-256;e-d5', 'object')",
            [f"https://id.gs1.org/01/{EU_GTIN}/10/EU5E", EU_GTIN],
        )
        # the JP lot: an aggregation into a case, a transaction, and a non-CBV business step
        jp_class = f"https://id.gs1.org/01/{JP_GTIN}/10/JP5"
        for eid, etype, action, step, disp, role, parent in (
            (
                "E-J1",
                "AggregationEvent",
                "ADD",
                "packing",
                "in_progress",
                "child",
                "urn:epc:id:sscc:4912345.0000000001",
            ),
            ("E-J2", "TransactionEvent", "ADD", "shipping", "in_transit", "object", None),
            ("E-J3", "ObjectEvent", "OBSERVE", "pvtrace_stock_check", "custom_hold", "object", None),
        ):
            con.execute(
                "INSERT INTO supply_event (event_id, event_type, action, biz_step, disposition, event_time, read_point, "
                "epc_class, gtin, lot_number, batch_id, quantity, epcis_event_id, role, parent_id) VALUES "
                "(?, ?, ?, ?, ?, '2024-02-01 00:00:00+00', 'urn:epc:id:sgln:4912345.00001.0', ?, ?, 'JP5', 'B-JP1', 5, "
                "?, ?, ?)",
                [eid, etype, action, step, disp, jp_class, JP_GTIN, "ni:///sha-256;" + eid.lower(), role, parent],
            )
        con.execute(
            "INSERT INTO cold_chain_excursion (batch_id, product_id, event_id, event_time, biz_step, consignment_id, "
            "region, min_temp_c, max_temp_c, storage_min_c, storage_max_c, readings, readings_out_of_range) VALUES "
            "('B-CN1', 'P-CN', 'ni:///sha-256;e-s1', '2024-03-16 02:00:00+00', 'shipping', 'CONS-1', 'DE-BY', 4.0, "
            "31.0, 15, 25, 12, 3)"
        )
        load_deliveries(con, inbox, SALT)
        signals = [
            (SIG_B_CN1, "batch", "P-CN", "metformin", "Lactic acidosis", "B-CN1", "new"),
            (SIG_P_CN, "product", "P-CN", "metformin", "Hypoglycaemia", None, "under_review"),
            (SIG_ING, "ingredient", None, "metformin", "Vitamin B12 deficiency", None, "escalated"),
            (SIG_REFUTED, "product", "P-CN", "metformin", "Rash", None, "refuted"),
            (SIG_P_EU, "product", "P-EU", "amoxicillin", "Rash", None, "validated"),
        ]
        for sid, level, product, ingredient, pt, batch, status in signals:
            con.execute(
                "INSERT INTO signal (signal_id, level, product_id, ingredient, pt, batch_id, methods, figures, "
                "first_detected, last_detected, status) VALUES (?, ?, ?, ?, ?, ?, ['prr'], '{}', '2025-01-01', "
                "'2025-02-01', ?)",
                [sid, level, product, ingredient, pt, batch, status],
            )
        con.execute(
            "INSERT INTO alert (alert_id, manufacturer_id, signal_ids, batch_ids, content_hash, created_at) VALUES "
            "('ALERT-1', 'M-CN', [?, ?], ['B-CN1'], 'h', '2025-02-02 10:00:00')",
            [SIG_B_CN1, SIG_P_CN],
        )
        build_batch_traceability(con)
    finally:
        con.close()
    return path


def patient_keys(path: Path) -> set[str]:
    """Every patient key in the warehouse (to prove none leaves through the API)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT patient_key FROM delivery UNION SELECT patient_key FROM case_report WHERE patient_key IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


AS_OF = dt.date(2026, 6, 1)

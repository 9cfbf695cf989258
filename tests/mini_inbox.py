"""A tiny hand-written inbox with known content and known bad rows, for loader unit tests.

Three products (EU GTIN, US NDC-based GTIN, CN NMPA code), four batches, six packs, deliveries
with every kind of bad scan, case lines with every kind of contract breach, one EPCIS document.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from warehouse.linkage.pack_codes import gs1_check_digit, ndc_to_gtin

EU_GTIN = "0950110153000" + gs1_check_digit("0950110153000")  # 09501101530003
US_NDC = "59572-215-93"
US_GTIN = ndc_to_gtin(US_NDC)  # 00359572215931
CN_NMPA = "8612345"


def hri(gtin: str, expiry: str, lot: str, serial: str) -> str:
    return f"(01){gtin}(17){expiry}(10){lot}(21){serial}"


def nmpa(serial13: str) -> str:
    return CN_NMPA + serial13


PACKS = {
    # pack_code: (batch_id, serial)
    hri(EU_GTIN, "271231", "EU1A", "S0001"): ("B-EU1", "S0001"),
    hri(EU_GTIN, "271231", "EU1A", "S0002"): ("B-EU1", "S0002"),
    hri(EU_GTIN, "250131", "EU2B", "S0003"): ("B-EU2", "S0003"),
    hri(US_GTIN, "271231", "US9X", "U0001"): ("B-US1", "U0001"),
    nmpa("0000000000011"): ("B-CN1", "0000000000011"),
    nmpa("0000000000012"): ("B-CN1", "0000000000012"),
}

# a pack no delivery uses, of batch B-CN1 (900 units released, delivered later by D4), and a time
# before D4: where the corruption suite puts a delivery of 1,000,000 packs
MILLION_PACK = nmpa("0000000000012")
MILLION_AT = "2025-01-05T09:00:00Z"
# a run's clock for the mini inbox (its data ends in March 2025)
CLOCK = "2025-12-31"

GOOD_DELIVERIES = [
    # id, at, code as scanned, patient
    ("D1", "2025-01-10T09:00:00+01:00", hri(EU_GTIN, "271231", "EU1A", "S0001"), "PAT-1"),
    ("D2", "2025-01-11T09:00:00Z", f"]d201{EU_GTIN}17271231" + "10EU1A<GS>21S0002", "PAT-2"),
    ("D3", "2025-01-12T09:00:00Z", f"https://id.gs1.org/01/{US_GTIN}/10/US9X/21/U0001?17=271231", "PAT-3"),
    ("D4", "2025-01-13T09:00:00+08:00", nmpa("0000000000011"), "PAT-4"),
]
BAD_DELIVERIES = {
    "bad_check_digit": (
        "X1",
        "2025-01-10T09:00:00Z",
        hri(EU_GTIN[:-1] + str((int(EU_GTIN[-1]) + 1) % 10), "271231", "EU1A", "S0009"),
        "PAT-5",
    ),
    "unknown_gtin": (
        "X2",
        "2025-01-10T09:00:00Z",
        hri("0" + "7612345678900"[:-1] + gs1_check_digit("761234567890"), "271231", "Z1", "Z1"),
        "PAT-5",
    ),
    "unknown_nmpa_drug_code": ("X3", "2025-01-10T09:00:00Z", "8699999" + "0000000000011", "PAT-5"),
    "unknown_serial": ("X4", "2025-01-10T09:00:00Z", hri(EU_GTIN, "271231", "EU1A", "NOPE"), "PAT-5"),
    "expired_at_delivery": ("X5", "2025-03-01T09:00:00Z", hri(EU_GTIN, "250131", "EU2B", "S0003"), "PAT-5"),
    "pack_already_dispensed": ("X6", "2025-02-01T09:00:00Z", hri(EU_GTIN, "271231", "EU1A", "S0001"), "PAT-6"),
    "unknown_format": ("X7", "2025-01-10T09:00:00Z", "not a code", "PAT-5"),
}


def case(case_id: str, version: int = 1, **overrides) -> dict:
    doc = {
        "case_id": case_id,
        "version": version,
        "received_on": "2025-02-01",
        "source": "patient_app",
        "reporter_qualification": "consumer",
        "country": "DE",
        "patient_ref": "PAT-1",
        "age_years": 54,
        "sex": "F",
        "serious": False,
        "seriousness": [],
        "outcome": "recovering",
        "narrative": "rash after the first dose",
        "drugs": [
            {
                "role": "suspect",
                "product_name": "Eurocillin 500 mg",
                "lot": "lot eu1a",
                "pack_code": None,
                "start_date": "2025-01-10",
            }
        ],
        "reactions": [{"pt": "Urticaria", "soc": "Skin and subcutaneous tissue disorders", "onset_date": "2025-01-12"}],
    }
    doc.update(overrides)
    return doc


GOOD_CASES = [
    case("C1"),
    case("C1", 2, outcome="recovered"),  # follow-up: the latest version
    case(
        "C2",
        patient_ref="PAT-3",
        country="US",
        drugs=[
            {
                "role": "suspect",
                "product_name": None,
                "lot": None,
                "pack_code": f"https://id.gs1.org/01/{US_GTIN}/10/US9X/21/U0001?17=271231",
            },
            {"role": "concomitant", "product_name": "HUAXIN capsules", "lot": None, "pack_code": None},
        ],
        reactions=[{"pt": "Headache", "soc": "Nervous system disorders", "onset_date": "2025-01-20"}],
    ),
    case("C3", source="hcp", reporter_qualification="physician", received_on="2025-02-03"),  # duplicate of C1
]
BAD_CASE_LINES = {
    "bad_json": '{"case_id": "C9", "version": 1,',
    "missing_reactions": json.dumps(case("C10", reactions=[])),
    "bad_date": json.dumps(case("C11", received_on="2025-02-30")),
    "impossible_date": json.dumps(case("C12", received_on="2025-01-01")),  # onset after receipt
    "invalid_value": json.dumps(case("C13", sex="X")),
    "missing_drugs": json.dumps(case("C14", drugs=[])),
}


def write_mini_inbox(root: Path) -> Path:
    ref = root / "reference"
    ref.mkdir(parents=True)
    pl.DataFrame(
        {
            "manufacturer_id": ["M-EU", "M-US", "M-CN"],
            "name": ["Euro Pharma GmbH", "US Pharma Inc", "Hua Pharma Co"],
            "country": ["DE", "US", "CN"],
            "region": ["EU", "US", "CN"],
            "alert_email": ["pv@euro.example", "pv@us.example", "pv@hua.example"],
            "alert_webhook_url": ["", "", ""],
        }
    ).write_csv(ref / "manufacturers.csv")
    pl.DataFrame(
        {
            "product_id": ["P-EU", "P-US", "P-CN", "P-BAD"],
            "name": ["Eurocillin", "Usaprofen", "Huaxin", "Broken"],
            "manufacturer_id": ["M-EU", "M-US", "M-CN", "M-NOPE"],
            "ingredient": ["amoxicillin", "ibuprofen", "metformin", "x"],
            "atc_code": ["J01CA04", "M01AE01", "A10BA02", "X"],
            "form": ["capsule", "tablet", "tablet", "tablet"],
            "strength": ["500 mg", "400 mg", "500 mg", "1 mg"],
            "route": ["oral"] * 4,
            "region": ["EU", "US", "CN", "EU"],
            "gtin": [EU_GTIN, US_GTIN, "", ""],
            "ndc": ["", US_NDC, "", ""],
            "nmpa_drug_code": ["", "", CN_NMPA, ""],
            "storage_min_c": [15.0, 15.0, 15.0, 15.0],
            "storage_max_c": [25.0, 25.0, 25.0, 25.0],
            "additional_monitoring": ["false", "true", "false", "false"],
        }
    ).write_csv(ref / "products.csv")
    pl.DataFrame(
        {
            "batch_id": ["B-EU1", "B-EU2", "B-US1", "B-CN1", "B-ORPHAN"],
            "product_id": ["P-EU", "P-EU", "P-US", "P-CN", "P-NONE"],
            "lot_number": ["EU1A", "EU2B", "US9X", "CN77", "Q1"],
            "site": ["Berlin", "Berlin", "Boston", "Suzhou", "?"],
            "manufactured_on": ["2024-01-01", "2023-01-01", "2024-02-01", "2024-03-01", "2024-01-01"],
            "expiry_on": ["2027-12-31", "2025-01-31", "2027-12-31", "2027-12-31", "2026-01-01"],
            "released_on": ["2024-01-15", "2023-01-15", "2024-02-15", "2024-03-15", "2024-01-15"],
            "units_released": ["1000", "500", "800", "900", "1"],
            "recall_status": ["none"] * 5,
        }
    ).write_csv(ref / "batches.csv")

    (root / "packs").mkdir()
    pl.DataFrame(
        {
            "pack_code": list(PACKS),
            "code_system": ["nmpa" if c.startswith("8") else "gs1" for c in PACKS],
            "batch_id": [b for b, _ in PACKS.values()],
            "serial": [s for _, s in PACKS.values()],
            "commissioned_at": [dt.datetime(2024, 1, 15)] * len(PACKS),
        }
    ).write_parquet(root / "packs" / "packs_0001.parquet")

    (root / "deliveries").mkdir()
    rows = GOOD_DELIVERIES + list(BAD_DELIVERIES.values())
    pl.DataFrame(
        {
            "delivery_id": [r[0] for r in rows],
            "delivered_at": [r[1] for r in rows],
            "pack_code": [r[2] for r in rows],
            "patient_ref": [r[3] for r in rows],
            "pharmacy_id": ["PH1"] * len(rows),
            "region": ["DE-BY"] * len(rows),
            "country": ["DE"] * len(rows),
            "quantity": ["1"] * len(rows),
        }
    ).write_csv(root / "deliveries" / "deliveries_2025-01.csv")

    (root / "medication_logs").mkdir()
    pl.DataFrame(
        {
            "log_id": ["L1", "L2", "L3"],
            "patient_ref": ["PAT-1", "PAT-1", "PAT-5"],
            "delivery_id": ["D1", "D1", "X1"],
            "week_start": [dt.date(2025, 1, 13), dt.date(2025, 1, 20), dt.date(2025, 1, 13)],
            "doses_taken": [7, 0, 7],
            "doses_missed": [0, 7, 0],
        }
    ).write_parquet(root / "medication_logs" / "medication_log_2025-01.parquet")

    (root / "cases").mkdir()
    lines = [json.dumps(c) for c in GOOD_CASES] + list(BAD_CASE_LINES.values())
    (root / "cases" / "cases_2025-02.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    (root / "supply").mkdir()
    doc = {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-02-01T00:00:00Z",
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventID": "ni:///sha-256;ev1",
                    "eventTime": "2024-01-16T08:00:00Z",
                    "eventTimeZoneOffset": "+00:00",
                    "action": "OBSERVE",
                    "bizStep": "shipping",
                    "disposition": "in_transit",
                    "quantityList": [{"epcClass": f"https://id.gs1.org/01/{EU_GTIN}/10/EU1A", "quantity": 500}],
                    "sensorElementList": [
                        {
                            "sensorReport": [
                                {"type": "gs1:Temperature", "value": 31.5, "uom": "CEL"},
                                {"type": "gs1:Temperature", "value": 20.0, "uom": "CEL"},
                            ]
                        }
                    ],
                },
                {
                    "type": "ObjectEvent",
                    "eventID": "ni:///sha-256;ev2",
                    "eventTime": "2024-03-16T08:00:00Z",
                    "eventTimeZoneOffset": "+00:00",
                    "action": "ADD",
                    "bizStep": "commissioning",
                    "disposition": "active",
                    "quantityList": [{"epcClass": f"urn:pvtrace:nmpa:{CN_NMPA}:lot:CN77", "quantity": 900}],
                },
                {
                    "type": "ObjectEvent",
                    "eventID": "ni:///sha-256;ev3",
                    "eventTime": "2024-03-16T08:00:00Z",
                    "eventTimeZoneOffset": "+00:00",
                    "action": "ADD",
                    "bizStep": "commissioning",
                    "quantityList": [{"epcClass": f"https://id.gs1.org/01/{EU_GTIN}/10/NOSUCHLOT", "quantity": 1}],
                },
            ]
        },
    }
    (root / "supply" / "epcis_2024-01.jsonld").write_text(json.dumps(doc), encoding="utf-8")
    return root

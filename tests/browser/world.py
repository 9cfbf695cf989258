"""A small hand-made warehouse for the dashboard tests (seconds, not a pipeline run).

Product P1 (Glucofin, metformin) has four batches; lot L3 reports lactic acidosis far more
often per pack than the others (it should sit above the funnel's limits). Product P2 (Cardiol,
atenolol) has one batch and bradycardia cases. Signals go through the real register code.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import polars as pl

from dashboard.store import add_user
from tests.fixture_sql import DERIVE_COLD_CHAIN_EXCURSIONS
from warehouse.schema import connect
from warehouse.stores.signal_register import signal_id, update_register

DLP = date(2025, 6, 30)
ANALYST = ("ana", "analyst-password")
VIEWER = ("vic", "viewer-password")
ADMIN = ("ada", "admin-password")
ACME_USER = ("acme", "acme-password")  # manufacturer M1 (Acme Pharma: P1, P2)
RIVAL_USER = ("rival", "rival-password")  # manufacturer M2 (Rival Labs: P9), only with ``with_rival``
# Rival Labs: product P9 (Rivalex, metformin too) with batch B9; its cases and one Acme case naming P9 as co-suspect
RIVAL_BATCHES = {"B9": ("P9", "L9", 700, 5)}
BATCHES = {  # batch -> (product, lot, packs delivered, cases of the product's PT)
    "B1": ("P1", "L1", 1000, 2),
    "B2": ("P1", "L2", 1200, 3),
    "B3": ("P1", "L3", 800, 14),
    "B4": ("P1", "L4", 900, 2),
    "B5": ("P2", "L5", 600, 6),
}
PT = {
    "P1": ("Lactic acidosis", "Metabolism and nutrition disorders"),
    "P2": ("Bradycardia", "Cardiac disorders"),
    "P9": ("Lactic acidosis", "Metabolism and nutrition disorders"),
}
SIG_P1 = signal_id("product", "P1", "Lactic acidosis", None)
SIG_P2 = signal_id("product", "P2", "Bradycardia", None)
SIG_ING = signal_id("ingredient", "atenolol", "Bradycardia", None)
SIG_P9 = signal_id("product", "P9", "Lactic acidosis", None)


def build_warehouse(path, *, with_rival: bool = False) -> dict:
    """The world; ``with_rival`` adds a second manufacturer (M2, product P9, batch B9) with its own signal,
    one Acme case that also names Rivalex as co-suspect, and a manufacturer account for each company."""
    con = connect(str(path))
    try:
        con.execute(
            "INSERT INTO manufacturer (manufacturer_id, name, country, region) VALUES ('M1', 'Acme Pharma', 'DE', 'EU')"
        )
        con.execute("""INSERT INTO product (product_id, name, manufacturer_id, ingredient, form, strength, region,
                       storage_min_c, storage_max_c, additional_monitoring) VALUES
                       ('P1', 'Glucofin', 'M1', 'metformin', 'tablet', '500 mg', 'EU', 15, 25, false),
                       ('P2', 'Cardiol', 'M1', 'atenolol', 'tablet', '50 mg', 'EU', 15, 25, false)""")
        batches = dict(BATCHES)
        if with_rival:
            con.execute(
                "INSERT INTO manufacturer (manufacturer_id, name, country, region) VALUES ('M2', 'Rival Labs', 'FR', 'EU')"
            )
            con.execute("""INSERT INTO product (product_id, name, manufacturer_id, ingredient, form, strength, region,
                           storage_min_c, storage_max_c, additional_monitoring) VALUES
                           ('P9', 'Rivalex', 'M2', 'metformin', 'tablet', '850 mg', 'EU', 15, 25, false)""")
            batches.update(RIVAL_BATCHES)
        deliveries, cases, drugs, reactions, links = [], [], [], [], []
        n_case = 0
        for b, (p, lot, packs, n) in batches.items():
            con.execute(
                "INSERT INTO batch (batch_id, product_id, lot_number, site, manufactured_on, expiry_on, released_on, "
                "units_released, recall_status) VALUES (?, ?, ?, 'Plant 1', '2024-01-02', '2026-12-31', '2024-02-01', ?, 'none')",
                [b, p, lot, packs + 100],
            )
            for i in range(packs):
                deliveries.append(
                    {
                        "delivery_id": f"D-{b}-{i}",
                        "delivered_at": datetime(2024, 3, 1) + timedelta(hours=7 * i),
                        "pack_code": f"PK-{b}-{i}",
                        "code_system": "gs1",
                        "batch_id": b,
                        "product_id": p,
                        "patient_key": f"pk{b}{i % 300}",
                        "pharmacy_id": f"PH{i % 4}",
                        "region": ["DE-BY", "DE-BE", "FR-IDF"][i % 3],
                        "country": "DE",
                        "quantity": 1,
                        "source_file": "test",
                    }
                )
            for j in range(n):
                n_case += 1
                cid = f"C{n_case:03d}"
                received = date(2024, 4, 1) + timedelta(days=23 * j + n_case)
                start = received - timedelta(days=20 + j)
                cases.append(
                    {
                        "case_id": cid,
                        "version": 1,
                        "is_latest": True,
                        "received_on": received,
                        "source": "hcp",
                        "reporter_qualification": "physician",
                        "country": "DE",
                        "patient_key": f"secret-{cid}",
                        "age_years": 40.0 + j,
                        "sex": "F" if j % 2 else "M",
                        "serious": j % 3 == 0,
                        "seriousness": ["hospitalisation"] if j % 3 == 0 else [],
                        "outcome": "recovered",
                        "narrative": f"NARRATIVE-{cid} patient details",
                        "duplicate_of": None,
                        "source_file": "test",
                    }
                )
                drugs.append(
                    {
                        "case_id": cid,
                        "version": 1,
                        "drug_seq": 1,
                        "role": "suspect",
                        "product_name_reported": p,
                        "product_id": p,
                        "ingredient": "atenolol" if p == "P2" else "metformin",
                        "mapping_method": "brand",
                        "lot_reported": lot,
                        "pack_code_reported": None,
                        "start_date": start,
                    }
                )
                reactions.append(
                    {
                        "case_id": cid,
                        "version": 1,
                        "reaction_seq": 1,
                        "pt": PT[p][0],
                        "soc": PT[p][1],
                        "onset_date": start + timedelta(days=3 + j % 9),
                    }
                )
                links.append(
                    {
                        "case_id": cid,
                        "version": 1,
                        "drug_seq": 1,
                        "batch_id": b,
                        "product_id": p,
                        "method": "exact_lot",
                        "confidence": 1.0,
                        "candidates": None,
                        "reason": None,
                    }
                )
        if with_rival:  # Acme's first case also names Rival's product as a co-suspect (own batch link)
            drugs.append(
                {**drugs[0], "drug_seq": 2, "product_name_reported": "P9", "product_id": "P9", "lot_reported": "L9"}
            )
            links.append({**links[0], "drug_seq": 2, "batch_id": "B9", "product_id": "P9"})
        for table, rows in (
            ("delivery", deliveries),
            ("case_report", cases),
            ("case_drug", drugs),
            ("case_reaction", reactions),
            ("case_batch_link", links),
        ):
            frame = pl.DataFrame(rows)
            con.register("_rows", frame.to_arrow())
            con.execute(f"INSERT INTO {table} ({', '.join(frame.columns)}) SELECT * FROM _rows")
            con.unregister("_rows")
        con.execute("""INSERT INTO supply_event (event_id, event_type, action, biz_step, event_time, batch_id, lot_number,
                       quantity, region, min_temp_c, max_temp_c) VALUES
                       ('E1', 'ObjectEvent', 'ADD', 'commissioning', '2024-01-02 08:00', 'B3', 'L3', 900, 'DE-BY', 18, 22),
                       ('E2', 'ObjectEvent', 'OBSERVE', 'shipping', '2024-02-10 08:00', 'B3', 'L3', 900, 'DE-BY', 17, 31.5)""")
        con.execute(DERIVE_COLD_CHAIN_EXCURSIONS)
        scores = [
            ("product", "P1", "Lactic acidosis", 21, 4.1, 3.9, 2.2, 7.1, 25.0, 4.5, 2.4, 8.3, 1.6, 0.9, 2.2),
            ("product", "P2", "Bradycardia", 6, 3.0, 2.6, 1.1, 6.2, 6.5, 2.9, 1.1, 7.5, 1.2, 0.1, 2.1),
            ("ingredient", "atenolol", "Bradycardia", 6, 3.0, 2.6, 1.1, 6.2, 6.5, 2.9, 1.1, 7.5, 1.2, 0.1, 2.1),
        ]
        if with_rival:
            scores.append(
                ("product", "P9", "Lactic acidosis", 6, 2.0, 3.1, 1.3, 7.0, 9.5, 3.3, 1.4, 7.9, 1.4, 0.3, 2.4)
            )
        fired = {
            "P1": ["evans", "ema_sdr", "who_umc"],
            "P2": ["evans", "ema_sdr", "who_umc"],
            "P9": ["evans", "ema_sdr", "who_umc"],
            "atenolol": ["who_umc"],
        }
        detections = []
        for level, drug, event, n11, e, prr, lo, hi, chi2, ror, rlo, rhi, ic, ic025, ic975 in scores:
            con.execute(
                """INSERT INTO disproportionality_score (level, drug, event, n11, n1_, n_1, n, e, prr, prr_lo95,
                           prr_hi95, chi2, chi2_yates, ror, ror_lo95, ror_hi95, ic, ic025, ic975, rules_fired, data_lock_point)
                           VALUES (?, ?, ?, ?, 400, 60, 5000, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    level,
                    drug,
                    event,
                    n11,
                    e,
                    prr,
                    lo,
                    hi,
                    chi2,
                    chi2 - 1,
                    ror,
                    rlo,
                    rhi,
                    ic,
                    ic025,
                    ic975,
                    fired[drug],
                    DLP,
                ],
            )
            detections.append(
                {
                    "level": level,
                    "product_id": drug if level == "product" else None,
                    "ingredient": drug if level == "ingredient" else None,
                    "pt": event,
                    "batch_id": None,
                    "methods": fired[drug],
                    "figures": json.dumps(
                        {
                            "n11": n11,
                            "e": e,
                            "prr": prr,
                            "prr_lo95": lo,
                            "prr_hi95": hi,
                            "chi2": chi2,
                            "ror": ror,
                            "ror_lo95": rlo,
                            "ror_hi95": rhi,
                            "ic": ic,
                            "ic025": ic025,
                            "ic975": ic975,
                            "ebgm": None,
                            "eb05": None,
                            "eb95": None,
                        }
                    ),
                }
            )
        update_register(con, pl.DataFrame(detections), DLP, "run-test")
    finally:
        con.close()
    add_user(path, *ANALYST, "analyst")
    add_user(path, *VIEWER, "viewer")
    add_user(path, *ADMIN, "admin")
    add_user(path, *ACME_USER, "manufacturer", manufacturer_id="M1")
    if with_rival:
        add_user(path, *RIVAL_USER, "manufacturer", manufacturer_id="M2")
    return {"signals": [SIG_P1, SIG_P2, SIG_ING] + ([SIG_P9] if with_rival else [])}

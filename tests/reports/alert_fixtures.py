"""Test fixtures for alerts: a small warehouse planted with leak traps, and loopback servers.

The warehouse has two companies. Acme (``MFR-ACME``) has a product-level signal on Acmezol and a
batch-level signal on one of its lots; its cases also name the rival's product Borexin (co-suspect
and concomitant), one case links an Acmezol drug row to a Borexin batch, and a forged batch signal
pairs Acmezol with a Borexin lot. Everything of the rival, every patient key, raw patient reference,
narrative and raw case id is in ``FORBIDDEN_FOR_ACME``: none of it may appear in Acme's alert.

Servers bind 127.0.0.1 on an ephemeral port, run in daemon threads and stop at fixture teardown.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fixture_sql import DERIVE_COLD_CHAIN_EXCURSIONS
from warehouse.schema import connect

ACME, RIVAL = "MFR-ACME", "MFR-BOREALIS"
FORBIDDEN_FOR_ACME = [
    "Borealis",
    RIVAL,
    "Borexin",
    "borexinol",
    "PRD-B1",
    "BAT-B-901",
    "LOTB901",
    "CNS-B9",
    "PH-RIVAL",
    "PATKEY",
    "PAT-REF",
    "John Doe",
    "narrative",
    "patient_key",
    "CASE-ID-",
]
FORBIDDEN_FOR_RIVAL = [
    "Acme",
    ACME,
    "Acmezol",
    "PRD-A1",
    "BAT-A-",
    "LOTA1",
    "LOTA2",
    "CNS-A",
    "PATKEY",
    "John Doe",
    "CASE-ID-",
]


def build_alert_warehouse(
    path, *, webhook_url: str | None = None, email: str | None = "pv@acme.example", channels: str | None = None
) -> None:
    con = connect(str(path))
    try:
        con.execute(
            "INSERT INTO manufacturer (manufacturer_id, name, country, region, alert_email, alert_webhook_url, "
            "alert_channels) VALUES (?, 'Acme Pharma AG', 'DE', 'EU', ?, ?, ?), "
            "(?, 'Borealis Labs Oy', 'FI', 'EU', 'pv@borealis.example', NULL, ?)",
            [ACME, email, webhook_url, channels, RIVAL, channels],
        )
        con.execute(
            """INSERT INTO product (product_id, name, manufacturer_id, ingredient, storage_min_c, storage_max_c)
                       VALUES ('PRD-A1', 'Acmezol', ?, 'acmezolam', 2, 8),
                              ('PRD-B1', 'Borexin', ?, 'borexinol', 2, 8)""",
            [ACME, RIVAL],
        )
        con.execute("""INSERT INTO batch (batch_id, product_id, lot_number, site, manufactured_on, expiry_on, released_on,
                                          units_released, recall_status)
                       VALUES ('BAT-A-101', 'PRD-A1', 'LOTA1', 'Acme Werk 1', '2024-01-01', '2026-01-01', '2024-02-01', 500, 'none'),
                              ('BAT-A-102', 'PRD-A1', 'LOTA2', 'Acme Werk 1', '2024-03-01', '2026-03-01', '2024-04-01', 500, 'none'),
                              ('BAT-B-901', 'PRD-B1', 'LOTB901', 'Borealis Plant', '2024-01-01', '2026-01-01', '2024-02-01', 500, 'none')""")
        deliveries = []
        for i in range(12):
            batch, product, pharmacy, region = (
                ("BAT-A-101", "PRD-A1", f"PH-A-{i % 3}", "DE-BY")
                if i < 6
                else ("BAT-A-102", "PRD-A1", "PH-A-9", "DE-BE")
                if i < 9
                else ("BAT-B-901", "PRD-B1", "PH-RIVAL-1", "FI-18")
            )
            deliveries.append(
                (
                    f"DLV-{i}",
                    dt.datetime(2024, 5, 1 + i, tzinfo=dt.UTC),
                    f"CODE-{i}",
                    "gs1",
                    batch,
                    product,
                    f"PATKEY-{i:04d}",
                    pharmacy,
                    region,
                    region[:2],
                    1 + i % 2,
                    "f.csv",
                )
            )
        con.executemany(
            "INSERT INTO delivery (delivery_id, delivered_at, pack_code, code_system, batch_id, product_id, "
            "patient_key, pharmacy_id, region, country, quantity, source_file) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            deliveries,
        )
        events = [
            ("E1", "shipping", "BAT-A-101", "CNS-A1", "DE-BY", 3.0, 14.5),  # Acme excursion
            ("E2", "receiving", "BAT-A-101", "CNS-A1", "DE-BY", 4.0, 6.0),
            ("E3", "shipping", "BAT-A-102", "CNS-A2", "DE-BE", 3.0, 7.0),
            ("E4", "shipping", "BAT-B-901", "CNS-B9", "FI-18", 3.0, 25.0),  # rival excursion
        ]
        con.executemany(
            "INSERT INTO supply_event (event_id, event_type, biz_step, event_time, source_location, destination_location, "
            "batch_id, quantity, consignment_id, region, min_temp_c, max_temp_c) "
            "VALUES (?, 'ObjectEvent', ?, TIMESTAMPTZ '2024-04-20 10:00:00+00', 'urn:epc:id:sgln:site', 'urn:epc:id:sgln:dc', "
            "?, 50, ?, ?, ?, ?)",
            [(e, step, b, c, r, lo, hi) for e, step, b, c, r, lo, hi in events],
        )
        con.execute(DERIVE_COLD_CHAIN_EXCURSIONS)
        narrative = "John Doe (PAT-REF-77) took Borexin lot LOTB901 with Acmezol; narrative text"
        cases = [  # case_id, patient_key, age, sex, drugs[(role, product, batch, link product)], onset
            (
                "CASE-ID-1",
                [("suspect", "PRD-A1", "BAT-A-101", "PRD-A1"), ("concomitant", "PRD-B1", "BAT-B-901", "PRD-B1")],
            ),
            ("CASE-ID-2", [("suspect", "PRD-A1", "BAT-A-101", "PRD-A1"), ("suspect", "PRD-B1", "BAT-B-901", "PRD-B1")]),
            ("CASE-ID-3", [("suspect", "PRD-A1", "BAT-A-102", "PRD-A1")]),
            # a drug row mapped to Acmezol whose link points at the rival's batch (a bad link must not leak it)
            ("CASE-ID-4", [("suspect", "PRD-A1", "BAT-B-901", "PRD-A1")]),
            ("CASE-ID-5", [("suspect", "PRD-B1", "BAT-B-901", "PRD-B1")]),
        ]
        for n, (cid, drugs) in enumerate(cases):
            con.execute(
                "INSERT INTO case_report (case_id, version, is_latest, received_on, source, country, patient_key, "
                "age_years, sex, serious, seriousness, outcome, narrative) "
                "VALUES (?, 1, true, DATE '2024-06-01' + ?::INTEGER, 'hcp', 'DE', ?, ?, 'F', true, ['hospitalisation'], "
                "'recovering', ?)",
                [cid, n, f"PATKEY-{n:04d}", 40 + n, narrative],
            )
            for seq, (role, product, batch, link_product) in enumerate(drugs):
                con.execute(
                    "INSERT INTO case_drug (case_id, version, drug_seq, role, product_name_reported, product_id, "
                    "ingredient, lot_reported) VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
                    [
                        cid,
                        seq,
                        role,
                        "Borexin 5 mg" if product == "PRD-B1" else "Acmezol",
                        product,
                        "borexinol" if product == "PRD-B1" else "acmezolam",
                        "LOTB901" if batch == "BAT-B-901" else None,
                    ],
                )
                con.execute(
                    "INSERT INTO case_batch_link (case_id, version, drug_seq, batch_id, product_id, method, confidence) "
                    "VALUES (?, 1, ?, ?, ?, 'exact_lot', 1.0)",
                    [cid, seq, batch, link_product],
                )
            con.execute(
                "INSERT INTO case_reaction (case_id, version, reaction_seq, pt, onset_date) "
                "VALUES (?, 1, 0, 'Rash', DATE '2024-05-20' + ?::INTEGER)",
                [cid, n],
            )
        signals = [
            ("SIG-A-PROD", "product", "PRD-A1", None, None),
            ("SIG-A-BATCH", "batch", "PRD-A1", None, "BAT-A-102"),
            ("SIG-A-FORGED", "batch", "PRD-A1", None, "BAT-B-901"),  # inconsistent: rival batch under Acme product
            ("SIG-B-PROD", "product", "PRD-B1", None, None),
            ("SIG-INGR", "ingredient", None, "borexinol", None),
        ]
        figures = json.dumps({"n11": 3, "e": 0.5, "prr": 6.0, "ror": 7.0, "ic025": 0.4})
        for sid, level, product, ingredient, batch in signals:
            con.execute(
                "INSERT INTO signal (signal_id, level, product_id, ingredient, pt, batch_id, methods, figures, first_detected, "
                "last_detected, status) VALUES (?, ?, ?, ?, 'Rash', ?, ['evans'], ?, DATE '2024-07-01', "
                "DATE '2024-07-01', 'new')",
                [sid, level, product, ingredient, batch, figures],
            )
    finally:
        con.close()


def set_signal_status(path, signal_id: str, status: str) -> None:
    con = connect(str(path))
    try:
        con.execute("UPDATE signal SET status = ? WHERE signal_id = ?", [status, signal_id])
    finally:
        con.close()


# ---- loopback HTTP receiver ----------------------------------------------------------------------


class WebhookReceiver:
    """Records POSTs; answers ``fail_first`` requests with ``fail_status``, then 200 (or ``status``)."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, status: int = 200):
        self.requests: list[dict] = []
        self.fail_first, self.fail_status, self.status = fail_first, fail_status, status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code = receiver.fail_status if len(receiver.requests) <= receiver.fail_first else receiver.status
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pvtrace"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---- loopback SMTP server (aiosmtpd) ---------------------------------------------------------------


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1:<ephemeral>; ``fail_first`` DATA commands get ``451`` (transient)."""

    def __init__(self, fail_first: int = 0, fail_code: str = "451 4.3.0 try again later"):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.fail_first, self.fail_code, self.calls = fail_first, fail_code, 0
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    return receiver.fail_code
                receiver.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "raw": envelope.content,
                        "message": message_from_bytes(envelope.content, policy=policy.default),
                    }
                )
                return "250 OK"

        class EphemeralController(Controller):
            def _trigger_server(self):
                self.port = self.server.sockets[0].getsockname()[1]  # bound to port 0: learn the real port
                super()._trigger_server()

        self.controller = EphemeralController(Handler(), hostname="127.0.0.1", port=0, ready_timeout=5)

    @property
    def env(self) -> dict[str, str]:
        return {"PVTRACE_SMTP_HOST": "127.0.0.1", "PVTRACE_SMTP_PORT": str(self.controller.port)}

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

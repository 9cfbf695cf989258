"""E2B(R3) acknowledgments: FDA's two example ACKs load into e2b_ack; each sent ICSR gets its state; bad ACKs fail
with a clear error; the parser never crashes on arbitrary bytes (hypothesis)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.cli import main
from warehouse.inputs.regulator.e2b_ack import AckError, load_acks, parse_ack, submission_states
from warehouse.schema import connect

INSTANCES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2b_r3" / "instances_fda"
realdata = [pytest.mark.realdata, pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")]

ACK = """<?xml version="1.0" encoding="UTF-8"?>
<MCCI_IN200101UV01 xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ITSVersion="XML_1.0">
  <id extension="{ack_id}" root="2.16.840.1.113883.3.989.2.1.3.20"/>
  <creationTime value="20251202101246-0400"/>
  {messages}
  <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE">
    <id extension="TESTSENDER01" root="2.16.840.1.113883.3.989.2.1.3.18"/></device></receiver>
  <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE">
    <id extension="ZZFDA" root="2.16.840.1.113883.3.989.2.1.3.17"/></device></sender>
  <acknowledgement typeCode="{code}">
    <targetBatch><id extension="PVTRACE-FDA-202511" root="2.16.840.1.113883.3.989.2.1.3.22"/></targetBatch>
    <acknowledgementDetail><text>batch detail</text></acknowledgementDetail>
  </acknowledgement>
</MCCI_IN200101UV01>"""
MESSAGE = """<MCCI_IN000002UV01>
    <id extension="L{n}" root="2.16.840.1.113883.3.989.2.1.3.19"/>
    <acknowledgement typeCode="{code}">
      <targetMessage><id extension="{target}" root="2.16.840.1.113883.3.989.2.1.3.1"/></targetMessage>
      <acknowledgementDetail><text>{text}</text></acknowledgementDetail>
    </acknowledgement>
  </MCCI_IN000002UV01>"""


def ack(ack_id="A1", code="AE", messages=()) -> bytes:
    body = "".join(MESSAGE.format(n=n, code=c, target=t, text=x) for n, (c, t, x) in enumerate(messages, 1))
    return ACK.format(ack_id=ack_id, code=code, messages=body).encode()


@pytest.mark.parametrize("name", ["R3ack-positive.ack", "R3ack-negative.ack"])
@pytest.mark.realdata
@pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")
def test_fda_example_acks_load(name, tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    counts = load_acks(con, INSTANCES / name)
    rows = con.execute("SELECT * FROM e2b_ack").pl()
    assert counts["files"] == 1 and rows.height == counts["acks"] >= 1
    if name == "R3ack-negative.ack":
        row = rows.row(0, named=True)
        assert (row["batch_code"], row["icsr_code"], row["state"]) == ("AE", "CR", "rejected")
        assert row["icsr_message_id"] == "US-APHARMA-7644554"
        assert row["batch_id"] == "FAERS2022Scenario2-4069-a2dd-08002b30309d"
        assert "FDA.C.1.12 is Mandatory" in row["icsr_detail"]  # the gateway's reasons are kept
        assert row["ack_created"] == dt.datetime(2022, 8, 15, 14, 12, 46)  # -0400 → UTC
    else:
        assert set(rows["state"]) == {"accepted"}
    assert load_acks(con, INSTANCES / name) == counts  # idempotent
    assert con.execute("SELECT count(*) FROM e2b_ack").fetchone()[0] == counts["acks"]


def test_submission_state_per_icsr(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    sent = [
        {"batch_id": "PVTRACE-FDA-202511", "message_id": "m1", "safety_report_id": "US-PVTRACE-1"},
        {"batch_id": "PVTRACE-FDA-202511", "message_id": "m2", "safety_report_id": "US-PVTRACE-2"},
        {"batch_id": "PVTRACE-FDA-202512", "message_id": "m3", "safety_report_id": "US-PVTRACE-3"},
    ]
    assert {s["state"] for s in submission_states(con, sent)} == {"sent"}
    (tmp_path / "a.ack").write_bytes(
        ack(messages=[("CA", "m1", "ok"), ("CR", "US-PVTRACE-2", "FDA.D.12 must be provided")])
    )
    load_acks(con, tmp_path / "a.ack")
    states = {s["safety_report_id"]: (s["state"], s["reasons"]) for s in submission_states(con, sent)}
    assert states == {
        "US-PVTRACE-1": ("accepted", "ok"),
        "US-PVTRACE-2": ("rejected", "FDA.D.12 must be provided"),
        "US-PVTRACE-3": ("sent", None),
    }


def test_a_batch_rejected_as_a_whole_rejects_its_icsrs(tmp_path):
    rows = parse_ack(ack(ack_id="A2", code="AR"), "b.ack")
    assert [(r["message_seq"], r["state"]) for r in rows] == [(0, "batch_rejected")]
    con = connect(str(tmp_path / "w.duckdb"))
    (tmp_path / "b.ack").write_bytes(ack(ack_id="A2", code="AR"))
    load_acks(con, tmp_path)
    (state,) = submission_states(con, [{"batch_id": "PVTRACE-FDA-202511", "message_id": "x", "safety_report_id": "y"}])
    assert (state["state"], state["reasons"]) == ("rejected", "batch detail")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"<not xml", "not well-formed"),
        (b'<MCCI_IN200100UV01 xmlns="urn:hl7-org:v3"/>', "not MCCI_IN200101UV01"),
        (ack(code="XX"), "ACK.A.4"),
        (ack(messages=[("ZZ", "m1", "?")]), "ACK.B.r.6"),
    ],
)
def test_a_bad_ack_is_a_clear_error(data, match):
    with pytest.raises(AckError, match=match):
        parse_ack(data, "x.ack")


def test_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    evil = (
        ack(messages=[("CR", "m1", "&xxe;")])
        .replace(
            b"<MCCI_IN200101UV01",
            f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]><MCCI_IN200101UV01'.encode(),
            1,
        )
        .replace(b'<?xml version="1.0" encoding="UTF-8"?>\n', b"")
    )
    try:
        rows = parse_ack(evil, "evil.ack")
    except AckError:
        return
    assert all("TOPSECRET" not in (r["icsr_detail"] or "") for r in rows)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_the_parser_raises_only_ackerror_on_junk(data):
    with contextlib.suppress(AckError):  # anything else (a crash) fails the test
        parse_ack(data, "junk.ack")


def test_cli_loads_acks_and_prints_states(tmp_path, capsys):
    (tmp_path / "acks").mkdir()
    (tmp_path / "acks" / "a.ack").write_bytes(ack(messages=[("CR", "m1", "C.1.7 NI not accepted")]))
    e2b = tmp_path / "e2b"
    e2b.mkdir()
    (e2b / "e2b_icsr_fda_2025-11.status.json").write_text(
        json.dumps(
            {
                "shipped": True,
                "batch_id": "PVTRACE-FDA-202511",
                "icsrs": [{"safety_report_id": "US-PVTRACE-1", "message_id": "m1"}],
            }
        )
    )
    wh = str(tmp_path / "w.duckdb")
    assert main(["e2b-ack", str(tmp_path / "acks"), "--warehouse", wh, "--sent", str(e2b)]) == 0
    out = capsys.readouterr().out
    assert "1 rejected" in out and "US-PVTRACE-1  rejected  C.1.7 NI not accepted" in out
    assert main(["e2b-ack", str(tmp_path / "nothing"), "--warehouse", wh]) == 2

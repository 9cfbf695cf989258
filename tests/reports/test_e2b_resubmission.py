"""A rejection acknowledgment leads to a corrected resubmission: per ICSR sent → rejected → resubmitted, the new
message follows C.1.11 (same C.1.1, new N.2.r.1 and C.1.2, no C.1.11) and is itself sent → accepted. Shown with a
synthetic ACK (always) and with FDA's own example ACKs re-addressed to our batch (realdata)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from lxml import etree

from assets import cli
from reports.e2b.resubmission import resubmit_rejected, sequence_problems, shipped
from reports.e2b.rules import evaluate
from reports.e2b.writer import build_batch, write_validated
from reports.jurisdictions import JURISDICTIONS
from tests.reports.test_e2b import CREATED, MEDDRA, SENDER, batch_for, rows
from tests.warehouse.test_e2b_ack import ack
from warehouse.inputs.regulator.e2b_ack import load_acks, submission_states
from warehouse.schema import connect

INSTANCES = Path(__file__).resolve().parents[3] / "shared" / "data" / "e2b_r3" / "instances_fda"
HL7 = {"h": "urn:hl7-org:v3"}
LATER = CREATED + dt.timedelta(days=2)


def rebuild(code: str, month: str, clock: dt.datetime):
    """The month rebuilt from the (corrected) data at ``clock``, as the CLI does from the warehouse."""
    return build_batch(
        rows(), jurisdiction=JURISDICTIONS[code], period_label=month, created=clock, sender=SENDER, meddra=MEDDRA
    )


def ship(folder: Path, code: str = "fda"):
    """The monthly file as the E2B asset writes it: the XML and its .status.json."""
    batch = batch_for(code)
    result = write_validated(batch, folder / f"e2b_icsr_{code}_2025-11.xml", clock=CREATED)
    assert result.valid, result.errors
    (folder / f"e2b_icsr_{code}_2025-11.status.json").write_text(json.dumps(result.status(batch)), encoding="utf-8")
    return batch


def states(con, folder: Path) -> dict[str, tuple[str, str | None]]:
    return {
        (s["safety_report_id"], s["message_id"]): (s["state"], s["resubmitted_as"])
        for s in submission_states(con, [x.as_dict() for x in shipped(folder)])
    }


def test_a_rejected_icsr_is_resubmitted_corrected_and_its_state_follows(tmp_path):
    folder = tmp_path / "e2b"
    folder.mkdir()
    first = ship(folder)
    a, b = first.icsrs
    con = connect(str(tmp_path / "w.duckdb"))
    assert set(states(con, folder).values()) == {("sent", None)}

    (tmp_path / "a1.ack").write_bytes(
        ack("A1", "AE", [("CR", a.message_id, "FDA.D.12 must be provided"), ("CA", b.message_id, "ok")]).replace(
            b"PVTRACE-FDA-202511", first.batch_id.encode()
        )
    )
    load_acks(con, tmp_path / "a1.ack")
    assert states(con, folder) == {
        (a.safety_report_id, a.message_id): ("rejected", None),
        (b.safety_report_id, b.message_id): ("accepted", None),
    }

    rows_ = resubmit_rejected(folder, submission_states(con, [x.as_dict() for x in shipped(folder)]), rebuild,
                              clock=LATER)  # fmt: skip
    stem = f"e2b_icsr_fda_2025-11_resubmission_{LATER:%Y%m%d%H%M%S}"
    assert rows_ == [
        {"safety_report_id": a.safety_report_id, "message_id": a.message_id, "file": f"{stem}.xml",
         "outcome": "resubmitted"}
    ]  # fmt: skip
    xml = (folder / f"{stem}.xml").read_bytes()
    status = json.loads((folder / f"{stem}.status.json").read_text())
    assert status["shipped"] and status["resubmission"] and status["batch_id"] != first.batch_id
    (new,) = status["icsrs"]
    assert new["resubmits"] == a.message_id and new["safety_report_id"] == a.safety_report_id
    assert new["message_id"] != a.message_id
    # C.1.11: sent as if for the first time — same C.1.1, new N.2.r.1 and C.1.2, no nullification/amendment
    root = etree.fromstring(xml)
    msg = root.find("h:PORR_IN049016UV", HL7)
    assert msg.find("h:controlActProcess/h:effectiveTime", HL7).get("value") == "20251202235959+0000"
    assert not msg.xpath(".//h:investigationCharacteristic[h:code/@code='3']", namespaces=HL7)
    assert evaluate(xml, "fda", clock=LATER).of("reject") == []
    resent = dataclasses.replace(a, message_id=new["message_id"], created="20251202235959+0000")
    assert sequence_problems(a, resent, previous_accepted=False) == []

    # sent → rejected → resubmitted; the new message is itself sent, then accepted; the old rejection (same C.1.1,
    # other batch) does not stick to it
    after = states(con, folder)
    assert after[(a.safety_report_id, a.message_id)] == ("resubmitted", new["message_id"])
    assert after[(a.safety_report_id, new["message_id"])] == ("sent", None)
    assert after[(b.safety_report_id, b.message_id)] == ("accepted", None)
    (tmp_path / "a2.ack").write_bytes(
        ack("A2", "AA", [("CA", new["message_id"], "ok")]).replace(b"PVTRACE-FDA-202511", status["batch_id"].encode())
    )
    load_acks(con, tmp_path / "a2.ack")
    assert states(con, folder)[(a.safety_report_id, new["message_id"])] == ("accepted", None)
    # nothing left to resubmit: a second pass writes nothing
    again = submission_states(con, [x.as_dict() for x in shipped(folder)])
    assert resubmit_rejected(folder, again, rebuild, clock=LATER + dt.timedelta(hours=1)) == []


def test_a_batch_rejected_as_a_whole_is_resubmitted_whole(tmp_path):
    folder = tmp_path / "e2b"
    folder.mkdir()
    first = ship(folder, "ema")
    con = connect(str(tmp_path / "w.duckdb"))
    (tmp_path / "b.ack").write_bytes(ack("B1", "AR").replace(b"PVTRACE-FDA-202511", first.batch_id.encode()))
    load_acks(con, tmp_path / "b.ack")
    out = resubmit_rejected(folder, submission_states(con, [x.as_dict() for x in shipped(folder)]), rebuild,
                            clock=LATER)  # fmt: skip
    assert [r["outcome"] for r in out] == ["resubmitted", "resubmitted"]
    assert {s for s, _ in states(con, folder).values()} == {"resubmitted", "sent"}


def test_a_case_out_of_scope_or_still_invalid_is_not_resubmitted(tmp_path):
    folder = tmp_path / "e2b"
    folder.mkdir()
    first = ship(folder)
    a, b = first.icsrs
    con = connect(str(tmp_path / "w.duckdb"))
    (tmp_path / "c.ack").write_bytes(
        ack("C1", "AE", [("CR", a.message_id, "x"), ("CR", b.message_id, "y")]).replace(
            b"PVTRACE-FDA-202511", first.batch_id.encode()
        )
    )
    load_acks(con, tmp_path / "c.ack")
    current = submission_states(con, [x.as_dict() for x in shipped(folder)])

    def narrowed(code, month, clock):  # case a left the scope; case b's correction lost its narrative (H.1)
        batch = rebuild(code, month, clock)
        return dataclasses.replace(batch, icsrs=(dataclasses.replace(batch.icsrs[1], narrative=None),))

    out = {r["safety_report_id"]: r["outcome"] for r in resubmit_rejected(folder, current, narrowed, clock=LATER)}
    assert out[a.safety_report_id] == "not resubmitted: the case is no longer in the period's scope"
    assert out[b.safety_report_id].startswith("not resubmitted: the corrected file still fails validation:")
    assert "ICH-H.1" in out[b.safety_report_id]
    assert {s for s, _ in states(con, folder).values()} == {"rejected"}  # nothing shipped: both stay rejected
    with pytest.raises(ValueError, match="aware"):
        resubmit_rejected(folder, current, rebuild, clock=LATER.replace(tzinfo=None))


def test_cli_resubmits_on_a_rejection_ack(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "e2b"
    folder.mkdir()
    first = ship(folder)
    a = first.icsrs[0]
    (tmp_path / "acks").mkdir()
    (tmp_path / "acks" / "n.ack").write_bytes(
        ack("N1", "AE", [("CR", a.safety_report_id, "C.1.7 NI not accepted")]).replace(
            b"PVTRACE-FDA-202511", first.batch_id.encode()
        )
    )
    monkeypatch.setattr(cli, "_e2b_rebuild", lambda con: rebuild)
    monkeypatch.setattr(cli, "_e2b_clock", lambda: LATER)
    wh = str(tmp_path / "w.duckdb")
    assert cli.main(["e2b-ack", str(tmp_path / "acks"), "--warehouse", wh, "--resubmit"]) == 2
    assert cli.main(["e2b-ack", str(tmp_path / "acks"), "--warehouse", wh, "--sent", str(folder), "--resubmit"]) == 0
    out = capsys.readouterr().out
    assert f"{a.safety_report_id}  resubmitted  -> e2b_icsr_fda_2025-11_resubmission_" in out
    assert f"{a.safety_report_id}  resubmitted  C.1.7 NI not accepted" in out
    assert f"{a.safety_report_id}  sent" in out  # the new message, waiting for its acknowledgment


@pytest.mark.realdata
@pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")
def test_fda_example_acks_drive_the_resubmission(tmp_path):
    """FDA's negative ACK (ACK.A.4 AE, ACK.B.r.6 CR for missing FDA.C.1.7.1 / FDA.C.1.12 / FDA.D.12) and positive ACK,
    re-addressed to our batches (ACK.A.1 and ACK.B.r.1 replaced; codes and reasons as FDA wrote them)."""
    folder = tmp_path / "e2b"
    folder.mkdir()
    first = ship(folder)
    a = first.icsrs[0]
    con = connect(str(tmp_path / "w.duckdb"))
    negative = (INSTANCES / "R3ack-negative.ack").read_bytes()
    negative = negative.replace(b"FAERS2022Scenario2-4069-a2dd-08002b30309d", first.batch_id.encode())
    (tmp_path / "neg.ack").write_bytes(negative.replace(b"US-APHARMA-7644554", a.safety_report_id.encode()))
    load_acks(con, tmp_path / "neg.ack")
    rejected = [s for s in submission_states(con, [x.as_dict() for x in shipped(folder)]) if s["state"] == "rejected"]
    assert [s["safety_report_id"] for s in rejected] == [a.safety_report_id]
    assert "FDA.C.1.12 is Mandatory" in rejected[0]["reasons"]

    (row,) = resubmit_rejected(folder, rejected, rebuild, clock=LATER)
    assert row["outcome"] == "resubmitted"
    status = json.loads((folder / row["file"].replace(".xml", ".status.json")).read_text())
    (new,) = status["icsrs"]
    positive = (INSTANCES / "R3ack-positive.ack").read_bytes()
    positive = positive.replace(b"FAERS2022Scenario1-4069-a2dd-08002b30309d", status["batch_id"].encode())
    positive = positive.replace(
        b"21ec1492-3aea-4069-a2ab-08002b30309d US-APHARMA-8744554B",
        f"{new['message_id']} {new['safety_report_id']}".encode(),
    )
    (tmp_path / "pos.ack").write_bytes(positive)
    load_acks(con, tmp_path / "pos.ack")
    final = states(con, folder)
    assert final[(a.safety_report_id, a.message_id)] == ("resubmitted", new["message_id"])
    assert final[(a.safety_report_id, new["message_id"])] == ("accepted", None)

"""ICH E2B(R3) acknowledgments (``MCCI_IN200101UV01``) → ``e2b_ack``, and each sent ICSR's submission state.

A regulator's gateway answers an ICSR batch with one acknowledgment: the batch part (ACK.M.1 ACK batch
number, ACK.M.2/M.3 sender/receiver, ACK.M.4 date; ACK.A.1 the ICSR batch number it answers = our N.1.2,
ACK.A.2 local message number, ACK.A.3 date of the ICSR batch transmission, ACK.A.4 transmission code
``AA`` all accepted / ``AE`` application error (some ICSRs need action) / ``AR`` rejected, ACK.A.5 batch
error) and one ``MCCI_IN000002UV01`` per ICSR (ACK.B.r.1 ICSR message number, ACK.B.r.2 local report
number, ACK.B.r.5 date of ICSR message creation, ACK.B.r.6 ``CA`` commit accept / ``CR`` commit reject,
ACK.B.r.7 error or warning text). States: ``accepted`` (CA), ``rejected`` (CR); an ACK without ICSR parts
gives ``batch_accepted`` (AA), ``batch_rejected`` (AR) or ``batch_error`` (AE); a rejected ICSR whose corrected
resubmission was sent is ``resubmitted`` (:func:`submission_states`; the resubmission itself is written by
``reports.e2b.resubmission``). Paths as in FDA's example ACKs (``R3ack-positive.ack``,
``R3ack-negative.ack``).

One row per ICSR acknowledgment (``message_seq`` 1…); an ACK without ICSR parts (a batch rejected as a
whole) is one row with ``message_seq`` 0. Loading the same ACK again replaces its rows (idempotent). ACK.B.r.1
is matched, within the batch the ACK names, with both the N.2.r.1 message id and the C.1.1 safety report id we
sent (FDA's example answers with the safety report id).

The XML parser resolves no entities and reads nothing from the network.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
from lxml import etree

from warehouse.inputs.regulator.e2b import parse_ts

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
ACK_ROOT = "MCCI_IN200101UV01"
STATES = {"CA": "accepted", "CR": "rejected"}
BATCH_CODES = {"AA", "AE", "AR"}
COLUMNS = (
    "ack_batch_id",
    "message_seq",
    "ack_created",
    "ack_sender",
    "ack_receiver",
    "batch_id",
    "local_message_number",
    "batch_transmitted",
    "batch_code",
    "batch_detail",
    "icsr_message_id",
    "local_report_number",
    "icsr_created",
    "icsr_code",
    "icsr_detail",
    "state",
    "source_file",
)


class AckError(ValueError):
    """Not an E2B(R3) acknowledgment, or one without the elements every ACK carries."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _text(node, path: str) -> str | None:
    found = node.find(path, NS)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _attr(node, path: str, name: str) -> str | None:
    found = node.find(path, NS) if path else node
    if found is None:
        return None
    v = found.get(name)
    return v.strip() if v and v.strip() else None


def _utc(value: str | None) -> dt.datetime | None:
    ts = parse_ts(value)
    return ts.astimezone(dt.UTC).replace(tzinfo=None) if ts else None


def parse_ack(data: bytes, source_file: str = "") -> list[dict]:
    """The rows of one acknowledgment file (see the module docstring); :class:`AckError` when it is not one."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise AckError(f"{source_file or 'ACK'}: not well-formed XML ({exc})") from exc
    if root.tag != f"{{{HL7}}}{ACK_ROOT}":
        raise AckError(f"{source_file or 'ACK'}: root is {etree.QName(root).localname}, not {ACK_ROOT}")
    ack_batch_id = _attr(root, "h:id", "extension")
    ack = root.find("h:acknowledgement", NS)
    batch_code = ack.get("typeCode") if ack is not None else None
    batch_id = _attr(ack, "h:targetBatch/h:id", "extension") if ack is not None else None
    if not ack_batch_id or batch_code not in BATCH_CODES or not batch_id:
        raise AckError(
            f"{source_file or 'ACK'}: ACK.M.1 ({ack_batch_id}), ACK.A.4 ({batch_code}) and ACK.A.1 ({batch_id}) "
            "are required (ACK.A.4 one of AA, AE, AR)"
        )
    lines = {
        _attr(line, "h:keyWordText", "code"): line.find("h:value", NS) for line in root.findall("h:attentionLine", NS)
    }
    batch = {
        "ack_batch_id": ack_batch_id,
        "ack_created": _utc(_attr(root, "h:creationTime", "value")),
        "ack_sender": _attr(root, "h:sender/h:device/h:id", "extension"),
        "ack_receiver": _attr(root, "h:receiver/h:device/h:id", "extension"),
        "batch_id": batch_id,
        "local_message_number": lines["2"].get("extension") if lines.get("2") is not None else None,
        "batch_transmitted": _utc(lines["3"].get("value")) if lines.get("3") is not None else None,
        "batch_code": batch_code,
        "batch_detail": _text(ack, "h:acknowledgementDetail/h:text"),
        "source_file": source_file,
    }
    rows = []
    for seq, msg in enumerate(root.findall("h:MCCI_IN000002UV01", NS), 1):
        mack = msg.find("h:acknowledgement", NS)
        code = mack.get("typeCode") if mack is not None else None
        target = _attr(mack, "h:targetMessage/h:id", "extension") if mack is not None else None
        if code not in STATES or not target:
            raise AckError(
                f"{source_file or 'ACK'}: ICSR acknowledgment #{seq} needs ACK.B.r.1 and ACK.B.r.6 (CA or CR), "
                f"got {target!r} and {code!r}"
            )
        created = next(
            (
                _utc(a.find("h:value", NS).get("value"))
                for a in msg.findall("h:attentionLine", NS)
                if _attr(a, "h:keyWordText", "code") == "1" and a.find("h:value", NS) is not None
            ),
            None,
        )
        rows.append(
            batch
            | {
                "message_seq": seq,
                "icsr_message_id": target,
                "local_report_number": _attr(msg, "h:id", "extension"),
                "icsr_created": created,
                "icsr_code": code,
                "icsr_detail": _text(mack, "h:acknowledgementDetail/h:text"),
                "state": STATES[code],
            }
        )
    if not rows:  # a batch answered as a whole
        state = {"AA": "accepted", "AE": "error", "AR": "rejected"}[batch_code]
        rows.append(
            batch
            | {
                "message_seq": 0,
                "icsr_message_id": None,
                "local_report_number": None,
                "icsr_created": None,
                "icsr_code": None,
                "icsr_detail": None,
                "state": f"batch_{state}",
            }
        )
    return rows


def load_acks(con: duckdb.DuckDBPyConnection, path: str | Path) -> dict[str, int]:
    """Load one ``.ack`` file or every ``*.ack`` in a folder into ``e2b_ack`` (re-loading an ACK replaces its rows)."""
    path = Path(path)
    files = sorted(path.glob("*.ack")) if path.is_dir() else [path]
    if not files:
        raise AckError(f"no .ack file in {path}")
    counts = {"files": 0, "acks": 0, "accepted": 0, "rejected": 0}
    con.execute("BEGIN TRANSACTION")
    try:
        for f in files:
            rows = parse_ack(f.read_bytes(), f.name)
            con.execute("DELETE FROM e2b_ack WHERE ack_batch_id = ?", [rows[0]["ack_batch_id"]])
            con.executemany(
                f"INSERT INTO e2b_ack ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                [[r[c] for c in COLUMNS] for r in rows],
            )
            counts["files"] += 1
            counts["acks"] += len(rows)
            counts["accepted"] += sum(r["state"].endswith("accepted") for r in rows)
            counts["rejected"] += sum(r["state"].endswith("rejected") for r in rows)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return counts


def submission_states(con: duckdb.DuckDBPyConnection, sent: list[dict]) -> list[dict]:
    """Per ICSR we sent (``{"batch_id", "message_id", "safety_report_id"}``, optionally ``"resubmits"``: the message
    it corrects): ``sent`` until an acknowledgment of its batch answers it, then ``accepted`` or ``rejected`` with
    the gateway's reasons (the latest ACK wins; a batch rejected as a whole rejects every ICSR in it; ``error``: its
    batch was answered AE without ICSR parts). A rejected ICSR whose corrected resubmission was sent (another
    entry's ``resubmits`` names its message) is ``resubmitted`` (``resubmitted_as``: the new message).

    An acknowledgment answers the batch it names (ACK.A.1): ACK.B.r.1 is matched with the message id or the
    safety report id we sent in *that* batch — FDA's examples answer with the safety report id, or with both
    separated by a space — so the rejection of a first transmission never sticks to its resubmission."""
    acks = con.execute(
        """SELECT batch_id, icsr_message_id, state, coalesce(icsr_detail, batch_detail) AS reasons, ack_created,
                  ack_batch_id
           FROM e2b_ack ORDER BY ack_created NULLS FIRST, ack_batch_id, message_seq"""
    ).fetchall()
    by_message: dict[tuple[str, str], tuple] = {}
    by_batch: dict[str, tuple] = {}
    for batch_id, target, state, reasons, created, ack_id in acks:
        if target is not None:
            for token in target.split():
                by_message[(batch_id, token)] = (state, reasons, created, ack_id)
        else:
            by_batch[batch_id] = (state.removeprefix("batch_"), reasons, created, ack_id)
    replaced_by = {s["resubmits"]: s["message_id"] for s in sent if s.get("resubmits")}
    out = []
    for s in sent:
        batch = s.get("batch_id") or ""
        hit = by_message.get((batch, s.get("message_id") or "")) or by_message.get(
            (batch, s.get("safety_report_id") or "")
        )
        hit = hit or by_batch.get(batch)
        state, reasons, created, ack_id = hit or ("sent", None, None, None)
        row = s | {"state": state, "reasons": reasons, "acknowledged_at": created, "ack_batch_id": ack_id}
        row["resubmitted_as"] = replaced_by.get(s.get("message_id") or "")
        if state in ("rejected", "error") and row["resubmitted_as"]:
            row["state"] = "resubmitted"
        out.append(row)
    return out

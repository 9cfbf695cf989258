"""Follow-ups, corrected resubmissions, amendments and nullifications of an ICSR, per the ICH C.1.11 rules.

What stays and what changes between two transmissions of one case (ICH E2B(R3) implementation guide, C.1.1,
C.1.5, C.1.8.1, C.1.11):

* every later transmission keeps C.1.1 (sender's safety report id) and C.1.8.1 (worldwide id), gets a new
  message id (N.2.r.1) and a later date of creation (C.1.2);
* a **follow-up** (new information) has a C.1.5 (most recent information) not before the previous one's and
  no C.1.11;
* an **amendment** (C.1.11.1 = 2: the previous transmission was wrong, no new information) keeps C.1.5 and
  says why in C.1.11.2;
* a **nullification** (C.1.11.1 = 1) says why in C.1.11.2; nothing is sent for the case after it;
* a **corrected resubmission** of an ICSR the gateway rejected (ACK.B.r.6 = CR) is sent as if for the first
  time: the rejected message was never accepted, so there is nothing to amend.

:func:`sequence_problems` checks a new transmission against the previous one with these rules.

**From a rejection to its resubmission.** Every shipped batch file has a ``.status.json`` listing its ICSRs
(:func:`shipped` reads them back as :class:`Sent`). When an acknowledgment rejects an ICSR (ACK.B.r.6 = CR, or
its whole batch: ACK.A.4 = AR, or AE without ICSR parts), :func:`resubmit_rejected` rebuilds the case from the
current (corrected) data with the run's clock, makes it a corrected resubmission (:func:`resubmit_corrected`:
same C.1.1, new N.2.r.1 and C.1.2, no C.1.11), validates it like every file and writes it beside the original as
``e2b_icsr_<j>_<YYYY-MM>_resubmission_<stamp>.xml``; each of its ICSRs names the message it replaces
(``resubmits`` in the status). The per-ICSR state then reads sent → rejected → resubmitted
(:func:`warehouse.inputs.regulator.e2b_ack.submission_states`), and the new message is itself sent → accepted /
rejected. A corrected file that still fails validation is not shipped and the ICSR stays rejected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reports.e2b.model import Icsr, IcsrBatch, ts
from reports.e2b.writer import _uid, write_validated

NULLIFICATION = "1"
AMENDMENT = "2"
RESUBMITTABLE = ("rejected", "error")  # ICSR-level CR or batch AR → rejected; batch AE without ICSR parts → error
STATUS_NAME = re.compile(
    r"^e2b_icsr_(?P<code>[a-z]+)_(?P<month>\d{4}-\d{2})(?:_resubmission_(?P<stamp>\d{14}))?\.status\.json$"
)


@dataclass(frozen=True)
class Sent:
    """One ICSR as it was transmitted, from its batch's ``.status.json``: what a later transmission follows."""

    batch_id: str  # N.1.2
    message_id: str  # N.2.r.1
    safety_report_id: str  # C.1.1
    created: str  # N.1.5 (= N.2.r.4 = C.1.2), HL7 TS
    code: str  # jurisdiction (fda, ema, pmda, nmpa)
    month: str  # YYYY-MM of the batch's period
    file: str  # the batch file's name
    resubmits: str | None = None  # N.2.r.1 of the rejected message this one corrects

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def shipped(folder: str | Path) -> list[Sent]:
    """Every ICSR of every shipped batch in ``folder`` (initial files and resubmissions), oldest first."""
    out = []
    for status in sorted(Path(folder).glob("e2b_icsr_*.status.json")):
        name = STATUS_NAME.match(status.name)
        if not name:
            continue
        data = json.loads(status.read_text(encoding="utf-8"))
        if not data.get("shipped"):
            continue
        for i in data.get("icsrs", []):
            out.append(
                Sent(
                    batch_id=data["batch_id"],
                    message_id=i["message_id"],
                    safety_report_id=i["safety_report_id"],
                    created=data.get("created") or "",  # N.1.5; "" only in a hand-written status
                    code=name["code"],
                    month=name["month"],
                    file=data.get("file") or status.name.removesuffix(".status.json") + ".xml",
                    resubmits=i.get("resubmits"),
                )
            )
    return sorted(out, key=lambda s: (s.created, s.batch_id, s.safety_report_id))


def _next(previous: Icsr | Sent, created: dt.datetime, kind: str) -> dict:
    stamp = ts(created)
    if stamp <= previous.created:
        raise ValueError(f"C.1.2 of a later transmission ({stamp}) must be after the previous one ({previous.created})")
    return {"created": stamp, "message_id": _uid(previous.message_id, kind, stamp)}


def amend(previous: Icsr, reason: str, created: dt.datetime) -> Icsr:
    """An amendment of ``previous`` (C.1.11.1 = 2, C.1.11.2 = ``reason``); C.1.5 unchanged."""
    if not reason or not reason.strip():
        raise ValueError("an amendment needs its reason (C.1.11.2)")
    return dataclasses.replace(previous, amendment=(AMENDMENT, reason.strip()), **_next(previous, created, "amend"))


def nullify(previous: Icsr, reason: str, created: dt.datetime) -> Icsr:
    """A nullification of ``previous`` (C.1.11.1 = 1, C.1.11.2 = ``reason``)."""
    if not reason or not reason.strip():
        raise ValueError("a nullification needs its reason (C.1.11.2)")
    return dataclasses.replace(previous, amendment=(NULLIFICATION, reason.strip()), **_next(previous, created, "null"))


def resubmit_corrected(rejected: Icsr | Sent, corrected: Icsr, created: dt.datetime) -> Icsr:
    """``corrected`` (rebuilt from the fixed data) sent again after the gateway rejected ``rejected``: same C.1.1,
    a new message id and C.1.2, no C.1.11 (the rejected message was never accepted)."""
    if corrected.safety_report_id != rejected.safety_report_id:
        raise ValueError("a corrected resubmission keeps the safety report id (C.1.1)")
    return dataclasses.replace(corrected, amendment=None, **_next(rejected, created, "resubmit"))


def sequence_problems(previous: Icsr, new: Icsr, *, previous_accepted: bool = True) -> list[str]:
    """What breaks the C.1.11 / C.1.5 rules when ``new`` follows ``previous`` for the same case (empty: fine)."""
    out = []
    if new.safety_report_id != previous.safety_report_id:
        out.append("C.1.1 changed between transmissions of one case")
    if new.worldwide_id != previous.worldwide_id:
        out.append("C.1.8.1 changed between transmissions of one case")
    if new.message_id == previous.message_id:
        out.append("N.2.r.1 reused: every transmission is a new message")
    if new.created <= previous.created:
        out.append("C.1.2 not after the previous transmission's")
    if previous.amendment and previous.amendment[0] == NULLIFICATION:
        out.append("the case was nullified: nothing is sent after a nullification")
    kind = new.amendment[0] if new.amendment else None
    if kind and not (new.amendment[1] or "").strip():
        out.append("C.1.11.2 (reason) missing")
    if kind and not previous_accepted:
        out.append("C.1.11 on a resubmission of a rejected ICSR: send the corrected report as an initial one")
    if kind == AMENDMENT and new.most_recent != previous.most_recent:
        out.append("an amendment carries no new information: C.1.5 must stay as before")
    if kind is None and (new.most_recent or "") < (previous.most_recent or ""):
        out.append("C.1.5 of a follow-up is before the previous transmission's")
    return out


def resubmission_batch(
    rebuilt: IcsrBatch, rejected: Sequence[Sent], created: dt.datetime
) -> tuple[IcsrBatch | None, list[str]]:
    """The corrected resubmission of ``rejected`` (ICSRs of one batch period): each taken from ``rebuilt`` — the
    period rebuilt from the corrected data at ``created`` — and made a corrected resubmission. Returns the batch
    (``None`` if none is left) and the C.1.1 of rejected ICSRs that are no longer in the period's scope."""
    by_report = {i.safety_report_id: i for i in rebuilt.icsrs}
    icsrs, gone = [], []
    for sent in rejected:
        corrected = by_report.get(sent.safety_report_id)
        if corrected is None:
            gone.append(sent.safety_report_id)
        else:
            icsrs.append(resubmit_corrected(sent, corrected, created))
    if not icsrs:
        return None, gone
    batch = dataclasses.replace(rebuilt, batch_id=f"{rebuilt.batch_id}-R{created:%Y%m%d%H%M%S}", icsrs=tuple(icsrs))
    return batch, gone


Rebuild = Callable[[str, str, dt.datetime], "IcsrBatch | None"]  # (jurisdiction, YYYY-MM, clock) → the period


def resubmit_rejected(
    folder: str | Path,
    states: Sequence[dict],
    rebuild: Rebuild,
    *,
    clock: dt.datetime,
    schema: Path | None = None,
) -> list[dict]:
    """Write the corrected resubmission of every rejected ICSR in ``states`` (rows of ``submission_states`` over
    :func:`shipped`), one file per batch period, into ``folder``. ``rebuild`` gives the period's batch from the
    current data; ``clock`` is the run's clock (C.1.2, N.1.5). Returns one row per rejected ICSR:
    ``safety_report_id``, ``message_id`` (the rejected one), ``outcome`` (``resubmitted`` or ``not resubmitted: …``)
    and ``file`` (the resubmission's file, if any)."""
    if clock.tzinfo is None:
        raise ValueError("clock must be an aware datetime (the run's clock, UTC)")
    folder = Path(folder)
    todo: dict[tuple[str, str], list[Sent]] = {}
    for row in states:
        if row.get("state") in RESUBMITTABLE:
            sent = Sent(**{f.name: row.get(f.name) for f in dataclasses.fields(Sent)})
            todo.setdefault((sent.code, sent.month), []).append(sent)
    out = []
    for (code, month), rejected in sorted(todo.items()):
        rebuilt = rebuild(code, month, clock)
        batch, gone = resubmission_batch(rebuilt, rejected, clock) if rebuilt is not None else (None, [])
        if rebuilt is None:
            gone = [s.safety_report_id for s in rejected]
        out += [
            {"safety_report_id": s.safety_report_id, "message_id": s.message_id, "file": None,
             "outcome": "not resubmitted: the case is no longer in the period's scope"}
            for s in rejected if s.safety_report_id in gone
        ]  # fmt: skip
        if batch is None:
            continue
        stem = f"e2b_icsr_{code}_{month}_resubmission_{clock:%Y%m%d%H%M%S}"
        result = write_validated(batch, folder / f"{stem}.xml", schema=schema, clock=clock)
        status = result.status(batch)
        replaced = {s.safety_report_id: s.message_id for s in rejected}
        status["resubmission"] = True
        for icsr in status["icsrs"]:
            icsr["resubmits"] = replaced[icsr["safety_report_id"]]
        (folder / f"{stem}.status.json").write_text(json.dumps(status, indent=1, sort_keys=True), encoding="utf-8")
        outcome = (
            "resubmitted"
            if result.valid
            else "not resubmitted: the corrected file still fails validation: " + "; ".join(result.errors[:3])
        )
        out += [
            {"safety_report_id": i.safety_report_id, "message_id": replaced[i.safety_report_id],
             "file": result.path.name, "outcome": outcome}
            for i in batch.icsrs
        ]  # fmt: skip
    return out

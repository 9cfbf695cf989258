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
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from reports.e2b.model import Icsr, ts
from reports.e2b.writer import _uid

NULLIFICATION = "1"
AMENDMENT = "2"


def _next(previous: Icsr, created: dt.datetime, kind: str) -> dict:
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


def resubmit_corrected(rejected: Icsr, corrected: Icsr, created: dt.datetime) -> Icsr:
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

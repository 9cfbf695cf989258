"""Plausibility rules for the platform inbox: one place, each rule named, with its quarantine reason.

A row that breaks a rule is quarantined with the rule's ``reason`` — never corrected (a
quantity of 2.7 is not rounded to 3). Every rule is on by default; switch one off for a run
with ``PVTRACE_PLAUSIBILITY_OFF=rule,rule`` (names below; an unknown name is an error). The
run's clock is :func:`warehouse.inputs.inbox.run_clock` (``PVTRACE_CLOCK``, default now).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DISABLE_ENV = "PVTRACE_PLAUSIBILITY_OFF"


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    applies_to: str
    description: str


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "quantity_positive_integer",
            "bad_quantity",
            "deliveries",
            "quantity is a whole number >= 1 written as digits; 2.7, 0, -1 or 1e3 are quarantined, never rounded",
        ),
        Rule(
            "within_released_units",
            "exceeds_released_units",
            "deliveries",
            "a batch's delivered units never exceed its units_released: in delivery order (time, id) a delivery "
            "that would pass the released quantity is quarantined, the batch's other deliveries stay",
        ),
        Rule(
            "not_after_clock",
            "after_run_clock",
            "all",
            "no timestamp or date after the run's clock: delivered_at, received_on and onset dates, EPCIS "
            "eventTime, pack commissioned_at, medication-log week_start, batch manufactured_on/released_on",
        ),
        Rule(
            "delivered_after_release",
            "delivered_before_release",
            "deliveries",
            "a pack is not delivered before its batch's released_on",
        ),
        Rule(
            "delivered_before_expiry",
            "expired_at_delivery",
            "deliveries",
            "a pack is not delivered after its batch's expiry_on",
        ),
        Rule(
            "onset_not_after_receipt",
            "impossible_date",
            "cases",
            "a reaction's onset_date is not after the case's received_on",
        ),
    )
}


def disabled_rules() -> set[str]:
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    unknown = names - set(RULES)
    if unknown:
        raise ValueError(f"{DISABLE_ENV}: unknown rule(s) {sorted(unknown)}; rules are {sorted(RULES)}")
    return names


def enabled(name: str) -> bool:
    if name not in RULES:
        raise KeyError(name)
    return name not in disabled_rules()


def reason(name: str) -> str:
    return RULES[name].reason


def greedy_excess(quantities: list[int], released: int) -> list[bool]:
    """Which deliveries (in delivery order) pass the released quantity: a delivery is accepted
    while the accepted total plus its quantity stays within ``released``; the others are excess.
    So one absurd quantity is rejected alone and the batch's real deliveries stay."""
    taken, out = 0, []
    for q in quantities:
        if taken + q <= released:
            taken += q
            out.append(False)
        else:
            out.append(True)
    return out

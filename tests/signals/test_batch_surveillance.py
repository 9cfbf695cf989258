"""Weekly MaxSPRT per batch x event (signals.batch_surveillance) on small hand-built worlds."""

import datetime as dt

import numpy as np
import polars as pl

from signals.batch_surveillance import (
    PARENTERAL_ONLY_PTS,
    QUALITY_DEFECT_PTS,
    SurveillanceDesign,
    events_of_interest,
    monitor_batch_streams,
    weekly_looks,
)
from signals.sequential import maxsprt_poisson_monitor

START = dt.date(2024, 1, 1)  # a Monday


def _world(rng, n_batches=6, weeks=60, rate=0.004, defect=None, rr=8.0):
    packs, cases = [], []
    n = 0
    for b in range(n_batches):
        first = 8 * b
        for w in range(first, min(first + 30, weeks)):
            k = 40
            packs.append(("P", f"B{b}", START + dt.timedelta(weeks=w), float(k)))
            r = rate * (rr if b == defect else 1.0)
            for _ in range(rng.poisson(k * r)):
                n += 1
                cases.append((f"C{n}", "P", f"B{b}", "E", START + dt.timedelta(weeks=w, days=int(rng.integers(0, 20)))))
    packs = pl.DataFrame(packs, schema=["product", "batch", "week", "packs"], orient="row")
    cases = pl.DataFrame(cases, schema=["case_id", "product", "batch", "event", "received_on"], orient="row")
    return packs, cases


def test_weekly_looks_are_mondays_up_to_the_lock_point():
    looks = weekly_looks(dt.date(2024, 1, 3), dt.date(2024, 1, 22))
    assert looks == [dt.date(2024, 1, 1), dt.date(2024, 1, 8), dt.date(2024, 1, 15), dt.date(2024, 1, 22)]


def test_events_of_interest_add_injection_terms_for_parenterals():
    ev = events_of_interest({"A": "oral", "B": "subcutaneous"})
    assert set(ev.filter(pl.col("product") == "A")["event"]) == set(QUALITY_DEFECT_PTS)
    assert set(ev.filter(pl.col("product") == "B")["event"]) == set(QUALITY_DEFECT_PTS) | set(PARENTERAL_ONLY_PTS)


def test_defective_batch_crosses_and_clean_batches_do_not():
    rng = np.random.default_rng(3)
    packs, cases = _world(rng, defect=3)
    looks = weekly_looks(START, START + dt.timedelta(weeks=59))
    out = monitor_batch_streams(
        packs,
        cases,
        pl.DataFrame({"product": ["P"], "event": ["E"]}),
        looks,
        np.array([1.0]),
        design=SurveillanceDesign(),
    )
    assert out.height == 6
    hit = out.filter(pl.col("signalled"))
    assert hit["batch_id"].to_list() == ["B3"]
    row = hit.row(0, named=True)
    # the crossing is recorded at a weekly look after the batch's first delivery
    assert row["crossed_on"] >= dt.date(2024, 1, 1) + dt.timedelta(weeks=24)
    assert row["observed_at_crossing"] >= 3 and row["alpha"] == 0.05 / 6
    # reproduce the stream's decision with the plain monitor
    assert row["cv"] > 0 and row["llr"] >= row["cv"]


def test_false_alarm_rate_on_clean_worlds_is_controlled():
    rng = np.random.default_rng(11)
    looks = weekly_looks(START, START + dt.timedelta(weeks=59))
    alarms = 0
    for _ in range(40):
        packs, cases = _world(rng, rate=0.01)
        out = monitor_batch_streams(
            packs, cases, pl.DataFrame({"product": ["P"], "event": ["E"]}), looks, np.array([1.0])
        )
        alarms += int(out["signalled"].any())
    assert alarms <= 5  # family-wise alpha 0.05 per product; 40 worlds, binomial slack


def test_group_boundary_monitor_is_backwards_compatible():
    obs = np.array([[0, 2, 5, 9]], dtype=float)
    mu = np.array([[0.5, 1.0, 1.5, 2.0]])
    cont = maxsprt_poisson_monitor(obs, mu, 4.0, alpha=0.01, min_events=3)
    grp = maxsprt_poisson_monitor(obs, mu, 4.0, alpha=0.01, min_events=3, boundary="group", planned_looks=8)
    assert grp.cv[0] <= cont.cv[0]
    assert grp.first_look[0] <= cont.first_look[0] or cont.first_look[0] == -1


def test_planned_length_uses_no_later_data():
    """T (expected_total) is fixed from what was known at the stream's first testable look:
    running the monitor on the data up to week 40 or up to week 59 gives the same T."""
    rng = np.random.default_rng(21)
    packs, cases = _world(rng, defect=2)
    ev = pl.DataFrame({"product": ["P"], "event": ["E"]})
    units = packs.group_by("batch").agg(units_released=pl.col("packs").sum())
    cut = START + dt.timedelta(weeks=40)
    early = monitor_batch_streams(
        packs.filter(pl.col("week") < cut),
        cases.filter(pl.col("received_on") < cut),
        ev,
        weekly_looks(START, cut - dt.timedelta(days=1)),
        np.array([1.0]),
        units_released=units,
    )
    full = monitor_batch_streams(
        packs, cases, ev, weekly_looks(START, START + dt.timedelta(weeks=59)), np.array([1.0]), units_released=units
    )
    both = early.join(full, on="batch_id", suffix="_full").filter(pl.col("looks") > 0)
    assert both.height >= 4
    np.testing.assert_allclose(both["expected_total"].to_numpy(), both["expected_total_full"].to_numpy())

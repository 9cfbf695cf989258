"""The prospective MaxSPRT replay (signals.batch_surveillance.replay_batch_streams): every weekly
look is decided with what was known on its date, so cutting the future off changes no past decision."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from signals.batch_surveillance import SurveillanceDesign, replay_batch_streams, weekly_looks

START = dt.date(2024, 1, 1)  # a Monday
EVENTS = pl.DataFrame({"product": ["P", "P"], "event": ["E", "F"]})


def _world(seed: int, n_batches: int = 6, weeks: int = 60, rate: float = 0.006, defect: int | None = 1, rr=8.0):
    """Batches every 8 weeks, 40 packs a week for 30 weeks; reports with a long-tailed delay."""
    rng = np.random.default_rng(seed)
    packs, cases = [], []
    n = 0
    for b in range(n_batches):
        for w in range(8 * b, min(8 * b + 30, weeks)):
            week = START + dt.timedelta(weeks=w)
            packs.append(("P", f"B{b}", week, 40.0))
            for event in ("E", "F"):
                r = rate * (rr if (b == defect and event == "E") else 1.0)
                for _ in range(rng.poisson(40 * r)):
                    n += 1
                    delay = int(rng.lognormal(np.log(10), 1.0))  # days; a long right tail
                    start = week + dt.timedelta(days=int(rng.integers(0, 7)))
                    cases.append((f"C{n}", "P", f"B{b}", event, start + dt.timedelta(days=delay), start))
    packs = pl.DataFrame(packs, schema=["product", "batch", "week", "packs"], orient="row")
    cases = pl.DataFrame(
        cases, schema=["case_id", "product", "batch", "event", "received_on", "start_date"], orient="row"
    )
    return packs, cases


def _replay(packs, cases, last_day):
    looks = weekly_looks(START, last_day)
    units = pl.DataFrame({"batch": [f"B{b}" for b in range(6)], "units_released": [1500] * 6})
    return replay_batch_streams(packs, cases, EVENTS, looks, units, SurveillanceDesign(), last_day).sort(
        "batch_id", "pt"
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_truncating_the_future_changes_no_past_decision(seed):
    packs, cases = _world(seed)
    final = dt.date(2025, 2, 23)  # a Sunday, week 59
    full = _replay(packs, cases, final)
    assert ("B1", "E") in set(full.filter(pl.col("signalled")).select("batch_id", "pt").iter_rows())  # the defect
    for cut_week in (14, 23, 35, 47):
        cut = START + dt.timedelta(weeks=cut_week, days=6)  # the Sunday ending that week
        known = _replay(
            packs.filter(pl.col("week") <= cut), cases.filter(pl.col("received_on") <= cut), cut
        )  # what existed on that date
        past = full.join(known.select("batch_id", "pt"), on=["batch_id", "pt"])
        for col in ("crossed_on", "crossed_on_group"):
            seen_then = past.select("batch_id", "pt", pl.when(pl.col(col) <= cut).then(pl.col(col)).alias(col)).sort(
                "batch_id", "pt"
            )
            assert seen_then[col].to_list() == known.sort("batch_id", "pt")[col].to_list(), (cut, col)
        # streams that did not exist yet are not in the cut-off's view at all
        assert set(known["batch_id"]) == {f"B{b}" for b in range(6) if 8 * b <= cut_week}


def test_alpha_splits_over_the_streams_that_existed_then():
    packs, cases = _world(2)
    out = _replay(packs, cases, dt.date(2025, 2, 23))
    hit = out.filter(pl.col("signalled")).row(0, named=True)
    week = (hit["crossed_on"] - START).days // 7
    existing = sum(1 for b in range(6) if 8 * b <= week)
    assert existing < 6  # the defect crossed before the last batches came
    assert hit["alpha_at_crossing"] == pytest.approx(0.05 / (existing * 2))


def test_late_reports_after_a_date_do_not_move_earlier_decisions():
    packs, cases = _world(2)
    final = dt.date(2025, 2, 23)
    base = _replay(packs, cases, final)
    cut = START + dt.timedelta(weeks=30, days=6)
    # a flood of very late reports received after the cut-off changes the final delay
    # distribution; no decision dated up to the cut-off may move
    late = pl.DataFrame(
        {
            "case_id": [f"L{i}" for i in range(300)],
            "product": "P",
            "batch": [f"B{i % 3}" for i in range(300)],
            "event": "F",
            "received_on": [cut + dt.timedelta(days=1 + i % 150) for i in range(300)],
            "start_date": [START + dt.timedelta(days=i % 60) for i in range(300)],
        }
    )
    moved = _replay(packs, pl.concat([cases, late]), final)
    for col in ("crossed_on", "crossed_on_group"):
        a = base.select(pl.when(pl.col(col) <= cut).then(pl.col(col)))[col].to_list()
        b = moved.select(pl.when(pl.col(col) <= cut).then(pl.col(col)))[col].to_list()
        assert a == b


def test_replay_needs_start_dates():
    packs, cases = _world(1)
    with pytest.raises(ValueError, match="start_date"):
        replay_batch_streams(packs, cases.drop("start_date"), EVENTS, weekly_looks(START, dt.date(2024, 6, 2)))

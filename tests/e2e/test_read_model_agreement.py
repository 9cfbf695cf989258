"""Reports, alerts and the dashboard agree on every signal's cases and batches (one read model).

A seeded synthetic world goes through the unpartitioned graph; then, for EVERY signal in the
register, the cases and batches the periodic report quotes (``warehouse.queries.report_queries``
at the data lock point), the manufacturer alert (``warehouse.queries.alert_evidence``; cases by
their per-manufacturer ``case_ref``) and the dashboard (``dashboard.data.compute_evidence``) must
be the same sets. A batch-level signal's cases all link to its batch and its only batch is its own.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import dagster as dg
import polars as pl
import pytest

from assets.definitions import ALL_ASSETS, ALL_CHECKS
from assets.resources import default_resources
from dashboard.data import compute_evidence
from sample_data.world import generate_world
from warehouse.queries import alert_evidence as ae
from warehouse.queries import report_queries as rq
from warehouse.queries.read_model import data_lock_point
from warehouse.schema import connect

pytestmark = pytest.mark.e2e

SCALE, SEED = 0.3, 7  # the smallest seed-7 world whose planted batches become batch-level signals
SALT = "agreement-test-salt"


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    root = tmp_path_factory.mktemp("agreement_world")
    generate_world(root / "inbox", seed=SEED, scale=SCALE)
    resources = default_resources(
        inbox=str(root / "inbox"), warehouse=str(root / "pv.duckdb"), output=str(root / "output")
    )
    dg.materialize([*ALL_ASSETS, *ALL_CHECKS], resources=resources, raise_on_error=True)
    c = connect(str(root / "pv.duckdb"), read_only=True)
    yield c
    c.close()


def _pairs(frame: pl.DataFrame, a: str, b: str) -> dict[str, set]:
    out = defaultdict(set)
    for x, y in frame.select(a, b).iter_rows():
        out[x].add(y)
    return out


def test_report_alert_and_dashboard_agree_on_every_signal(con):
    dlp = data_lock_point(con)
    register = con.sql("SELECT signal_id, level, product_id, batch_id FROM signal").pl()
    assert register.height > 0 and (register["level"] == "batch").any(), "the world must have batch-level signals"
    everyone = set(register["signal_id"])

    # the periodic report: every region's signals at the DLP
    start = dt.date(dlp.year, dlp.month, 1)
    ids = set()
    for region in ("EU", "US", "CN", "JP"):
        ids |= set(rq.period_signals(con, region, start, dlp)["signal_id"])
    assert ids == everyone, "every signal is in some regulator's report"
    report_cases = _pairs(rq.signal_cases(con, sorted(ids), dlp), "signal_id", "case_id")
    report_batches = _pairs(rq.signal_batch_annex(con, sorted(ids), dlp), "signal_id", "batch_id")

    # the dashboard
    ev = compute_evidence(con)
    dash_cases = _pairs(ev.cases, "signal_id", "case_id")
    dash_batches = _pairs(ev.batches, "signal_id", "batch_id")
    for sid in sorted(everyone):
        assert dash_cases.get(sid, set()) == report_cases.get(sid, set()), sid
        assert dash_batches.get(sid, set()) == report_batches.get(sid, set()), sid

    # the alerts: product- and batch-level signals, per manufacturer, cases by their case_ref
    alerted = set()
    batches_of = ae.alert_batches_by_manufacturer(con)  # what the alert step reads: one query for all
    for (mid,) in con.sql("SELECT manufacturer_id FROM manufacturer").fetchall():
        signals = ae.alert_signals(con, mid)
        alerted |= set(signals["signal_id"])
        refs = _pairs(ae.alert_case_summaries(con, mid, SALT), "signal_id", "case_ref")
        own = ae.alert_batches(con, mid)
        assert batches_of[mid].equals(own), mid  # the same rows, columns and order as the one-manufacturer query
        batches = _pairs(own, "signal_id", "batch_id")
        for sid in signals["signal_id"]:
            want = {ae.case_ref(SALT, mid, c) for c in report_cases.get(sid, set())}
            assert refs.get(sid, set()) == want, (mid, sid)
            assert batches.get(sid, set()) == report_batches.get(sid, set()), (mid, sid)
    assert alerted == set(register.filter(pl.col("level") != "ingredient")["signal_id"])

    # a batch-level signal's evidence is its batch's
    for sid, batch in register.filter(pl.col("level") == "batch").select("signal_id", "batch_id").iter_rows():
        assert report_batches[sid] == {batch}
        linked = set(ev.cases.filter(pl.col("signal_id") == sid)["batch_id"])
        assert linked <= {batch}, (sid, linked)
        assert ev.scores.filter(pl.col("signal_id") == sid).height == 0  # no product-level statistics row


def test_register_counts_are_the_signal_case_counts(con):
    """n11 of a product or ingredient signal = the number of its cases in the read model (one definition)."""
    n11 = dict(
        con.sql(
            "SELECT signal_id, (figures->>'n11')::BIGINT FROM signal WHERE level IN ('product', 'ingredient')"
        ).fetchall()
    )
    counted = rq.signal_cases(con, sorted(n11), data_lock_point(con)).group_by("signal_id").len()
    got = dict(counted.iter_rows())
    assert got == n11

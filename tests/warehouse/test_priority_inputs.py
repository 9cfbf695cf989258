"""The priority score's inputs, counted from the read model's cases of each register row (issue 14 item 4)."""

from __future__ import annotations

import datetime as dt

import pytest

from signals.priority import QUERY_PARAMETERS, priority_scores
from tests.reports.alert_fixtures import build_alert_warehouse
from warehouse.queries.priority_inputs import priority_inputs
from warehouse.schema import connect


@pytest.fixture()
def con(tmp_path):
    build_alert_warehouse(tmp_path / "pv.duckdb")
    c = connect(str(tmp_path / "pv.duckdb"))
    c.execute("UPDATE signal SET methods = ['batch_exact', 'maxsprt'] WHERE signal_id = 'SIG-A-BATCH'")
    yield c
    c.close()


def rows(con, dlp=None):
    return {r["signal_id"]: r for r in priority_inputs(con, dlp, **QUERY_PARAMETERS).to_dicts()}


def test_counts_follow_the_signal_cases(con):
    got = rows(con)
    prod = got["SIG-A-PROD"]
    # CASE-ID-1..4 name Acmezol with Rash: all serious, received within 90 days of the DLP (2024-06-05),
    # from an 'hcp' source without a reporter qualification; age, sex, outcome and a batch link present,
    # no start date (no time to onset), no qualification: 4 of 6 completeness fields
    assert (prod["n_cases"], prod["n_serious"], prod["n_recent"], prod["n_hcp"]) == (4, 4, 4, 0)
    assert prod["completeness"] == pytest.approx(4 / 6)
    assert prod["priority_on"] == dt.date(2024, 6, 5)
    assert (prod["n11"], prod["expected"]) == (3, 0.5)  # the register's own figures
    # the batch signal on the same product and PT singles a lot out with both test families
    assert prod["batch_tests"] == 2 and got["SIG-A-BATCH"]["batch_tests"] == 2
    assert got["SIG-A-BATCH"]["n_cases"] == 1  # CASE-ID-3, the only case linked to BAT-A-102
    assert got["SIG-B-PROD"]["batch_tests"] == 0
    # borexinol as suspect: CASE-ID-2 and CASE-ID-5 (CASE-ID-1 names it as concomitant only)
    assert got["SIG-INGR"]["n_cases"] == 2 and got["SIG-INGR"]["batch_tests"] == 0


def test_data_lock_point_and_refuted_batch_signals(con):
    early = rows(con, dt.date(2024, 6, 2))
    assert early["SIG-A-PROD"]["n_cases"] == 2 and early["SIG-A-PROD"]["priority_on"] == dt.date(2024, 6, 2)
    con.execute("UPDATE signal SET status = 'refuted' WHERE level = 'batch'")
    got = rows(con)
    assert got["SIG-A-PROD"]["batch_tests"] == 0  # an analyst refuted the batch finding
    assert got["SIG-A-BATCH"]["batch_tests"] == 2  # its own methods still say what it is
    scored = priority_scores(priority_inputs(con, None, **QUERY_PARAMETERS))
    assert scored["priority"].is_between(0, 1).all() and scored.height == len(got)

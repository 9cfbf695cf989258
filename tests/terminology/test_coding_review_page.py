"""The dashboard's coding review page (issue 17) over HTTP: who sees it, who decides, CSRF, and a decision
reaching the warehouse and the next coding."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dashboard import store
from sample_data.terminology import write_terminology
from tests.browser.world import ANALYST, VIEWER, build_warehouse
from tests.dashboard.test_dashboard import client, login, token
from warehouse.schema import connect
from warehouse.terminology.case_coding import code_verbatims
from warehouse.terminology.coder import Coder, save_coding
from warehouse.terminology.meddra import load_release

pytest.importorskip("httpx")

TEXTS = ["felt weird", "i had a heaadache after the shot", "hives"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coding_page")
    path = root / "pv.duckdb"
    build_warehouse(path)
    con = connect(str(path))
    try:
        for f in write_terminology(root / "meddra"):
            load_release(con, f)
        save_coding(con, Coder(con), TEXTS)  # what the run's coding step writes: the review queue
    finally:
        con.close()
    return path


@pytest.fixture()
def warehouse(world, tmp_path) -> Path:
    """A fresh copy per test (decisions change it)."""
    path = tmp_path / "pv.duckdb"
    path.write_bytes(world.read_bytes())
    store.review_store_path(path).write_bytes(store.review_store_path(world).read_bytes())
    return path


def test_only_analysts_see_patients_words(warehouse):
    with client(warehouse) as c:
        assert c.get("/coding", follow_redirects=False).status_code == 303  # not logged in: to the login page
        login(c, VIEWER)
        assert c.get("/coding").status_code == 403 and 'id="nav-coding"' not in c.get("/").text
        form = {"csrf_token": token(c.get("/").text), "verbatim": "felt weird", "action": "reject"}
        assert c.post("/coding/decide", data=form).status_code == 403
    with client(warehouse) as c:
        login(c, ANALYST)
        page = c.get("/coding")
        assert page.status_code == 200
        assert "felt weird" in page.text and "heaadache" in page.text and "hives" not in page.text
        assert "Headache" in page.text and "fuzzy" in page.text


def test_analyst_recodes_with_csrf_and_the_next_coding_uses_it(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        page = c.get("/coding")
        form = {"verbatim": "felt weird", "action": "recode", "llt": "fever", "comment": "patient meant fever"}
        assert c.post("/coding/decide", data=form, follow_redirects=False).status_code == 403  # no CSRF token
        bad = c.post("/coding/decide", data={**form, "llt": "no such term", "csrf_token": token(page.text)})
        assert "Recode needs a current LLT" in bad.text
        done = c.post("/coding/decide", data={**form, "csrf_token": token(page.text)})
        assert done.status_code == 200 and "Recorded: recoded" in done.text
        assert "felt weird" in done.text.split('id="coding-decided"')[1]  # listed as decided, out of the queue
        assert "felt weird" not in done.text.split('id="coding-decided"')[0].split('id="coding-queue"')[1]
    con = duckdb.connect(str(warehouse))
    try:
        rows = con.execute("SELECT verbatim, action, actor FROM meddra_coding_decision").fetchall()
        assert rows == [("felt weird", "recode", ANALYST[0])]
        coded = code_verbatims(con, ["felt weird"], "90.0")
        assert coded["method"].to_list() == ["manual"] and not coded["needs_review"].any()
    finally:
        con.close()


def test_an_unknown_verbatim_is_refused(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        page = c.get("/coding")
        r = c.post("/coding/decide", data={"csrf_token": token(page.text), "verbatim": "nope", "action": "accept"})
        assert r.status_code == 404

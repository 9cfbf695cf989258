"""The manufacturer portal tries to leak: two companies (Acme: P1, P2, batches B1-B5; Rival: P9, batch B9),
one Acme case naming Rival's product as co-suspect, an ingredient-level signal pooling both companies'
metformin products. Every page a manufacturer can reach is scanned for the other company's products,
batches, lots, signals and for any case id, patient key or narrative; pages outside its scope are 404."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from dashboard import store
from dashboard.portal import manufacturer_view
from tests.browser.world import ACME_USER, RIVAL_USER, SIG_ING, SIG_P1, SIG_P2, SIG_P9, build_warehouse
from warehouse.pseudonym import load_salt

pytest.importorskip("httpx")
from starlette.testclient import TestClient

from dashboard.app import create_app

ACME_ONLY = [
    "P1",
    "P2",
    "Glucofin",
    "Cardiol",
    "Acme",
    "B1",
    "B2",
    "B3",
    "B4",
    "B5",
    "L1",
    "L2",
    "L3",
    "L4",
    "L5",
    SIG_P1,
    SIG_P2,
]
RIVAL_ONLY = ["P9", "Rivalex", "Rival", "B9", "L9", SIG_P9]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("portal") / "pv.duckdb"
    build_warehouse(path, with_rival=True)
    return path


@pytest.fixture(scope="module")
def identifiers(world) -> dict[str, set[str]]:
    con = duckdb.connect(str(world), read_only=True)
    try:
        return {
            "case_ids": {r[0] for r in con.execute("SELECT DISTINCT case_id FROM case_report").fetchall()},
            "patient_keys": {
                r[0]
                for r in con.execute(
                    "SELECT patient_key FROM case_report UNION SELECT patient_key FROM delivery"
                ).fetchall()
                if r[0]
            },
        }
    finally:
        con.close()


def login(c: TestClient, who) -> None:
    r = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = c.post("/login", data={"username": who[0], "password": who[1], "csrf_token": token})
    assert r.status_code == 200 and r.url.path == "/portal", r.text[:300]


def crawl(c: TestClient) -> dict[str, str]:
    """Every page reachable from the portal by its links."""
    seen, todo = {}, ["/portal"]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        r = c.get(url)
        assert r.status_code == 200, url
        seen[url] = r.text
        todo += re.findall(r'href="(/portal/[^"#?]+)"', r.text)
    return seen


def words(html: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_-]+", re.sub(r"<[^>]+>", " ", html))) | set(
        re.findall(r'(?:href|value)="([^"]+)"', html)
    )


def assert_no_leak(pages: dict[str, str], forbidden: list[str], identifiers: dict[str, set[str]]) -> None:
    for url, html in pages.items():
        w = words(html)
        for f in forbidden:
            assert f not in w and f"/{f}" not in html, f"{f} leaked on {url}"
        for cid in identifiers["case_ids"]:
            assert cid not in w, f"raw case id {cid} on {url}"
        for key in identifiers["patient_keys"]:
            assert key not in html, f"patient key on {url}"
        assert "NARRATIVE" not in html and "secret-" not in html


def test_rival_sees_its_own_signal_batch_and_cases_and_nothing_of_acme(world, identifiers):
    with TestClient(create_app(world, background=False, quiet_s=0.0)) as c:
        login(c, RIVAL_USER)
        pages = crawl(c)
        assert f"/portal/signals/{SIG_P9}" in pages and "/portal/batches/B9" in pages
        cases = re.search(r'<table id="cases">.*?</table>', pages[f"/portal/signals/{SIG_P9}"], re.DOTALL).group(0)
        # Rival's 5 own cases + Acme's case that names Rivalex as co-suspect (only its Rivalex row)
        assert cases.count("CASE-") == 6
        assert_no_leak(pages, ACME_ONLY + [SIG_ING], identifiers)
        # guessing another company's ids gives 404, never their content
        for url in (
            f"/portal/signals/{SIG_P1}",
            f"/portal/signals/{SIG_ING}",
            "/portal/batches/B3",
            "/portal/batches/B1",
        ):
            r = c.get(url)
            assert r.status_code == 404 and "Acme" not in r.text and "Glucofin" not in r.text
        assert c.get(f"/signals/{SIG_P1}").status_code == 403
        assert c.get("/portal?manufacturer_id=M1").text.count("Rival Labs") >= 1  # parameters change nothing


def test_acme_sees_its_own_and_not_the_co_suspect_rival_product(world, identifiers):
    with TestClient(create_app(world, background=False, quiet_s=0.0)) as c:
        login(c, ACME_USER)
        pages = crawl(c)
        assert {f"/portal/signals/{SIG_P1}", f"/portal/signals/{SIG_P2}", "/portal/batches/B3"} <= set(pages)
        assert_no_leak(pages, RIVAL_ONLY + [SIG_ING], identifiers)
        assert c.get(f"/portal/signals/{SIG_P9}").status_code == 404
        assert c.get("/portal/batches/B9").status_code == 404


def test_case_references_differ_between_companies(world):
    """The shared case (Acme's first, with Rivalex as co-suspect) cannot be joined across the two portals."""
    con = duckdb.connect(str(world), read_only=True)
    try:
        salt = load_salt(world)
        acme = manufacturer_view(con, "M1", salt)
        rival = manufacturer_view(con, "M2", salt)
    finally:
        con.close()
    refs = lambda v: {c["case_ref"] for s in v["signals"] for c in s["cases"]}  # noqa: E731
    assert refs(acme) and refs(rival) and not refs(acme) & refs(rival)
    assert {s["signal_id"] for s in acme["signals"]} == {SIG_P1, SIG_P2}
    assert {s["signal_id"] for s in rival["signals"]} == {SIG_P9}
    assert set(rival["batches"]) == {"B9"} and "B9" not in acme["batches"]


def test_a_manufacturer_account_without_a_company_in_the_warehouse_sees_nothing(world, tmp_path):
    wh = tmp_path / "pv.duckdb"
    wh.write_bytes(world.read_bytes())
    store.review_store_path(wh).write_bytes(store.review_store_path(world).read_bytes())
    store.add_user(wh, "ghost", "ghost-password", "manufacturer", manufacturer_id="M404")
    with TestClient(create_app(wh, background=False, quiet_s=0.0)) as c:
        r = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
        r = c.post("/login", data={"username": "ghost", "password": "ghost-password", "csrf_token": token})
        assert r.status_code == 404 and "Acme" not in r.text and "Rival" not in r.text

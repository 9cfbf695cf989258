"""Dashboard over HTTP (Starlette TestClient): access, CSRF, list filters, evidence, triage and its
audit trail, and the concurrency with a pipeline holding the warehouse's write lock."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dashboard import store
from dashboard.app import create_app
from dashboard.data import Snapshot
from tests.browser.world import (
    ANALYST,
    SIG_ING,
    SIG_P1,
    SIG_P2,
    VIEWER,
    build_warehouse,
)

pytest.importorskip("httpx")
from starlette.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dash") / "pv.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture()
def warehouse(world, tmp_path) -> Path:
    """A fresh copy per test (triage changes it)."""
    path = tmp_path / "pv.duckdb"
    path.write_bytes(world.read_bytes())
    store.review_store_path(path).write_bytes(store.review_store_path(world).read_bytes())
    return path


@pytest.fixture(scope="module")
def reader(world):
    """One logged-in viewer for the read-only tests (the app takes its snapshot once)."""
    with client(world) as c:
        login(c, VIEWER)
        yield c


def client(warehouse: Path) -> TestClient:
    return TestClient(create_app(warehouse, background=False, quiet_s=0.0))


def token(html: str) -> str:
    return CSRF.search(html).group(1)


def login(c: TestClient, who: tuple[str, str]):
    r = c.get("/login")
    r = c.post("/login", data={"username": who[0], "password": who[1], "csrf_token": token(r.text), "next": "/"})
    assert r.status_code == 200 and r.url.path == "/", r.text[:300]
    return r


def history(warehouse: Path, sid: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "SELECT changed_at, from_status, to_status, actor, comment, run_id FROM signal_history "
            "WHERE signal_id = ? ORDER BY changed_at, run_id",
            [sid],
        ).fetchall()
    finally:
        con.close()


def status(warehouse: Path, sid: str) -> str:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("SELECT status FROM signal WHERE signal_id = ?", [sid]).fetchone()[0]
    finally:
        con.close()


class WriterProcess:
    """Another process holding the warehouse open for writing, as the pipeline does while an asset runs."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
                    "sys.stdin.read(); c.close()"
                ),
                str(path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


# ---- access ------------------------------------------------------------------------------------
def test_pages_need_a_login_and_wrong_passwords_are_refused(warehouse):
    with client(warehouse) as c:
        r = c.get(f"/signals/{SIG_P1}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        r = c.get("/login")
        r = c.post("/login", data={"username": ANALYST[0], "password": "wrong-password", "csrf_token": token(r.text)})
        assert r.status_code == 401 and "wrong password" in r.text
        assert "script" not in r.headers["content-security-policy"].replace("script-src 'none'", "")


def test_posts_without_the_session_csrf_token_are_refused(warehouse):
    with client(warehouse) as c:
        c.get("/login")
        r = c.post("/login", data={"username": ANALYST[0], "password": ANALYST[1], "csrf_token": "forged"})
        assert r.status_code == 403
        login(c, ANALYST)
        r = c.post(f"/signals/{SIG_P1}/triage", data={"action": "refute", "comment": "no token"})
        assert r.status_code == 403
    assert store.decisions(warehouse) == [] and status(warehouse, SIG_P1) == "new"


def test_passwords_are_stored_as_argon2_hashes(warehouse):
    con = duckdb.connect(str(store.review_store_path(warehouse)))
    try:
        rows = con.execute("SELECT username, role, password_hash FROM account ORDER BY username").fetchall()
    finally:
        con.close()
    assert [(u, r) for u, r, _ in rows] == [
        ("acme", "manufacturer"),
        ("ada", "admin"),
        ("ana", "analyst"),
        ("vic", "viewer"),
    ]
    assert all(h.startswith("$argon2id$") and ANALYST[1] not in h for _, _, h in rows)
    assert store.authenticate(warehouse, *ANALYST)["role"] == "analyst"
    assert store.authenticate(warehouse, "ana", "nope-nope") is None
    assert store.authenticate(warehouse, "nobody", "whatever1") is None


def test_viewer_reads_but_cannot_triage(warehouse):
    with client(warehouse) as c:
        login(c, VIEWER)
        r = c.get(f"/signals/{SIG_P1}")
        assert r.status_code == 200 and "read-only access" in r.text and 'name="action"' not in r.text
        r = c.post(f"/signals/{SIG_P1}/triage", data={"csrf_token": token(r.text), "action": "refute", "comment": "x"})
        assert r.status_code == 403 and "only analysts can triage" in r.text
    assert store.decisions(warehouse) == [] and status(warehouse, SIG_P1) == "new"


# ---- list and evidence -----------------------------------------------------------------------------
def ids_on(html: str) -> list[str]:
    return re.findall(r'<a href="/signals/(SIG-[0-9A-F]+)">', html)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {SIG_P1, SIG_P2, SIG_ING}),
        ("?product=P1", {SIG_P1}),
        ("?ingredient=atenolol", {SIG_P2, SIG_ING}),
        ("?soc=Cardiac+disorders", {SIG_P2, SIG_ING}),
        ("?pt=lactic", {SIG_P1}),
        ("?rule=evans", {SIG_P1, SIG_P2}),
        ("?method=IC", {SIG_P1, SIG_P2, SIG_ING}),
        ("?method=PRR", {SIG_P1, SIG_P2}),
        ("?batch=L3", {SIG_P1}),
        ("?status=validated", set()),
    ],
)
def test_list_filters(reader, query, expected):
    r = reader.get("/" + query)
    assert r.status_code == 200 and set(ids_on(r.text)) == expected


def test_list_is_in_priority_order_and_new_since_last_review(warehouse):
    with client(warehouse) as c:
        r = login(c, ANALYST)
        # product signals before the ingredient one; among them more serious cases first (P1: 8, P2: 2)
        assert ids_on(r.text) == [SIG_P1, SIG_P2, SIG_ING]
        assert set(ids_on(c.get("/?since=1").text)) == {SIG_P1, SIG_P2, SIG_ING}  # never reviewed: all are new
        c.post("/mark-reviewed", data={"csrf_token": token(r.text)})
        assert ids_on(c.get("/?since=1").text) == []


def test_signal_page_shows_the_evidence_without_identifiers(reader):
    html = reader.get(f"/signals/{SIG_P1}").text
    methods = re.search(r'<table id="methods">.*?</table>', html, re.DOTALL).group(0)
    for name in ("PRR", "ROR", "IC (BCPNN)", "EBGM (MGPS)", "evans", "ema_sdr", "who_umc", "fda_mgps"):
        assert name in methods
    assert "not computed" in methods  # MGPS absent from this warehouse: said so, not shown as 'no'
    assert html.count("<svg") >= 3  # cases per month, time to onset, funnel
    assert 'class="pt-out"' in html and "Above the 95% limit: <strong>L3</strong>" in html
    assert "Traceability record of batch <strong>B3</strong>" in html and "max 31.5" in html
    cases = re.search(r'<table id="cases">.*?</table>', html, re.DOTALL).group(0)
    assert cases.count("<tr>") == 21 + 1
    assert "NARRATIVE" not in html and "secret-" not in html  # no narrative, no patient key
    assert "src=" not in html.replace('src="/static', "") and "<script" not in html  # offline: nothing remote, no JS


def test_ingredient_signal_lists_its_cases(reader):
    html = reader.get(f"/signals/{SIG_ING}").text
    assert reader.get("/signals/SIG-NOPE").status_code == 404
    assert re.search(r'<table id="cases">.*?</table>', html, re.DOTALL).group(0).count("<tr>") == 6 + 1


# ---- triage and audit ------------------------------------------------------------------------------
def test_triage_needs_a_comment_and_appends_to_the_audit_trail(warehouse):
    before = history(warehouse, SIG_P1)
    with client(warehouse) as c:
        login(c, ANALYST)
        page = c.get(f"/signals/{SIG_P1}").text
        r = c.post(f"/signals/{SIG_P1}/triage", data={"csrf_token": token(page), "action": "validate", "comment": "  "})
        assert "write a comment" in r.text and store.decisions(warehouse) == []
        r = c.post(
            f"/signals/{SIG_P1}/triage",
            data={"csrf_token": token(page), "action": "escalate", "comment": "Lot L3 is above the funnel"},
        )
        assert "Recorded: escalate → escalated." in r.text
        audit = re.search(r'<table id="audit">.*?</table>', r.text, re.DOTALL).group(0)
        assert "ana" in audit and "new → escalated" in audit and "Lot L3 is above the funnel" in audit
        c.post(
            f"/signals/{SIG_P1}/triage",
            data={"csrf_token": token(page), "action": "validate", "comment": "Confirmed by the batch review"},
        )
    after = history(warehouse, SIG_P1)
    assert after[: len(before)] == before  # append-only: earlier rows untouched
    added = [row[1:5] for row in after[len(before) :]]
    assert added == [
        ("new", "escalated", "ana", "escalate: Lot L3 is above the funnel"),
        ("escalated", "validated", "ana", "validate: Confirmed by the batch review"),
    ]
    assert status(warehouse, SIG_P1) == "validated"
    # applying again (dashboard thread, pipeline) adds nothing
    con = duckdb.connect(str(warehouse))
    try:
        assert store.apply_review_store(con, warehouse) == 0
    finally:
        con.close()
    assert history(warehouse, SIG_P1) == after


def test_no_code_path_updates_or_deletes_the_audit_trail():
    root = Path(__file__).resolve().parents[2]
    sources = [*Path(root, "dashboard").rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources).lower()
    for table in ("signal_history", "triage_decision", "review_mark", "auth_event"):
        assert not re.search(rf"(update\s+{table}\b|delete\s+from\s+{table}\b|truncate\s+{table}\b)", text), table


# ---- concurrency with the pipeline ------------------------------------------------------------------
def test_pages_and_triage_while_the_pipeline_holds_the_write_lock(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        writer = WriterProcess(warehouse)
        try:
            # reading: served from the snapshot copy, no lock needed
            page = c.get(f"/signals/{SIG_P2}")
            assert page.status_code == 200 and "Bradycardia" in page.text
            # writing: the decision is recorded in the review store and kept pending
            r = c.post(
                f"/signals/{SIG_P2}/triage",
                data={"csrf_token": token(page.text), "action": "monitor", "comment": "Watch next quarter"},
            )
            assert r.status_code == 200 and "pipeline is writing the warehouse" in r.text
            assert "(recorded; reaches the warehouse when the pipeline is idle)" in r.text
            assert re.search(r'id="current-status">under_review<', r.text)
            assert [d["to_status"] for d in store.decisions(warehouse, SIG_P2)] == ["under_review"]
        finally:
            writer.release()
        assert status(warehouse, SIG_P2) == "new"  # the pipeline's lock was respected
        assert c.app.state.dashboard.apply_now() is True  # what the background thread does once it is free
        assert status(warehouse, SIG_P2) == "under_review"
        assert history(warehouse, SIG_P2)[-1][1:5] == ("new", "under_review", "ana", "monitor: Watch next quarter")
        # serving pages leaves no lock behind: the pipeline can open the warehouse for writing
        assert c.get(f"/signals/{SIG_P2}").status_code == 200
        WriterProcess(warehouse).release()


def test_a_snapshot_can_be_taken_while_a_writer_holds_the_warehouse(warehouse):
    writer = WriterProcess(warehouse)
    try:
        ev = Snapshot(warehouse, quiet_s=0).evidence()
        assert set(ev.signals["signal_id"]) == {SIG_P1, SIG_P2, SIG_ING}
    finally:
        writer.release()


def test_snapshot_waits_for_a_quiet_warehouse_and_never_serves_a_torn_copy(warehouse, monkeypatch):
    snap = Snapshot(warehouse, quiet_s=3600)
    assert snap.refresh() is True  # first snapshot: taken at once
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE signal SET status = 'closed' WHERE signal_id = ?", [SIG_ING])
    con.close()
    assert snap.stale and snap.refresh() is False  # changed, not quiet yet: keep serving the old one
    assert snap.evidence().signal(SIG_ING)["status"] == "new"
    # a copy during which the file changes is thrown away
    from dashboard import data

    real = data._signature
    calls = iter(range(1000))
    monkeypatch.setattr(data, "_signature", lambda p: (*real(p), next(calls)))
    assert snap.refresh(force=True) is False and "writing" in snap.last_error
    monkeypatch.setattr(data, "_signature", real)
    assert snap.refresh(force=True) is True and snap.evidence().signal(SIG_ING)["status"] == "closed"


def test_busy_page_when_there_is_no_snapshot_yet(tmp_path):
    missing = tmp_path / "none.duckdb"
    with TestClient(create_app(missing, background=False)) as c:
        store.add_user(missing, *ANALYST, "analyst")
        r = c.get("/login")
        c.post(
            "/login",
            data={"username": ANALYST[0], "password": ANALYST[1], "csrf_token": token(r.text)},
            follow_redirects=False,
        )
        r = c.get("/")
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and "Retry in a moment" in r.text


def test_dashboard_user_cli(tmp_path, monkeypatch):
    from assets.cli import main

    wh = tmp_path / "w.duckdb"
    monkeypatch.setenv("PVTRACE_DASHBOARD_PASSWORD", "a-long-password")
    assert main(["dashboard-user", "add", "--warehouse", str(wh), "--username", "eve", "--role", "viewer"]) == 0
    assert store.authenticate(wh, "eve", "a-long-password")["roles"] == ("viewer",)
    monkeypatch.setenv("PVTRACE_DASHBOARD_PASSWORD", "short")
    assert main(["dashboard-user", "add", "--warehouse", str(wh), "--username", "eve", "--role", "viewer"]) == 2


def test_priority_score_orders_within_a_status_and_unscored_rows_fall_back():
    from dashboard.data import prioritise

    frame = pl.DataFrame(
        {
            "signal_id": ["S-BATCH", "S-PROD", "S-ING", "S-CLOSED", "S-UNSCORED"],
            "status": ["new", "new", "new", "closed", "new"],
            "level": ["batch", "product", "ingredient", "product", "batch"],
            "score": [0.45, 0.20, 0.61, 0.99, None],
            "n_serious": [1, 9, 3, 9, 9],
            "strength": [2.0, 5.0, 1.0, 9.0, 9.0],
            "n11": [5, 40, 12, 50, 50],
        }
    )
    ranked = prioritise(frame)
    # open statuses first, then the score (highest first); a row without a score (register not scored) last
    assert ranked["signal_id"].to_list() == ["S-ING", "S-BATCH", "S-PROD", "S-UNSCORED", "S-CLOSED"]
    assert ranked["priority"].to_list() == [1, 2, 3, 4, 5]

"""The dashboard in a real headless browser: Debian's chromium driven by Playwright (never a downloaded
browser). An analyst logs in, filters the list, opens a signal, escalates it and sees the audit entry;
a viewer cannot triage. Screenshots go to tests/artifacts/ (gitignored; CI keeps them as artefacts)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.browser.world import ACME_USER, ANALYST, RIVAL_USER, SIG_P1, SIG_P9, VIEWER, build_warehouse

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

if not CHROMIUM.exists():
    if os.environ.get("CI"):  # CI installs chromium with apt: a missing browser there is a failure, not a skip
        pytest.fail(f"{CHROMIUM} is missing in CI (apt-get install -y chromium)", pytrace=False)
    pytest.skip(
        f"{CHROMIUM} is not installed (apt-get install -y chromium); browser tests skipped", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from dashboard.app import create_app

    warehouse = tmp_path_factory.mktemp("browser") / "pv.duckdb"
    build_warehouse(warehouse, with_rival=True)
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(warehouse, quiet_s=0.5, apply_interval_s=1),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "dashboard did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
    pw.stop()


def _login(page, base: str, who: tuple[str, str]) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("button[type=submit]")
    page.wait_for_selector("#signal-table")


def test_analyst_filters_opens_triages_and_sees_the_audit_entry(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    _login(page, server, ANALYST)
    assert page.locator("#signal-table tbody tr").count() == 4

    page.select_option("select[name=product]", "P1")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/?*product=P1*")
    rows = page.locator("#signal-table tbody tr")
    assert rows.count() == 1 and SIG_P1 in rows.first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard_list_filtered.png"), full_page=True)

    page.click(f"a[href='/signals/{SIG_P1}']")
    page.wait_for_selector("#methods")
    assert page.locator("svg.chart").count() >= 3
    assert page.locator("svg circle.pt-out").count() >= 1  # lot L3 above the funnel's 95% limit

    page.check("input[name=action][value=escalate]")
    page.fill("textarea[name=comment]", "Lot L3 above the 99.8% funnel limit; to the safety committee")
    page.click("form.triage button[type=submit]")
    page.wait_for_selector("#flash")
    assert "escalate → escalated" in page.inner_text("#flash")
    assert page.inner_text("#current-status") == "escalated"
    first = page.locator("#audit tbody tr").first.inner_text()
    assert "ana" in first and "new → escalated" in first and "to the safety committee" in first
    page.screenshot(path=str(ARTIFACTS / "dashboard_signal_triaged.png"), full_page=True)
    context.close()


def test_viewer_cannot_triage(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    _login(page, server, VIEWER)
    page.goto(f"{server}/signals/{SIG_P1}")
    page.wait_for_selector("#read-only-note")
    assert page.locator("form.triage").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    # even a hand-made POST with the viewer's own valid CSRF token is refused
    r = page.request.post(
        f"{server}/signals/{SIG_P1}/triage", form={"csrf_token": token, "action": "refute", "comment": "viewer trying"}
    )
    assert r.status == 403
    page.goto(f"{server}/signals/{SIG_P1}")
    assert "viewer trying" not in page.inner_text("#audit")
    context.close()


def test_a_cookie_saved_before_logout_no_longer_opens_pages(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    _login(page, server, VIEWER)
    saved = [c for c in context.cookies() if c["name"] == "pvtrace_session"]
    assert saved and saved[0]["httpOnly"] and saved[0]["sameSite"] == "Strict"
    assert "vic" not in saved[0]["value"]
    page.click("header nav form button[type=submit]")  # Log out
    page.wait_for_url("**/login")
    context.close()
    # an attacker's browser with the cookie copied before the logout
    thief = browser.new_context()
    thief.add_cookies(saved)
    page = thief.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{server}/signals/{SIG_P1}")
    assert "/login" in page.url and page.locator("input[name=password]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard_cookie_after_logout.png"), full_page=True)
    thief.close()


def test_lockout_after_repeated_wrong_passwords(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    for _ in range(5):
        page.goto(server + "/login")
        page.fill("input[name=username]", ANALYST[0])
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_selector(".banner.err")
        assert "wrong password" in page.inner_text(".banner.err")
    page.goto(server + "/login")
    page.fill("input[name=username]", ANALYST[0])
    page.fill("input[name=password]", ANALYST[1])  # the right password, too late
    page.click("button[type=submit]")
    page.wait_for_selector(".banner.err")
    assert "temporarily locked" in page.inner_text(".banner.err")
    page.screenshot(path=str(ARTIFACTS / "dashboard_lockout.png"), full_page=True)
    page.goto(server + "/")
    assert "/login" in page.url
    context.close()


def test_manufacturer_portal_shows_only_its_own_company(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(server + "/login")
    page.fill("input[name=username]", RIVAL_USER[0])
    page.fill("input[name=password]", RIVAL_USER[1])
    page.click("button[type=submit]")
    page.wait_for_selector("#portal-signals")
    assert "Rival Labs" in page.inner_text("#portal-title")
    rows = page.locator("#portal-signals tbody tr")
    assert rows.count() == 1 and SIG_P9 in rows.first.inner_text()
    page.click(f"a[href='/portal/signals/{SIG_P9}']")
    page.wait_for_selector("#cases")
    text = page.inner_text("main")
    for other in ("Glucofin", "Cardiol", "Acme", "L3", "secret-", "NARRATIVE", SIG_P1):
        assert other not in text
    page.screenshot(path=str(ARTIFACTS / "dashboard_portal_signal.png"), full_page=True)
    page.goto(f"{server}/portal/batches/B3")  # another company's batch
    assert page.inner_text("#error-detail").startswith("no such batch") and "L3" not in page.inner_text("main")
    page.goto(f"{server}/signals/{SIG_P1}")  # the analysts' pages
    assert "403" in page.inner_text("h1")
    page.goto(server + "/")
    assert page.url.endswith("/portal")
    context.close()
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(server + "/login")
    page.fill("input[name=username]", ACME_USER[0])
    page.fill("input[name=password]", ACME_USER[1])
    page.click("button[type=submit]")
    page.wait_for_selector("#portal-signals")
    assert "Rival" not in page.inner_text("main") and "Rivalex" not in page.inner_text("main")
    assert page.locator("#portal-signals tbody tr").count() == 2
    context.close()

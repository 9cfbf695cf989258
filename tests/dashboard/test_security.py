"""Dashboard security over HTTP (Starlette TestClient): server-side sessions (opaque cookie, revocation on
logout / password change / by an admin, idle and absolute timeouts, rotation), Secure cookies over HTTPS
and behind a trusted proxy, login throttling (per account with backoff, per client), bounded password
hashing, the authentication audit trail, and the admin and manufacturer roles."""

from __future__ import annotations

import base64
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from argon2.exceptions import VerifyMismatchError

from dashboard import auth, store
from dashboard.app import create_app
from tests.browser.world import ACME_USER, ADMIN, ANALYST, SIG_P1, VIEWER, build_warehouse

pytest.importorskip("httpx")
from starlette.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sec") / "pv.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture()
def warehouse(world, tmp_path) -> Path:
    path = tmp_path / "pv.duckdb"
    path.write_bytes(world.read_bytes())
    store.review_store_path(path).write_bytes(store.review_store_path(world).read_bytes())
    return path


def client(warehouse: Path, **kw) -> TestClient:
    host = kw.pop("client_host", "127.0.0.1")
    base = kw.pop("base_url", "http://testserver")
    return TestClient(create_app(warehouse, background=False, quiet_s=0.0, **kw), client=(host, 50000), base_url=base)


def token(html: str) -> str:
    return CSRF.search(html).group(1)


def login(c: TestClient, who: tuple[str, str], expect: int = 200):
    r = c.get("/login")
    r = c.post("/login", data={"username": who[0], "password": who[1], "csrf_token": token(r.text), "next": "/"})
    assert r.status_code == expect, r.text[:300]
    return r


def events(warehouse: Path, kind: str | None = None, username: str | None = None) -> list[dict]:
    out = auth.audit_events(warehouse, username=username, limit=10_000)
    return [e for e in out if kind is None or e["kind"] == kind]


def shift_clock(monkeypatch, seconds: float) -> None:
    """Move the review store's clock (sessions, lockouts) forward."""
    real = store._now
    monkeypatch.setattr(auth, "_now", lambda: real() + timedelta(seconds=seconds))


# ---- sessions ------------------------------------------------------------------------------------
def test_the_cookie_is_an_opaque_random_token_and_the_store_keeps_only_its_hash(warehouse):
    with client(warehouse) as c:
        r = c.get("/login")
        r = c.post(
            "/login",
            data={"username": ANALYST[0], "password": ANALYST[1], "csrf_token": token(r.text)},
            follow_redirects=False,
        )
        set_cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(auth.COOKIE + "=")][0]
        value = set_cookie.split(";")[0].split("=", 1)[1]
        attrs = set_cookie.lower()
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert "secure" not in attrs  # plain http on loopback
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)  # 32 random bytes, nothing else
        decoded = base64.urlsafe_b64decode(value + "=")
        # 32 random bytes: no user name, no CSRF token, no JSON payload (a random byte may be "{": ~12% of
        # tokens hold one, so only a leading brace would say JSON)
        assert len(decoded) == 32 and b"ana" not in decoded and b"csrf" not in decoded
        assert not decoded.startswith(b"{")
        page = c.get("/").text
        assert token(page) not in set_cookie  # the CSRF token is not in the cookie
    con = duckdb.connect(str(store.review_store_path(warehouse)), read_only=True)
    try:
        rows = con.execute("SELECT token_hash, username FROM web_session").fetchall()
    finally:
        con.close()
    assert rows == [(auth.token_hash(value), "ana")] and value not in str(rows)


def test_a_cookie_saved_before_logout_no_longer_works(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        saved = c.cookies.get(auth.COOKIE)
        page = c.get(f"/signals/{SIG_P1}").text
        csrf = token(page)
        c.post("/logout", data={"csrf_token": csrf})
    with client(warehouse) as thief:
        thief.cookies.set(auth.COOKIE, saved)
        r = thief.get(f"/signals/{SIG_P1}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        r = thief.post(
            f"/signals/{SIG_P1}/triage",
            data={"csrf_token": csrf, "action": "refute", "comment": "replayed after logout"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/login")  # no session, no decision
    assert store.decisions(warehouse) == []
    assert [e["kind"] for e in events(warehouse, username="ana")][:2] == ["logout", "login_ok"]


def test_login_rotates_the_session(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        first = c.cookies.get(auth.COOKIE)
        login(c, VIEWER)  # the same browser logs in again (as someone else)
        second = c.cookies.get(auth.COOKIE)
        assert second != first
        assert "vic" in c.get("/").text
    with client(warehouse) as other:
        other.cookies.set(auth.COOKIE, first)
        assert other.get("/", follow_redirects=False).status_code == 303


def test_idle_and_absolute_timeouts(warehouse, monkeypatch):
    policy = auth.SessionPolicy(idle_s=600, absolute_s=3600, touch_every_s=0)
    with client(warehouse, session_policy=policy) as c:
        login(c, ANALYST)
        shift_clock(monkeypatch, 500)
        assert c.get("/", follow_redirects=False).status_code == 200  # active: idle clock restarts
        shift_clock(monkeypatch, 1000)
        assert c.get("/", follow_redirects=False).status_code == 200
        shift_clock(monkeypatch, 1700)  # 700 s idle
        assert c.get("/", follow_redirects=False).status_code == 303
        monkeypatch.undo()
        login(c, ANALYST)
        for t in range(500, 3600, 500):  # active all along ...
            shift_clock(monkeypatch, t)
            assert c.get("/", follow_redirects=False).status_code == 200
        shift_clock(monkeypatch, 3700)  # ... but past the absolute lifetime
        assert c.get("/", follow_redirects=False).status_code == 303
    con = duckdb.connect(str(store.review_store_path(warehouse)), read_only=True)
    try:
        reasons = [r[0] for r in con.execute("SELECT revoked_reason FROM web_session ORDER BY created_at").fetchall()]
    finally:
        con.close()
    assert reasons == ["idle timeout", "absolute timeout"]


def test_a_password_change_ends_every_other_session(warehouse):
    with client(warehouse) as laptop, client(warehouse) as phone:
        login(laptop, ANALYST)
        login(phone, ANALYST)
        page = laptop.get("/account/password").text
        r = laptop.post(
            "/account/password",
            data={
                "csrf_token": token(page),
                "current": "wrong-wrong",
                "new": "new-password-1",
                "again": "new-password-1",
            },
        )
        assert r.status_code == 401
        r = laptop.post(
            "/account/password",
            data={"csrf_token": token(page), "current": ANALYST[1], "new": "new-password-1", "again": "new-password-1"},
        )
        assert r.status_code == 200 and "Password changed" in r.text
        assert laptop.get("/", follow_redirects=False).status_code == 200  # rotated, still in
        assert phone.get("/", follow_redirects=False).status_code == 303  # the other session ended
    assert store.authenticate(warehouse, ANALYST[0], "new-password-1") is not None
    assert store.authenticate(warehouse, *ANALYST) is None
    assert "2 session(s) revoked" in events(warehouse, "password_changed")[0]["detail"]


def test_an_admin_revokes_disables_and_unlocks(warehouse):
    with client(warehouse) as admin, client(warehouse) as ana:
        login(ana, ANALYST)
        r = login(admin, ADMIN)
        assert r.url.path == "/admin" and 'id="account-ana"' in r.text
        csrf = token(r.text)
        admin.post("/admin/accounts/action", data={"csrf_token": csrf, "username": "ana", "action": "revoke"})
        assert ana.get("/", follow_redirects=False).status_code == 303
        login(ana, ANALYST)
        admin.post("/admin/accounts/action", data={"csrf_token": csrf, "username": "ana", "action": "disable"})
        assert ana.get("/", follow_redirects=False).status_code == 303
        r = login(ana, ANALYST, expect=401)
        admin.post("/admin/accounts/action", data={"csrf_token": csrf, "username": "ana", "action": "enable"})
        login(ana, ANALYST)
        r = admin.post("/admin/accounts/action", data={"csrf_token": csrf, "username": "ada", "action": "disable"})
        assert r.status_code == 400 and "your own account" in r.text
    kinds = [e["kind"] for e in events(warehouse, username="ana")]
    assert {"sessions_revoked", "account_disabled", "account_enabled", "login_failed"} <= set(kinds)
    assert all(e["actor"] == "ada" for e in events(warehouse, "account_disabled"))


# ---- Secure cookies --------------------------------------------------------------------------------
def _session_cookie_header(c: TestClient, who) -> str:
    r = c.get("/login")
    # a Secure cookie is not sent back over the test's plain-http leg: send the login CSRF cookie by hand
    csrf_cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(auth.LOGIN_CSRF_COOKIE + "=")]
    c.cookies.clear()
    r = c.post(
        "/login",
        data={"username": who[0], "password": who[1], "csrf_token": token(r.text)},
        headers={"cookie": csrf_cookie[0].split(";")[0]},
        follow_redirects=False,
    )
    assert r.status_code == 303
    return [h for h in r.headers.get_list("set-cookie") if h.startswith(auth.COOKIE + "=")][0].lower()


def test_cookies_are_secure_when_served_over_tls(warehouse):
    with client(warehouse, secure_cookies=True, base_url="https://testserver") as c:
        assert "; secure" in _session_cookie_header(c, ANALYST)
        assert c.get("/login").headers["strict-transport-security"].startswith("max-age=")


def test_forwarded_https_is_believed_only_from_a_trusted_proxy(warehouse):
    https = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    with client(warehouse, trusted_proxies=["127.0.0.1"], client_host="127.0.0.1") as via_proxy:
        via_proxy.headers.update(https)
        assert "; secure" in _session_cookie_header(via_proxy, ANALYST)
    assert events(warehouse, "login_ok")[0]["client"] == "203.0.113.7"  # the real client, for throttling
    with client(warehouse, trusted_proxies=["127.0.0.1"], client_host="127.0.0.9") as direct:
        direct.headers.update(https)  # not from the proxy: spoofed headers are ignored
        assert "; secure" not in _session_cookie_header(direct, ANALYST)
    assert events(warehouse, "login_ok")[0]["client"] == "127.0.0.9"
    with client(warehouse, client_host="127.0.0.1") as no_proxy:  # no --trust-proxy: never believed
        no_proxy.headers.update(https)
        assert "; secure" not in _session_cookie_header(no_proxy, ANALYST)


# ---- login protection ------------------------------------------------------------------------------
def test_lock_seconds_back_off_and_cap():
    p = auth.LoginPolicy(lock_after=5, lock_base_s=60, lock_max_s=3600)
    assert [auth.lock_seconds(n, p) for n in (0, 4, 5, 6, 7, 8, 20)] == [0, 0, 60, 120, 240, 480, 3600]


def test_the_account_locks_after_five_failures_even_for_the_right_password(warehouse, monkeypatch):
    with client(warehouse) as c:
        for _ in range(5):
            r = c.post(
                "/login", data={"username": "ana", "password": "guess-guess", "csrf_token": token(c.get("/login").text)}
            )
            assert r.status_code == 401
        r = c.post(
            "/login", data={"username": "ana", "password": ANALYST[1], "csrf_token": token(c.get("/login").text)}
        )
        assert r.status_code == 429 and "temporarily locked" in r.text and 1 <= int(r.headers["retry-after"]) <= 61
        assert c.get("/", follow_redirects=False).status_code == 303
        shift_clock(monkeypatch, 61)  # the first lock lasts 60 s
        login(c, ANALYST)
    kinds = [e["kind"] for e in reversed(events(warehouse, username="ana"))]
    assert kinds[-7:] == ["login_failed"] * 5 + ["lockout", "login_ok"]
    lock = events(warehouse, "lockout")[0]
    assert lock["client"] == "127.0.0.1" and "locked for 60 s after 5" in lock["detail"]


def test_unknown_user_names_lock_the_same_way(warehouse):
    """No oracle: a name without an account answers and locks exactly like a real one."""
    with client(warehouse) as c:
        answers = {}
        for name in ("ana", "nobody-here"):
            codes = []
            for _ in range(6):
                r = c.post(
                    "/login",
                    data={"username": name, "password": "guess-guess", "csrf_token": token(c.get("/login").text)},
                )
                codes.append((r.status_code, "locked" in r.text))
            answers[name] = codes
        assert answers["ana"] == answers["nobody-here"] == [(401, False)] * 5 + [(429, True)]


def test_a_client_that_keeps_failing_is_throttled(warehouse):
    policy = auth.LoginPolicy(client_limit="4 per minute", lock_after=100)
    with client(warehouse, login_policy=policy, client_host="127.0.0.5") as c:
        for i in range(4):  # different user names: only the per-client limit applies
            r = c.post(
                "/login", data={"username": f"u{i}", "password": "x" * 8, "csrf_token": token(c.get("/login").text)}
            )
            assert r.status_code == 401
        for _ in range(3):
            r = c.post(
                "/login", data={"username": "ana", "password": ANALYST[1], "csrf_token": token(c.get("/login").text)}
            )
            assert r.status_code == 429 and "from your address" in r.text and int(r.headers["retry-after"]) >= 1
    with client(warehouse, login_policy=policy, client_host="127.0.0.6") as other:
        login(other, ANALYST)  # another address is not affected
    throttled = events(warehouse, "client_throttled")
    assert len(throttled) == 1 and throttled[0]["client"] == "127.0.0.5"  # one audit row per window


def test_every_login_is_in_the_audit_trail_and_an_admin_can_read_it(warehouse):
    with client(warehouse) as c:
        login(c, ANALYST)
        c.post("/login", data={"username": "vic", "password": "nope-nope", "csrf_token": token(c.get("/login").text)})
    with client(warehouse) as admin:
        login(admin, ADMIN)
        page = admin.get("/admin/audit").text
    table = re.search(r'<table id="auth-events">.*?</table>', page, re.DOTALL).group(0)
    assert "login_failed" in table and "vic" in table and "login_ok" in table and "ana" in table
    assert "nope-nope" not in table  # a password is never recorded


def test_password_hashing_is_bounded(warehouse, monkeypatch):
    """64 parallel logins: never more than HASH_SLOTS argon2 computations at once (64 MiB each)."""
    active, peak, lock = [0], [0], threading.Lock()
    real = store._hasher

    class CountingHasher:
        def hash(self, password):
            return real.hash(password)

        def verify(self, digest, password):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                time.sleep(0.2)  # stands in for argon2's work (the real one takes ~0.1-1 s here)
                raise VerifyMismatchError("wrong password")
            finally:
                with lock:
                    active[0] -= 1

    monkeypatch.setattr(store, "_hasher", CountingHasher())
    threads = [threading.Thread(target=store.authenticate, args=(warehouse, "ana", f"guess-{i}")) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == store.HASH_SLOTS
    # with every slot taken, a check gives up after the wait instead of piling up
    with store.hash_slot(), store.hash_slot(), pytest.raises(store.HashBusy), store.hash_slot(wait_s=0.05):
        pass


# ---- roles -------------------------------------------------------------------------------------------
def test_admin_manages_accounts_but_does_not_triage(warehouse):
    with client(warehouse) as admin:
        r = login(admin, ADMIN)
        csrf = token(r.text)
        assert admin.get("/", follow_redirects=False).headers["location"] == "/admin"
        assert admin.get(f"/signals/{SIG_P1}").status_code == 403
        r = admin.post(f"/signals/{SIG_P1}/triage", data={"csrf_token": csrf, "action": "refute", "comment": "admin"})
        assert r.status_code == 403
        r = admin.post(
            "/admin/accounts",
            data={
                "csrf_token": csrf,
                "username": "mo",
                "password": "mo-password",
                "role_manufacturer": "1",
                "manufacturer_id": "M1",
            },
        )
        assert r.status_code == 200 and "Account mo created" in r.text
        r = admin.post(
            "/admin/accounts",
            data={
                "csrf_token": csrf,
                "username": "bad",
                "password": "bad-password",
                "role_manufacturer": "1",
                "role_analyst": "1",
                "manufacturer_id": "M1",
            },
        )
        assert r.status_code == 400 and "cannot be combined" in r.text
        # admin + analyst may triage
        admin.post(
            "/admin/accounts/action",
            data={"csrf_token": csrf, "username": "ada", "action": "roles", "role_admin": "1", "role_analyst": "1"},
        )
        login(admin, ADMIN)  # own roles changed: sessions ended, log in again
        page = admin.get(f"/signals/{SIG_P1}").text
        r = admin.post(
            f"/signals/{SIG_P1}/triage",
            data={"csrf_token": token(page), "action": "monitor", "comment": "admin+analyst"},
        )
        assert r.status_code == 200 and "Recorded: monitor" in r.text
    assert store.get_user(warehouse, "mo")["manufacturer_id"] == "M1"
    assert store.decisions(warehouse)[0]["actor"] == "ada"


def test_non_admins_cannot_manage_accounts(warehouse):
    for who in (ANALYST, VIEWER, ACME_USER):
        with client(warehouse) as c:
            r = login(c, who)
            csrf = token(r.text)
            assert c.get("/admin").status_code == 403 and c.get("/admin/audit").status_code == 403
            r = c.post(
                "/admin/accounts", data={"csrf_token": csrf, "username": "x", "password": "x" * 10, "role_admin": "1"}
            )
            assert r.status_code == 403
            r = c.post(
                "/admin/accounts/action",
                data={"csrf_token": csrf, "username": who[0], "action": "roles", "role_admin": "1"},
            )
            assert r.status_code == 403
    assert store.get_user(warehouse, "x") is None and "admin" not in store.get_user(warehouse, "ana")["roles"]


def test_manufacturer_sees_only_the_portal(warehouse):
    with client(warehouse) as c:
        r = login(c, ACME_USER)
        assert r.url.path == "/portal" and "Acme Pharma" in r.text
        assert c.get("/", follow_redirects=False).headers["location"] == "/portal"
        assert c.get(f"/signals/{SIG_P1}").status_code == 403
        page = c.get("/portal").text
        r = c.post(f"/signals/{SIG_P1}/triage", data={"csrf_token": token(page), "action": "refute", "comment": "m"})
        assert r.status_code == 403
    for who in (ANALYST, VIEWER, ADMIN):
        with client(warehouse) as c:
            login(c, who)
            assert c.get("/portal").status_code == 403


def test_dashboard_user_cli_roles(tmp_path, monkeypatch):
    from assets.cli import main

    wh = tmp_path / "w.duckdb"
    monkeypatch.setenv("PVTRACE_DASHBOARD_PASSWORD", "a-long-password")
    args = ["dashboard-user", "add", "--warehouse", str(wh), "--username", "m2"]
    assert main([*args, "--role", "manufacturer", "--manufacturer-id", "M2"]) == 0
    assert store.get_user(wh, "m2")["manufacturer_id"] == "M2"
    assert main([*args, "--role", "manufacturer"]) == 2  # which company?
    assert main([*args, "--role", "analyst", "--manufacturer-id", "M2"]) == 2
    assert main([*args, "--role", "manufacturer,analyst", "--manufacturer-id", "M2"]) == 2
    assert main([*args, "--role", "root"]) == 2
    assert main(["dashboard-user", "add", "--warehouse", str(wh), "--username", "boss", "--role", "admin,analyst"]) == 0
    assert store.get_user(wh, "boss")["roles"] == ("admin", "analyst")
    assert [e["actor"] for e in events(wh, "account_saved")] == ["cli:dashboard-user"] * 2


def test_the_review_store_is_private(warehouse, tmp_path):
    fresh = tmp_path / "fresh" / "pv.duckdb"
    fresh.parent.mkdir()
    fresh.write_bytes(warehouse.read_bytes())
    with client(fresh):
        store.add_user(fresh, "someone", "some-password", "viewer")
    for p in (store.review_store_path(fresh), Path(str(fresh) + ".dashboard-snapshot.duckdb")):
        assert p.stat().st_mode & 0o077 == 0, oct(p.stat().st_mode)

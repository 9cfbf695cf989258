"""The analyst dashboard: a local, server-rendered Starlette app over the warehouse.

    pvtrace dashboard --warehouse output/pvtrace.duckdb --host 127.0.0.1 --port 8050

Pages: the signal list (filters, priority order, "new since my last review"), a signal's
evidence (every method's statistics beside the rule that fired, cases per month, the batch
funnel plot, time to onset, de-identified cases, batch traceability), and triage (validate /
refute / monitor / escalate with a required comment) with its audit trail.

Concurrency with the pipeline (DuckDB: one writing process, and readers block writers too):

* reading — pages never open the warehouse; they read a private copy of it
  (:class:`dashboard.data.Snapshot`), refreshed when the warehouse has changed and been
  quiet. While the pipeline writes, the last good snapshot is served with a banner; if there is
  none yet, a "pipeline is writing, retry in a moment" page (HTTP 503, Retry-After).
* writing — accounts and decisions go to the dashboard's own ``<warehouse>.review.duckdb``
  (:mod:`dashboard.store`), so a decision is recorded at once even mid-run. The
  dashboard then applies it to the warehouse (``signal_history`` + ``signal.status``) through a
  write connection held for milliseconds, retried for two seconds; if the pipeline still holds
  the file, the decision stays pending and a background thread applies it once the warehouse has
  been quiet. The pipeline may also apply pending decisions itself
  (:func:`dashboard.store.apply_review_store`). Applying is idempotent (keyed by run_id).

Access (:mod:`dashboard.auth`): local accounts (``pvtrace dashboard-user add`` or the admin page),
argon2 password hashes, server-side sessions (the cookie is an opaque random token, ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS or behind a trusted proxy that says HTTPS), idle and
absolute timeouts, revocation on logout / password change / by an admin, login throttling per
account and per client, a per-session CSRF token checked on every POST (a double-submit cookie on
the login form). Roles: ``analyst`` triages, ``viewer`` reads, ``admin`` manages accounts and reads
the audit trail, ``manufacturer`` sees only its own company's portal (:mod:`dashboard.portal`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import jinja2
import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dashboard import auth, charts, store
from dashboard.data import (
    FILTERS,
    RULE_METHOD,
    Snapshot,
    SnapshotUnavailable,
    facet_values,
    filter_signals,
)
from reports.rendering import fmt_ci, fmt_num
from warehouse.files import restrict_umask
from warehouse.stores.signal_register import STATUSES

log = logging.getLogger("pvtrace.dashboard")
HERE = Path(__file__).parent
PAGE_SIZE = 100

# every method's statistics and the rule it feeds (thresholds: signals.rules.RuleThresholds defaults)
METHOD_ROWS = [
    ("PRR", "prr", ("prr_lo95", "prr_hi95"), "evans", "PRR ≥ 2, χ² ≥ 4, n ≥ 3 (Evans 2001)"),
    (
        "ROR",
        "ror",
        ("ror_lo95", "ror_hi95"),
        "ema_sdr",
        "ROR 95% lower bound > 1, n ≥ 5 (3 if additional monitoring) (EMA)",
    ),
    ("IC (BCPNN)", "ic", ("ic025", "ic975"), "who_umc", "IC025 > 0 (WHO-UMC)"),
    ("EBGM (MGPS)", "ebgm", ("eb05", "eb95"), "fda_mgps", "EB05 ≥ 2 (FDA)"),
]
ACTION_LABELS = {
    "validate": "Validate — a real safety signal",
    "refute": "Refute — not a signal",
    "monitor": "Monitor — keep under review",
    "escalate": "Escalate — to the safety committee / QPPV",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    env.filters["dt"] = lambda v: (
        v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else ("–" if v is None else str(v))
    )
    return env


class Dashboard:
    """State shared by the requests: the warehouse, its snapshot, the review store, the applier."""

    def __init__(
        self,
        warehouse: str | Path,
        *,
        quiet_s: float = 2.0,
        apply_interval_s: float = 5.0,
        session_policy: auth.SessionPolicy | None = None,
        login_policy: auth.LoginPolicy | None = None,
        secure_cookies: bool = False,
    ):
        self.warehouse = Path(warehouse)
        self.sessions = session_policy or auth.SessionPolicy()
        self.guard = auth.LoginGuard(self.warehouse, login_policy)
        self.secure_cookies = secure_cookies  # always Secure (served over TLS); else only when the request is https
        self.flash: dict[str, str] = {}  # per session (token hash): one message for the next page
        self.snapshot = Snapshot(self.warehouse, quiet_s=quiet_s)
        self.apply_interval_s = apply_interval_s
        self.applied: set[str] = set()  # decision ids known to be in the warehouse
        self.env = _environment()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- decisions -> warehouse ----
    def pending(self, journal: list[dict] | None = None) -> list[dict]:
        journal = store.decisions(self.warehouse) if journal is None else journal
        in_snapshot = set()
        with contextlib.suppress(SnapshotUnavailable):
            ev = self.snapshot._evidence
            if ev is not None and ev.history.height:
                in_snapshot = set(ev.history["run_id"].drop_nulls().to_list())
        return [
            d
            for d in journal
            if d["decision_id"] not in self.applied and store.DECISION_RUN_PREFIX + d["decision_id"] not in in_snapshot
        ]

    def apply_now(self, timeout_s: float = 2.0) -> bool:
        """Apply pending decisions to the warehouse; False if the pipeline holds it."""
        journal = store.decisions(self.warehouse)
        if not self.pending(journal):
            return True
        try:
            store.apply_pending_to_warehouse(self.warehouse, timeout_s=timeout_s)
        except store.StoreBusy as exc:
            log.info("warehouse busy, decision kept pending: %s", exc)
            return False
        self.applied.update(d["decision_id"] for d in journal)
        self.snapshot.invalidate()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.apply_interval_s):
            try:
                if self.pending() and self.snapshot.quiet():
                    self.apply_now(timeout_s=0.5)
                self.snapshot.refresh()
            except Exception:  # keep serving; the next tick retries
                log.exception("background refresh failed")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pvtrace-dashboard-applier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ---- request helpers ----------------------------------------------------------------------
def _dash(request: Request) -> Dashboard:
    return request.app.state.dashboard


def _client(request: Request) -> str:
    """The client's address (the real one when a trusted proxy forwarded it; see ``trusted_proxies``)."""
    return request.client.host if request.client else "unknown"


def _session(request: Request) -> dict | None:
    """The request's live server-side session (looked up once per request), or None."""
    if not hasattr(request.state, "session"):
        dash = _dash(request)
        request.state.session = auth.load_session(dash.warehouse, request.cookies.get(auth.COOKIE), dash.sessions)
    return request.state.session


def _csrf(request: Request) -> str:
    """The CSRF token forms carry: the session's; before login, the login cookie's (double submit)."""
    session = _session(request)
    if session:
        return session["csrf"]
    if not hasattr(request.state, "login_csrf"):
        request.state.login_csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    return request.state.login_csrf


def _check_csrf(request: Request, form) -> None:
    sent = form.get("csrf_token") or ""
    session = _session(request)
    good = session["csrf"] if session else (request.cookies.get(auth.LOGIN_CSRF_COOKIE) or "")
    if not good or not hmac.compare_digest(str(sent), str(good)):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


def _user(request: Request) -> dict | None:
    """The logged-in account, or None (no session; or the account was removed or disabled: session revoked)."""
    if hasattr(request.state, "user"):
        return request.state.user
    session = _session(request)
    user = None
    if session:
        dash = _dash(request)
        user = store.get_user(dash.warehouse, session["username"])
        if user is None or user["disabled"]:
            auth.revoke(dash.warehouse, request.cookies.get(auth.COOKIE), "account removed or disabled")
            request.state.session = None
            user = None
    request.state.user = user
    return user


def _is_https(request: Request) -> bool:
    return _dash(request).secure_cookies or request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )


def _flash(request: Request, text: str) -> None:
    session = _session(request)
    if session:
        _dash(request).flash[session["token_hash"]] = text


def _render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    dash = _dash(request)
    session = _session(request)
    flash = dash.flash.pop(session["token_hash"], None) if session else None
    csrf = _csrf(request)
    user = context.pop("user", None)
    html = dash.env.get_template(template).render(
        request=request,
        csrf_token=csrf,
        user=user,
        perms=(user or {}).get("permissions", set()),
        flash=flash,
        snapshot=dash.snapshot,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if not session and request.cookies.get(auth.LOGIN_CSRF_COOKIE) != csrf:
        _set_cookie(request, response, auth.LOGIN_CSRF_COOKIE, csrf, 3600)
    return response


def _login_redirect(request: Request) -> RedirectResponse:
    response = RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
    if request.cookies.get(auth.COOKIE):  # a dead session's cookie: drop it
        response.delete_cookie(auth.COOKIE, path="/")
    return response


def _home(user: dict) -> str:
    """Where an account lands: the signal list, else its portal, else account management."""
    perms = user["permissions"]
    return "/" if "read_signals" in perms else "/portal" if "portal" in perms else "/admin"


def _require(request: Request, permission: str) -> dict | Response:
    """The user if logged in with ``permission``; else a redirect to the login (no session) or a 403."""
    user = _user(request)
    if user is None:
        return _login_redirect(request)
    if permission not in user["permissions"]:
        raise HTTPException(403, f"your role ({user['role']}) does not allow this page")
    return user


def _busy(request: Request, user, exc: Exception) -> HTMLResponse:
    resp = _render(request, "busy.html", status_code=503, user=user, reason=str(exc))
    resp.headers["Retry-After"] = "5"
    return resp


def _effective_status(signals: pl.DataFrame, pending: list[dict]) -> pl.DataFrame:
    """Overlay decisions not yet in the snapshot (latest per signal) on the snapshot's statuses."""
    if not pending:
        return signals.with_columns(pl.lit(False).alias("pending"))
    latest = {}
    for d in sorted(pending, key=lambda d: d["decided_at"]):
        latest[d["signal_id"]] = d["to_status"]
    return signals.with_columns(
        pl.col("signal_id").replace_strict(latest, default=pl.col("status"), return_dtype=pl.String).alias("status"),
        pl.col("signal_id").is_in(list(latest)).alias("pending"),
    )


# ---- pages --------------------------------------------------------------------------------
def _safe_next(nxt: str) -> str:
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/"


def _refused(request: Request, refusal: auth.Refusal, nxt: str) -> Response:
    resp = _render(request, "login.html", status_code=refusal.status, next=nxt, error=refusal.message)
    resp.headers["Retry-After"] = str(refusal.retry_after)
    return resp


async def login_page(request: Request) -> Response:
    if request.method == "GET":
        return _render(request, "login.html", next=_safe_next(request.query_params.get("next", "/")), error=None)
    form = await request.form()
    _check_csrf(request, form)
    dash = _dash(request)
    username = str(form.get("username", ""))[: store.USERNAME_MAX * 2].strip()
    password = str(form.get("password", ""))[:1024]
    nxt = _safe_next(str(form.get("next") or "/"))
    client = _client(request)
    refusal = await run_in_threadpool(dash.guard.check, username, client)
    if refusal:
        return _refused(request, refusal, nxt)
    try:
        user = await run_in_threadpool(store.authenticate, dash.warehouse, username, password)
    except store.HashBusy as exc:
        return _refused(request, auth.Refusal(503, str(exc), 2), nxt)
    if user is None:
        await run_in_threadpool(dash.guard.failed, username, client)
        return _render(request, "login.html", status_code=401, next=nxt, error="Unknown user or wrong password.")
    old = request.cookies.get(auth.COOKIE)
    if old:  # rotation: whatever session the browser had ends here
        await run_in_threadpool(auth.revoke, dash.warehouse, old, "replaced by a new login")
    token, _ = await run_in_threadpool(auth.new_session, dash.warehouse, user["username"], client)
    await run_in_threadpool(dash.guard.succeeded, user["username"], client)
    target = nxt if nxt != "/" or "read_signals" in user["permissions"] else _home(user)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, auth.COOKIE, token, int(dash.sessions.absolute_s))
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    _check_csrf(request, form)
    dash = _dash(request)
    session = _session(request)
    if session:
        await run_in_threadpool(auth.revoke, dash.warehouse, request.cookies.get(auth.COOKIE), "logout")
        await run_in_threadpool(auth.record, dash.warehouse, "logout", session["username"], client=_client(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


async def change_password(request: Request) -> Response:
    user = _user(request)
    if user is None:
        return _login_redirect(request)
    if request.method == "GET":
        return _render(request, "password.html", user=user, error=None)
    form = await request.form()
    _check_csrf(request, form)
    dash = _dash(request)
    client = _client(request)
    current, new, again = (str(form.get(k, ""))[:1024] for k in ("current", "new", "again"))
    refusal = await run_in_threadpool(dash.guard.check, user["username"], client)
    if refusal:
        return _render(request, "password.html", status_code=refusal.status, user=user, error=refusal.message)
    try:
        ok = await run_in_threadpool(store.authenticate, dash.warehouse, user["username"], current)
    except store.HashBusy as exc:
        return _render(request, "password.html", status_code=503, user=user, error=str(exc))
    if ok is None:
        await run_in_threadpool(dash.guard.failed, user["username"], client)
        return _render(request, "password.html", status_code=401, user=user, error="The current password is wrong.")
    if new != again:
        return _render(request, "password.html", status_code=400, user=user, error="The new passwords differ.")
    try:
        await run_in_threadpool(store.set_password, dash.warehouse, user["username"], new)
    except ValueError as exc:
        return _render(request, "password.html", status_code=400, user=user, error=str(exc))
    n = await run_in_threadpool(auth.revoke_user_sessions, dash.warehouse, user["username"], "password changed")
    await run_in_threadpool(
        auth.record,
        dash.warehouse,
        "password_changed",
        user["username"],
        actor=user["username"],
        client=client,
        detail=f"{n} session(s) revoked",
    )
    token, _ = await run_in_threadpool(auth.new_session, dash.warehouse, user["username"], client)
    dash.flash[auth.token_hash(token)] = "Password changed. Every other session of your account has been ended."
    response = RedirectResponse(_home(user), status_code=303)
    _set_cookie(request, response, auth.COOKIE, token, int(dash.sessions.absolute_s))
    return response


def signal_list(request: Request) -> Response:
    user = _user(request)
    if user is None:
        return _login_redirect(request)
    if "read_signals" not in user["permissions"]:
        return RedirectResponse(_home(user), status_code=303)
    dash = _dash(request)
    try:
        ev = dash.snapshot.evidence()
    except SnapshotUnavailable as exc:
        return _busy(request, user, exc)
    f = {k: request.query_params.get(k, "") for k in FILTERS}
    last = store.last_review(dash.warehouse, user["username"])
    signals = _effective_status(ev.signals, dash.pending())
    shown = filter_signals(signals, f, last)
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    rows = shown.slice((page - 1) * PAGE_SIZE, PAGE_SIZE).to_dicts()
    query = {k: v for k, v in f.items() if v}
    return _render(
        request,
        "list.html",
        user=user,
        rows=rows,
        total=signals.height,
        matched=shown.height,
        page=page,
        pages=max(1, -(-shown.height // PAGE_SIZE)),
        f=f,
        query=urlencode(query),
        facets=facet_values(ev.signals),
        products=ev.products,
        last_review=last,
        rule_method=RULE_METHOD,
        counts=signals.group_by("status").len().rows(),
    )


async def mark_reviewed(request: Request) -> Response:
    user = _require(request, "read_signals")
    if isinstance(user, Response):
        return user
    form = await request.form()
    _check_csrf(request, form)
    await run_in_threadpool(store.mark_reviewed, _dash(request).warehouse, user["username"])
    _flash(request, "List marked as reviewed: “new since last review” now counts from this moment.")
    return RedirectResponse("/", status_code=303)


def _method_rows(sig: dict, score: dict | None, figures: dict) -> list[dict]:
    src = {**(score or {}), **{k: v for k, v in figures.items() if v is not None}}
    fired = set(sig.get("methods") or [])
    rows = []
    for name, est, (lo, hi), rule, text in METHOD_ROWS:
        rows.append(
            {
                "method": name,
                "estimate": src.get(est),
                "lo": src.get(lo),
                "hi": src.get(hi),
                "rule": rule,
                "criterion": text,
                "fired": rule in fired,
                "computed": src.get(est) is not None,
            }
        )
    for rule in sorted(fired - {r[3] for r in METHOD_ROWS}):  # e.g. batch-level tests
        rows.append(
            {
                "method": rule,
                "estimate": None,
                "lo": None,
                "hi": None,
                "rule": rule,
                "criterion": "see figures",
                "fired": True,
                "computed": True,
            }
        )
    return rows


def _traceability(dash: Dashboard, batch_ids: list[str], limit: int = 5) -> list[dict]:
    """The batch traceability record (``warehouse.linkage.batch_record``) of the batches most linked to the signal,
    read from the snapshot; an error is shown in place of a record, never instead of the page."""
    try:
        from warehouse.linkage.batch_record import batch_traceability_record
    except ImportError:  # pragma: no cover - the summary table from signal_batches still shows
        return []
    import duckdb

    out = []
    con = duckdb.connect(str(dash.snapshot.path), read_only=True)
    try:
        for b in batch_ids[:limit]:
            try:
                out.append({"batch_id": b, "record": _split_record(batch_traceability_record(con, b)), "error": None})
            except Exception as exc:
                out.append({"batch_id": b, "record": None, "error": str(exc)})
    finally:
        con.close()
    return out


def _split_record(record: dict, max_rows: int = 15) -> dict:
    """Scalars for a definition list; lists of structs as tables (first ``max_rows`` rows)."""
    facts, tables = {}, {}
    for k, v in record.items():
        if isinstance(v, list):
            rows = [r if isinstance(r, dict) else {"value": r} for r in v]
            tables[k] = {
                "rows": rows[:max_rows],
                "more": max(0, len(rows) - max_rows),
                "columns": list(rows[0]) if rows else [],
            }
        else:
            facts[k] = v
    return {"facts": facts, "tables": tables}


def signal_detail(request: Request) -> Response:
    import json

    user = _require(request, "read_signals")
    if isinstance(user, Response):
        return user
    dash = _dash(request)
    try:
        ev = dash.snapshot.evidence()
    except SnapshotUnavailable as exc:
        return _busy(request, user, exc)
    sid = request.path_params["signal_id"]
    journal = store.decisions(dash.warehouse, sid)
    pending = dash.pending(journal)
    signals = _effective_status(ev.signals.filter(pl.col("signal_id") == sid), pending)
    if signals.height == 0:
        raise HTTPException(404, f"no signal {sid}")
    sig = signals.to_dicts()[0]
    figures = json.loads(sig["figures"] or "{}")
    scores = ev.scores.filter(pl.col("signal_id") == sid).to_dicts()
    cases = ev.cases.filter(pl.col("signal_id") == sid).sort("received_on").to_dicts()
    batches = ev.batches.filter(pl.col("signal_id") == sid).to_dicts()
    history = ev.history.filter(pl.col("signal_id") == sid).sort("changed_at").to_dicts()
    for d in pending:
        history.append(
            {
                "changed_at": d["decided_at"],
                "from_status": d["from_status"],
                "to_status": d["to_status"],
                "actor": d["actor"],
                "comment": f"{d['action']}: {d['comment']}",
                "run_id": None,
                "pending": True,
            }
        )
    history.sort(key=lambda h: h["changed_at"])
    labels, counts = charts.monthly_counts([c["received_on"] for c in cases])
    over_time = charts.bar_chart(labels, counts, f"Cases of {sig['pt']} received per month")
    onset = charts.histogram([c.get("tto_days") for c in cases], "Time to onset (days from start of the suspect drug)")
    tto = sorted(c["tto_days"] for c in cases if c.get("tto_days") is not None)
    funnel = None
    if sig.get("product_id") and ev.funnel_points.height:
        key = (pl.col("product") == sig["product_id"]) & (pl.col("event") == sig["pt"])
        pts = ev.funnel_points.filter(key)
        lots = dict(zip(ev.batches["batch_id"].to_list(), ev.batches["lot_number"].to_list()))
        pts = pts.with_columns(
            pl.col("batch").replace_strict(lots, default=pl.col("batch"), return_dtype=pl.String).alias("lot")
        )
        highlight = {sig["batch_id"]} if sig.get("batch_id") else set()
        funnel = {
            "svg": charts.funnel_plot(
                pts.to_dicts(),
                ev.funnel_grid.filter(key).sort("exposure").to_dicts(),
                f"Funnel plot: {sig['pt']} per batch of {sig.get('product_name') or sig['product_id']}",
                highlight=highlight,
            ),
            "outside": pts.filter(pl.col("above_95").fill_null(False)).sort("cases", descending=True).to_dicts(),
            "n_batches": pts.height,
        }
    batch_ids = [b["batch_id"] for b in batches] or ([sig["batch_id"]] if sig.get("batch_id") else [])
    return _render(
        request,
        "detail.html",
        user=user,
        sig=sig,
        figures=figures,
        score=scores[0] if scores else None,
        methods=_method_rows(sig, scores[0] if scores else None, figures),
        cases=cases,
        batches=batches,
        traceability=_traceability(dash, batch_ids),
        history=history,
        over_time=over_time,
        onset=onset,
        tto_median=tto[len(tto) // 2] if tto else None,
        n_tto=len(tto),
        funnel=funnel,
        actions=ACTION_LABELS,
        can_triage="triage" in user["permissions"],
        statuses=STATUSES,
        error=None,
        form={},
    )


async def triage(request: Request) -> Response:
    user = _user(request)
    if user is None:
        return _login_redirect(request)
    form = await request.form()
    _check_csrf(request, form)
    if "triage" not in user["permissions"]:
        raise HTTPException(403, f"only analysts can triage signals (your role: {user['role']})")
    dash = _dash(request)
    sid = request.path_params["signal_id"]
    action = str(form.get("action") or "")
    comment = str(form.get("comment") or "").strip()
    try:
        ev = await run_in_threadpool(dash.snapshot.evidence)
    except SnapshotUnavailable as exc:
        return _busy(request, user, exc)
    current = _effective_status(ev.signals.filter(pl.col("signal_id") == sid), dash.pending())
    if current.height == 0:
        raise HTTPException(404, f"no signal {sid}")
    if action not in store.TRIAGE_ACTIONS or not comment:
        _flash(request, "Choose an action and write a comment: every decision needs its reason.")
        return RedirectResponse(f"/signals/{sid}#triage", status_code=303)
    await run_in_threadpool(
        store.record_decision, dash.warehouse, sid, user["username"], action, comment, current["status"][0]
    )
    applied = await run_in_threadpool(dash.apply_now)
    _flash(
        request,
        f"Recorded: {action} → {store.TRIAGE_ACTIONS[action]}."
        if applied
        else f"Recorded: {action} → {store.TRIAGE_ACTIONS[action]}. The pipeline is writing the warehouse; the decision "
        "is kept and will reach the warehouse (and reports and alerts) as soon as it finishes.",
    )
    return RedirectResponse(f"/signals/{sid}", status_code=303)


def healthz(request: Request) -> Response:
    s = _dash(request).snapshot
    return PlainTextResponse("ok" if s._evidence is not None else "no snapshot yet")


async def http_error(request: Request, exc: HTTPException) -> Response:
    user = None
    with contextlib.suppress(Exception):
        user = _user(request)
    return _render(
        request, "error.html", status_code=exc.status_code, user=user, code=exc.status_code, detail=exc.detail
    )


class SecurityHeaders:
    """No scripts at all, nothing from elsewhere, no framing; HSTS when the request came over HTTPS."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        https = scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (
                        b"content-security-policy",
                        (
                            b"default-src 'self'; script-src 'none'; style-src 'self'; "
                            b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
                        ),
                    ),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(
    warehouse: str | Path,
    *,
    quiet_s: float = 2.0,
    apply_interval_s: float = 5.0,
    background: bool = True,
    session_policy: auth.SessionPolicy | None = None,
    login_policy: auth.LoginPolicy | None = None,
    secure_cookies: bool = False,
    trusted_proxies: list[str] | str | None = None,
) -> Starlette:
    """The dashboard app.

    ``secure_cookies``: always mark cookies ``Secure`` (set when serving TLS directly). Otherwise a
    cookie is ``Secure`` when the request's scheme is https — which, behind a reverse proxy, is
    believed only from ``trusted_proxies`` (addresses or networks whose ``X-Forwarded-Proto`` and
    ``X-Forwarded-For`` are honoured; the forwarded client address is then the one throttled)."""
    from dashboard import admin, coding, portal

    restrict_umask()  # snapshot, review store and their WAL files: 0600 from the first byte
    dash = Dashboard(
        warehouse,
        quiet_s=quiet_s,
        apply_interval_s=apply_interval_s,
        session_policy=session_policy,
        login_policy=login_policy,
        secure_cookies=secure_cookies,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(dash.snapshot.refresh)
        if background:
            dash.start()
        yield
        dash.stop()

    middleware = [Middleware(SecurityHeaders)]
    if trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        middleware.insert(0, Middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies))
    app = Starlette(
        routes=[
            Route("/", signal_list),
            Route("/login", login_page, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/account/password", change_password, methods=["GET", "POST"]),
            Route("/mark-reviewed", mark_reviewed, methods=["POST"]),
            Route("/signals/{signal_id}", signal_detail),
            Route("/signals/{signal_id}/triage", triage, methods=["POST"]),
            *admin.routes(),
            *portal.routes(),
            *coding.routes(),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    return app


def serve(
    warehouse: str | Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    trust_proxy: list[str] | None = None,
) -> None:
    """Serve the dashboard with uvicorn: over TLS with ``tls_cert``/``tls_key`` (cookies always ``Secure``),
    or behind a reverse proxy at ``trust_proxy`` addresses (see the README: deploying behind a proxy)."""
    import uvicorn

    restrict_umask()
    if not Path(warehouse).exists():
        raise SystemExit(
            f"pvtrace dashboard: warehouse {warehouse} does not exist (run `pvtrace run` or `make demo` first)"
        )
    if bool(tls_cert) != bool(tls_key):
        raise SystemExit("pvtrace dashboard: --tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scheme = "https" if tls_cert else "http"
    print(f"PV Trace dashboard on {scheme}://{host}:{port}/  (warehouse {Path(warehouse).resolve()})", flush=True)
    if not tls_cert and not trust_proxy and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving plain HTTP on %s: put it behind a TLS proxy (--trust-proxy) or use --tls-cert", host)
    uvicorn.run(
        create_app(warehouse, secure_cookies=bool(tls_cert), trusted_proxies=trust_proxy or None),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        proxy_headers=False,  # forwarded headers only from --trust-proxy (ProxyHeadersMiddleware in the app)
        server_header=False,
    )

"""Account management and the audit trail, for ``admin`` accounts.

An admin creates accounts, sets their roles (and a manufacturer account's company), resets
passwords, revokes sessions, disables and re-enables accounts, unlocks a locked account, and
reads the audit trail (authentication events and triage decisions). Every change is an
``auth_event`` row with the admin as ``actor``. Changing an account's roles, password or
disabling it revokes its live sessions at once. An admin cannot disable their own account or
take away their own admin role (there would be no one left to undo it). ``admin`` alone grants
no triage and no signal pages: give ``analyst`` or ``viewer`` as well for that.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dashboard import auth, store

ACTIONS = ("roles", "password", "revoke", "disable", "enable", "unlock")


def _app():
    from dashboard import app  # the request helpers (imported late: app imports this module)

    return app


def _admin(request: Request):
    return _app()._require(request, "manage_accounts")


def _roles_from(form) -> list[str]:
    return [r for r in store.ROLES if form.get(f"role_{r}")]


def accounts_page(request: Request) -> Response:
    user = _admin(request)
    if isinstance(user, Response):
        return user
    return _page(request, user, None)


def _page(request: Request, user: dict, error: str | None, status_code: int = 200) -> Response:
    app = _app()
    dash = app._dash(request)
    accounts = store.list_users(dash.warehouse)
    live = auth.live_sessions(dash.warehouse, dash.sessions)
    for a in accounts:
        a["sessions"] = live.get(a["username"], 0)
        a["locked_s"] = int(dash.guard.locked_for(a["username"]))
    return app._render(
        request, "admin.html", status_code=status_code, user=user, accounts=accounts, roles=store.ROLES, error=error
    )


async def create_account(request: Request) -> Response:
    user = _admin(request)
    if isinstance(user, Response):
        return user
    app = _app()
    form = await request.form()
    app._check_csrf(request, form)
    dash = app._dash(request)
    username = str(form.get("username", "")).strip()
    roles = _roles_from(form)
    mid = str(form.get("manufacturer_id", "")).strip() or None
    if store.get_user(dash.warehouse, username) is not None:
        return _page(request, user, f"An account {username!r} exists already: change it below.", 409)
    try:
        await run_in_threadpool(
            store.add_user, dash.warehouse, username, str(form.get("password", "")), roles, manufacturer_id=mid
        )
    except (ValueError, store.HashBusy) as exc:
        return _page(request, user, str(exc), 400)
    await run_in_threadpool(
        auth.record,
        dash.warehouse,
        "account_saved",
        username,
        actor=user["username"],
        client=app._client(request),
        detail=f"created with roles {'+'.join(store.normalise_roles(roles))}"
        + (f", manufacturer {mid}" if mid else ""),
    )
    app._flash(request, f"Account {username} created.")
    return RedirectResponse("/admin", status_code=303)


async def account_action(request: Request) -> Response:
    user = _admin(request)
    if isinstance(user, Response):
        return user
    app = _app()
    form = await request.form()
    app._check_csrf(request, form)
    dash = app._dash(request)
    client = app._client(request)
    username = str(form.get("username", ""))
    action = str(form.get("action", ""))
    target = store.get_user(dash.warehouse, username)
    if target is None or action not in ACTIONS:
        raise HTTPException(404, "no such account or action")
    own = username == user["username"]
    detail = None
    try:
        if action == "roles":
            roles = _roles_from(form)
            if own and "admin" not in roles:
                return _page(request, user, "You cannot take away your own admin role.", 400)
            mid = str(form.get("manufacturer_id", "")).strip() or None
            await run_in_threadpool(store.set_roles, dash.warehouse, username, roles, mid)
            n = await run_in_threadpool(
                auth.revoke_user_sessions, dash.warehouse, username, "roles changed by an admin"
            )
            detail = f"roles {target['role']} -> {'+'.join(store.normalise_roles(roles))}" + (
                f", manufacturer {mid}" if mid else ""
            )
            detail += f"; {n} session(s) revoked"
            kind = "roles_changed"
        elif action == "password":
            await run_in_threadpool(store.set_password, dash.warehouse, username, str(form.get("password", "")))
            n = await run_in_threadpool(
                auth.revoke_user_sessions, dash.warehouse, username, "password reset by an admin"
            )
            kind, detail = "password_changed", f"reset by an admin; {n} session(s) revoked"
        elif action == "revoke":
            n = await run_in_threadpool(auth.revoke_user_sessions, dash.warehouse, username, "revoked by an admin")
            kind, detail = "sessions_revoked", f"{n} session(s) revoked"
        elif action == "disable":
            if own:
                return _page(request, user, "You cannot disable your own account.", 400)
            await run_in_threadpool(store.set_disabled, dash.warehouse, username, True)
            n = await run_in_threadpool(auth.revoke_user_sessions, dash.warehouse, username, "account disabled")
            kind, detail = "account_disabled", f"{n} session(s) revoked"
        elif action == "enable":
            await run_in_threadpool(store.set_disabled, dash.warehouse, username, False)
            kind = "account_enabled"
        else:  # unlock
            kind = "account_unlocked"
    except (ValueError, store.HashBusy) as exc:
        return _page(request, user, str(exc), 400)
    await run_in_threadpool(
        auth.record, dash.warehouse, kind, username, actor=user["username"], client=client, detail=detail
    )
    if own and action in ("roles", "password", "revoke"):  # the admin's own session went too
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/")
        return response
    app._flash(request, f"{username}: {kind.replace('_', ' ')}" + (f" ({detail})" if detail else "") + ".")
    return RedirectResponse("/admin", status_code=303)


def audit_page(request: Request) -> Response:
    user = _app()._require(request, "read_audit")
    if isinstance(user, Response):
        return user
    app = _app()
    dash = app._dash(request)
    who = request.query_params.get("user") or None
    events = auth.audit_events(dash.warehouse, username=who, limit=1000)
    decisions = [d for d in store.decisions(dash.warehouse) if who is None or d["actor"] == who]
    decisions.sort(key=lambda d: d["decided_at"], reverse=True)
    return app._render(request, "audit.html", user=user, events=events, decisions=decisions[:1000], who=who or "")


def routes() -> list[Route]:
    return [
        Route("/admin", accounts_page),
        Route("/admin/accounts", create_account, methods=["POST"]),
        Route("/admin/accounts/action", account_action, methods=["POST"]),
        Route("/admin/audit", audit_page),
    ]

"""The MedDRA coding review page (issue 17): verbatims the run could not code with confidence, and the analysts'
decisions on them.

``/coding`` lists the review queue of the snapshot's newest MedDRA version (``meddra_coding`` rows with
``needs_review``: fuzzy matches below the review threshold, ambiguous names, unmatched text): the verbatim, each
proposed LLT and PT, the method and score, and how many case reactions carry the text. It patients' own words, so only analysts (``triage`` permission) see it; they decide, with the CSRF token of
every form:

* ``accept``: the proposed coding stands and leaves the queue;
* ``recode``: another LLT (code or exact current name of that version) replaces it (method ``manual``);
* ``reject``: the text names no reaction; it stays uncoded, out of the PT statistics.

A decision is appended to ``coding_decision`` in the review store (append-only, as the triage journal) and then
copied to the warehouse's ``meddra_coding_decision`` (idempotent by decision id) with the triage decisions
(:func:`dashboard.store.apply_pending_to_warehouse`: at once when the warehouse is free, else by a later call or
after the next run's publication). The run's case-coding step (``warehouse.terminology.case_coding``) applies the
latest decision per verbatim, so counts and signals change at the next pipeline run; until then the page lists the
decision as pending.
"""

from __future__ import annotations

import contextlib
import uuid

import duckdb
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dashboard import store
from dashboard.data import SnapshotUnavailable

ACTIONS = {"accept": "accepted", "recode": "recoded", "reject": "rejected"}
MAX_ROWS = 500
MAX_COMMENT = 2000
_DDL = """
    CREATE TABLE IF NOT EXISTS coding_decision (
        decision_id VARCHAR PRIMARY KEY,
        verbatim VARCHAR NOT NULL,
        meddra_version VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        llt_code BIGINT,
        actor VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL,
        comment VARCHAR
    )"""


# ---- the journal (review store) and its copy in the warehouse ----------------------------------------------------
def record_decision(
    warehouse, verbatim: str, version: str, actor: str, action: str, llt_code: int | None, comment: str
) -> dict:
    """Append one coding decision to the review store's journal; return it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown coding action {action!r}")
    if (action == "recode") != (llt_code is not None):
        raise ValueError("a recode needs an LLT; accept and reject take none")
    decision = {
        "decision_id": uuid.uuid4().hex[:16],
        "verbatim": verbatim,
        "meddra_version": version,
        "action": action,
        "llt_code": llt_code,
        "actor": actor,
        "decided_at": store._now(),
        "comment": (comment or "").strip()[:MAX_COMMENT] or None,
    }
    with store.open_store(warehouse) as con:
        con.execute(_DDL)
        con.execute(
            "INSERT INTO coding_decision VALUES ($decision_id, $verbatim, $meddra_version, $action, $llt_code, "
            "$actor, $decided_at, $comment)",
            decision,
        )
    return decision


def decisions(warehouse) -> list[dict]:
    """The coding journal, oldest first (empty when no decision was ever made)."""
    if not store.review_store_path(warehouse).exists():
        return []
    with store.open_store(warehouse) as con:
        con.execute(_DDL)
        cur = con.execute("SELECT * FROM coding_decision ORDER BY decided_at, decision_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def apply_to_warehouse(warehouse_con: duckdb.DuckDBPyConnection, journal: list[dict]) -> int:
    """Copy journal decisions not yet in the warehouse's ``meddra_coding_decision``; return how many."""
    if not journal or not _has(warehouse_con, "meddra_coding_decision"):  # a warehouse older than issue 17
        return 0
    done = {r[0] for r in warehouse_con.execute("SELECT decision_id FROM meddra_coding_decision").fetchall()}
    todo = [d for d in journal if d["decision_id"] not in done]
    if todo:
        warehouse_con.executemany(
            "INSERT INTO meddra_coding_decision (decision_id, verbatim, meddra_version, action, llt_code, actor, "
            "decided_at, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [d[k] for k in ("decision_id", "verbatim", "meddra_version", "action", "llt_code", "actor")]
                + [d["decided_at"], d["comment"]]
                for d in todo
            ],
        )
    return len(todo)


# ---- what the page reads (the snapshot) ---------------------------------------------------------------------------
def _has(con, table: str) -> bool:
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
    return bool(con.execute(sql, [table]).fetchone()[0])


def review_queue(path) -> tuple[str | None, list[dict]]:
    """(newest MedDRA version, one entry per verbatim to review with its proposed parts) from a snapshot file."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        if not _has(con, "meddra_coding") or not _has(con, "meddra_release"):
            return None, []
        row = con.execute("SELECT meddra_version FROM meddra_release ORDER BY loaded_at DESC LIMIT 1").fetchone()
        if row is None:
            return None, []
        version = row[0]
        reactions = "0"
        if _has(con, "case_reaction") and "verbatim" in {
            c
            for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", ["case_reaction"]
            ).fetchall()
        }:
            reactions = "(SELECT count(*) FROM case_reaction r WHERE r.verbatim = q.verbatim AND r.pt IS NULL)"
        rows = con.execute(
            f"""
            WITH q AS (SELECT DISTINCT verbatim FROM meddra_coding WHERE meddra_version = $v AND needs_review),
            names AS (
                SELECT llt_code, any_value(llt_name) AS llt_name FROM meddra_llt WHERE meddra_version = $v GROUP BY 1
            ),
            pts AS (
                SELECT code, coalesce(any_value(name) FILTER (WHERE language = 'en'), any_value(name)) AS pt_name
                FROM meddra_term WHERE level = 'pt' AND meddra_version = $v GROUP BY 1
            )
            SELECT q.verbatim, {reactions} AS reactions,
                   list({{'fragment': m.fragment, 'llt_code': m.llt_code, 'llt_name': n.llt_name,
                          'pt_code': m.pt_code, 'pt_name': p.pt_name, 'method': m.method,
                          'confidence': m.confidence, 'needs_review': m.needs_review,
                          'language': m.language}} ORDER BY m.part_seq) AS parts,
                   min(m.confidence) AS score
            FROM q JOIN meddra_coding m ON m.verbatim = q.verbatim AND m.meddra_version = $v
            LEFT JOIN names n ON n.llt_code = m.llt_code
            LEFT JOIN pts p ON p.code = m.pt_code
            GROUP BY q.verbatim ORDER BY reactions DESC, score, q.verbatim LIMIT {MAX_ROWS}
            """,
            {"v": version},
        ).fetchall()
        return version, [{"verbatim": v, "reactions": n, "parts": parts, "score": s} for v, n, parts, s in rows]
    finally:
        con.close()


def resolve_llt(path, version: str, given: str) -> int | None:
    """An LLT code or exact current LLT name of ``version`` in the snapshot -> its code (None if unknown)."""
    given = given.strip()
    if not given:
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        if given.isdigit():
            row = con.execute(
                "SELECT llt_code FROM meddra_llt WHERE meddra_version = ? AND llt_code = ? AND current LIMIT 1",
                [version, int(given)],
            ).fetchone()
        else:
            row = con.execute(
                "SELECT llt_code FROM meddra_llt WHERE meddra_version = ? AND llt_name = ? AND current "
                "ORDER BY llt_code LIMIT 1",
                [version, given],
            ).fetchone()
        return int(row[0]) if row else None
    finally:
        con.close()


# ---- pages -----------------------------------------------------------------------------------------------------------
def _app():
    from dashboard import app  # the request helpers (imported late: app imports this module)

    return app


async def coding_page(request: Request) -> Response:
    app = _app()
    user = app._require(request, "triage")  # patients' own words: analysts only
    if isinstance(user, Response):
        return user
    dash = app._dash(request)
    try:
        ev = await run_in_threadpool(dash.snapshot.evidence)
    except SnapshotUnavailable as exc:
        return app._busy(request, user, exc)
    version, queue = await run_in_threadpool(review_queue, ev.path)
    journal = await run_in_threadpool(decisions, dash.warehouse)
    decided = {d["verbatim"]: d for d in journal if d["meddra_version"] == version}
    return app._render(
        request,
        "coding.html",
        user=user,
        version=version,
        queue=[q for q in queue if q["verbatim"] not in decided],
        decided=sorted(decided.values(), key=lambda d: d["decided_at"], reverse=True),
        actions=ACTIONS,
        max_rows=MAX_ROWS,
    )


async def coding_decide(request: Request) -> Response:
    app = _app()
    user = app._user(request)
    if user is None:
        return app._login_redirect(request)
    form = await request.form()
    app._check_csrf(request, form)
    if "triage" not in user["permissions"]:
        raise HTTPException(403, f"only analysts can decide codings (your role: {user['role']})")
    dash = app._dash(request)
    action = str(form.get("action") or "")
    verbatim = str(form.get("verbatim") or "")
    try:
        ev = await run_in_threadpool(dash.snapshot.evidence)
    except SnapshotUnavailable as exc:
        return app._busy(request, user, exc)
    version, queue = await run_in_threadpool(review_queue, ev.path)
    if version is None or verbatim not in {q["verbatim"] for q in queue}:
        raise HTTPException(404, "no such verbatim in the coding review queue")
    if action not in ACTIONS:
        app._flash(request, "Choose accept, recode or reject.")
        return RedirectResponse("/coding", status_code=303)
    llt = None
    if action == "recode":
        llt = await run_in_threadpool(resolve_llt, ev.path, version, str(form.get("llt") or ""))
        if llt is None:
            app._flash(request, f"Recode needs a current LLT code or exact LLT name of MedDRA {version}.")
            return RedirectResponse("/coding", status_code=303)
    await run_in_threadpool(
        record_decision,
        dash.warehouse,
        verbatim,
        version,
        user["username"],
        action,
        llt,
        str(form.get("comment") or ""),
    )
    applied = False
    with contextlib.suppress(store.StoreBusy):
        await run_in_threadpool(store.apply_pending_to_warehouse, dash.warehouse)
        applied = True
    app._flash(
        request,
        f"Recorded: {ACTIONS[action]} “{verbatim}”; the next pipeline run codes with it."
        + ("" if applied else " The pipeline is writing the warehouse; the decision is kept and copied there later."),
    )
    return RedirectResponse("/coding", status_code=303)


def routes() -> list[Route]:
    return [Route("/coding", coding_page), Route("/coding/decide", coding_decide, methods=["POST"])]

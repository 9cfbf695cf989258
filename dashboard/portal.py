"""The manufacturer portal: one company's alerts, batch traceability and de-identified cases.

A ``manufacturer`` account is bound to one ``manufacturer_id`` and sees nothing else: no signal
list, no signal pages, no other company's portal. What it sees is built exactly as that
company's alert is built — the same scoped queries (:mod:`warehouse.queries.alert_evidence`,
joined through ``product.manufacturer_id`` in SQL) and the same whitelisting assembly
(:func:`reports.alerts.build_alert`, which re-checks that every signal, batch and case row is
the company's own) — so the portal cannot show more than an alert would:

* its product- and batch-level signals (ingredient-level signals pool several companies and are
  not shown), with status, methods and figures;
* the implicated batches with their traceability (units, regions, pharmacies, consignments,
  cold-chain excursions);
* de-identified case summaries (age band, sex, onset, seriousness, outcome, own lot link) under a
  per-company ``case_ref``: no case id, patient key, narrative or other company's drug;
* the alerts already sent to it (``alert`` rows of its own ``manufacturer_id``).

A page for anything outside that scope is a 404, whether or not it exists elsewhere. The view is
computed from the dashboard's snapshot once per snapshot and company.
"""

from __future__ import annotations

import threading

import duckdb
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dashboard.data import SnapshotUnavailable
from reports.alerts import build_alert
from warehouse.pseudonym import load_salt
from warehouse.queries.alert_evidence import (
    alert_batches,
    alert_case_summaries,
    alert_signals,
    batch_consignments,
    batch_excursions,
    batch_pharmacies,
)
from warehouse.queries.read_model import data_lock_point

_cache: dict[tuple, dict] = {}
_cache_lock = threading.Lock()


def manufacturer_view(con: duckdb.DuckDBPyConnection, manufacturer_id: str, salt: str) -> dict | None:
    """What one manufacturer may see (None if the warehouse has no such manufacturer)."""
    cur = con.execute("SELECT manufacturer_id, name FROM manufacturer WHERE manufacturer_id = ?", [manufacturer_id])
    row = cur.fetchone()
    if row is None:
        return None
    manufacturer = {"manufacturer_id": row[0], "name": row[1]}
    signals = alert_signals(con, manufacturer_id)
    batches = alert_batches(con, manufacturer_id)
    batch_ids = batches["batch_id"].unique().to_list() if batches.height else []
    alert = build_alert(
        manufacturer,
        signals,
        batches,
        alert_case_summaries(con, manufacturer_id, salt),
        data_lock_point(con),
        pharmacies=batch_pharmacies(con, manufacturer_id, batch_ids),
        consignments=batch_consignments(con, manufacturer_id, batch_ids),
        excursions=batch_excursions(con, manufacturer_id, batch_ids),
    )
    sent = con.execute(
        "SELECT alert_id, created_at, signal_ids, batch_ids, supersedes FROM alert WHERE manufacturer_id = ? "
        "ORDER BY created_at DESC, alert_id",
        [manufacturer_id],
    ).fetchall()
    batches_by_id: dict[str, dict] = {}
    for s in alert.content["signals"]:
        for b in s["batches"]:
            entry = batches_by_id.setdefault(b["batch_id"], {**b, "signals": []})
            entry["signals"].append(s["signal_id"])
    return {
        "manufacturer": manufacturer,
        "data_lock_point": alert.content["data_lock_point"],
        "signals": alert.content["signals"],
        "batches": batches_by_id,
        "traceability": alert.content["batch_traceability"],
        "alerts": [
            {"alert_id": a, "created_at": c, "signal_ids": s, "batch_ids": b, "supersedes": p} for a, c, s, b, p in sent
        ],
    }


def _view(request: Request) -> tuple[dict, dict] | Response:
    from dashboard import app

    user = app._require(request, "portal")
    if isinstance(user, Response):
        return user
    dash = app._dash(request)
    mid = user["manufacturer_id"]
    if not mid:
        raise HTTPException(403, "this account is not bound to a manufacturer")
    try:
        ev = dash.snapshot.evidence()
    except SnapshotUnavailable as exc:
        return app._busy(request, user, exc)
    key = (str(ev.path), ev.taken_at, mid)
    with _cache_lock:
        view = _cache.get(key)
    if view is None:
        salt = load_salt(dash.warehouse)
        con = duckdb.connect(str(ev.path or dash.snapshot.path), read_only=True)
        try:
            view = manufacturer_view(con, mid, salt)
        finally:
            con.close()
        if view is None:
            raise HTTPException(404, f"manufacturer {mid} is not in the warehouse")
        with _cache_lock:
            for k in [k for k in _cache if k[2] == mid]:
                del _cache[k]
            _cache[key] = view
    return user, view


def portal_home(request: Request) -> Response:
    got = _view(request)
    if isinstance(got, Response):
        return got
    user, view = got
    from dashboard import app

    return app._render(request, "portal.html", user=user, view=view)


def portal_signal(request: Request) -> Response:
    got = _view(request)
    if isinstance(got, Response):
        return got
    user, view = got
    sid = request.path_params["signal_id"]
    sig = next((s for s in view["signals"] if s["signal_id"] == sid), None)
    if sig is None:
        raise HTTPException(404, "no such signal among your products")
    from dashboard import app

    return app._render(request, "portal_signal.html", user=user, view=view, sig=sig)


def portal_batch(request: Request) -> Response:
    got = _view(request)
    if isinstance(got, Response):
        return got
    user, view = got
    bid = request.path_params["batch_id"]
    if bid not in view["batches"]:
        raise HTTPException(404, "no such batch among your implicated batches")
    from dashboard import app

    return app._render(
        request,
        "portal_batch.html",
        user=user,
        view=view,
        batch=view["batches"][bid],
        trace=view["traceability"].get(bid, {}),
    )


def routes() -> list[Route]:
    return [
        Route("/portal", portal_home),
        Route("/portal/signals/{signal_id}", portal_signal),
        Route("/portal/batches/{batch_id}", portal_batch),
    ]

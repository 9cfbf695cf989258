"""The verification API: a Starlette app over a snapshot of the warehouse.

    pvtrace api --warehouse output/pvtrace.duckdb --host 127.0.0.1 --port 8060

Endpoints (OpenAPI 3.1 at ``/v1/openapi.json``, linked from ``/``):

* ``GET /v1/packs/{code}`` — one URL-encoded code of any supported form; verification, plus the
  pack's ``trace`` and ``safety`` sections when the client holds those scopes.
* ``POST /v1/verify`` — ``{"codes": [...]}``, up to 10,000 codes; verification fields per code.
* ``GET /01/{gtin}[/10/{lot}][/21/{serial}][?17=YYMMDD]`` — GS1 Digital Link resolver: the path is
  read as the Digital Link URI it is (by the pack-code parser), answered like ``/v1/packs``.
* ``GET /v1/batches/{batch_id}/events`` — the batch's supply events as EPCIS 2.0 JSON-LD (scope ``trace``).

Every request but the index and the OpenAPI document needs ``Authorization: Bearer <key>`` of a
client (:mod:`warehouse.stores.api_clients`), passes the client's per-client rate limits
(``limits``, moving window, in memory: requests, and pack codes for POST /v1/verify), and is
appended to the audit log before its answer is sent — refused ones (401, 403, 429) too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import polars as pl
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api.openapi import OPENAPI
from api.records import batch_epcis_document, dumps, pack_safety, pack_trace
from api.snapshot import Snapshot, SnapshotUnavailable
from api.verify import MAX_CODES, verify_codes
from warehouse.stores.api_clients import AuditStore

log = logging.getLogger("pvtrace.api")
MAX_BODY_BYTES = 4 * 1024 * 1024
JSON = "application/json"


class _AnyText(Convertor):
    """The rest of the path including newlines (a pack code may hold any character; ``path`` stops at one)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Api:
    """State shared by requests: the snapshot, the audit store, the rate limiter."""

    def __init__(self, warehouse: str | Path, *, quiet_s: float = 2.0, refresh_interval_s: float = 5.0):
        self.warehouse = Path(warehouse)
        self.snapshot = Snapshot(self.warehouse, quiet_s=quiet_s)
        self.audit = AuditStore(self.warehouse)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.refresh_interval_s = refresh_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._limits: dict[str, list] = {}

    def limits_for(self, text: str) -> list:
        if text not in self._limits:
            self._limits[text] = parse_many(text)
        return self._limits[text]

    def check_rate(self, client: dict, kind: str, cost: int = 1) -> None:
        """Count ``cost`` against the client's limits of ``kind`` (rate_limit / code_limit); 429 when over."""
        for item in self.limits_for(client[kind]):
            if not self.limiter.hit(item, kind, client["client_id"], cost=cost):
                reset, _ = self.limiter.get_window_stats(item, kind, client["client_id"])
                wait = max(1, math.ceil(reset - time.time()))
                raise ApiError(
                    429, f"rate limit {item} exceeded ({kind.replace('_', ' ')})", {"Retry-After": str(wait)}
                )

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            try:
                self.snapshot.refresh()
            except Exception:  # keep serving the last snapshot; the next tick retries
                log.exception("snapshot refresh failed")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pvtrace-api-snapshot", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.snapshot.close()
        self.audit.close()


def _api(request: Request) -> Api:
    return request.app.state.api


def _json(body, status: int = 200, headers: dict | None = None, media_type: str = JSON) -> Response:
    return Response(dumps(body) if not isinstance(body, bytes) else body, status, headers, media_type=media_type)


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _handle(request: Request, scope: str, work) -> Response:
    """Authenticate, authorise, rate-limit, run ``work(api, client)``, audit; errors as JSON."""
    api = _api(request)
    client = None
    audit = {"codes": (), "valid": (), "statuses": ()}
    try:
        key = _bearer(request)
        client = api.audit.client(key) if key else None
        if client is None:
            raise ApiError(
                401, "a valid client key is required (Authorization: Bearer <key>)", {"WWW-Authenticate": "Bearer"}
            )
        if scope not in client["scopes"]:
            raise ApiError(403, f"this client lacks the {scope!r} scope")
        api.check_rate(client, "rate_limit")
        response, audit = work(api, client)
    except ApiError as exc:
        response = _json({"error": exc.message}, exc.status, exc.headers)
    except SnapshotUnavailable as exc:
        response = _json({"error": f"the warehouse is not readable yet: {exc}"}, 503, {"Retry-After": "5"})
    except Exception:
        log.exception("API request failed: %s %s", request.method, request.url.path)
        response = _json({"error": "internal error"}, 500)
    api.audit.append(
        client_id=client["client_id"] if client else None,
        method=request.method,
        path=request.url.path,
        scope=scope,
        http_status=response.status_code,
        **audit,
    )
    return response


# ---- one pack ------------------------------------------------------------------------------
def _raw_tail(request: Request, prefix: str) -> str:
    """The URL-decoded path after ``prefix``, from the raw path (so an encoded "/" stays in the code)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    return unquote(path[len(prefix) :]) if path.startswith(prefix) else request.path_params.get("code", "")


def _one(request: Request, code: str) -> Response:
    def work(api: Api, client: dict):
        cur = api.snapshot.cursor()
        try:
            row = verify_codes(cur, [code]).to_dicts()[0]
            if row["valid"]:
                if "trace" in client["scopes"]:
                    row["trace"] = pack_trace(cur, row)
                if "safety" in client["scopes"]:
                    row["safety"] = pack_safety(cur, row, client["jurisdiction"])
        finally:
            cur.close()
        row["snapshot_taken_at"] = api.snapshot.taken_at
        return _json(row), {"codes": [code], "valid": [row["valid"]], "statuses": [row["status"]]}

    return _handle(request, "verify", work)


def get_pack(request: Request) -> Response:
    return _one(request, _raw_tail(request, "/v1/packs/"))


def resolve(request: Request) -> Response:
    """GS1 Digital Link resolver: the request URI is the pack's Digital Link."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    query = request.url.query
    code = f"https://id.gs1.org{path}" + (f"?{query}" if query else "")
    return _one(request, code)


# ---- many codes ----------------------------------------------------------------------------
async def verify(request: Request) -> Response:
    length = request.headers.get("content-length")
    body = b""
    if length is None or (length.isdigit() and int(length) <= MAX_BODY_BYTES):
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                break
    return await run_in_threadpool(_verify_sync, request, body, length)


def _read_codes(body: bytes, length: str | None) -> list:
    if (length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES)) or len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is limited to {MAX_BODY_BYTES // (1024 * 1024)} MB")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc
    codes = doc.get("codes") if isinstance(doc, dict) else None
    if not isinstance(codes, list):
        raise ApiError(400, 'the body must be {"codes": [ ...pack codes as strings... ]}')
    if len(codes) > MAX_CODES:
        raise ApiError(413, f"at most {MAX_CODES:,} codes per request, got {len(codes):,}")
    if any(c is not None and not isinstance(c, str) for c in codes):
        raise ApiError(400, "every code must be a JSON string (or null)")
    return codes


def _verify_sync(request: Request, body: bytes, length: str | None) -> Response:
    def work(api: Api, client: dict):
        codes = _read_codes(body, length)
        api.check_rate(client, "code_limit", cost=max(1, len(codes)))
        cur = api.snapshot.cursor()
        try:
            frame = verify_codes(cur, codes)
        finally:
            cur.close()
        counts = frame.group_by(pl.coalesce("status", pl.lit("invalid"))).len().rows()
        head = dumps({"counts": dict(sorted(counts)), "snapshot_taken_at": api.snapshot.taken_at})
        payload = head[:-1] + b',"results":' + frame.write_json().encode("utf-8") + b"}"
        audit = {
            "codes": codes,
            "valid": frame["valid"].to_list(),
            "statuses": frame["status"].to_list(),
        }
        return _json(payload), audit

    return _handle(request, "verify", work)


# ---- EPCIS --------------------------------------------------------------------------------
def batch_events(request: Request) -> Response:
    batch_id = _raw_tail(request, "/v1/batches/").removesuffix("/events")

    def work(api: Api, client: dict):
        cur = api.snapshot.cursor()
        try:
            doc = batch_epcis_document(cur, batch_id, created=dt.datetime.now(tz=dt.UTC))
        finally:
            cur.close()
        if doc is None:
            raise ApiError(404, f"no batch {batch_id!r}")
        return _json(doc, media_type="application/ld+json"), {}

    return _handle(request, "trace", work)


# ---- documents ----------------------------------------------------------------------------
INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PV Trace verification API</title></head>
<body><h1>PV Trace verification API</h1>
<p>Verify any pack code — NMPA 20-digit, GS1 element string, HRI or Digital Link, NDC — and see its batch,
journey and safety status. Every call needs <code>Authorization: Bearer &lt;client key&gt;</code>
(<code>pvtrace api-client add</code>).</p>
<ul><li><a href="/v1/openapi.json">OpenAPI 3.1 description</a></li>
<li><code>GET /v1/packs/{url-encoded code}</code>, <code>POST /v1/verify</code>,
<code>GET /01/{gtin}/10/{lot}/21/{serial}?17=YYMMDD</code>, <code>GET /v1/batches/{batch_id}/events</code></li></ul>
</body></html>"""


def index(request: Request) -> Response:
    return HTMLResponse(INDEX)


def openapi(request: Request) -> Response:
    return _json(OPENAPI)


def create_app(
    warehouse: str | Path, *, background: bool = True, quiet_s: float = 2.0, refresh_interval_s: float = 5.0
) -> Starlette:
    api = Api(warehouse, quiet_s=quiet_s, refresh_interval_s=refresh_interval_s)

    async def not_found(request: Request, exc) -> Response:
        return _json({"error": "not found"}, getattr(exc, "status_code", 404))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(api.snapshot.refresh)
        if background:
            api.start()
        yield
        api.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/v1/openapi.json", openapi),
            Route("/v1/packs/{code:anytext}", get_pack),
            Route("/v1/verify", verify, methods=["POST"]),
            Route("/v1/batches/{batch_id:anytext}", batch_events),
            Route("/01/{rest:anytext}", resolve),
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    app.state.api = api
    return app


def serve(
    warehouse: str | Path,
    host: str = "127.0.0.1",
    port: int = 8060,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    import uvicorn

    if not Path(warehouse).exists():
        raise SystemExit(f"pvtrace api: warehouse {warehouse} does not exist (run `pvtrace run` or `make demo` first)")
    if bool(tls_cert) != bool(tls_key):
        raise SystemExit("pvtrace api: --tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scheme = "https" if tls_cert else "http"
    print(
        f"PV Trace verification API on {scheme}://{host}:{port}/  (warehouse {Path(warehouse).resolve()})", flush=True
    )
    uvicorn.run(
        create_app(warehouse),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )

"""Verification API speed: a 10,000-code POST /v1/verify and single lookups under a bounded loopback load.

    .venv/bin/python benchmarks/bench_api.py [--scale 1] [--warehouse FILE] [--requests 2000] [--threads 8]

Without ``--warehouse`` it generates a synthetic world (``--scale``) and loads the tables the API
reads (reference, packs, supply events, deliveries, batch traceability) into a temporary warehouse.
It then prints: the snapshot's cost (copy + derived tables), what a read-only open of the warehouse
per request would cost instead, the in-process time of ``verify_codes`` on 10,000 codes, the wall
time of a 10,000-code POST /v1/verify against a real server (``pvtrace api`` on 127.0.0.1, its own
process), and p50/p99 latency and throughput of ``--requests`` single GET /v1/packs/{code} from a
pool of ``--threads`` client threads. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import duckdb
import httpx
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.snapshot import Snapshot  # noqa: E402
from api.verify import verify_codes  # noqa: E402
from warehouse.stores.api_clients import add_client  # noqa: E402


def build(scale: float, workdir: Path) -> Path:
    from sample_data.world import generate_world
    from warehouse.inputs.platform.deliveries import load_deliveries
    from warehouse.inputs.platform.packs import load_packs
    from warehouse.inputs.platform.reference import load_reference
    from warehouse.inputs.platform.supply import load_supply_events
    from warehouse.linkage.batch_record import build_batch_traceability
    from warehouse.schema import connect

    t0 = time.perf_counter()
    inbox = workdir / "inbox"
    generate_world(inbox, seed=42, scale=scale)
    path = workdir / "pv.duckdb"
    con = connect(str(path))
    try:
        load_reference(con, inbox)
        load_packs(con, inbox)
        load_supply_events(con, inbox, validate=False)
        load_deliveries(con, inbox, "bench-salt")
        build_batch_traceability(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    print(f"world scale {scale}: generated and loaded in {time.perf_counter() - t0:.1f} s")
    return path


def sample_codes(path: Path, n: int) -> list[str]:
    """n codes as a scanner would send them: every form the inbox uses, a few unknown and malformed."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        packs = con.execute(f"SELECT pack_code FROM pack USING SAMPLE {int(n * 0.7)} ROWS (reservoir, 1)").pl()
        scans = con.execute(f"SELECT pack_code FROM delivery USING SAMPLE {int(n * 0.25)} ROWS (reservoir, 2)").pl()
    finally:
        con.close()
    codes = packs["pack_code"].to_list() + scans["pack_code"].to_list()
    extra = n - len(codes)
    codes += [f"(01)09501101530003(17)271231(10)X(21)UNKNOWN{i}" if i % 2 else f"garbage-{i}" for i in range(extra)]
    return codes[:n]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warehouse")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--codes", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.warehouse:
            path = work / "pv.duckdb"
            path.write_bytes(Path(args.warehouse).read_bytes())
        else:
            path = build(args.scale, work)
        size_mb = path.stat().st_size / 1e6
        con = duckdb.connect(str(path), read_only=True)
        n_packs, n_deliveries = con.execute(
            "SELECT (SELECT count(*) FROM pack), (SELECT count(*) FROM delivery)"
        ).fetchone()
        con.close()
        print(f"warehouse: {size_mb:.0f} MB, {n_packs:,} packs, {n_deliveries:,} deliveries")

        # the read path: one snapshot per pipeline run vs a read-only open per request
        snap = Snapshot(path, quiet_s=0.0)
        t0 = time.perf_counter()
        snap.refresh(force=True)
        print(
            f"snapshot (copy + api_pack_state/api_batch_state): {time.perf_counter() - t0:.2f} s once per warehouse change"
        )
        opens = []
        for _ in range(10):
            t0 = time.perf_counter()
            c = duckdb.connect(str(path), read_only=True)
            c.execute("SELECT count(*) FROM batch").fetchone()
            c.close()
            opens.append(time.perf_counter() - t0)
        print(
            f"read-only open of the warehouse per request instead: {statistics.median(opens) * 1e3:.1f} ms median "
            "each, holding the lock the pipeline needs"
        )

        codes = sample_codes(path, args.codes)
        cur = snap.cursor()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            frame = verify_codes(cur, codes)
            times.append(time.perf_counter() - t0)
        cur.close()
        snap.close()
        counts = dict(frame.group_by(pl.coalesce("status", pl.lit("invalid"))).len().rows())
        print(
            f"verify_codes, {len(codes):,} codes in process: {min(times) * 1e3:.0f} ms (best of 3); statuses {counts}"
        )

        _, key = add_client(path, "bench", "verify", rate_limit="100000/second", code_limit="100000000/hour")
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "assets.cli", "api", "--warehouse", str(path), "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(base + "/v1/openapi.json", timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the API server did not start") from None
                    time.sleep(0.2)
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                client.get("/v1/packs/" + quote(codes[0], safe=""))  # first request: snapshot already taken
                posts = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    r = client.post("/v1/verify", json={"codes": codes})
                    posts.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:200]
                print(
                    f"POST /v1/verify with {len(codes):,} codes over loopback: median {statistics.median(posts):.2f} s, "
                    f"best {min(posts):.2f} s (5 runs; {len(r.content) / 1e6:.1f} MB answer, audit included)"
                )

            singles = [codes[i % len(codes)] for i in range(args.requests)]
            local = __import__("threading").local()

            def one(code: str) -> float:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=base, headers=headers, timeout=30)
                t0 = time.perf_counter()
                r = local.client.get("/v1/packs/" + quote(code, safe=""))
                assert r.status_code == 200, r.text[:200]
                return time.perf_counter() - t0

            seq = sorted(one(c) for c in singles[: max(1, len(singles) // 10)])
            q = lambda lat, f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3  # noqa: E731
            print(
                f"GET /v1/packs/{{code}}: {len(seq):,} requests one after another: "
                f"p50 {q(seq, 0.5):.1f} ms, p99 {q(seq, 0.99):.1f} ms"
            )
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(args.threads) as pool:
                lat = sorted(pool.map(one, singles))
            wall = time.perf_counter() - t0
            print(
                f"GET /v1/packs/{{code}}: {len(lat):,} requests from {args.threads} threads in {wall:.1f} s "
                f"({len(lat) / wall:.0f}/s): p50 {q(lat, 0.5):.1f} ms, p99 {q(lat, 0.99):.1f} ms, max {lat[-1] * 1e3:.1f} ms"
            )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()

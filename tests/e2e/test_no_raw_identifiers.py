"""No raw patient reference at rest: the demo's path (generate a world, ``pvtrace run`` with a persistent
Dagster home, the dashboard taking its snapshot and recording a login and a triage) on a small synthetic
world, then every file it left — the warehouse, the dashboard snapshot, the review store, the salt, the
Dagster storage (DAGSTER_HOME: run and event-log databases, compute logs), the outputs (reports, E2B,
eRMR, alerts) and the run's own console output — is searched for every raw ``patient_ref`` of the
inbox. DuckDB files are opened and every column of every table is searched (their pages are compressed,
so a byte search would prove nothing); PDFs are searched as text (pdftotext); everything else as bytes.

Also: everything created is private (no group/other permission bits).

Until the quarantine writers store a redacted copy of a bad row (issue 12's inbox-trust work), the
scan finds the raw case lines in ``quarantine.raw`` (warehouse and snapshot) and fails: that is the
remaining leak it exists to catch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sample_data.world import generate_world
from warehouse.files import write_private

pytestmark = pytest.mark.e2e

SCALE = 0.05
SEED = 11
REF = re.compile(rb"PAT-\d{7}")


def inbox_refs(inbox: Path) -> set[str]:
    refs: set[str] = set()
    for f in inbox.rglob("*"):
        if not f.is_file():
            continue
        if f.suffix == ".parquet":
            frame = pl.read_parquet(f)
            for col in frame.columns:
                if frame[col].dtype == pl.String:
                    refs |= {m.decode() for v in frame[col].drop_nulls().to_list() for m in REF.findall(v.encode())}
        else:
            refs |= {m.decode() for m in REF.findall(f.read_bytes())}
    return refs


def is_duckdb(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(16)
    return head[8:12] == b"DUCK"


def duckdb_refs(path: Path, tmp: Path) -> dict[str, set[str]]:
    """Raw-looking references in every column of every table of a DuckDB file (read from a copy)."""
    copy = tmp / (path.name + ".scan")
    shutil.copyfile(path, copy)
    wal = Path(str(path) + ".wal")
    if wal.exists():
        shutil.copyfile(wal, Path(str(copy) + ".wal"))
    con = duckdb.connect(str(copy), read_only=True)
    found: dict[str, set[str]] = {}
    try:
        cols = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')"
        ).fetchall()
        for table, col in cols:
            rows = con.execute(
                f"SELECT DISTINCT unnest(regexp_extract_all(CAST(\"{col}\" AS VARCHAR), 'PAT-[0-9]{{7}}')) "
                f'FROM "{table}" WHERE CAST("{col}" AS VARCHAR) LIKE \'%PAT-%\''
            ).fetchall()
            if rows:
                found[f"{table}.{col}"] = {r[0] for r in rows}
    finally:
        con.close()
        copy.unlink()
        Path(str(copy) + ".wal").unlink(missing_ok=True)
    return found


def file_refs(path: Path) -> set[str]:
    if path.suffix == ".pdf" and shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True).stdout
        return {m.decode() for m in REF.findall(text)}
    return {m.decode() for m in REF.findall(path.read_bytes())}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("rawscan")
    inbox, data, home = root / "inbox", root / "data", root / "dagster_home"
    generate_world(inbox, seed=SEED, scale=SCALE)
    write_private(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVTRACE_")}
    env.update(DAGSTER_HOME=str(home), PVTRACE_DEMO="1")
    warehouse, output = data / "pvtrace.duckdb", data / "output"
    run = subprocess.run(
        [sys.executable, "-m", "assets.cli", "run", "--inbox", str(inbox), "--warehouse", str(warehouse)]
        + ["--output", str(output)],
        env=env,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    (root / "run.log").write_bytes(run.stdout + b"\n" + run.stderr)
    # the dashboard: snapshot, an account, a login, a triage decision
    from starlette.testclient import TestClient

    from dashboard import store
    from dashboard.app import create_app

    os.environ["PVTRACE_DEMO"] = "1"
    try:
        store.add_user(warehouse, "scan-analyst", "scan-password", "analyst")
        with TestClient(create_app(warehouse, background=False, quiet_s=0.0)) as c:
            r = c.get("/login")
            tok = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
            r = c.post("/login", data={"username": "scan-analyst", "password": "scan-password", "csrf_token": tok})
            assert r.status_code == 200
            sid = re.search(r'<a href="/signals/(SIG-[0-9A-F]+)">', r.text).group(1)
            page = c.get(f"/signals/{sid}").text
            tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            c.post(f"/signals/{sid}/triage", data={"csrf_token": tok, "action": "monitor", "comment": "scan"})
    finally:
        os.environ.pop("PVTRACE_DEMO", None)
    return {"root": root, "inbox": inbox, "data": data, "home": home, "refs": inbox_refs(inbox)}


def test_the_inbox_has_patient_references_to_look_for(demo):
    assert len(demo["refs"]) > 100


def test_no_raw_patient_reference_anywhere_at_rest(demo):
    refs, leaks, scanned = demo["refs"], {}, 0
    for path in sorted(p for p in demo["root"].rglob("*") if p.is_file()):
        if demo["inbox"] in path.parents:
            continue
        scanned += 1
        if is_duckdb(path):
            for where, found in duckdb_refs(path, demo["root"]).items():
                if found & refs:
                    leaks[f"{path.relative_to(demo['root'])}:{where}"] = sorted(found & refs)[:3]
        else:
            found = file_refs(path) & refs
            if found:
                leaks[str(path.relative_to(demo["root"]))] = sorted(found)[:3]
    assert scanned > 10
    assert {p.name for p in demo["data"].iterdir()} >= {
        "pvtrace.duckdb",
        "pvtrace.duckdb.review.duckdb",
        "pvtrace.duckdb.dashboard-snapshot.duckdb",
        "output",
    }
    assert leaks == {}, f"raw patient references at rest: {leaks}"


def test_everything_the_run_created_is_private(demo):
    wide = []
    for path in [demo["data"], *demo["data"].rglob("*"), *demo["home"].rglob("*")]:
        if path.stat().st_mode & 0o077:
            wide.append(f"{path.relative_to(demo['root'])} {oct(path.stat().st_mode & 0o777)}")
    assert wide == []

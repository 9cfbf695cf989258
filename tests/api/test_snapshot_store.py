"""The API beside the pipeline: it never holds the warehouse's lock, it picks up new data, and its
audit log cannot be rewritten."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api import world
from tests.api.conftest import auth
from tests.mini_inbox import EU_GTIN, hri
from warehouse.stores.api_clients import AuditStore, add_client, store_path

NEW_PACK = hri(EU_GTIN, "271231", "EU1A", "S7777")

WRITE = """
import sys
from warehouse.schema import connect
con = connect(sys.argv[1], lock_wait=0.0)  # fails at once if anyone holds the file
con.execute("INSERT INTO pack VALUES (?, 'gs1', 'B-EU1', 'S7777', ?, NULL, '2024-01-15')", [sys.argv[2], sys.argv[3]])
con.close()
"""


def test_the_pipeline_can_write_while_the_api_serves_and_the_api_then_sees_it(warehouse, tmp_path):
    wh = tmp_path / "pv.duckdb"
    wh.write_bytes(warehouse.read_bytes())
    _, key = add_client(wh, "reader", "verify", rate_limit="1000/second")
    with TestClient(create_app(wh, background=False, quiet_s=0.0)) as c:
        url = "/v1/packs/" + quote(NEW_PACK, safe="")
        assert c.get(url, headers=auth(key)).json()["status"] == "unknown_serial"
        # a writer in another process opens the warehouse without waiting: the API holds no lock on it
        subprocess.run([sys.executable, "-c", WRITE, str(wh), NEW_PACK, EU_GTIN], check=True, timeout=120)
        assert c.get(url, headers=auth(key)).json()["status"] == "unknown_serial"  # still the old snapshot
        assert c.app.state.api.snapshot.stale
        assert c.app.state.api.snapshot.refresh()
        assert c.get(url, headers=auth(key)).json()["status"] == "active"
        # two refreshes later the first copy is reused; answers keep coming
        subprocess.run(
            [sys.executable, "-c", WRITE.replace("S7777", "S7778"), str(wh), NEW_PACK + "8", EU_GTIN], check=True
        )
        assert c.app.state.api.snapshot.refresh()
        assert c.get("/v1/packs/" + quote(world.EU_ACTIVE, safe=""), headers=auth(key)).json()["status"] == "active"


def test_audit_rows_cannot_be_updated_or_deleted(warehouse, tmp_path):
    wh = tmp_path / "pv.duckdb"
    store = AuditStore(wh)
    store.append(
        client_id="c",
        method="GET",
        path="/x",
        scope="verify",
        http_status=200,
        codes=["a"],
        valid=[False],
        statuses=[None],
    )
    store.close()
    con = sqlite3.connect(store_path(wh))
    for sql in ("UPDATE api_audit SET http_status = 500", "DELETE FROM api_audit", "DELETE FROM api_audit_code"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    con.close()
    assert oct(store_path(wh).stat().st_mode & 0o777) == "0o600"


def test_a_missing_warehouse_is_503_not_500(tmp_path):
    wh = tmp_path / "absent.duckdb"
    _, key = add_client(wh, "early", "verify")
    with TestClient(create_app(wh, background=False, quiet_s=0.0)) as c:
        r = c.get("/v1/packs/x", headers=auth(key))
        assert r.status_code == 503 and r.headers["retry-after"]

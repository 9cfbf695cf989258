"""Fixtures: one hand-built warehouse per module, clients of every kind, a TestClient on the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.world import build_warehouse
from warehouse.stores.api_clients import add_client


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("api") / "pv.duckdb")


@pytest.fixture(scope="module")
def keys(warehouse) -> dict[str, str]:
    """name -> key: verify-only, EU/CN/US with every scope, trace-only, a tightly limited client."""
    out = {}
    for name, scopes, jur, limit in (
        ("verifier", "verify", None, "1000/second"),
        ("eu-authority", "verify,trace,safety", "EU", "1000/second"),
        ("cn-customs", "verify,trace,safety", "CN", "1000/second"),
        ("us-pharmacy", "verify,safety", "US", "1000/second"),
        ("tracer", "trace", None, "1000/second"),
        ("slow", "verify", None, "3/minute"),
    ):
        _, out[name] = add_client(warehouse, name, scopes, jur, rate_limit=limit)
    return out


@pytest.fixture(scope="module")
def api(warehouse, keys):
    with TestClient(create_app(warehouse, background=False, quiet_s=0.0)) as c:
        yield c


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}

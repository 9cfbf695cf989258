"""The API over HTTP: keys, scopes, jurisdictions, rate limits, audit, resolver paths, EPCIS export,
no patient data, and a real server on loopback."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.api import world
from tests.api.conftest import auth
from tests.shared_data import EPCIS_SCHEMA
from warehouse.stores.api_clients import add_client, audit_rows, hash_key, list_clients, revoke_client, store_path


def pack(api, key, code):
    r = api.get("/v1/packs/" + quote(code, safe=""), headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


# ---- access ---------------------------------------------------------------------------------
def test_requests_without_a_valid_key_are_refused_and_audited(api, keys, warehouse):
    code = quote(world.EU_ACTIVE, safe="")
    assert api.get(f"/v1/packs/{code}").status_code == 401
    assert api.get(f"/v1/packs/{code}", headers=auth("pvt_not-a-key")).status_code == 401
    assert api.get(f"/v1/packs/{code}", headers={"Authorization": keys["verifier"]}).status_code == 401
    r = api.post("/v1/verify", json={"codes": [world.EU_ACTIVE]})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    refused = [a for a in audit_rows(warehouse) if a["client_id"] is None]
    assert len(refused) >= 4 and {a["http_status"] for a in refused} == {401}


def test_keys_are_stored_only_as_hashes(warehouse, keys):
    raw = store_path(warehouse).read_bytes()
    for key in keys.values():
        assert key.encode() not in raw
    con = sqlite3.connect(store_path(warehouse))
    stored = {r[0] for r in con.execute("SELECT key_sha256 FROM api_client")}
    con.close()
    assert {hash_key(k) for k in keys.values()} <= stored
    assert all("key_sha256" not in c for c in list_clients(warehouse))


def test_a_revoked_key_stops_working_at_once(api, warehouse):
    _, key = add_client(warehouse, "temporary", "verify")
    code = quote(world.EU_ACTIVE, safe="")
    assert api.get(f"/v1/packs/{code}", headers=auth(key)).status_code == 200
    assert revoke_client(warehouse, "temporary")
    assert api.get(f"/v1/packs/{code}", headers=auth(key)).status_code == 401
    assert not revoke_client(warehouse, "temporary")


def test_client_validation():
    from warehouse.stores.api_clients import _parse_scopes

    assert _parse_scopes("trace, verify") == ["verify", "trace"]
    with pytest.raises(ValueError):
        _parse_scopes("verify,admin")


def test_safety_needs_a_jurisdiction(warehouse):
    with pytest.raises(ValueError, match="jurisdiction"):
        add_client(warehouse, "nojur", "verify,safety")
    with pytest.raises(ValueError, match="jurisdiction"):
        add_client(warehouse, "badjur", "verify", "XX")
    with pytest.raises(ValueError, match="rate limit"):
        add_client(warehouse, "badlimit", "verify", rate_limit="lots")


def test_scopes_are_enforced(api, keys):
    code = quote(world.CN_ACTIVE, safe="")
    assert api.get(f"/v1/packs/{code}", headers=auth(keys["tracer"])).status_code == 403
    body = pack(api, keys["verifier"], world.CN_ACTIVE)
    assert "trace" not in body and "safety" not in body
    assert api.get("/v1/batches/B-CN1/events", headers=auth(keys["verifier"])).status_code == 403
    us = pack(api, keys["us-pharmacy"], world.CN_ACTIVE)
    assert "safety" in us and "trace" not in us


def test_rate_limit_answers_429_with_retry_after(api, keys, warehouse):
    code = quote(world.EU_ACTIVE, safe="")
    answers = [api.get(f"/v1/packs/{code}", headers=auth(keys["slow"])).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 429, 429]
    r = api.get(f"/v1/packs/{code}", headers=auth(keys["slow"]))
    assert int(r.headers["retry-after"]) >= 1
    slow_id = next(c["client_id"] for c in list_clients(warehouse) if c["name"] == "slow")
    assert [a["http_status"] for a in audit_rows(warehouse, slow_id)][-3:] == [429, 429, 429]


def test_code_budget_counts_codes_not_requests(warehouse):
    from starlette.testclient import TestClient

    from api.app import create_app

    _, key = add_client(warehouse, "budget", "verify", code_limit="5/minute", rate_limit="100/second")
    with TestClient(create_app(warehouse, background=False, quiet_s=0.0)) as c:
        assert c.post("/v1/verify", json={"codes": ["x"] * 4}, headers=auth(key)).status_code == 200
        assert c.post("/v1/verify", json={"codes": ["x"] * 4}, headers=auth(key)).status_code == 429


# ---- verification over HTTP -------------------------------------------------------------------
def test_post_verify_answers_every_code_in_order_with_counts(api, keys, warehouse):
    codes = [*world.EXPECTED, "garbage", None]
    r = api.post("/v1/verify", json={"codes": codes}, headers=auth(keys["verifier"]))
    assert r.status_code == 200
    body = r.json()
    results = body["results"]
    assert [x["code"] for x in results] == codes
    for x in results[: len(world.EXPECTED)]:
        assert x["status"] == world.EXPECTED[x["code"]], x
    assert results[-2]["valid"] is False and results[-2]["reason"] == "unknown_format"
    assert results[-1]["reason"] == "empty"
    assert body["counts"]["invalid"] == 2 and body["counts"]["dispensed"] == 3
    fields = {"valid", "reason", "system", "gtin", "nmpa_drug_code", "lot", "serial", "expiry", "product_id",
              "product_name", "manufacturer", "batch_id", "status"}  # fmt: skip
    assert fields <= set(results[0])
    last = audit_rows(warehouse)[-1]
    assert last["path"] == "/v1/verify" and last["http_status"] == 200 and last["n_codes"] == len(codes)
    assert [c["code"] for c in last["codes"]] == codes
    assert last["codes"][0]["status"] == world.EXPECTED[codes[0]]
    assert last["statuses"]["invalid"] == 2


@pytest.mark.parametrize(
    "body, status",
    [(b"not json", 400), (b'{"codes": "x"}', 400), (b'{"codes": [1, 2]}', 400), (b"[]", 400)],
)
def test_bad_verify_bodies_are_400_not_500(api, keys, body, status):
    r = api.post("/v1/verify", content=body, headers=auth(keys["verifier"]))
    assert r.status_code == status and "error" in r.json()


def test_more_than_10000_codes_is_413(api, keys):
    r = api.post("/v1/verify", json={"codes": ["x"] * 10_001}, headers=auth(keys["verifier"]))
    assert r.status_code == 413


def test_cross_border_nmpa_code_verified_by_an_eu_authority(api, keys):
    body = pack(api, keys["eu-authority"], world.CN_ACTIVE)
    assert (body["system"], body["nmpa_drug_code"], body["batch_id"], body["status"]) == (
        "nmpa",
        world.CN_NMPA,
        "B-CN1",
        "active",
    )
    assert body["product_name"] == "Huaxin" and body["manufacturer"] == "Hua Pharma Co"


def test_cross_border_gs1_code_verified_by_chinese_customs(api, keys):
    for code in (world.EU_RECALLED, world.US_DISPENSED):
        body = pack(api, keys["cn-customs"], code)
        assert body["system"] == "gs1" and body["status"] == world.EXPECTED[code]


# ---- GS1 Digital Link resolver ------------------------------------------------------------------
def test_digital_link_resolver_paths(api, keys):
    g = world.EU_GTIN
    h = auth(keys["verifier"])
    full = api.get(f"/01/{g}/10/EU1A/21/S0010?17=271231", headers=h).json()
    assert (full["batch_id"], full["status"], full["system"]) == ("B-EU1", "active", "gs1")
    assert api.get(f"/01/{g}/10/EU1A/21/S0010", headers=h).json()["status"] == "active"
    assert api.get(f"/01/{g}/10/EU1A/21/S0001", headers=h).json()["status"] == "dispensed"
    assert api.get(f"/01/{g}/10/WRONG/21/S0010", headers=h).json()["status"] == "mismatch"
    assert api.get(f"/01/{g}/10/EU1A/21/S0010?17=291231", headers=h).json()["status"] == "mismatch"
    assert api.get(f"/01/{g}/21/S0010", headers=h).json()["status"] == "active"
    lot_only = api.get(f"/01/{world.JP_GTIN}/10/JP5", headers=h).json()
    assert (lot_only["level"], lot_only["batch_id"]) == ("batch", "B-JP1")
    encoded = api.get(f"/01/{g}/10/EU1A/21/S%30010", headers=h).json()  # percent-encoded '0'
    assert encoded["serial"] == "S0010"
    bad = api.get("/01/09501101530004/21/S0010", headers=h)
    assert bad.status_code == 200 and bad.json()["reason"] == "bad_check_digit"
    assert api.get(f"/01/{g}/10/EU1A/21/S0010").status_code == 401


# ---- trace and safety ---------------------------------------------------------------------------
def test_trace_journey_and_cold_chain(api, keys):
    body = pack(api, keys["eu-authority"], world.CN_DISPENSED)
    trace = body["trace"]
    steps = [s["step"] for s in trace["journey"]]
    # the inbox's own commissioning event of the lot (ev2) sits between shipping and receiving
    assert steps == ["commissioning", "shipping", "commissioning", "receiving", "dispensing"]
    assert trace["route_basis"] == "dispensing_region"
    assert trace["journey"][1]["destination"] == "urn:epc:id:sgln:4012345.00101.0"
    assert trace["journey"][-1]["pharmacy_id"] == "PH1" and trace["journey"][-1]["country"] == "DE"
    cold = trace["cold_chain"]
    assert cold["excursions_on_route"] == 1 and cold["max_temp_c_on_route"] == 31.0
    # an undispensed pack of the batch: every consignment, both excursion-free and not
    active = pack(api, keys["eu-authority"], world.CN_ACTIVE)["trace"]
    assert active["route_basis"] == "all_consignments"
    assert [s["step"] for s in active["journey"]].count("shipping") == 2
    assert "dispensing" not in [s["step"] for s in active["journey"]]


def test_jurisdiction_rules_for_safety(api, keys):
    def ids(key, code):
        s = pack(api, key, code)["safety"]
        return {x["signal_id"] for x in s["signals"]}, s

    cn, cn_s = ids(keys["cn-customs"], world.CN_ACTIVE)
    assert cn == {world.SIG_B_CN1, world.SIG_P_CN, world.SIG_ING}
    assert [a["signal_ids"] for a in cn_s["alerts"]] == [[world.SIG_B_CN1, world.SIG_P_CN]]
    # EU: the batch reached Germany, the product is not authorised in the EU
    eu, eu_s = ids(keys["eu-authority"], world.CN_ACTIVE)
    assert eu == {world.SIG_B_CN1} and eu_s["withheld_signals"] == 2
    assert [a["signal_ids"] for a in eu_s["alerts"]] == [[world.SIG_B_CN1]]
    # US: neither authorised nor reached
    us, us_s = ids(keys["us-pharmacy"], world.CN_ACTIVE)
    assert us == set() and us_s["alerts"] == [] and us_s["withheld_signals"] == 3
    # the refuted signal is never shown; an EU product's signal to the EU only
    assert ids(keys["eu-authority"], world.EU_ACTIVE)[0] == {world.SIG_P_EU}
    assert ids(keys["cn-customs"], world.EU_ACTIVE)[0] == set()
    assert pack(api, keys["eu-authority"], world.EU_RECALLED)["safety"]["recall_status"] == "recalled"


# ---- no patient data --------------------------------------------------------------------------
def test_no_patient_data_ever_leaves(api, keys, warehouse):
    secrets_ = world.patient_keys(warehouse) | {"PAT-1", "PAT-2", "PAT-3", "PAT-4", world.SALT}
    assert secrets_
    bodies = []
    for key in (keys["eu-authority"], keys["cn-customs"], keys["us-pharmacy"]):
        for code in world.EXPECTED:
            bodies.append(api.get("/v1/packs/" + quote(code, safe=""), headers=auth(key)).text)
        bodies.append(api.post("/v1/verify", json={"codes": list(world.EXPECTED)}, headers=auth(key)).text)
    for batch in ("B-CN1", "B-EU1", "B-EU5"):
        bodies.append(api.get(f"/v1/batches/{batch}/events", headers=auth(keys["eu-authority"])).text)
    text = "\n".join(bodies)
    for s in secrets_:
        assert s not in text
    assert "patient" not in text.lower()


# ---- EPCIS export -------------------------------------------------------------------------------
def test_batch_events_unknown_batch_is_404(api, keys):
    assert api.get("/v1/batches/NOPE/events", headers=auth(keys["tracer"])).status_code == 404


@pytest.mark.realdata
@pytest.mark.skipif(not EPCIS_SCHEMA.exists(), reason="GS1 EPCIS schema (../shared/data/epcis) not present")
@pytest.mark.parametrize("batch", ["B-CN1", "B-EU1", "B-EU5", "B-JP1"])
def test_batch_events_are_valid_epcis_2(api, keys, batch):
    from warehouse.inputs.platform.epcis_schema import EpcisValidator

    r = api.get(f"/v1/batches/{batch}/events", headers=auth(keys["tracer"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    validator = EpcisValidator(EPCIS_SCHEMA, fast=False)
    assert validator.issues(doc) == [], validator.issues(doc)
    events = doc["epcisBody"]["eventList"]
    if batch == "B-CN1":
        steps = [e["bizStep"].removeprefix("https://ref.gs1.org/cbv/BizStep-") for e in events]
        assert steps == ["commissioning", "shipping", "shipping", "commissioning", "receiving"]
        assert events[1]["sensorElementList"][0]["sensorReport"][0]["maxValue"] == 31.0
        assert events[0]["quantityList"] == [
            {"epcClass": f"urn:pvtrace:nmpa:{world.CN_NMPA}:lot:CN77", "quantity": 900.0}
        ]
    if batch == "B-EU5":
        assert events[-1]["action"] == "DELETE"
    if batch == "B-JP1":
        kinds = {e["type"]: e for e in events}
        assert kinds["AggregationEvent"]["parentID"] == "urn:epc:id:sscc:4912345.0000000001"
        assert kinds["AggregationEvent"]["childQuantityList"][0]["quantity"] == 5.0
        loaded_as = [e.get("pvtrace:loadedAs") for e in events]
        assert loaded_as.count("TransactionEvent") == 1
        assert "https://ref.gs1.org/cbv/BizStep-pvtrace_stock_check" in [e.get("bizStep") for e in events]


# ---- documents --------------------------------------------------------------------------------
def test_openapi_document_is_served_and_linked(api):
    index = api.get("/")
    assert index.status_code == 200 and 'href="/v1/openapi.json"' in index.text
    doc = api.get("/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert {
        "/v1/packs/{code}",
        "/v1/verify",
        "/v1/batches/{batch_id}/events",
        "/01/{gtin}/10/{lot}/21/{serial}",
    } <= set(doc["paths"])
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(doc["components"]["schemas"]["Pack"])


def test_a_response_matches_the_openapi_schema(api, keys):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = api.get("/v1/openapi.json").json()
    registry = Registry().with_resource("urn:api", Resource.from_contents(doc, default_specification=DRAFT202012))
    schema = {"$ref": "urn:api#/components/schemas/Pack"}
    validator = Draft202012Validator(schema, registry=registry)
    for code in [*world.EXPECTED, "garbage"]:
        body = pack(api, keys["eu-authority"], code)
        errors = list(validator.iter_errors(body))
        assert not errors, (code, errors[0].message)


# ---- a real server on loopback ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_and_cli(warehouse, tmp_path):
    exe = [sys.executable, "-m", "assets.cli"]
    wh = tmp_path / "pv.duckdb"
    wh.write_bytes(warehouse.read_bytes())
    out = subprocess.run(
        [*exe, "api-client", "add", "--warehouse", str(wh), "--name", "customs-de", "--scopes", "verify,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = out.split("stored): ")[1].strip()
    listing = subprocess.run(
        [*exe, "api-client", "list", "--warehouse", str(wh)], capture_output=True, text=True
    ).stdout
    assert "customs-de" in listing and key not in listing
    port = _free_port()
    server = subprocess.Popen(
        [*exe, "api", "--warehouse", str(wh), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # imports and the first snapshot; slow on a loaded machine
        while True:
            try:
                httpx.get(base + "/v1/openapi.json", timeout=5)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise AssertionError(f"the API server exited: {server.stderr.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        r = httpx.get(f"{base}/v1/packs/{quote(world.CN_ACTIVE)}", headers=auth(key), timeout=120)
        assert r.status_code == 200 and r.json()["status"] == "active" and "trace" in r.json()
        r = httpx.post(f"{base}/v1/verify", json={"codes": list(world.EXPECTED)}, headers=auth(key), timeout=120)
        assert [x["status"] for x in r.json()["results"]] == list(world.EXPECTED.values())
        # the CLI may add and revoke clients while the server runs (side store with several writers)
        assert subprocess.run([*exe, "api-client", "revoke", "--warehouse", str(wh), "customs-de"]).returncode == 0
        assert httpx.get(f"{base}/v1/packs/{quote(world.CN_ACTIVE)}", headers=auth(key), timeout=120).status_code == 401
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    audit = audit_rows(wh)
    assert [a["http_status"] for a in audit] == [200, 200, 401]
    assert json.dumps(audit, default=str).count(world.CN_ACTIVE) >= 2
    assert Path(str(wh) + ".api-snapshot-a.duckdb").exists()


def test_get_and_post_answer_alike(api, keys):
    codes = [*world.EXPECTED, "garbage"]
    posted = api.post("/v1/verify", json={"codes": codes}, headers=auth(keys["verifier"])).json()["results"]
    for code, answer in zip(codes, posted):
        single = pack(api, keys["verifier"], code)
        single.pop("snapshot_taken_at")
        assert single == answer

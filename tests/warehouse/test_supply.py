"""EPCIS 2.0 ingestion: schema validation (real GS1 examples), every event type, instance EPCs
through the pack table, quarantine with the validator's reason, cold-chain excursions."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
from jsonschema import Draft7Validator
from referencing.exceptions import NoSuchResource, Unresolvable

from tests.shared_data import EPCIS_SCHEMA
from warehouse.inputs.platform.epcis_schema import (
    FORMAT_CHECKER,
    EpcisValidator,
    epcis_validator,
    local_registry,
)
from warehouse.inputs.platform.supply import (
    COLD_CHAIN_EXCURSIONS_SQL,
    _gtin14,
    load_supply_events,
    parse_epc,
    read_epcis_inbox,
    temperature_readings,
)
from warehouse.schema import connect

# the public GS1 files beside the repository (not shipped: see README, "EPCIS schema")
DEFAULT_SCHEMA = EPCIS_SCHEMA
EXAMPLES = DEFAULT_SCHEMA.parent / "JSON"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.jsonld"))
pytestmark = pytest.mark.skipif(not DEFAULT_SCHEMA.exists(), reason="../shared/data/epcis not present")


def example(name: str) -> dict:
    return json.loads(next(EXAMPLES.rglob(name)).read_text(encoding="utf-8"))


# ---- the validator ----------------------------------------------------------------------------


def test_all_47_gs1_examples_are_valid_for_jsonschema_and_the_compiled_predicate():
    assert len(EXAMPLE_FILES) == 47
    v = epcis_validator(str(DEFAULT_SCHEMA))
    assert v.predicate is not None  # the schema compiled: every keyword it uses is implemented
    for f in EXAMPLE_FILES:
        doc = json.loads(f.read_text(encoding="utf-8"))
        assert v.validator.is_valid(doc), (f.name, v.issues(doc))
        assert v.predicate(doc), f.name


def test_modular_schema_resolves_its_sub_schemas_locally_and_never_fetches():
    registry = local_registry(DEFAULT_SCHEMA)
    root = json.loads((DEFAULT_SCHEMA.parent / "JSON-Schema" / "EPCIS-JSON-Schema-root.json").read_text())
    modular = Draft7Validator(root, registry=registry, format_checker=FORMAT_CHECKER)
    for name in (
        "Example_9.6.3-AggregationEvent.jsonld",
        "Example_9.6.4-TransformationEvent.jsonld",
        "SensorDataExample8.jsonld",
    ):
        assert modular.is_valid(example(name))
    broken = example("Example_9.6.1-ObjectEvent.jsonld")
    broken["epcisBody"]["eventList"][0]["action"] = "SHAKE"
    assert not modular.is_valid(broken)
    with pytest.raises(Unresolvable) as err:
        registry.resolver().lookup("https://example.invalid/not-here.json")
    assert isinstance(err.value.__cause__, NoSuchResource) or "not-here" in str(err.value)


def _mutate(doc, rng: random.Random):
    nodes = []

    def walk(o, path):
        nodes.append(path)
        children = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else []
        for k, v in children:
            walk(v, [*path, k])

    walk(doc, [])
    path = rng.choice(nodes[1:])
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    op = rng.randrange(5)
    if op == 0:
        parent[path[-1]] = rng.choice(["BOGUS", "urn:x:y", "2024-13-01T00:00:00Z", ""])
    elif op == 1:
        parent[path[-1]] = rng.choice([12, 1.5, True, None, [], {}])
    elif op == 2:
        parent.pop(path[-1])
    elif op == 3 and isinstance(parent, dict):
        parent[rng.choice(["bogus", "ex:ok", "@context"])] = 1
    else:
        parent[path[-1]] = [parent[path[-1]]]
    return doc


def test_compiled_predicate_agrees_with_jsonschema_on_mutated_documents():
    v = epcis_validator(str(DEFAULT_SCHEMA))
    rng = random.Random(20240611)
    docs = [json.loads(f.read_text()) for f in EXAMPLE_FILES]
    invalid = 0
    for _ in range(400):
        doc = _mutate(copy.deepcopy(rng.choice(docs)), rng)
        expected = v.validator.is_valid(doc)
        invalid += not expected
        assert v.predicate(doc) == expected, json.dumps(doc)[:500]
    assert invalid > 100  # the mutations do break documents


def test_issues_name_the_event_the_path_and_the_reason():
    v = EpcisValidator(DEFAULT_SCHEMA)
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"][1]["action"] = "SHAKE"
    doc["epcisBody"]["eventList"][0]["bizStep"] = "teleporting"  # neither a CBV word nor a URI
    issues = v.issues(doc)
    assert [(i.event_index, i.path) for i in issues] == [
        (0, "$.epcisBody.eventList[0].bizStep"),
        (1, "$.epcisBody.eventList[1].action"),
    ]
    assert issues[1].message == "'SHAKE' is not one of ['OBSERVE', 'ADD', 'DELETE']"
    whole = example("Example_9.6.1-ObjectEvent.jsonld")
    del whole["schemaVersion"]
    assert [(i.event_index, i.detail()) for i in v.issues(whole)] == [
        (None, "$: 'schemaVersion' is a required property")
    ]


# ---- identifiers and sensors -----------------------------------------------------------------


def test_parse_epc_reads_classes_instances_and_urns():
    gtin = _gtin14("0614141", "107346")
    assert gtin == "10614141073464"  # indicator 1, check digit 4 (GS1 EPC TDS example)
    assert parse_epc("urn:epc:id:sgtin:0614141.107346.2017") == {
        "kind": "instance",
        "gtin": gtin,
        "lot_number": None,
        "serial": "2017",
        "nmpa_drug_code": None,
    }
    assert parse_epc("urn:epc:class:lgtin:4012345.012345.998877")["lot_number"] == "998877"
    assert parse_epc("https://id.gs1.org/01/09501101530003/10/AB%2F1")["lot_number"] == "AB/1"
    dl = parse_epc("https://id.gs1.org/01/09501101530003/10/L1/21/S%201?17=271231")
    assert (dl["kind"], dl["lot_number"], dl["serial"]) == ("instance", "L1", "S 1")
    assert parse_epc("urn:epc:idpat:sgtin:4012345.098765.*")["kind"] == "product"
    assert parse_epc("urn:pvtrace:nmpa:8612345:lot:CN77")["nmpa_drug_code"] == "8612345"
    assert parse_epc("urn:epc:id:sscc:0614141.1234567890")["kind"] == "other"


def test_temperature_readings_convert_units_and_keep_interval_reports():
    ev = {
        "sensorElementList": [
            {
                "sensorMetadata": {"time": "2024-01-01T00:00:00Z"},
                "sensorReport": [
                    {"type": "gs1:Temperature", "value": 46.4, "uom": "FAH"},
                    {"type": "Humidity", "value": 99},
                ],
            },
            {
                "sensorMetadata": {"startTime": "2024-01-01T00:00:00Z", "endTime": "2024-01-01T06:00:00Z"},
                "sensorReport": [
                    {"type": "https://gs1.org/voc/Temperature", "minValue": 275.15, "maxValue": 283.15, "uom": "KEL"}
                ],
            },
        ]
    }
    assert temperature_readings(ev) == [
        {"low": 8.0, "high": 8.0, "start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        {"low": 2.0, "high": 10.0, "start": "2024-01-01T00:00:00Z", "end": "2024-01-01T06:00:00Z"},
    ]


def test_every_event_type_of_the_gs1_examples_is_read_with_roles():
    frames, rejected = read_epcis_inbox(EXAMPLE_FILES)
    assert rejected == []  # the query document's events are read too
    kinds = set(frames["events"]["event_type"])
    assert kinds == {"ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent", "AssociationEvent"}
    assert set(frames["items"]["role"]) == {"object", "parent", "child", "input", "output"}
    assert frames["readings"].height > 0


# ---- loading against a reference: instances through packs, both sides of a transformation ------


def _reference(con):
    """Products/batches/packs that the GS1 examples' identifiers name."""
    con.execute("INSERT INTO manufacturer (manufacturer_id, name) VALUES ('M', 'GS1 example maker')")
    products = [
        ("P-A", _gtin14("0614141", "107346")),
        ("P-IN", _gtin14("4012345", "011122")),
        ("P-LOT", _gtin14("4012345", "011111")),
        ("P-OUT", _gtin14("4012345", "077889")),
    ]
    for pid, gtin in products:
        con.execute(
            "INSERT INTO product (product_id, name, manufacturer_id, ingredient, gtin, storage_min_c, storage_max_c) "
            "VALUES (?, ?, 'M', 'x', ?, 2, 8)",
            [pid, pid, gtin],
        )
    for bid, pid, lot in [
        ("B-A", "P-A", "A1"),
        ("B-IN", "P-IN", "I1"),
        ("B-LOT", "P-LOT", "4444"),
        ("B-OUT", "P-OUT", "O1"),
    ]:
        con.execute("INSERT INTO batch (batch_id, product_id, lot_number) VALUES (?, ?, ?)", [bid, pid, lot])
    packs = [("B-A", products[0][1], s) for s in ("2017", "2018")] + [("B-IN", products[1][1], "25")]
    packs += [("B-OUT", products[3][1], s) for s in ("25", "26", "27", "28")]
    for bid, gtin, serial in packs:
        con.execute(
            "INSERT INTO pack (pack_code, code_system, batch_id, serial, gtin) VALUES (?, 'gs1', ?, ?, ?)",
            [f"(01){gtin}(21){serial}", bid, serial, gtin],
        )


@pytest.fixture()
def gs1_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "supply").mkdir(parents=True)
    for name in ("Example_9.6.3-AggregationEvent.jsonld", "Example_9.6.4-TransformationEvent.jsonld"):
        shutil.copy(next(EXAMPLES.rglob(name)), inbox / "supply" / f"epcis_{name}")
    con = connect(":memory:")
    _reference(con)
    yield con, inbox
    con.close()


def test_aggregation_children_reach_their_batch_through_the_pack_table(gs1_inbox):
    con, inbox = gs1_inbox
    load_supply_events(con, inbox)
    rows = con.sql(
        "SELECT event_type, role, batch_id, epc_count, quantity, parent_id FROM supply_event "
        "WHERE event_type = 'AggregationEvent'"
    ).fetchall()
    assert rows == [("AggregationEvent", "child", "B-A", 2, 2.0, "urn:epc:id:sscc:0614141.1234567890")]


def test_transformation_records_inputs_and_outputs(gs1_inbox):
    con, inbox = gs1_inbox
    load_supply_events(con, inbox)
    rows = con.sql(
        "SELECT role, batch_id, epc_count, quantity, event_id, epcis_event_id FROM supply_event "
        "WHERE event_type = 'TransformationEvent' ORDER BY event_id"
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("input", "B-IN", 1, 1.0),
        ("input", "B-LOT", None, 10.0),
        ("output", "B-OUT", 4, 4.0),
    ]
    eid = rows[0][5]
    assert [r[4] for r in rows] == [f"{eid}#0", f"{eid}#1", f"{eid}#2"]
    # the unknown items of a partly resolved event are quarantined one by one, not the event
    q = con.sql(
        "SELECT reason, detail FROM quarantine WHERE stage = 'supply' AND record_key = ? ORDER BY detail", params=[eid]
    ).fetchall()
    assert q == [
        ("unknown_batch", "input urn:epc:class:lgtin:0614141.077777.987: no batch with this product + lot"),
        ("unknown_pack", "input urn:epc:id:sgtin:4000001.065432.99886655: no pack with this GTIN + serial"),
    ]


def test_a_broken_copy_of_a_real_example_is_quarantined_with_the_validators_reason(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "supply").mkdir(parents=True)
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"][1]["action"] = "SHAKE"
    (inbox / "supply" / "epcis_broken_event.jsonld").write_text(json.dumps(doc))
    whole = example("Example_9.6.2-ObjectEvent.jsonld")
    whole["epcisBody"]["eventList"] = {"not": "a list"}
    (inbox / "supply" / "epcis_broken_doc.jsonld").write_text(json.dumps(whole))
    (inbox / "supply" / "epcis_truncated.jsonld").write_text('{"type": "EPCISDocument", ')
    con = connect(":memory:")
    load_supply_events(con, inbox)
    q = con.sql(
        "SELECT source_file, record_key, reason, detail FROM quarantine WHERE stage = 'supply' "
        "AND reason IN ('schema_invalid', 'bad_json') ORDER BY source_file"
    ).pl()
    by_file = {Path(f).name: (k, r, d) for f, k, r, d in q.iter_rows()}
    assert by_file["epcis_broken_doc.jsonld"][1:] == (
        "schema_invalid",
        "whole file: document not loaded (0 events): $.epcisBody.eventList: {'not': 'a list'} is not of type 'array'",
    )
    key, reason, detail = by_file["epcis_broken_event.jsonld"]
    assert reason == "schema_invalid" and key == doc["epcisBody"]["eventList"][1]["eventID"]
    assert detail == "$.epcisBody.eventList[1].action: 'SHAKE' is not one of ['OBSERVE', 'ADD', 'DELETE']"
    assert by_file["epcis_truncated.jsonld"][1] == "bad_json"
    # the valid first event of the broken file was still read (and quarantined for its own reason:
    # its GTIN is no product of ours), not lost with its neighbour
    first = doc["epcisBody"]["eventList"][0]["eventID"]
    assert con.execute("SELECT reason FROM quarantine WHERE record_key = ?", [first]).fetchone() == ("unknown_pack",)


# ---- the synthetic world -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sample_data.world import generate_world
    from warehouse.inputs.platform.packs import load_packs
    from warehouse.inputs.platform.reference import load_reference

    root = tmp_path_factory.mktemp("supply_world")
    truth = generate_world(root / "inbox", seed=7, scale=0.3)
    con = connect(str(root / "pv.duckdb"))
    load_reference(con, root / "inbox")
    load_packs(con, root / "inbox")
    counts = load_supply_events(con, root / "inbox")
    yield con, truth, counts
    con.close()


def test_synthetic_world_is_schema_valid_and_fully_resolved(world):
    con, _, counts = world
    assert counts["quarantined"] == 0 and counts["supply_events"] > 1000
    assert con.sql("SELECT count(*) FROM supply_event WHERE batch_id IS NULL").fetchone() == (0,)


def test_planted_cold_chain_batch_is_flagged_and_no_clean_batch(world):
    con, truth, _ = world
    cold = next(s for s in truth["signals"] if s["kind"] == "cold_chain")
    exc = con.sql(COLD_CHAIN_EXCURSIONS_SQL).pl()
    assert exc["batch_id"].to_list() == [cold["batch_id"]]
    row = exc.row(0, named=True)
    assert row["event_id"] == cold["excursion_event_id"] and row["consignment_id"] == cold["consignment_id"]
    assert row["max_temp_c"] == cold["max_temp_c"] and row["storage_max_c"] == 8.0
    assert row["peak_at"].strftime("%Y-%m-%dT%H:%M:%SZ") == cold["excursion_at"]
    assert row["readings_out_of_range"] >= 1 and row["duration_minutes"] >= 0
    # the loader's table and a direct reading of supply_event agree (what evidence.py counts)
    direct = con.sql(
        "SELECT DISTINCT s.batch_id FROM supply_event s JOIN batch b USING (batch_id) "
        "JOIN product p USING (product_id) WHERE s.max_temp_c > p.storage_max_c "
        "OR s.min_temp_c < p.storage_min_c"
    ).fetchall()
    assert direct == [(cold["batch_id"],)]


def test_every_cold_chain_shipment_carries_readings(world):
    con, _, _ = world
    n = con.sql(
        "SELECT count(*) FILTER (WHERE sensor_readings IS NULL) FROM supply_event s JOIN batch b USING (batch_id) "
        "JOIN product p USING (product_id) WHERE p.storage_max_c = 8 AND s.biz_step = 'shipping'"
    ).fetchone()[0]
    assert n == 0
    assert pl.DataFrame(con.sql("SELECT DISTINCT role FROM supply_event").fetchall())[:, 0].to_list() == ["object"]


def test_schema_location_is_configurable_and_a_wrong_one_is_an_error(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    (inbox / "supply").mkdir(parents=True)
    shutil.copy(next(EXAMPLES.rglob("Example_9.6.1-ObjectEvent.jsonld")), inbox / "supply" / "epcis_a.jsonld")
    con = connect(":memory:")
    monkeypatch.setenv("PVTRACE_EPCIS_SCHEMA", str(DEFAULT_SCHEMA))
    assert load_supply_events(con, inbox)["documents_validated"] == 1
    monkeypatch.setenv("PVTRACE_EPCIS_SCHEMA", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="PVTRACE_EPCIS_SCHEMA"):
        load_supply_events(con, inbox)


def test_without_a_configured_schema_documents_load_unvalidated_and_say_so(tmp_path, monkeypatch):
    """The product never looks for the schema outside its configuration (no path beside the checkout)."""
    inbox = tmp_path / "inbox"
    (inbox / "supply").mkdir(parents=True)
    shutil.copy(next(EXAMPLES.rglob("Example_9.6.1-ObjectEvent.jsonld")), inbox / "supply" / "epcis_a.jsonld")
    monkeypatch.delenv("PVTRACE_EPCIS_SCHEMA", raising=False)
    with pytest.warns(UserWarning, match="unvalidated"):
        assert load_supply_events(connect(":memory:"), inbox)["documents_validated"] == 0

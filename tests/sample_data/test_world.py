"""The synthetic world: determinism, valid codes, consistent ground truth, contract-shaped files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest

from sample_data.world import generate_world
from warehouse.linkage.pack_codes import gs1_check_digit

SCALE = 0.05
HRI = re.compile(r"^\(01\)(\d{14})\(17\)(\d{6})\(10\)([^()]+)\(21\)(.+)$")
RAW = re.compile(r"^01(\d{14})17(\d{6})10(.+)<GS>21(.+)$")
LINK = re.compile(r"^https://id\.gs1\.org/01/(\d{14})/10/([^/]+)/21/([^?]+)\?17=(\d{6})$")
NMPA = re.compile(r"^8\d{19}$")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world") / "inbox"
    return out, generate_world(out, seed=42, scale=SCALE)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _canonical(code: str) -> str:
    """Scanned form -> the serialised form written in packs/ (HRI or NMPA digits)."""
    if m := RAW.match(code):
        g, e, lot, s = m.groups()
        return f"(01){g}(17){e}(10){lot}(21){s}"
    if m := LINK.match(code):
        g, lot, s, e = m.groups()
        return f"(01){g}(17){e}(10){lot}(21){s}"
    return code


def _valid_date(s) -> bool:
    try:
        dt.date.fromisoformat(s)
        return True
    except (TypeError, ValueError):
        return False


def test_same_seed_same_bytes_and_rerun_overwrites(world, tmp_path):
    root, _ = world
    other = tmp_path / "inbox"
    generate_world(other, seed=7, scale=SCALE)  # a different world first ...
    (other / "deliveries" / "stray.csv").write_text("left over\n")
    generate_world(other, seed=42, scale=SCALE)  # ... then overwritten by seed 42
    assert _files(other) == _files(root)


def test_inbox_layout_matches_contract(world):
    root, _ = world
    for sub, pattern in [
        ("reference", "*.csv"),
        ("packs", "packs_*.parquet"),
        ("supply", "epcis_*.jsonld"),
        ("deliveries", "deliveries_*.csv"),
        ("medication_logs", "medication_log_*.parquet"),
        ("cases", "cases_*.jsonl"),
    ]:
        assert list((root / sub).glob(pattern)), sub
    products = pl.read_csv(root / "reference" / "products.csv", infer_schema=False)
    assert products.columns == [
        "product_id",
        "name",
        "manufacturer_id",
        "ingredient",
        "atc_code",
        "form",
        "strength",
        "route",
        "region",
        "gtin",
        "ndc",
        "nmpa_drug_code",
        "storage_min_c",
        "storage_max_c",
        "additional_monitoring",
    ]
    cold = products.filter(pl.col("storage_max_c").cast(pl.Float64) == 8.0)
    assert cold.height >= 2
    assert products.filter(pl.col("route").is_in(["intramuscular", "subcutaneous"])).height >= 4


def test_product_identifiers_per_jurisdiction(world):
    root, _ = world
    products = pl.read_csv(root / "reference" / "products.csv", infer_schema=False).fill_null("")
    for r in products.iter_rows(named=True):
        if r["region"] == "CN":
            assert r["gtin"] == "" and re.fullmatch(r"8\d{6}", r["nmpa_drug_code"])
        else:
            assert re.fullmatch(r"\d{14}", r["gtin"]) and gs1_check_digit(r["gtin"][:13]) == r["gtin"][13]
        if r["region"] == "US":
            assert r["gtin"] == "003" + r["ndc"].replace("-", "") + r["gtin"][13]
            assert re.fullmatch(r"\d{5}-\d{3}-\d{2}", r["ndc"])


def test_pack_codes_valid(world):
    root, _ = world
    packs = pl.read_parquet(root / "packs")
    batches = pl.read_csv(root / "reference" / "batches.csv", infer_schema=False)
    products = pl.read_csv(root / "reference" / "products.csv", infer_schema=False).fill_null("")
    assert packs["pack_code"].n_unique() == packs.height
    j = packs.join(batches, on="batch_id").join(products, on="product_id")
    gs1 = j.filter(pl.col("code_system") == "gs1")
    for code, gtin, lot, serial, exp in gs1.select(
        "pack_code", "gtin", "lot_number", "serial", "expiry_on"
    ).iter_rows():
        m = HRI.match(code)
        assert m and m.group(1) == gtin and m.group(3) == lot and m.group(4) == serial
        assert gs1_check_digit(m.group(1)[:13]) == m.group(1)[13]
        assert m.group(2) == exp[2:4] + exp[5:7] + exp[8:10]
    nmpa = j.filter(pl.col("code_system") == "nmpa")
    assert nmpa.height > 0
    assert nmpa["pack_code"].str.contains(r"^8\d{19}$").all()
    assert (nmpa["pack_code"].str.slice(0, 7) == nmpa["nmpa_drug_code"]).all()
    units = packs.group_by("batch_id").len()
    assert (
        batches.select("batch_id", pl.col("units_released").cast(pl.Int64))
        .join(units, on="batch_id")
        .filter(pl.col("units_released") != pl.col("len"))
        .is_empty()
    )


def test_deliveries_use_distinct_released_packs_and_bad_counts_match(world):
    root, truth = world
    d = pl.read_csv(root / "deliveries", infer_schema=False)
    packs = pl.read_parquet(root / "packs")
    batches = pl.read_csv(root / "reference" / "batches.csv", try_parse_dates=True)
    products = pl.read_csv(root / "reference" / "products.csv", infer_schema=False).fill_null("")
    assert d["delivery_id"].n_unique() == d.height == truth["counts"]["deliveries"]
    d = d.with_columns(code=pl.col("pack_code").map_elements(_canonical, return_dtype=pl.String))
    j = d.join(packs.select("pack_code", "batch_id"), left_on="code", right_on="pack_code", how="left")
    j = j.join(batches.select("batch_id", "expiry_on", "released_on"), on="batch_id", how="left")
    j = j.with_columns(day=pl.col("delivered_at").str.slice(0, 10).str.to_date())
    found = j.filter(pl.col("batch_id").is_not_null())
    expired = found.filter(pl.col("day") > pl.col("expiry_on"))
    good = found.filter(pl.col("day") <= pl.col("expiry_on"))
    assert (good["released_on"] < good["day"]).all()
    assert good["code"].n_unique() == good.height  # one pack, one delivery

    missing = j.filter(pl.col("batch_id").is_null())["code"].to_list()
    gtins = set(products["gtin"]) - {""}
    nmpa_codes = set(products["nmpa_drug_code"]) - {""}
    reasons = {"bad_check_digit": 0, "unknown_gtin": 0, "unknown_nmpa": 0}
    for code in missing:
        if NMPA.match(code):
            assert code[:7] not in nmpa_codes
            reasons["unknown_nmpa"] += 1
            continue
        gtin = HRI.match(code).group(1)
        if gs1_check_digit(gtin[:13]) != gtin[13]:
            reasons["bad_check_digit"] += 1
        else:
            assert gtin not in gtins
            reasons["unknown_gtin"] += 1
    expected = truth["bad_inputs"]["deliveries"]
    assert reasons == {k: expected[k] for k in reasons}
    assert expired.height == expected["expired_at_delivery"]
    assert truth["counts"]["deliveries_valid"] == good.height


def _read_cases(root: Path) -> tuple[list[dict], list[str]]:
    ok, broken = [], []
    for f in sorted((root / "cases").glob("cases_*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                ok.append(json.loads(line))
            except json.JSONDecodeError:
                broken.append(line)
    return ok, broken


def test_case_lines_follow_contract(world):
    root, truth = world
    cases, broken = _read_cases(root)
    bad = {"bad_json": len(broken), "missing_reactions": 0, "bad_date": 0}
    valid = []
    for c in cases:
        if not c["reactions"]:
            bad["missing_reactions"] += 1
            continue
        if not _valid_date(c["received_on"]):
            bad["bad_date"] += 1
            continue
        valid.append(c)
        assert isinstance(c["version"], int) and c["version"] >= 1
        assert c["source"] in {"patient_app", "hcp", "pharmacist", "literature", "regulator"}
        assert c["reporter_qualification"] in {"consumer", "physician", "pharmacist", "other_hcp"}
        assert c["sex"] in {"F", "M", None}
        assert c["age_years"] is None or 0 <= c["age_years"] <= 120
        assert c["serious"] == bool(c["seriousness"])
        assert set(c["seriousness"]) <= {
            "death",
            "life_threatening",
            "hospitalisation",
            "disability",
            "congenital_anomaly",
            "other_medically_important",
        }
        assert c["outcome"] in {
            "recovered",
            "recovering",
            "not_recovered",
            "recovered_with_sequelae",
            "fatal",
            "unknown",
        }
        assert c["drugs"] and all(x["product_name"] or x["pack_code"] for x in c["drugs"])
        assert {x["role"] for x in c["drugs"]} <= {"suspect", "concomitant", "interacting"}
        for r in c["reactions"]:
            assert r["pt"] and r["soc"] and r["onset_date"] <= c["received_on"]
            assert r["onset_date"] >= c["drugs"][0]["start_date"]
    assert bad == truth["bad_inputs"]["cases"]
    keys = {(c["case_id"], c["version"]) for c in valid}
    assert len(keys) == len(valid) == truth["counts"]["case_versions"]
    assert len({c["case_id"] for c in valid}) == truth["counts"]["cases"]
    assert any(c["version"] == 2 for c in valid)
    ids = {c["case_id"] for c in valid}
    assert truth["duplicates"] and all(a in ids and b in ids for a, b in truth["duplicates"])
    scanned = [x["pack_code"] for c in valid for x in c["drugs"] if x["pack_code"]]
    assert any(LINK.match(s) for s in scanned) and any(RAW.match(s) for s in scanned)
    assert any(NMPA.match(s) for s in scanned) and any(HRI.match(s) for s in scanned)

    # the truth table covers every drug of every valid case version, with consistent batches
    truth_rows = pl.read_parquet(root / "ground_truth_case_batches.parquet")
    n_drugs = sum(len(c["drugs"]) for c in valid)
    assert truth_rows.height == n_drugs
    batches = pl.read_csv(root / "reference" / "batches.csv", infer_schema=False)
    assert truth_rows.join(batches, on="batch_id", how="anti").is_empty()
    assert truth_rows.join(batches, on=["batch_id", "product_id"], how="anti").is_empty()


def test_planted_signals_consistent(world):
    root, truth = world
    products = pl.read_csv(root / "reference" / "products.csv", infer_schema=False)
    batches = pl.read_csv(root / "reference" / "batches.csv", infer_schema=False)
    sig = {s["kind"]: s for s in truth["signals"]}
    assert set(sig) == {"product", "batch_defect", "cold_chain"}

    defect = sig["batch_defect"]
    b = batches.filter(pl.col("batch_id") == defect["batch_id"]).row(0, named=True)
    assert b["product_id"] == defect["product_id"] and b["lot_number"] == defect["lot_number"]
    route = products.filter(pl.col("product_id") == b["product_id"])["route"][0]
    assert route in {"subcutaneous", "intramuscular", "intravenous"}

    assert defect["observed_cases"] > 2 * defect["expected_background_cases"]

    cold = sig["cold_chain"]
    assert products.filter(pl.col("product_id") == cold["product_id"])["storage_max_c"][0] == "8.0"
    month = cold["excursion_at"][:7]
    doc = json.loads((root / "supply" / f"epcis_{month}.jsonld").read_text())
    event = next(e for e in doc["epcisBody"]["eventList"] if e["eventID"] == cold["excursion_event_id"])
    assert event["bizStep"] == "shipping" and event["pvtrace:consignmentId"] == cold["consignment_id"]
    temps = [r["value"] for el in event["sensorElementList"] for r in el["sensorReport"]]
    assert max(temps) == cold["max_temp_c"] > 8.0
    assert cold["lot_number"] in event["quantityList"][0]["epcClass"]

    assert len(truth["negative_controls"]) >= 5
    assert truth["known_adrs"]


def test_defect_reports_have_onsets_within_a_day(tmp_path):
    """Heparin-type contamination acts within a day: most reports of the defective batch's PTs
    have their onset on the day of delivery or the next (a scale-0.05 world has only two or
    three such reports, too few for a share; this world has dozens)."""
    root = tmp_path / "inbox"
    truth = generate_world(root, seed=42, scale=0.3)
    defect = next(s for s in truth["signals"] if s["kind"] == "batch_defect")
    cases, _ = _read_cases(root)
    by_key = {(c["case_id"], c["version"]): c for c in cases}
    truth_rows = pl.read_parquet(root / "ground_truth_case_batches.parquet").filter(
        (pl.col("batch_id") == defect["batch_id"]) & (pl.col("drug_index") == 0) & (pl.col("version") == 1)
    )
    onsets = []
    for case_id, version in truth_rows.select("case_id", "version").iter_rows():
        c = by_key[(case_id, version)]
        start = dt.date.fromisoformat(c["drugs"][0]["start_date"])
        onsets += [
            (dt.date.fromisoformat(r["onset_date"]) - start).days for r in c["reactions"] if r["pt"] in defect["pts"]
        ]
    assert len(onsets) >= 5 and sum(o <= 1 for o in onsets) >= 0.6 * len(onsets)


def test_epcis_documents_validate_against_the_schema(world):
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).resolve().parents[3] / "shared" / "data" / "epcis" / "EPCIS-JSON-Schema.json"
    if not schema_path.exists():
        pytest.skip("EPCIS JSON schema not available")
    validator = jsonschema.Draft7Validator(json.loads(schema_path.read_text()))
    docs = sorted((world[0] / "supply").glob("epcis_*.jsonld"))
    steps = set()
    for path in docs[::3]:  # a sample keeps the test fast
        doc = json.loads(path.read_text())
        errors = list(validator.iter_errors(doc))
        assert not errors, (path.name, errors[0].message[:200])
        steps |= {e["bizStep"] for e in doc["epcisBody"]["eventList"]}
    assert steps == {"commissioning", "shipping", "receiving"}


def test_null_world_is_the_same_world_without_planted_effects(world, tmp_path):
    root, truth = world
    null = tmp_path / "null"
    null_truth = generate_world(null, seed=42, scale=SCALE, null=True)
    assert null_truth["null_world"] is True and truth["null_world"] is False
    assert null_truth["signals"] == []  # no product signal, no defective batch, no cold-chain excursion
    for sub in ("reference", "packs", "deliveries", "medication_logs"):
        files = sorted((root / sub).iterdir())
        assert files and [f.name for f in files] == sorted(f.name for f in (null / sub).iterdir())
        for f in files:
            assert f.read_bytes() == (null / sub / f.name).read_bytes(), f
    assert null_truth["counts"]["cases"] > 0  # background reports (drawn alike, then their own delays)
    temps = [
        r["value"]
        for p in sorted((null / "supply").glob("*.jsonld"))
        for e in json.loads(p.read_text())["epcisBody"]["eventList"]
        for s in e.get("sensorElementList", [])
        for r in s["sensorReport"]
    ]
    assert temps and max(temps) <= 8.0  # no excursion


def test_background_truth_and_weekly_patterns(world):
    root, truth = world
    bg = truth["background"]
    assert bg["drug_event_heterogeneity"]["distribution"] == "gamma"
    products = set(pl.read_csv(root / "reference" / "products.csv", infer_schema=False)["product_id"])
    assert bg["indication_events"] and {e["product_id"] for e in bg["indication_events"]} <= products
    negative = {(c["product_id"], c["pt"]) for c in truth["negative_controls"]}
    expected = {(e["product_id"], e["pt"]) for e in bg["indication_events"] + truth["known_adrs"]}
    assert not negative & expected  # a negative control is never an expected association
    for s in bg["stimulated_reporting"]:
        assert s["product_id"] in products and s["publicised_on"] < s["window_end"]
    d = pl.read_csv(root / "deliveries" / "*.csv", infer_schema=False).with_columns(
        wd=pl.col("delivered_at").str.slice(0, 10).str.to_date().dt.weekday()
    )
    per_day = dict(d.group_by("wd").len().iter_rows())
    assert per_day[7] < 0.5 * per_day[1]  # Sundays are quiet, Mondays catch up
    cases, _ = _read_cases(root)
    professional = [
        c for c in cases if c["source"] in ("hcp", "pharmacist") and c["version"] == 1 and _valid_date(c["received_on"])
    ]
    weekdays = {dt.date.fromisoformat(c["received_on"]).weekday() for c in professional}
    assert professional and weekdays <= {0, 1, 2, 3, 4}  # professionals report on working days

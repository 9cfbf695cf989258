"""FDA rules that need FDA's registries (R0105, R0106, W0012, W0009, W0008) run against the user's registry file;
without one they say "not checked", never "pass"; a malformed registry is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.e2b.registry import ENV, RegistryError, load_registry, parse_registry
from reports.e2b.rules import evaluate

INSTANCES = Path(__file__).resolve().parents[3] / "shared" / "data" / "e2b_r3" / "instances_fda"
realdata = [pytest.mark.realdata, pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")]
HEADER = "registry,number,centre,product_name\n"
REGISTRY_RULES = ("R0105", "R0106", "W0012", "W0009", "W0008")

# what FDA's example instances carry: INDs 123456 / 012345 (CDER) with cross-reported INDs, pre-ANDA 054321,
# device problem codes 4001 / 3003 / ... — registered here as a sender would register its own
FDA_EXAMPLES_REGISTRY = (
    HEADER
    + "ind,123456,CDER,MK-001\n"
    + "ind,123456,CDER,Drug B\n"
    + "ind,012345,CDER,AA-001\n"
    + "ind,222222,CDER,\n"
    + "ind,333333,CDER,\n"
    + "ind,104618,CDER,\n"
    + "pre_anda,054321,CDER,TEST\n"
)


def _codes() -> list[str]:
    from lxml import etree

    out = set()
    for f in sorted(INSTANCES.glob("FAERS2022Scenario*.xml")):
        root = etree.parse(str(f)).getroot()
        out |= set(
            root.xpath("//h:characteristic[h:code/@code='C54451']/h:value/@code", namespaces={"h": "urn:hl7-org:v3"})
        )
    return sorted(out)


@pytest.mark.parametrize("path", sorted(INSTANCES.glob("FAERS2022Scenario*.xml")), ids=lambda p: p.name)
@pytest.mark.realdata
@pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")
def test_fda_examples_without_a_registry_are_not_checked_and_with_one_pass(path):
    xml = path.read_bytes()
    bare = evaluate(xml, "fda")
    checked = {rid for per in bare.results.values() for rid, r in per.items() if r.startswith("not checked")}
    assert all(r in REGISTRY_RULES for r in checked)
    for per in bare.results.values():
        for rid in REGISTRY_RULES:
            assert per[rid] in ("n/a", "not checked: no registry configured")  # never "pass" without a registry
    assert set(bare.status()["not_checked"]) == {f"{r}: no registry configured" for r in checked}

    registry = parse_registry(
        FDA_EXAMPLES_REGISTRY + "".join(f"device_problem_code,{c},,\n" for c in _codes()), "examples.csv"
    )
    ev = evaluate(xml, "fda", registry=registry)
    assert ev.of("reject") == [], ev.findings
    # Scenario 5 is an IND-exempt BA/BE study: its reference product and vehicle are not the registered product,
    # which is FDA's documented W0009 case ("ignore this message for comparator study product")
    expected_warnings = {"W0009"} if "Scenario5" in path.name else set()
    assert {f[1] for f in ev.of("warn")} == expected_warnings, ev.findings
    assert {rid for per in ev.results.values() for rid, r in per.items() if r == "pass"} >= checked - expected_warnings


@pytest.mark.realdata
@pytest.mark.skipif(not INSTANCES.exists(), reason="../shared/data not available")
def test_an_unregistered_ind_is_rejected_and_a_wrong_product_warned():
    xml = (INSTANCES / "FAERS2022Scenario3.xml").read_bytes()  # IND 123456 at CDER, cross-reported 222222, 333333
    registry = parse_registry(HEADER + "ind,123456,CBER,Another product\nind,222222,CDER,\n", "r.csv")
    ev = evaluate(xml, "fda", registry=registry)
    found = {(rid, msg) for _, rid, _, msg in ev.findings}
    assert ("R0105", "FDA.C.5.5a 123456 is not registered for CDER in the ind registry") in found  # wrong centre
    assert ("W0012", "FDA.C.5.6.r 333333 is not registered for CDER in the ind registry") in found
    assert not any(m.startswith("FDA.C.5.6.r 222222") for _, m in found)
    assert any(rid == "W0009" and "'MK-001'" in m for rid, m in found)
    assert ev.rejected


def test_registry_file_format_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert load_registry() is None
    path = tmp_path / "registry.csv"
    path.write_text(HEADER + "IND, 123456 ,cder,  Cure  All \n\ndevice_problem_code,A0401,,\n", encoding="utf-8")
    monkeypatch.setenv(ENV, str(path))
    reg = load_registry()
    assert reg.has("ind", "123456", "CDER") and not reg.has("ind", "123456", "CBER")
    assert reg.product_names("ind", "123456") == {"cure all"} and reg.has("device_problem_code", "A0401")
    for body, message in [
        ("number,registry\n", "header"),
        (HEADER + "nda,1,CDER,\n", "line 2: registry must be one of"),
        (HEADER + "ind,IND123456,CDER,\n", "digits without a prefix"),
        (HEADER + "ind,123456,CDRH,\n", "centre must be CDER or CBER"),
        (HEADER + "device_problem_code,12345678,,\n", "not a device problem code"),
        (HEADER + "device_problem_code,1234,CDER,\n", "has no centre"),
    ]:
        with pytest.raises(RegistryError, match=message):
            parse_registry(body, "r.csv")
    with pytest.raises(RegistryError, match="cannot be read"):
        load_registry(tmp_path / "missing.csv")

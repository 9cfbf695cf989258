"""End to end: the monthly schedule's partition runs in process and writes what the regulators receive.

One small seeded world, the unpartitioned graph, then the report assets for the partition the
monthly schedule asks for at 2026-01-01 04:00 UTC (December 2025, the world's last month). PDFs are
rendered once for the module (they dominate the cost); the tests read what was written.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time

import dagster as dg
import polars as pl
import pytest
from lxml import etree

from assets.definitions import ALL_ASSETS, ALL_CHECKS, REPORT_ASSETS, defs
from assets.register import priority_threshold
from assets.resources import default_resources
from reports.e2b.rules import evaluate
from reports.e2b.sender import DEMO_SENDER
from reports.e2b.sender import ENV as E2B_SENDER_ENV
from reports.e2b.validation import validate
from reports.jurisdictions import JURISDICTION_CODES, JURISDICTIONS
from reports.periodic_report import mask_volatile, priority_page_ids
from sample_data.world import generate_world
from warehouse.queries import report_queries as rq
from warehouse.schema import connect

pytestmark = pytest.mark.e2e

SCALE = 0.15
SEED = 7
TICK = dt.datetime(2026, 1, 1, 4, 0, tzinfo=dt.UTC)
HL7 = {"h": "urn:hl7-org:v3"}


def scheduled_partition(at: dt.datetime) -> str:
    schedule = defs.resolve_schedule_def("monthly_report")
    with dg.build_schedule_context(instance=dg.DagsterInstance.ephemeral(), scheduled_execution_time=at) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert len(requests) == 1
    return requests[0].partition_key


@pytest.fixture(scope="module", autouse=True)
def e2b_sender():
    """The E2B files need a configured sender: the demo's fictitious one, as ``pvtrace demo`` uses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(E2B_SENDER_ENV, str(DEMO_SENDER))
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory, e2b_sender):
    root = tmp_path_factory.mktemp("reports_world")
    truth = generate_world(root / "inbox", seed=SEED, scale=SCALE)
    resources = default_resources(
        inbox=str(root / "inbox"), warehouse=str(root / "pv.duckdb"), output=str(root / "output")
    )
    dg.materialize([*ALL_ASSETS, *ALL_CHECKS], resources=resources, raise_on_error=True)
    key = scheduled_partition(TICK)
    t0 = time.perf_counter()
    result = dg.materialize(
        [*ALL_ASSETS, *REPORT_ASSETS],
        selection=dg.AssetSelection.assets(*REPORT_ASSETS),
        partition_key=key,
        resources=resources,
        raise_on_error=True,
    )
    seconds = time.perf_counter() - t0
    print(f"\nreport partition {key}: {seconds:.1f} s for {len(REPORT_ASSETS)} assets")
    return {
        "root": root,
        "out": root / "output",
        "truth": truth,
        "key": key,
        "result": result,
        "resources": resources,
        "seconds": seconds,
    }


@pytest.fixture()
def con(world):
    c = connect(str(world["root"] / "pv.duckdb"), read_only=True)
    yield c
    c.close()


def test_schedule_builds_the_month_just_ended(world):
    assert world["key"] == "2025-12-01"
    assert scheduled_partition(dt.datetime(2025, 12, 1, 4, 0, tzinfo=dt.UTC)) == "2025-11-01"
    mats = {e.asset_key.to_user_string() for e in world["result"].get_asset_materialization_events()}
    assert mats == {a.key.to_user_string() for a in REPORT_ASSETS}
    assert all(e.partition == "2025-12-01" for e in world["result"].get_asset_materialization_events())


def test_every_jurisdiction_gets_its_documents(world):
    reports = world["out"] / "reports"
    for code in JURISDICTION_CODES:
        for suffix in ("html", "pdf"):
            path = reports / f"periodic_signal_report_{code}_2025-12.{suffix}"
            assert path.exists() and path.stat().st_size > 5_000, path
        assert (reports / f"expedited_clock_{code}_2025-12.csv").exists()
    assert sorted((world["out"] / "ermr" / "2025-12").glob("ermr_*_2025-12.csv"))


def test_e2b_files_are_schema_valid_pass_their_profile_and_carry_linked_lots(world, con):
    lots = {r[0] for r in con.sql("SELECT lot_number FROM batch").fetchall()}
    files = sorted((world["out"] / "e2b").glob("e2b_icsr_*_2025-12.xml"))
    assert files and not (world["out"] / "e2b" / "rejected").exists()
    for path in files:
        doc = etree.parse(str(path))
        assert validate(doc.getroot()) == [], path.name
        code = path.name.split("_")[2]
        clock = pl.read_csv(world["out"] / "reports" / f"expedited_clock_{code}_2025-12.csv")
        assert doc.xpath("h:receiver/h:device/h:id/@extension", namespaces=HL7) == [JURISDICTIONS[code].e2b_receiver]
        report_ids = doc.xpath(
            "//h:investigationEvent/h:id[@root='2.16.840.1.113883.3.989.2.1.3.1']/@extension", namespaces=HL7
        )
        assert {r.split("-PVTRACE-")[1] for r in report_ids} == set(clock["case_id"])
        written = set(doc.xpath("//h:lotNumberText/text()", namespaces=HL7))
        linked = {lot for lot in written if lot in lots}
        assert linked, f"{path.name}: no batch lot from the linkage in G.k.4.r.7"
        status = json.loads(path.with_suffix(".status.json").read_text())
        assert status["status"] == "valid" and status["cases"] == len(report_ids)
        # the business rules of the regulator's profile pass; what keeps the file from a gateway is named
        assert status["profile"] == code and status["rule_counts"]["reject"] == 0
        assert evaluate(path.read_bytes(), code, meddra_loaded=False).of("reject") == []
        assert "not gateway-ready: no MedDRA terminology loaded (E.i.2.1a/b not coded)" in status["not_gateway_ready"]
        assert status["gateway_ready"] is False


def _pdftotext(path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: make system-deps")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_pdf_text_holds_the_signals_and_their_batches(world, con):
    for code in JURISDICTION_CODES:
        j = JURISDICTIONS[code]
        text = _pdftotext(world["out"] / "reports" / f"periodic_signal_report_{code}_2025-12.pdf")
        signals = rq.period_signals(con, j.market_region, dt.date(2025, 12, 1), dt.date(2025, 12, 31))
        for sid in signals["signal_id"]:
            assert sid in text, f"{code}: {sid} not in the PDF"
        # a full page (priority at or above the threshold, or a status change) lists every batch of the signal;
        # every other signal is a table row with its five batches with most linked cases
        full = priority_page_ids(signals.to_dicts(), priority_threshold())
        batches = rq.signal_batch_annex(con, signals["signal_id"].to_list(), dt.date(2025, 12, 31))
        shown = pl.concat(
            [
                batches.filter(pl.col("signal_id").is_in(sorted(full))),
                batches.filter(~pl.col("signal_id").is_in(sorted(full)))
                .group_by("signal_id", maintain_order=True)
                .head(5),
            ]
        )
        for lot in shown["lot_number"].unique().to_list():
            assert lot in text, f"{code}: lot {lot} not in the PDF"
        assert "Data lock point" in text and "2025-12-31" in text
    nmpa = _pdftotext(world["out"] / "reports" / "periodic_signal_report_nmpa_2025-12.pdf")
    assert "摘要" in nmpa and "数据锁定点" in nmpa  # CJK text embedded, not tofu


def test_report_names_the_planted_signal_and_its_batches(world, con):
    planted = [s for s in world["truth"]["signals"] if s["kind"] == "product"]
    found = 0
    for s in planted:
        row = con.execute(
            "SELECT s.signal_id, p.region, p.name FROM signal s JOIN product p USING (product_id) "
            "WHERE s.level = 'product' AND s.product_id = ? AND s.pt = ?",
            [s["product_id"], s["pt"]],
        ).fetchone()
        if row is None:
            continue  # at this small scale a planted signal may not reach the thresholds; test_pipeline checks detection
        found += 1
        sid, region, name = row
        code = next(c for c, j in JURISDICTIONS.items() if j.market_region == region)
        html = (world["out"] / "reports" / f"periodic_signal_report_{code}_2025-12.html").read_text()
        assert sid in html and name in html and s["pt"] in html
        lots = rq.signal_batch_annex(con, [sid], dt.date(2025, 12, 31))["lot_number"].to_list()
        (priority,) = con.execute("SELECT priority FROM signal WHERE signal_id = ?", [sid]).fetchone()
        # a full page lists every batch; a table row (priority below the threshold) the five with most cases
        shown = lots if priority >= priority_threshold() else lots[:5]
        assert lots and all(lot in html for lot in shown)
    assert found, "no planted product signal detected at this scale"


def test_clock_flags_overdue_cases(world):
    for code in JURISDICTION_CODES:
        clock = pl.read_csv(world["out"] / "reports" / f"expedited_clock_{code}_2025-12.csv", try_parse_dates=True)
        if clock.is_empty():
            continue
        assert set(clock["status"]) <= {"overdue", "due", "due today", "submitted"}
        overdue = clock.filter(pl.col("status") == "overdue")
        assert (overdue["due_date"] < dt.date(2025, 12, 31)).all()
        html = (world["out"] / "reports" / f"periodic_signal_report_{code}_2025-12.html").read_text()
        assert all(cid in html for cid in clock["case_id"])


def test_same_inputs_same_report_apart_from_run_id_and_time(world):
    path = world["out"] / "reports" / "periodic_signal_report_fda_2025-12.html"
    xml = world["out"] / "e2b" / "e2b_icsr_fda_2025-12.xml"
    before, xml_before = path.read_text(), xml.read_bytes() if xml.exists() else None
    again = [a for a in REPORT_ASSETS if a.key.to_user_string() in ("regulatory_report_fda", "e2b_icsr_batch_fda")]
    dg.materialize(
        [*ALL_ASSETS, *REPORT_ASSETS],
        selection=dg.AssetSelection.assets(*again),
        partition_key=world["key"],
        resources=world["resources"],
        raise_on_error=True,
    )
    after = path.read_text()
    assert before != after  # a new run id and time ...
    assert mask_volatile(before) == mask_volatile(after)  # ... and nothing else
    if xml_before is not None:  # the E2B file differs only in its creation times (the run's clock) and message ids
        assert mask_e2b_times(xml.read_bytes()) == mask_e2b_times(xml_before)


def mask_e2b_times(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    for node in root.xpath("//h:creationTime | //h:controlActProcess/h:effectiveTime", namespaces=HL7):
        node.set("value", "masked")
    for node in root.xpath("h:PORR_IN049016UV/h:id", namespaces=HL7):  # N.2.r.1: a new message per transmission
        node.set("extension", "masked")
    return etree.tostring(root)


def test_an_invalid_e2b_file_is_reported_not_shipped(world, tmp_path, monkeypatch):
    from reports.e2b import writer

    good = writer.to_xml
    monkeypatch.setattr(writer, "to_xml", lambda b: good(b).replace(b"<creationTime", b"<bogus/><creationTime", 1))
    resources = default_resources(
        inbox=str(world["root"] / "inbox"), warehouse=str(world["root"] / "pv.duckdb"), output=str(tmp_path)
    )
    # a jurisdiction with serious cases this month, the one with the shortest report (PDF time)
    with_cases = [p.name.split("_")[2] for p in (world["out"] / "e2b").glob("e2b_icsr_*_2025-12.xml")]
    code = min(
        with_cases, key=lambda c: (world["out"] / "reports" / f"periodic_signal_report_{c}_2025-12.html").stat().st_size
    )
    picked = [
        a for a in REPORT_ASSETS if a.key.to_user_string() in (f"regulatory_report_{code}", f"e2b_icsr_batch_{code}")
    ]
    result = dg.materialize(
        [*ALL_ASSETS, *REPORT_ASSETS],
        selection=dg.AssetSelection.assets(*picked),
        partition_key=world["key"],
        resources=resources,
        raise_on_error=True,
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "ich_schema_valid" and not check.passed
    assert not (tmp_path / "e2b" / f"e2b_icsr_{code}_2025-12.xml").exists()
    assert (tmp_path / "e2b" / "rejected" / f"e2b_icsr_{code}_2025-12.xml").exists()
    html = (tmp_path / "reports" / f"periodic_signal_report_{code}_2025-12.html").read_text()
    assert "INVALID" in html and "was not shipped" in html


def test_a_rejection_ack_leads_to_a_corrected_resubmission_from_the_warehouse(world, tmp_path, capsys, monkeypatch):
    """`pvtrace e2b-ack --sent --resubmit` on copies of the world's warehouse and E2B folder: the gateway rejects the
    first ICSR of the FDA batch; the command rebuilds that case from the warehouse and ships it again."""
    from assets.cli import main
    from tests.warehouse.test_e2b_ack import ack

    e2b = tmp_path / "e2b"
    shutil.copytree(world["out"] / "e2b", e2b)
    warehouse = tmp_path / "pv.duckdb"
    shutil.copy(world["root"] / "pv.duckdb", warehouse)
    status = json.loads((e2b / "e2b_icsr_fda_2025-12.status.json").read_text())
    first = status["icsrs"][0]
    (tmp_path / "reject.ack").write_bytes(
        ack("E2E-1", "AE", [("CR", first["message_id"], "FDA.D.12 must be provided")]).replace(
            b"PVTRACE-FDA-202511", status["batch_id"].encode()
        )
    )
    monkeypatch.setenv("PVTRACE_CLOCK", (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat())
    argv = ["e2b-ack", str(tmp_path / "reject.ack"), "--warehouse", str(warehouse), "--sent", str(e2b), "--resubmit"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{first['safety_report_id']}  resubmitted  -> e2b_icsr_fda_2025-12_resubmission_" in out
    (again,) = sorted(e2b.glob("e2b_icsr_fda_2025-12_resubmission_*.xml"))
    assert validate(etree.parse(str(again)).getroot()) == []
    resent = json.loads(again.with_suffix(".status.json").read_text())
    assert resent["shipped"] and [i["resubmits"] for i in resent["icsrs"]] == [first["message_id"]]
    assert resent["icsrs"][0]["safety_report_id"] == first["safety_report_id"]
    assert resent["icsrs"][0]["message_id"] != first["message_id"]

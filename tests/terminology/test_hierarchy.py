"""PT -> HLT/HLGT/SOC/SMQ mapping and the E2B LLT mapping on the synthetic terminology."""

from __future__ import annotations

import pytest

from sample_data.terminology import VERSION, write_terminology
from warehouse.schema import connect
from warehouse.terminology.hierarchy import LEVELS, e2b_llt_mapping, event_map_sql
from warehouse.terminology.meddra import load_release


@pytest.fixture()
def con(tmp_path):
    c = connect(str(tmp_path / "w.duckdb"))
    for f in write_terminology(tmp_path / "t"):
        load_release(c, f)
    yield c
    c.close()


def _map(con, level):
    return con.execute(f"SELECT pt, event FROM ({event_map_sql(level, VERSION)}) ORDER BY pt, event").fetchall()


def test_primary_path_counts_a_pt_once(con):
    for level in ("pt", "hlt", "hlgt", "soc"):
        rows = _map(con, level)
        assert len(rows) == len({pt for pt, _ in rows}) == 151, level
    soc = dict(_map(con, "soc"))
    assert soc["Urticaria"] == "Skin and subcutaneous tissue disorders"  # primary, not the immune SOC
    assert dict(_map(con, "hlt"))["Hypersensitivity"] == "Allergic conditions (synthetic)"


def test_smq_broad_includes_narrow(con):
    narrow = {pt for pt, e in _map(con, "smq_narrow") if e.startswith("Hypersensitivity")}
    broad = {pt for pt, e in _map(con, "smq_broad") if e.startswith("Hypersensitivity")}
    assert narrow == {"Hypersensitivity", "Drug hypersensitivity", "Anaphylactic reaction", "Angioedema", "Urticaria"}
    assert narrow < broad and {"Rash", "Pruritus", "Erythema", "Dyspnoea"} <= broad
    # Erythema is broad in two SMQs: one row per SMQ
    assert sum(1 for pt, _ in _map(con, "smq_broad") if pt == "Erythema") == 2


def test_bad_level(con):
    with pytest.raises(ValueError, match="level must be one of"):
        event_map_sql("llt", VERSION)
    assert set(LEVELS) >= {"smq_narrow", "smq_broad"}


def test_e2b_mapping(con):
    m = e2b_llt_mapping(con)
    code_of = dict(con.execute("SELECT name, code FROM meddra_term WHERE level = 'pt' AND language = 'en'").fetchall())
    assert m["Hypersensitivity"] == (code_of["Hypersensitivity"], VERSION)  # a PT -> its own LLT
    assert m["hives"][1] == VERSION and m["hives"][0] != code_of["Urticaria"]
    assert "Feeling queasy (old)" not in m  # non-current
    assert e2b_llt_mapping(con, language="xx") == {}


def test_map_events_counts_a_report_once_per_group(con):
    from warehouse.terminology.hierarchy import map_events_sql

    rows = (
        "SELECT * FROM (VALUES ('r1', 'D', 'Urticaria'), ('r1', 'D', 'Angioedema'), ('r2', 'D', 'Rash'), "
        "('r3', 'D', 'Headache'), ('r4', 'D', 'Not in the release')) t(report_id, drug, event)"
    )
    narrow = con.execute(
        f"SELECT report_id, event FROM ({map_events_sql(rows, 'smq_narrow', VERSION)}) ORDER BY 1"
    ).fetchall()
    assert narrow == [("r1", "Hypersensitivity (synthetic SMQ)")]
    broad = con.execute(f"SELECT report_id FROM ({map_events_sql(rows, 'smq_broad', VERSION)}) ORDER BY 1").fetchall()
    assert broad == [("r1",), ("r2",)]
    assert con.execute(f"SELECT count(*) FROM ({map_events_sql(rows, 'pt', VERSION)})").fetchone()[0] == 5
    soc = dict(
        con.execute(f"SELECT event, count(*) FROM ({map_events_sql(rows, 'soc', VERSION)}) GROUP BY 1").fetchall()
    )
    assert soc == {"Skin and subcutaneous tissue disorders": 2, "Nervous system disorders": 1}  # r1 once

"""Verbatim reactions in the case format, coded during case loading (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_data.terminology import write_terminology
from warehouse.inputs.platform.cases import CaseRejected, load_cases, parse_case_line
from warehouse.schema import connect
from warehouse.terminology.case_coding import code_case_reactions
from warehouse.terminology.meddra import load_release


def _case(case_id: str, reactions: list[dict], version: int = 1, source: str = "patient_app") -> dict:
    return {
        "case_id": case_id,
        "version": version,
        "received_on": "2025-03-04",
        "source": source,
        "reporter_qualification": "consumer",
        "country": "CN",
        "drugs": [{"role": "suspect", "product_name": "Nothing known", "start_date": "2025-02-27"}],
        "reactions": reactions,
    }


CASES = [
    _case("PVT-CN-2025-000001", [{"verbatim": "吃完药后头晕，想吐", "language": "zh", "onset_date": "2025-02-28"}]),
    _case("PVT-CN-2025-000002", [{"pt": "Urticaria", "soc": "Skin and subcutaneous tissue disorders"}], source="hcp"),
    _case("PVT-CN-2025-000003", [{"verbatim": "felt weird", "language": "en"}, {"verbatim": "hives"}]),
    _case("PVT-CN-2025-000004", [{"verbatim": "i had a heaadache after the shot", "language": "en"}]),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[Path]:
    return write_terminology(tmp_path_factory.mktemp("meddra"))


def _inbox(root: Path, cases: list[dict]) -> Path:
    (root / "cases").mkdir(parents=True)
    lines = "\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n"
    (root / "cases" / "cases_2025-03.jsonl").write_text(lines, encoding="utf-8")
    return root


@pytest.fixture()
def con(tmp_path):
    c = connect(str(tmp_path / "w.duckdb"))
    yield c
    c.close()


def _reactions(con) -> list[tuple]:
    return con.execute(
        "SELECT case_id, reaction_seq, pt, soc, coding_method FROM latest_case_reaction ORDER BY ALL"
    ).fetchall()


def test_reader_takes_a_verbatim_instead_of_a_pt():
    _, _, r = parse_case_line(json.dumps(CASES[0], ensure_ascii=False))
    assert r[0]["pt"] is None and r[0]["verbatim"] == "吃完药后头晕，想吐" and r[0]["verbatim_language"] == "zh"
    _, _, r = parse_case_line(json.dumps(CASES[1]))  # a PT-only reaction, as before
    assert r[0]["pt"] == "Urticaria" and r[0]["verbatim"] is None


@pytest.mark.parametrize(
    ("reaction", "reason"),
    [
        ({"onset_date": "2025-03-01"}, "missing_field"),
        ({"verbatim": "dizzy", "language": 7}, "invalid_value"),
        ({"verbatim": "x" * 1001}, "invalid_value"),
    ],
)
def test_reader_rejects_a_reaction_without_words_or_with_a_bad_language(reaction, reason):
    with pytest.raises(CaseRejected) as exc:
        parse_case_line(json.dumps(_case("PVT-CN-2025-000009", [reaction])))
    assert exc.value.reason == reason


@settings(max_examples=60, deadline=None)
@given(words=st.text(min_size=1, max_size=1100), language=st.one_of(st.none(), st.sampled_from(["en", "zh", "ja"])))
def test_any_verbatim_text_parses_or_is_rejected_with_a_reason(words, language):
    line = json.dumps(_case("PVT-CN-2025-000010", [{"verbatim": words, "language": language}]))
    try:
        _, _, r = parse_case_line(line)
    except CaseRejected as exc:
        assert (exc.reason, bool(words.strip())) in (("missing_field", False), ("invalid_value", True))
        assert exc.reason == "missing_field" or len(words.strip()) > 1000
    else:
        assert r[0]["verbatim"] == words.strip()


def test_without_a_release_verbatims_are_counted_uncoded_and_pts_work_as_before(tmp_path, con):
    counts = load_cases(con, _inbox(tmp_path / "inbox", CASES), "salt")
    assert counts["verbatim_reactions"] == 4 and counts["verbatims_uncoded"] == 4 and counts["verbatims_coded"] == 0
    assert _reactions(con) == [("PVT-CN-2025-000002", 0, "Urticaria", "Skin and subcutaneous tissue disorders", None)]


def test_with_a_release_verbatims_become_pts_with_method_version_language(tmp_path, con, folders):
    for f in folders:
        load_release(con, f)
    counts = load_cases(con, _inbox(tmp_path / "inbox", CASES), "salt")
    assert counts["verbatim_reactions"] == 4 and counts["verbatims_coded"] == 3 and counts["verbatims_uncoded"] == 1
    got = {(c, s, pt, m) for c, s, pt, _, m in _reactions(con)}
    assert got == {
        ("PVT-CN-2025-000001", 0, "Dizziness", "split"),
        ("PVT-CN-2025-000001", 0, "Nausea", "split"),
        ("PVT-CN-2025-000002", 0, "Urticaria", None),
        ("PVT-CN-2025-000003", 1, "Urticaria", "exact"),
        ("PVT-CN-2025-000004", 0, "Headache", "fuzzy"),
    }
    # SOC is the PT's primary SOC in English; version and language stored per coded reaction
    rows = con.execute(
        "SELECT DISTINCT soc, meddra_version, language FROM case_reaction_coding WHERE case_id = 'PVT-CN-2025-000003' "
        "AND pt IS NOT NULL"
    ).fetchall()
    assert rows == [("Skin and subcutaneous tissue disorders", "90.0", "en")]
    # "felt weird" names nothing: unmatched, in the review queue, out of the PT statistics
    queue = con.execute("SELECT verbatim, method FROM meddra_coding WHERE needs_review ORDER BY ALL").fetchall()
    assert ("felt weird", "unmatched") in queue
    # idempotent: coding again writes the same rows
    before = con.execute("SELECT * FROM case_reaction_coding ORDER BY ALL").fetchall()
    assert code_case_reactions(con)["verbatims_coded"] == 3
    assert con.execute("SELECT * FROM case_reaction_coding ORDER BY ALL").fetchall() == before


def test_analyst_decisions_override_the_coder(tmp_path, con, folders):
    for f in folders:
        load_release(con, f)
    load_cases(con, _inbox(tmp_path / "inbox", CASES), "salt")
    fever = con.execute("SELECT llt_code FROM meddra_llt WHERE llt_name = 'fever' AND language = 'en'").fetchone()[0]
    decide = "INSERT INTO meddra_coding_decision VALUES (?, ?, '90.0', ?, ?, 'ana', ?::TIMESTAMP, NULL)"
    con.execute(decide, ["d1", "felt weird", "recode", fever, "2025-03-05 10:00"])
    con.execute(decide, ["d2", "hives", "reject", None, "2025-03-05 10:00"])
    con.execute(decide, ["d3", "i had a heaadache after the shot", "accept", None, "2025-03-05 10:00"])
    code_case_reactions(con)
    got = {(c, s, pt, m) for c, s, pt, _, m in _reactions(con) if c in ("PVT-CN-2025-000003", "PVT-CN-2025-000004")}
    assert got == {("PVT-CN-2025-000003", 0, "Pyrexia", "manual"), ("PVT-CN-2025-000004", 0, "Headache", "fuzzy")}
    queue = {v for (v,) in con.execute("SELECT verbatim FROM meddra_coding WHERE needs_review").fetchall()}
    assert queue == {"吃完药后头晕，想吐"}  # decided verbatims leave the review queue
    # the latest decision wins
    con.execute(decide, ["d4", "hives", "accept", None, "2025-03-06 10:00"])
    code_case_reactions(con)
    assert ("PVT-CN-2025-000003", 1, "Urticaria", "exact") in {(c, s, pt, m) for c, s, pt, _, m in _reactions(con)}

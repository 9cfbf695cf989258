"""Regulator files of every layout: small synthetic fixtures in the real layouts FDA has used
(tests/warehouse/fixtures), a clean one-line error for unreadable files, and property-based
tests that the readers raise nothing but :class:`IngestError` on arbitrary input."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.cli import main
from warehouse.inputs.regulator.ingest import IngestError, ingest, ingest_into
from warehouse.linkage.lot_rules import LOT_RULES
from warehouse.schema import connect

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _db(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


# --- FAERS / AERS: three layouts in one folder ----------------------------------------------


@pytest.fixture(scope="module")
def faers(tmp_path_factory):
    db = tmp_path_factory.mktemp("faers") / "w.duckdb"
    counts = ingest(FIXTURES / "faers", "faers", db)
    con = duckdb.connect(str(db), read_only=True)
    yield counts, con
    con.close()


def test_faers_layouts_counts(faers):
    counts, _ = faers
    assert counts["quarters"] == {"05Q3": "legacy_aers", "12Q4": "faers", "13Q1": "faers", "18Q1": "faers"}
    assert counts["layout"] == "mixed"
    # 2 AERS cases (one with a follow-up ISR), 2 of the first FAERS extract, 2 early-FAERS, 2 current-FAERS
    assert (counts["cases"], counts["case_versions"], counts["drugs"], counts["reactions"]) == (8, 9, 10, 9)
    assert counts["quarantined"] == 0
    assert set(counts["lots_rejected"]) == set(LOT_RULES)


def test_faers_column_variants_are_read(faers):
    _, con = faers

    def case(case_id):
        return con.execute(
            "SELECT sex, age_years, outcome, seriousness, source, country FROM latest_case WHERE case_id = ?", [case_id]
        ).fetchone()

    # legacy AERS: gndr_cod, age in months, OUTC_COD; the later ISR is the latest version
    assert case("AERS-9100001") == ("F", 0.5, None, ["hospitalisation"], "regulator", None)
    assert con.execute("SELECT max(version) FROM case_report WHERE case_id = 'AERS-9100001'").fetchone()[0] == 9000002
    # the first FAERS extract (2012Q4): gndr_cod, outc_code, lot_nbr, " rept_dt", an unescaped quote in drugname
    assert case("FAERS-9150001")[:4] == ("F", 30.0, None, ["life_threatening"])
    first = con.execute(
        "SELECT case_id, product_name_reported, lot_reported FROM latest_case_drug WHERE case_id LIKE 'FAERS-915%' "
        "ORDER BY 1"
    ).fetchall()
    assert first == [("FAERS-9150001", "EXAMPLEDRUG", "LT-2012A"), ("FAERS-9150002", '"VITAMINS" (NOS)', None)]
    assert case("FAERS-9150002")[0] == "M"
    # early FAERS (2013Q1 – 2014Q2): gndr_cod, outc_cod, reporter_country
    assert case("FAERS-9200001")[:4] == ("M", 45.0, "fatal", ["death"])
    assert case("FAERS-9200002")[0] == "F" and case("FAERS-9200002")[3] == ["hospitalisation"]
    # current FAERS (the re-issued *_new.txt files): sex, prod_ai, lit_ref
    assert case("FAERS-9300001")[:2] == ("F", 70.0) and case("FAERS-9300001")[5] == "GB"
    assert case("FAERS-9300002")[4] == "literature"
    ingredient = con.execute(
        "SELECT ingredient, mapping_method FROM latest_case_drug WHERE case_id = 'FAERS-9300001' AND drug_seq = 1"
    ).fetchone()
    assert ingredient == ("exampleine", "faers_prod_ai")


def test_faers_lots_cleaned_with_expiry_and_named_rules(faers):
    counts, con = faers
    lots = dict(
        con.execute(
            "SELECT case_id || '/' || drug_seq, (lot_reported, lot_expiry) FROM latest_case_drug ORDER BY 1"
        ).fetchall()
    )
    assert lots["FAERS-9300001/1"] == ("EK9231  4/21", "2021-04")  # the expiry is not glued onto the lot
    assert lots["FAERS-9300001/2"] == (None, None)  # "don't know"
    assert lots["FAERS-9300002/1"] == (None, None)  # UNCONFIRMED
    assert lots["FAERS-9200002/1"] == (None, None)  # a manufacturer's name
    assert lots["AERS-9100003/1"] == (None, None)  # N/K: one junk token, not two lots
    assert counts["lots_rejected"] == {
        "junk_unknown": 2,  # UNKOWN, N/K
        "unconfirmed": 1,
        "sentence": 1,
        "manufacturer_name": 1,
        "date_only": 0,
    }
    assert counts["lot_expiry_split"] == 1


@pytest.mark.parametrize(
    "name", ["ADR13Q1DeletedCases.txt", "13Q1DeletedCases.txt", "DELETE13Q1.txt", "AllDeletedCases.txt"]
)
def test_faers_deleted_case_lists_under_every_name_fda_used(tmp_path, name):
    """The quarterly deleted-case list has had four names since 2019Q1 (faers.py docstring); a list given
    beside the quarter's files, not in a Deleted/ folder, is read under each of them."""
    folder = tmp_path / "q"
    shutil.copytree(FIXTURES / "faers" / "faers_2013q1", folder)
    (folder / name).write_text("9200002\n", encoding="latin-1")
    counts = ingest(folder, "faers", _db(tmp_path))
    assert counts["cases"] == 1 and counts["deleted_cases"] == 1
    con = duckdb.connect(str(_db(tmp_path)), read_only=True)
    assert con.execute("SELECT case_id FROM case_deleted").fetchall() == [("FAERS-9200002",)]
    con.close()


def test_faers_zip_of_a_quarter_equals_the_folder(tmp_path):
    archive = tmp_path / "faers_ascii_2013q1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (FIXTURES / "faers" / "faers_2013q1").iterdir():
            zf.write(f, f"ASCII/{f.name}")
    counts = ingest(archive, "faers", _db(tmp_path))
    assert (counts["cases"], counts["drugs"], counts["reactions"], counts["lots"]) == (2, 2, 2, 1)


# --- VAERS: the 29-column layout and the 35-column one with Windows-1252 text ----------------


@pytest.fixture(scope="module")
def vaers(tmp_path_factory):
    db = tmp_path_factory.mktemp("vaers") / "w.duckdb"
    counts = ingest(FIXTURES / "vaers", "vaers", db)
    con = duckdb.connect(str(db), read_only=True)
    yield counts, con
    con.close()


def test_vaers_layouts_and_encodings(vaers):
    counts, con = vaers
    assert counts["vaers_groups"] == ["1995", "2021"]
    assert (counts["cases"], counts["drugs"], counts["reactions"], counts["quarantined"]) == (6, 6, 7, 0)
    fallbacks = {Path(k).name: v for k, v in counts["encoding_fallbacks"].items()}
    assert fallbacks == {"2021VAERSDATA.csv": {"cp1252": 1, "latin-1": 1}}
    assert any("Windows-1252" in w for w in counts["warnings"])
    narrative = con.execute("SELECT narrative FROM latest_case WHERE case_id = 'VAERS-991001'").fetchone()[0]
    assert narrative == "Arm pain ’sore’ – resolved"  # cp1252 punctuation, not C1 controls
    text2 = con.execute("SELECT narrative FROM latest_case WHERE case_id = 'VAERS-991002'").fetchone()[0]
    assert "Café" in text2 and "38°C" in text2
    # the new layout's columns, the old layout's calculated age when AGE_YRS is blank
    assert con.execute("SELECT region, age_years FROM latest_case WHERE case_id = 'VAERS-990004'").fetchone() == (
        "TX",
        0.2,
    )
    assert con.execute("SELECT lot_expiry FROM latest_case_drug WHERE case_id = 'VAERS-991001'").fetchone() == (
        "2021-03",
    )
    assert counts["lots_rejected"]["manufacturer_name"] == 1  # "Pfizer" typed as the lot


def test_vaers_duplicates_respect_state_and_infant_age(vaers):
    """0990001 and 0990003: same state, 0.2 y, lot, onset → flagged. 0990002 is 0.8 y (another
    infant); 0990004 is 0.2 y but in another state: never suggested."""
    _, con = vaers
    pairs = con.execute("SELECT case_id, candidate_of FROM case_duplicate_suggestion ORDER BY 1").fetchall()
    assert pairs == [("VAERS-990003", "VAERS-990001")]
    flagged = con.execute("SELECT case_id, duplicate_of FROM latest_case WHERE duplicate_of IS NOT NULL").fetchall()
    assert flagged == [("VAERS-990003", "VAERS-990001")]


# --- openFDA: API results, a bare array, JSON Lines ------------------------------------------


def test_openfda_three_shapes(tmp_path):
    counts = ingest(FIXTURES / "openfda", "openfda", _db(tmp_path))
    assert counts["reports"] == 5 and counts["cases"] == 5  # 2 + 1 + 2
    assert counts["quarantine_reasons"] == {"unparsable_report": 1}  # the line that is not JSON
    assert counts["lots"] == 3 and counts["lot_expiry_split"] == 1
    assert counts["lots_rejected"]["junk_unknown"] == 2  # UNK, N/A


# --- unreadable files: one clean line naming the file, exit 2 --------------------------------


def _cli(capsys, fmt: str, path: Path, db: Path) -> tuple[int, str]:
    code = main(["ingest", "--format", fmt, str(path), "--warehouse", str(db)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("fmt", "name", "content"),
    [
        ("openfda", "event.json", b"\xff\xfe\x00garbage"),
        ("openfda", "event.json", b"{not json at all"),
        ("e2b", "batch.xml", b"<?xml version='1.0'?><MCCI_IN200100UV01><unclosed>"),
        ("faers", "DEMO20Q1.txt", b"\x00\x01\x02$\n\x03"),
    ],
)
def test_unreadable_file_is_one_line_and_exit_2(tmp_path, capsys, fmt, name, content):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(content)
    if fmt == "faers":  # the other two required tables, also unreadable
        for other in ("DRUG20Q1.txt", "REAC20Q1.txt"):
            (folder / other).write_bytes(content)
    code, err = _cli(capsys, fmt, folder, _db(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(folder) in lines[0] or name in lines[0]


def test_truncated_zip_is_one_line(tmp_path, capsys):
    archive = tmp_path / "q.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    code, err = _cli(capsys, "faers", archive, _db(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "q.zip" in err


# --- property-based: arbitrary input raises IngestError or ingests ---------------------------


@pytest.fixture(scope="module")
def memory_con():
    con = connect(":memory:")
    yield con
    con.close()


_LINES = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
        st.lists(
            st.sampled_from(["1", "ab", "", "20200101", "PS", "M", "Y", '"', "$", ",", "é", "\x92"]), max_size=8
        ).map("$".join),
    ),
    max_size=6,
)


def _expect_only_ingest_error(con, path: Path, fmt: str) -> None:
    try:
        counts = ingest_into(con, path, fmt)
    except IngestError as exc:
        assert "\n" not in str(exc)
    else:
        assert counts["cases"] >= 0


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(demo=_LINES, drug=_LINES, reac=_LINES, raw=st.binary(max_size=60))
def test_faers_reader_raises_only_ingest_error(memory_con, tmp_path_factory, demo, drug, reac, raw):
    folder = tmp_path_factory.mktemp("fz")
    header = {
        "DEMO": "primaryid$caseid$caseversion$fda_dt$sex",
        "DRUG": "primaryid$drug_seq$role_cod$drugname",
        "REAC": "primaryid$pt",
    }
    for table, lines in (("DEMO", demo), ("DRUG", drug), ("REAC", reac)):
        body = "\n".join([header[table], *lines]).encode("utf-8", "surrogatepass")
        (folder / f"{table}20Q1.txt").write_bytes(body + (raw if table == "DRUG" else b""))
    _expect_only_ingest_error(memory_con, folder, "faers")
    shutil.rmtree(folder, ignore_errors=True)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=_LINES, vax=_LINES, raw=st.binary(max_size=60))
def test_vaers_reader_raises_only_ingest_error(memory_con, tmp_path_factory, data, vax, raw):
    folder = tmp_path_factory.mktemp("vz")
    (folder / "2020VAERSDATA.csv").write_bytes(
        ("VAERS_ID,RECVDATE,STATE,AGE_YRS,SEX,SYMPTOM_TEXT\n" + "\n".join(x.replace("$", ",") for x in data)).encode(
            "utf-8", "surrogatepass"
        )
        + raw
    )
    (folder / "2020VAERSVAX.csv").write_bytes(
        ("VAERS_ID,VAX_TYPE,VAX_MANU,VAX_LOT\n" + "\n".join(x.replace("$", ",") for x in vax)).encode(
            "utf-8", "surrogatepass"
        )
    )
    _expect_only_ingest_error(memory_con, folder, "vaers")
    shutil.rmtree(folder, ignore_errors=True)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["safetyreportid", "patient", "drug", "reaction", "results", "receivedate", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(doc=_JSON, jsonl=st.booleans())
def test_openfda_reader_raises_only_ingest_error(memory_con, tmp_path_factory, doc, jsonl):
    folder = tmp_path_factory.mktemp("oz")
    text = json.dumps(doc)
    (folder / ("e.jsonl" if jsonl else "e.json")).write_text(text + "\n" + text if jsonl else text)
    _expect_only_ingest_error(memory_con, folder, "openfda")
    shutil.rmtree(folder, ignore_errors=True)


# --- E2B(R3): a file, a zip of files, a folder give the same cases ---------------------------

E2B = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2b_r3" / "instances_fda"


@pytest.mark.realdata
@pytest.mark.skipif(not E2B.exists(), reason="../shared/data not available")
def test_e2b_zip_equals_folder(tmp_path):
    folder = ingest(E2B, "e2b", tmp_path / "a.duckdb")
    archive = tmp_path / "icsrs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(E2B.glob("*.xml")):
            zf.write(f, f"batch/{f.name}")
    zipped = ingest(archive, "e2b", tmp_path / "b.duckdb")
    keys = ("cases", "case_versions", "drugs", "reactions", "lots", "quarantined")
    assert {k: zipped[k] for k in keys} == {k: folder[k] for k in keys}
    one = ingest(E2B / "FAERS2022Scenario1.xml", "e2b", tmp_path / "c.duckdb")
    assert one["cases"] == 1

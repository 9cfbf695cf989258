"""VAERS ingest on the real 1990 files and the 2019 partial set (no VAERSDATA), counts checked
against the raw CSVs read here with Python's csv module."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse.inputs.regulator.ingest import ingest
from warehouse.inputs.regulator.vaers import vaers_lot_counts
from warehouse.linkage.lot_rules import normalise_lot_expr

LABELS = Path(__file__).resolve().parent / "data" / "vaers1990_duplicate_labels.csv"

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vaers"
Y1990 = DATA / "1990"
Y2019 = DATA / "2019_partial"

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not Y1990.exists(), reason="../shared/data not available")]


def usable_lots(values: list[str | None]) -> int:
    """Rows with at least one usable lot (the shared rules, vectorised: 35k rows in one pass)."""
    frame = pl.DataFrame({"lot": values}, schema={"lot": pl.String})
    return int(frame.select((normalise_lot_expr("lot").list.len() > 0).sum()).item())


def rows(path: Path) -> list[dict]:
    with path.open(encoding="latin-1", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def w1990(tmp_path_factory):
    db = tmp_path_factory.mktemp("vaers") / "w.duckdb"
    return db, ingest(Y1990, "vaers", db)


def test_1990_counts_match_the_raw_files(w1990):
    db, counts = w1990
    data = rows(Y1990 / "1990VAERSDATA.csv")
    vax = rows(Y1990 / "1990VAERSVAX.csv")
    sym = rows(Y1990 / "1990VAERSSYMPTOMS.csv")
    assert len(data[0]) == 29  # the older layout
    assert counts["cases"] == counts["case_versions"] == len({r["VAERS_ID"] for r in data}) == 2106
    assert counts["drugs"] == len(vax)
    # symptoms are spread over several rows of five: count the non-empty cells
    assert counts["reactions"] == sum(bool((r[f"SYMPTOM{k}"] or "").strip()) for r in sym for k in range(1, 6))
    assert counts["lots"] == usable_lots([r["VAX_LOT"] for r in vax])
    assert counts["quarantined"] == 0
    con = duckdb.connect(str(db), read_only=True)
    deaths = {int(r["VAERS_ID"]) for r in data if r["DIED"] == "Y"}
    got = {int(r[0][6:]) for r in con.execute("SELECT case_id FROM latest_case WHERE outcome = 'fatal'").fetchall()}
    assert got == deaths
    # a report with more than five symptoms keeps all of them
    many = [i for i in {r["VAERS_ID"] for r in sym} if sum(r["VAERS_ID"] == i for r in sym) > 1]
    if many:
        i = many[0]
        want = [r[f"SYMPTOM{k}"] for r in sym if r["VAERS_ID"] == i for k in range(1, 6) if r[f"SYMPTOM{k}"].strip()]
        got_pts = [
            r[0]
            for r in con.execute(
                "SELECT pt FROM case_reaction WHERE case_id = ? ORDER BY reaction_seq", [f"VAERS-{int(i)}"]
            ).fetchall()
        ]
        assert got_pts == want


def test_1990_lot_reporting_counts(w1990):
    db, _ = w1990
    con = duckdb.connect(str(db), read_only=True)
    hep = vaers_lot_counts(con, "586A4")
    assert hep.height == 1 and hep["reports"][0] == 78 and hep["vax_type"][0] == "HEP"
    dtp = vaers_lot_counts(con, "0G11097")
    assert dtp["reports"][0] == 43 and dtp["deaths"][0] == 1 and dtp["vax_manu"][0] == "CONNAUGHT LABORATORIES"
    assert "no exposure denominator" in dtp["measure"][0]
    # independently from the raw files
    vax = rows(Y1990 / "1990VAERSVAX.csv")
    assert len({r["VAERS_ID"] for r in vax if r["VAX_LOT"].strip().upper() == "586A4"}) == 78


def test_2019_partial_without_data_file(tmp_path):
    vax = rows(Y2019 / "2019VAERSVAX.csv")
    sym = rows(Y2019 / "2019VAERSSYMPTOMS.csv")
    counts = ingest(Y2019, "vaers", tmp_path / "w.duckdb")
    ids = {r["VAERS_ID"] for r in vax} | {r["VAERS_ID"] for r in sym}
    assert counts["cases"] == len(ids)
    assert counts["drugs"] == len(vax) == 35345
    assert counts["lots"] == usable_lots([r["VAX_LOT"] for r in vax])
    assert counts["reactions"] == sum(bool((r[f"SYMPTOM{k}"] or "").strip()) for r in sym for k in range(1, 6))
    assert any("no VAERSDATA file" in w for w in counts["warnings"])
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert (
        con.execute("SELECT count(*) FROM latest_case WHERE sex IS NOT NULL OR serious IS NOT NULL").fetchone()[0] == 0
    )


def test_reingest_is_idempotent_including_lot_counts(tmp_path):
    db = tmp_path / "w.duckdb"
    a = ingest(Y1990, "vaers", db)
    con = duckdb.connect(str(db), read_only=True)
    lot_rows = con.execute("SELECT count(*), sum(reports) FROM vaers_lot_counts").fetchone()
    con.close()
    b = ingest(Y1990, "vaers", db)
    assert b["warehouse"] == a["warehouse"]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), sum(reports) FROM vaers_lot_counts").fetchone() == lot_rows
    con.close()


def test_1990_duplicate_suggestions_against_hand_labels(w1990):
    """Every suggested pair on the real 1990 file is in the hand-labelled sample
    (tests/warehouse/data/vaers1990_duplicate_labels.csv: 48 pairs, read one by one — state, age,
    lots, dates, narrative), and none of them is labelled "no". Precision of the suggestions =
    yes / suggested; the old rule (whole-year age, any state) flagged 27 pairs, of which 2 were
    duplicates by the labels."""
    db, counts = w1990
    with LABELS.open(newline="") as fh:
        labels = {(r["case_id"], r["candidate_of"]): r["label"] for r in csv.DictReader(fh)}
    assert len(labels) == 48
    con = duckdb.connect(str(db), read_only=True)
    suggested = con.execute("SELECT case_id, candidate_of, score FROM case_duplicate_suggestion").fetchall()
    assert suggested and all((a, b) in labels for a, b, _ in suggested)
    verdicts = [labels[(a, b)] for a, b, _ in suggested]
    assert "no" not in verdicts
    assert verdicts.count("yes") / len(verdicts) >= 0.85  # 7 of 8 (one "uncertain": twins or one infant)
    flagged = [labels[(a, b)] for a, b, score in suggested if score >= 0.9]
    assert flagged and set(flagged) == {"yes"} and counts["duplicates_flagged"] == len(flagged)
    assert list(labels.values()).count("no") == 40  # the sample is mostly pairs the old rule got wrong

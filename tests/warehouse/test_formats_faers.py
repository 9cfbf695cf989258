"""FAERS ingest on the real quarterly extracts in ../shared/data/faers, counts checked against
the raw files read independently here (zipfile + str.split on '$'), plus synthetic quarters for
follow-ups, deleted cases and quarantine."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from warehouse.inputs.regulator.ingest import IngestError, ingest
from warehouse.linkage.lot_rules import normalise_lot

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faers"
Q2017 = DATA / "faers_ascii_2017q2.zip"
Q2004 = DATA / "aers_ascii_2004q1.zip"

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not Q2017.exists(), reason="../shared/data not available")]


def raw_table(zip_path: Path, prefix: str) -> list[dict]:
    """One FAERS table from the zip as dicts (lower-case keys), by plain splitting on '$'."""
    with zipfile.ZipFile(zip_path) as zf:
        (member,) = [n for n in zf.namelist() if Path(n).name.lower().startswith(prefix)]
        lines = zf.read(member).decode("latin-1").splitlines()
    header = [h.lower() for h in lines[0].split("$")]
    return [dict(zip(header, line.split("$"))) for line in lines[1:] if line]


def snapshot(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: sorted(
                map(
                    repr,
                    con.execute(
                        f"SELECT * EXCLUDE (quarantined_at) FROM {t}" if t == "quarantine" else f"SELECT * FROM {t}"
                    ).fetchall(),
                )
            )
            for t in ("case_report", "case_drug", "case_reaction", "quarantine", "case_deleted")
        }
    finally:
        con.close()


def test_faers_2017q2_counts_match_the_raw_files(tmp_path):
    demo, drug, reac = (raw_table(Q2017, p) for p in ("demo", "drug", "reac"))
    latest = {}
    for row in demo:
        latest[row["caseid"]] = max(latest.get(row["caseid"], 0), int(row["caseversion"]))
    latest_primaryids = {c + str(v) for c, v in latest.items()}
    lot_rows = [r["lot_num"] for r in drug if r["lot_num"].strip()]
    usable = [x for x in lot_rows if normalise_lot(x)]

    counts = ingest(Q2017, "faers", tmp_path / "w.duckdb")

    assert len(drug) == 328 and len(lot_rows) == 49  # the figures PROVENANCE.md states
    assert counts["cases"] == len(latest) == 100
    assert counts["case_versions"] == len(demo)
    assert counts["drugs"] == sum(r["primaryid"] in latest_primaryids for r in drug) == 328
    assert counts["reactions"] == sum(r["primaryid"] in latest_primaryids for r in reac)
    assert counts["lots"] == len(usable) == 31  # 18 of the 49 are junk (UNKNOWN, NOT AVAILABLE ...)
    assert counts["quarantined"] == 0
    assert counts["ingredient_mapping"]["faers_prod_ai"] == sum(bool(r["prod_ai"].strip()) for r in drug)
    assert counts["unmapped_drugs"]["rows"] == sum(not r["prod_ai"].strip() for r in drug)

    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    junk = con.execute("SELECT count(*) FROM case_drug WHERE upper(lot_reported) LIKE '%UNKNOWN%'").fetchone()[0]
    assert junk == 0
    # seriousness comes from OUTC: a case is serious iff it has an OUTC row
    outc = raw_table(Q2017, "outc")
    serious_ids = {r["caseid"] for r in outc}
    got = {r[0] for r in con.execute("SELECT substr(case_id, 7) FROM latest_case WHERE serious").fetchall()}
    assert got == serious_ids
    deaths = {r["caseid"] for r in outc if r["outc_cod"] == "DE"}
    assert {
        r[0] for r in con.execute("SELECT substr(case_id, 7) FROM latest_case WHERE outcome = 'fatal'").fetchall()
    } == deaths
    # every drug row keeps FDA's active ingredient, lower case
    assert (
        con.execute("SELECT ingredient FROM case_drug WHERE product_name_reported = 'RISPERDAL' LIMIT 1").fetchone()[0]
        == "risperidone"
    )


def test_legacy_aers_2004q1_counts(tmp_path):
    demo, drug, reac = (raw_table(Q2004, p) for p in ("demo", "drug", "reac"))
    counts = ingest(Q2004, "faers", tmp_path / "w.duckdb")
    latest_isr = {}
    for row in demo:
        latest_isr[row["case"]] = max(latest_isr.get(row["case"], 0), int(row["isr"]))
    keep = {str(v) for v in latest_isr.values()}
    assert counts["layout"] == "legacy_aers"
    assert counts["cases"] == len(latest_isr)
    assert counts["case_versions"] == len(demo)
    assert counts["drugs"] == sum(r["isr"] in keep for r in drug)
    assert counts["reactions"] == sum(r["isr"] in keep for r in reac)
    assert counts["lots"] == sum(bool(normalise_lot(r["lot_num"])) for r in drug if r["isr"] in keep)


def test_reingest_is_idempotent_and_a_second_file_adds(tmp_path):
    db = tmp_path / "w.duckdb"
    first = ingest(Q2017, "faers", db)
    before = snapshot(db)
    again = ingest(Q2017, "faers", db)
    assert snapshot(db) == before
    assert {k: again[k] for k in ("cases", "drugs", "reactions", "lots")} == {
        k: first[k] for k in ("cases", "drugs", "reactions", "lots")
    }
    second = ingest(Q2004, "faers", db)
    assert second["warehouse"]["cases"] == first["cases"] + second["cases"]
    assert second["warehouse"]["drugs"] == first["drugs"] + second["drugs"]


DEMO_HEADER = (
    "primaryid$caseid$caseversion$i_f_code$event_dt$mfr_dt$init_fda_dt$fda_dt$rept_cod$auth_num$mfr_num$"
    "mfr_sndr$lit_ref$age$age_cod$age_grp$sex$e_sub$wt$wt_cod$rept_dt$to_mfr$occp_cod$reporter_country$occr_country"
)
DRUG_HEADER = (
    "primaryid$caseid$drug_seq$role_cod$drugname$prod_ai$val_vbm$route$dose_vbm$cum_dose_chr$cum_dose_unit$"
    "dechal$rechal$lot_num$exp_dt$nda_num$dose_amt$dose_unit$dose_form$dose_freq"
)


def demo_row(
    caseid: str,
    version: int,
    fda_dt: str = "20170401",
    age: str = "40",
    sex: str = "F",
    event_dt: str = "20170301",
    init_dt: str = "20170101",
) -> str:
    return (
        f"{caseid}{version}${caseid}${version}$F${event_dt}$${init_dt}${fda_dt}$EXP$$$$${age}$YR$${sex}$Y$$$$$MD$US$US"
    )


def drug_row(primaryid: str, caseid: str, seq: int, name: str, ai: str, lot: str = "", role: str = "PS") -> str:
    return f"{primaryid}${caseid}${seq}${role}${name}${ai}$1$Oral$$$$$${lot}$$$$$$"


def write_quarter(
    folder: Path, q: str, demo: list[str], drug: list[str], reac: list[str], outc: list[str] = ()
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"DEMO{q}.txt").write_text("\n".join([DEMO_HEADER, *demo]) + "\n")
    (folder / f"drug{q.lower()}.txt").write_text("\n".join([DRUG_HEADER, *drug]) + "\n")
    (folder / f"REAC{q}.TXT").write_text("\n".join(["primaryid$caseid$pt$drug_rec_act", *reac]) + "\n")
    (folder / f"OUTC{q}.txt").write_text("\n".join(["primaryid$caseid$outc_cod", *outc]) + "\n")
    return folder


def test_synthetic_quarters_follow_up_delete_and_quarantine(tmp_path):
    db = tmp_path / "w.duckdb"
    q1 = write_quarter(
        tmp_path / "q1",
        "20Q1",
        demo=[demo_row("100", 1), demo_row("200", 1), demo_row("300", 1, fda_dt="2017", init_dt="")],
        drug=[
            drug_row("1001", "100", 1, "ZOCOR", "SIMVASTATIN", "lot 12AB"),
            drug_row("2001", "200", 1, "Lipitor", "ATORVASTATIN", "UNKNOWN"),
            drug_row("9991", "999", 1, "ORPHAN", "NOTHING"),  # no DEMO row
            drug_row("2001", "200", 2, "Thing", "THING", role="XX"),
        ],  # unknown role
        reac=["1001$100$Myalgia$", "2001$200$$", "2001$200$Rhabdomyolysis$", "9991$999$Nausea$"],
        outc=["1001$100$HO", "2001$200$ZZ"],
    )
    c1 = ingest(q1, "faers", db)
    assert c1["cases"] == 2 and c1["lots"] == 1
    assert c1["quarantine_reasons"] == {
        "invalid_role": 1,
        "invalid_value": 1,
        "missing_pt": 1,
        "missing_received_date": 1,
        "orphan_drug": 1,
        "orphan_reaction": 1,
    }
    assert c1["quarantined"] == 6

    # next quarter: a follow-up of case 100 (version 2) and a deleted-case list naming case 200
    q2 = write_quarter(
        tmp_path / "q2",
        "20Q2",
        demo=[demo_row("100", 2, fda_dt="20170601")],
        drug=[
            drug_row("1002", "100", 1, "ZOCOR", "SIMVASTATIN", "12AB"),
            drug_row("1002", "100", 2, "ASPIRIN", "ASPIRIN"),
        ],
        reac=["1002$100$Myalgia$", "1002$100$Fatigue$"],
    )
    (q2 / "deleted").mkdir()
    (q2 / "deleted" / "DELETE20Q2.txt").write_text("200\n")
    c2 = ingest(q2, "faers", db)
    assert c2["cases"] == 1 and c2["deleted_cases"] == 1 and c2["drugs"] == 2 and c2["reactions"] == 2
    con = duckdb.connect(str(db), read_only=True)
    latest = con.execute("SELECT case_id, version FROM latest_case ORDER BY 1").fetchall()
    assert latest == [("FAERS-100", 2)]  # 200 deleted, 300 quarantined
    assert con.execute("SELECT count(*) FROM case_report").fetchone()[0] == 3  # every version kept
    assert con.execute("SELECT count(*) FROM quarantine WHERE stage = 'ingest:faers'").fetchone()[0] == 6
    con.close()
    # re-ingesting the first quarter does not resurrect the deleted case nor demote the follow-up
    ingest(q1, "faers", db)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT case_id, version FROM latest_case ORDER BY 1").fetchall() == [("FAERS-100", 2)]
    assert con.execute("SELECT count(*) FROM quarantine WHERE stage = 'ingest:faers'").fetchone()[0] == 6
    con.close()


def test_duplicate_suggestion_flags_but_keeps(tmp_path):
    q = write_quarter(
        tmp_path / "q",
        "20Q3",
        demo=[
            demo_row("500", 1, fda_dt="20170401"),
            demo_row("600", 1, fda_dt="20170405"),
            demo_row("700", 1, fda_dt="20170405", age="41"),
        ],
        drug=[
            drug_row("5001", "500", 1, "ZOCOR", "SIMVASTATIN"),
            drug_row("6001", "600", 1, "Zocor 20mg", "SIMVASTATIN"),
            drug_row("7001", "700", 1, "ZOCOR", "SIMVASTATIN"),
        ],
        reac=["5001$500$Myalgia$", "6001$600$Myalgia$", "7001$700$Myalgia$"],
    )
    counts = ingest(q, "faers", tmp_path / "w.duckdb")
    assert counts["duplicates_flagged"] == 1 and counts["cases"] == 3
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("SELECT case_id, duplicate_of FROM latest_case WHERE duplicate_of IS NOT NULL").fetchall() == [
        ("FAERS-600", "FAERS-500")
    ]


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        ingest(tmp_path / "nope.zip", "faers", tmp_path / "w.duckdb")
    with pytest.raises(IngestError, match="unknown format"):
        ingest(Q2017, "medwatch", tmp_path / "w.duckdb")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(IngestError, match="no FAERS DEMO, DRUG, REAC file"):
        ingest(empty, "faers", tmp_path / "w.duckdb")


def test_case_insensitive_names_and_counter_of_roles(tmp_path):
    with zipfile.ZipFile(Q2017) as zf:
        zf.extractall(tmp_path / "x")
    for p in (tmp_path / "x" / "ascii").iterdir():
        p.rename(p.with_name(p.name.lower()))
    counts = ingest(tmp_path / "x", "faers", tmp_path / "w.duckdb")
    assert counts["cases"] == 100
    roles = Counter(r["role_cod"] for r in raw_table(Q2017, "drug"))
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    got = dict(con.execute("SELECT role, count(*) FROM case_drug GROUP BY 1").fetchall())
    assert got["suspect"] == roles["PS"] + roles["SS"] and got.get("concomitant", 0) == roles["C"]

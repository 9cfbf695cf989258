"""The loaded release reaches the E2B writer: term -> 8-digit LLT code and the MedDRA version (issue 20 item 3)."""

from assets.reporting import meddra_coding
from sample_data.terminology import VERSION, write_terminology
from warehouse.schema import connect
from warehouse.terminology.meddra import load_release


def test_no_release_means_no_coding(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    assert meddra_coding(con) is None


def test_a_loaded_release_codes_pt_names_for_e2b(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    for folder in write_terminology(tmp_path / "meddra"):
        load_release(con, folder)
    coding = meddra_coding(con)
    assert coding is not None and coding.version == VERSION
    code, version = coding.code("Hypersensitivity")
    assert len(code) == 8 and code.isdigit() and version == VERSION
    assert coding.code("not a MedDRA term at all") is None

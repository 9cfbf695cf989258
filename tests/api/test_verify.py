"""Verification: every code system, every status, malformed codes, the vectorised path."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.snapshot import prepare
from api.verify import STATUSES, verify_codes
from tests.api import world
from tests.api.conftest import auth
from warehouse.linkage.pack_codes import REASONS, InvalidPackCode, parse_pack_code


@pytest.fixture(scope="module")
def con(warehouse, tmp_path_factory):
    copy = tmp_path_factory.mktemp("copy") / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    c = duckdb.connect(str(copy))
    prepare(c)
    yield c
    c.close()


def test_every_status_is_derived_as_documented(con):
    codes = list(world.EXPECTED)
    frame = verify_codes(con, codes, as_of=world.AS_OF)
    assert frame["code"].to_list() == codes
    assert dict(zip(frame["code"], frame["status"])) == world.EXPECTED
    assert set(world.EXPECTED.values()) == set(STATUSES)


def test_conditions_detail_and_level(con):
    rows = {r["code"]: r for r in verify_codes(con, list(world.EXPECTED), as_of=world.AS_OF).to_dicts()}
    assert rows[world.EU_LOT_MISMATCH]["conditions"] == ["lot_mismatch"]
    assert rows[world.EU_EXPIRY_MISMATCH]["conditions"] == ["expiry_mismatch"]
    assert rows[world.EU_LOCKED]["conditions"] == ["locked"]
    assert rows[world.EU_DESTROYED]["conditions"] == ["decommissioned"]
    assert rows[world.EU_UNKNOWN_SERIAL]["detail"] == "unknown_serial"
    assert rows[world.EU_UNKNOWN_SERIAL]["product_id"] == "P-EU"
    assert rows[world.UNKNOWN_PRODUCT]["detail"] == "unknown_product"
    assert rows[world.NDC] | {} and rows[world.NDC]["system"] == "ndc"
    assert (rows[world.NDC]["detail"], rows[world.NDC]["product_id"]) == ("no_serial", "P-US")
    assert rows[world.JP_LOT_ONLY]["level"] == "batch" and rows[world.JP_LOT_ONLY]["batch_id"] == "B-JP1"
    assert rows[world.EU_ACTIVE]["level"] == "pack"
    # a valid pack past its expiry date, at a later verification date
    later = verify_codes(con, [world.EU_ACTIVE], as_of=dt.date(2028, 1, 1)).row(0, named=True)
    assert later["status"] == "expired"


def test_every_code_system_reaches_the_same_pack(con):
    gtin, lot, serial = world.EU_GTIN, "EU1A", "S0010"
    forms = [
        f"(01){gtin}(17)271231(10){lot}(21){serial}",
        f"(01){gtin}(21){serial}(10){lot}(17)271231",  # any AI order
        f"01{gtin}1727123110{lot}\x1d21{serial}",
        f"01{gtin}1727123110{lot}<GS>21{serial}",
        f"]d201{gtin}17271231" + f"10{lot}\x1d21{serial}",
        f"https://id.gs1.org/01/{gtin}/10/{lot}/21/{serial}?17=271231",
        f"https://example.com/some/prefix/01/{gtin}/10/{lot}/21/{serial}",
        f"  (01){gtin}(17)271231(10){lot}(21){serial}  ",
    ]
    frame = verify_codes(con, forms, as_of=world.AS_OF)
    assert frame["batch_id"].to_list() == ["B-EU1"] * len(forms)
    assert frame["status"].to_list() == ["active"] * len(forms)
    assert set(frame["system"]) == {"gs1"}
    cn = verify_codes(con, [world.CN_ACTIVE, "]Q3" + world.CN_ACTIVE], as_of=world.AS_OF)
    assert cn["system"].to_list() == ["nmpa", "nmpa"] and cn["status"].to_list() == ["active", "active"]
    assert cn["nmpa_drug_code"][0] == world.CN_NMPA


MALFORMED = [
    "",
    "   ",
    "hello",
    "(01)09501101530004(21)X",
    "(01)09501101530003(17)261340(10)A",
    "8612345",
    "12",
    "(10)LOT1",
]


def test_malformed_codes_answer_valid_false_with_the_parsers_reason(con):
    frame = verify_codes(con, [*MALFORMED, None], as_of=world.AS_OF)
    for row in frame.to_dicts():
        assert row["valid"] is False and row["status"] is None
        assert row["reason"] in REASONS and row["reason_text"] == REASONS[row["reason"]]
        if row["code"] is not None:
            with pytest.raises(InvalidPackCode) as exc:
                parse_pack_code(row["code"])
            if not row["code"].strip().replace("-", "").isdigit() or len(row["code"].strip()) != 10:
                assert exc.value.reason == row["reason"]


def test_too_many_codes_is_refused(con):
    with pytest.raises(ValueError, match="at most"):
        verify_codes(con, ["x"] * 10_001)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.text(max_size=80))
def test_arbitrary_strings_never_fail(api, keys, code):
    r = api.get("/v1/packs/" + quote(code, safe=""), headers=auth(keys["verifier"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] in (True, False)
    if not body["valid"]:
        assert body["reason"] in REASONS
    else:
        assert body["status"] in STATUSES


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=30))
def test_arbitrary_batches_never_fail(api, keys, codes):
    r = api.post("/v1/verify", json={"codes": codes}, headers=auth(keys["verifier"]))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["code"] for x in results] == codes
    assert all(x["valid"] or x["reason"] in REASONS for x in results)


def test_few_and_many_codes_give_the_same_answers(con):
    """Up to FEW_CODES codes are parsed one by one, more in one vectorised call: same answers."""
    from api.verify import FEW_CODES

    codes = [*world.EXPECTED, *MALFORMED, None, world.NDC, "5957221593"]
    many = verify_codes(con, codes, as_of=world.AS_OF)
    assert len(codes) > FEW_CODES
    few = [verify_codes(con, [c], as_of=world.AS_OF).row(0, named=True) for c in codes]
    assert few == many.to_dicts()

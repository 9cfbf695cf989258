"""Case-drug → batch linkage on a small hand-made world that exercises every method."""

from __future__ import annotations

import random

import polars as pl
import pytest

from warehouse.linkage.lots import CONFIDENCE, LINK_COLUMNS, _edit_distance_one, link_case_to_batch
from warehouse.linkage.pack_codes import gs1_check_digit


def _gtin(body: str) -> str:
    return body + gs1_check_digit(body)


G1 = _gtin("0950110153000")  # product P1
G3 = _gtin("0400000000001")  # product P3
G_UNKNOWN = _gtin("0777777777777")
G1_BAD = G1[:-1] + str((int(G1[-1]) + 1) % 10)
NMPA_IN_PACKS = "81234560000000000001"
NMPA_NOT_UPLOADED = "81234569999999999999"

PRODUCTS = pl.DataFrame(
    {
        "product_id": ["P1", "P2", "P3"],
        "gtin": [G1, "", G3],
        "nmpa_drug_code": [None, "8123456", None],
    }
)
BATCHES = pl.DataFrame(
    {
        "batch_id": ["B1", "B2", "B5", "B6", "B7", "B8", "B9", "B10", "B11"],
        "product_id": ["P1", "P1", "P2", "P1", "P1", "P1", "P1", "P3", "P1"],
        "lot_number": ["AB12C", "XY-345", "CN001", "KLM120", "KLM130", "LOT5555", "5555", "AB12C", "K9Z"],
    }
)
PACKS = pl.DataFrame(
    {
        "pack_code": [f"(01){G1}(17)271200(10)AB12C(21)S1", NMPA_IN_PACKS],
        "code_system": ["gs1", "nmpa"],
        "batch_id": ["B1", "B5"],
        "serial": ["S1", NMPA_IN_PACKS[7:]],
    }
)

# (label, product_id, lot_as_reported, pack_code_as_reported) → expected
# (batch_id, product_id, method, confidence, candidates, reason fragment)
CASES = [
    (
        "hri pack",
        None,
        None,
        f"(01){G1}(17)271200(10)AB12C(21)S1",
        ("B1", "P1", "scanned_code", 1.0, [], "pack in the serialisation upload"),
    ),
    (
        "dl same pack",
        "P1",
        "junk",
        f"https://id.gs1.org/01/{G1}/10/AB12C/21/S1?17=271200",
        ("B1", "P1", "scanned_code", 1.0, [], "pack in the serialisation upload"),
    ),
    (
        "raw, pack not uploaded",
        None,
        None,
        f"]d201{G1}17271200" + "10AB12C<GS>21S999",
        ("B1", "P1", "scanned_code", 0.99, [], "GTIN and lot AB12C"),
    ),
    (
        "nmpa pack",
        None,
        None,
        f" {NMPA_IN_PACKS} ",
        ("B5", "P2", "scanned_code", 1.0, [], "pack in the serialisation upload"),
    ),
    (
        "invalid code → typed lot",
        "P1",
        "AB12C",
        f"(01){G1_BAD}(17)271200(10)AB12C(21)S1",
        ("B1", "P1", "exact_lot", 0.98, [], "scanned code invalid: bad_check_digit"),
    ),
    ("exact", "P1", " AB12C ", None, ("B1", "P1", "exact_lot", 0.98, [], "exactly")),
    ("normalised case", "P1", "ab12c", None, ("B1", "P1", "normalised_lot", 0.95, [], "normalised lot")),
    ("normalised prefix", "P1", "LOT: xy-345", None, ("B2", "P1", "normalised_lot", 0.95, [], "normalised lot")),
    ("fuzzy substitution", "P1", "ab12d", None, ("B1", "P1", "fuzzy_lot", 0.8, [], "one edit")),
    ("fuzzy transposition", "P1", "BA12C", None, ("B1", "P1", "fuzzy_lot", 0.8, [], "one edit")),
    ("fuzzy deletion", "P1", "XY345", None, ("B2", "P1", "fuzzy_lot", 0.8, [], "one edit")),
    (
        "fuzzy ambiguous",
        "P1",
        "KLM1X0",
        None,
        (None, "P1", "product_only", 0.0, ["B6", "B7"], "fuzzy lot matched 2 batches"),
    ),
    (
        "normalised ambiguous",
        "P1",
        "lot 5555",
        None,
        (None, "P1", "product_only", 0.0, ["B8", "B9"], "lot matched 2 batches"),
    ),
    (
        "two lots in one field",
        "P1",
        "AB12C, XY-345",
        None,
        (None, "P1", "product_only", 0.0, ["B1", "B2"], "lot matched 2 batches"),
    ),
    ("junk lot", "P1", "UNKNOWN", None, (None, "P1", "product_only", 0.0, [], "means unknown")),
    ("no lot", "P1", None, None, (None, "P1", "product_only", 0.0, [], "no lot reported")),
    ("no match", "P1", "ZZZZ99", None, (None, "P1", "product_only", 0.0, [], "matched no batch of P1")),
    ("too short to fuzz", "P1", "K9", None, (None, "P1", "product_only", 0.0, [], "matched no batch")),
    ("lot is per product", "P3", "ab12c", None, ("B10", "P3", "normalised_lot", 0.95, [], "normalised lot")),
    ("unlinked", None, "AB12C", None, (None, None, "unlinked", 0.0, [], "product not mapped")),
    (
        "nmpa not uploaded, typed lot",
        None,
        "cn001",
        NMPA_NOT_UPLOADED,
        ("B5", "P2", "normalised_lot", 0.95, [], "NMPA code not in the packs upload"),
    ),
    (
        "unknown gtin → reported product",
        "P1",
        "AB12C",
        f"(01){G_UNKNOWN}(10)X(21)Y",
        ("B1", "P1", "exact_lot", 0.98, [], f"GTIN {G_UNKNOWN} matches no product"),
    ),
    (
        "code overrides reported product",
        "P3",
        None,
        f"(01){G1}(17)271200(10)AB12C(21)S1",
        ("B1", "P1", "scanned_code", 1.0, [], "differs from the reported P3"),
    ),
    (
        "code gives product, lot from code unknown",
        None,
        "XY345",
        f"(01){G1}(10)NOPE(21)S77",
        ("B2", "P1", "fuzzy_lot", 0.8, [], "lot NOPE in the code is no batch"),
    ),
    ("empty code string", "P1", "ab12c", "  ", ("B1", "P1", "normalised_lot", 0.95, [], "normalised lot")),
]


@pytest.fixture(scope="module")
def linked() -> pl.DataFrame:
    case_drugs = pl.DataFrame(
        {
            "case_id": [f"C{i:02d}" for i in range(len(CASES))],
            "version": [1] * len(CASES),
            "drug_seq": [1] * len(CASES),
            "product_id": [c[1] for c in CASES],
            "lot_as_reported": [c[2] for c in CASES],
            "pack_code_as_reported": [c[3] for c in CASES],
        },
        schema_overrides={"product_id": pl.String, "lot_as_reported": pl.String, "pack_code_as_reported": pl.String},
    )
    return link_case_to_batch(case_drugs, PRODUCTS, BATCHES, PACKS)


def test_output_shape(linked: pl.DataFrame) -> None:
    assert linked.columns == LINK_COLUMNS
    assert linked.height == len(CASES)
    assert linked["case_id"].to_list() == [f"C{i:02d}" for i in range(len(CASES))]
    assert linked.schema["candidates"] == pl.List(pl.String)
    assert linked.schema["confidence"] == pl.Float64
    assert linked["method"].null_count() == 0 and linked["reason"].null_count() == 0


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_each_method(linked: pl.DataFrame, index: int) -> None:
    batch_id, product_id, method, confidence, candidates, reason = CASES[index][4]
    row = linked.row(index, named=True)
    assert (row["batch_id"], row["product_id"], row["method"]) == (batch_id, product_id, method)
    assert row["confidence"] == pytest.approx(confidence)
    assert sorted(row["candidates"]) == candidates
    assert reason in row["reason"], row["reason"]


def test_every_method_exercised(linked: pl.DataFrame) -> None:
    assert set(linked["method"]) == {
        "scanned_code",
        "exact_lot",
        "normalised_lot",
        "fuzzy_lot",
        "product_only",
        "unlinked",
    }
    assert set(CONFIDENCE) >= set(linked["method"])


def test_warehouse_column_names_accepted() -> None:
    case_drugs = pl.DataFrame(
        {
            "case_id": ["X"],
            "version": [2],
            "drug_seq": [3],
            "product_id": ["P1"],
            "lot_reported": ["ab12c"],
            "pack_code_reported": [None],
        },
        schema_overrides={"pack_code_reported": pl.String},
    )
    out = link_case_to_batch(case_drugs, PRODUCTS, BATCHES, PACKS)
    assert out.select("version", "drug_seq", "batch_id", "method").row(0) == (2, 3, "B1", "normalised_lot")


def test_empty_input() -> None:
    case_drugs = pl.DataFrame(
        schema={
            "case_id": pl.String,
            "version": pl.Int64,
            "drug_seq": pl.Int64,
            "product_id": pl.String,
            "lot_as_reported": pl.String,
            "pack_code_as_reported": pl.String,
        }
    )
    out = link_case_to_batch(case_drugs, PRODUCTS, BATCHES, PACKS)
    assert out.height == 0 and out.columns == LINK_COLUMNS


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance (reference implementation for the test)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_edit_distance_one_join_equals_brute_force() -> None:
    rng = random.Random(3)
    alphabet = "AB12"  # small alphabet: many near neighbours

    def word() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))

    typed = pl.DataFrame(
        {"_rid": list(range(300)), "product_id": ["P"] * 300, "_key": [word() for _ in range(300)]},
        schema_overrides={"_rid": pl.UInt32},
    )
    lots = pl.DataFrame(
        {"batch_id": [f"B{i}" for i in range(80)], "product_id": ["P"] * 80, "_key": [word() for _ in range(80)]}
    ).unique("_key")
    got = {tuple(r) for r in _edit_distance_one(typed, lots).iter_rows()}
    expected = {
        (t, b)
        for t, tk in zip(typed["_rid"], typed["_key"])
        for b, bk in zip(lots["batch_id"], lots["_key"])
        if _osa(tk, bk) <= 1
    }
    assert got == expected

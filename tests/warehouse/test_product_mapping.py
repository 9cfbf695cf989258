"""Reported drug names → products, with the method that matched."""

from __future__ import annotations

import polars as pl

from warehouse.linkage.products import map_reported_products, normalise_drug_name

PRODUCTS = pl.DataFrame(
    {
        "product_id": ["P1", "P2", "P3", "P4"],
        "name": ["Glucofin", "Cardiolex XR", "Amoxil", "Amoxi-Gen"],
        "ingredient": ["metformin", "metoprolol", "amoxicillin", "amoxicillin"],
    }
)


def mapped(names):
    frame = pl.DataFrame({"product_name_reported": names})
    return (
        map_reported_products(frame, PRODUCTS)
        .select("product_name_reported", "product_id", "ingredient", "mapping_method")
        .rows()
    )


def test_normalise_strips_case_strength_and_punctuation():
    out = pl.select(normalise_drug_name(pl.lit("  GLUCOFIN® 500 mg/5 ml  tablets "))).item()
    assert out == "glucofin tablets"


def test_mapping_methods():
    got = {
        r[0]: r[1:]
        for r in mapped(
            ["glucofin", "GLUCOFIN 850 MG", "Cardiolex XR 50mg", "cardiolex", "metformin", "amoxicillin", "aspirin"]
        )
    }
    assert got["glucofin"] == ("P1", "metformin", "brand")
    assert got["GLUCOFIN 850 MG"] == ("P1", "metformin", "brand")
    assert got["Cardiolex XR 50mg"] == ("P2", "metoprolol", "brand")
    assert got["cardiolex"] == ("P2", "metoprolol", "brand_prefix")
    assert got["metformin"] == ("P1", "metformin", "ingredient_single_product")
    # two products share the ingredient: the ingredient is known, the product is not guessed
    assert got["amoxicillin"] == (None, "amoxicillin", "ingredient")
    assert got["aspirin"] == (None, None, "unmapped")

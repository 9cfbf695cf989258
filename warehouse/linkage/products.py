"""Map drug names as reporters write them to products and active ingredients.

Reporters write brand names in any case, with or without the strength, or the ingredient.
Order of evidence: exact brand → brand followed by a strength/form → exact ingredient (a
product only when that ingredient has a single product) → unmapped. The method is stored so
that an analyst can see why a case counts for a product, and unmapped names are reported.
"""

from __future__ import annotations

import polars as pl

_STRENGTH = r"\b\d+([.,]\d+)?\s*(mg|g|mcg|µg|ug|ml|iu|%|units?)(\s*/\s*\d*([.,]\d+)?\s*(mg|g|ml|dose))?\b"


def normalise_drug_name(name: pl.Expr) -> pl.Expr:
    """Lower case, strength and punctuation removed, white space collapsed."""
    return (
        name.str.to_lowercase()
        .str.replace_all(_STRENGTH, " ")
        .str.replace_all(r"[^\p{L}\p{N}+ ]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def map_reported_products(reported: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    """Add ``product_id``, ``ingredient`` and ``mapping_method`` to rows with ``product_name_reported``.

    ``products`` needs ``product_id``, ``name``, ``ingredient``.
    """
    brands = products.select(
        normalise_drug_name(pl.col("name")).alias("_norm"),
        pl.col("product_id").alias("_pid_brand"),
        pl.col("ingredient").alias("_ing_brand"),
    ).unique(subset=["_norm"], keep="first")
    ingredients = products.group_by(pl.col("ingredient").str.to_lowercase().alias("_norm")).agg(
        pl.col("ingredient").first().alias("_ing"), pl.col("product_id").alias("_pids")
    )
    frame = reported.with_columns(normalise_drug_name(pl.col("product_name_reported")).alias("_norm"))
    # brand followed by anything (e.g. "brand tablets") — the first word(s) must be the brand
    frame = frame.join(brands, on="_norm", how="left")
    first_word = brands.with_columns(pl.col("_norm").str.split(" ").list.first().alias("_first")).filter(
        pl.col("_first").is_unique()
    )
    frame = frame.with_columns(pl.col("_norm").str.split(" ").list.first().alias("_first")).join(
        first_word.select(
            "_first", pl.col("_pid_brand").alias("_pid_prefix"), pl.col("_ing_brand").alias("_ing_prefix")
        ),
        on="_first",
        how="left",
    )
    frame = frame.join(ingredients, on="_norm", how="left")
    single = pl.col("_pids").list.len() == 1
    return frame.with_columns(
        pl.coalesce("_pid_brand", "_pid_prefix", pl.when(single).then(pl.col("_pids").list.first())).alias(
            "product_id"
        ),
        pl.coalesce("_ing_brand", "_ing_prefix", "_ing").alias("ingredient"),
        pl.when(pl.col("_pid_brand").is_not_null())
        .then(pl.lit("brand"))
        .when(pl.col("_pid_prefix").is_not_null())
        .then(pl.lit("brand_prefix"))
        .when(pl.col("_ing").is_not_null() & single)
        .then(pl.lit("ingredient_single_product"))
        .when(pl.col("_ing").is_not_null())
        .then(pl.lit("ingredient"))
        .otherwise(pl.lit("unmapped"))
        .alias("mapping_method"),
    ).drop("_norm", "_pid_brand", "_ing_brand", "_first", "_pid_prefix", "_ing_prefix", "_ing", "_pids")

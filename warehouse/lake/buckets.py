"""The one bucket rule of PV Trace's lake and fan-out: the first 32 bits of the key's MD5, mod n.

``bucket(key) = int(md5(utf-8 key)[:8 hex digits], 16) mod n`` (a null key → bucket 0). MD5 is
used as a *stable, portable* hash, not for security: the same number comes out of Python
(:func:`bucket_of`, per distinct key), DuckDB (:func:`duckdb_bucket`, vectorised in SQL) and
Spark (:func:`spark_bucket`, a column expression), on every version of each — which engine-native
hashes (DuckDB's ``hash``, polars' ``hash``, Spark's ``xxhash64``) do not promise to each other.
So a pack code lands in the same lake bucket whoever writes it, and a product in the same
fan-out bucket on every engine and run.
"""

from __future__ import annotations

import hashlib

import polars as pl

__all__ = ["bucket_of", "duckdb_bucket", "spark_bucket"]


def _check(n_buckets: int) -> int:
    if isinstance(n_buckets, bool) or int(n_buckets) != n_buckets or not 1 <= n_buckets <= 1_000_000:
        raise ValueError(f"the number of buckets must be an integer in [1, 1000000], got {n_buckets!r}")
    return int(n_buckets)


def bucket_of(keys: pl.Series, n_buckets: int) -> pl.Series:
    """The bucket of every key (Int32), hashing each *distinct* key once: cheap for products
    (10^5) or case ids of one delivery; for 10^9 pack codes use :func:`duckdb_bucket` or
    :func:`spark_bucket`."""
    n = _check(n_buckets)
    distinct = keys.cast(pl.String).unique()
    table = pl.DataFrame(
        {
            "_k": distinct,
            "_b": [0 if k is None else int(hashlib.md5(k.encode("utf-8")).hexdigest()[:8], 16) % n for k in distinct],
        },
        schema={"_k": pl.String, "_b": pl.Int32},
    )
    return (
        pl.DataFrame({"_k": keys.cast(pl.String)})
        .join(table, on="_k", how="left", nulls_equal=True, maintain_order="left")["_b"]
        .alias("bucket")
    )


def duckdb_bucket(column_sql: str, n_buckets: int) -> str:
    """DuckDB SQL of :func:`bucket_of` for the expression ``column_sql``."""
    n = _check(n_buckets)
    return f"coalesce((('0x' || md5(({column_sql})::VARCHAR)[1:8])::UBIGINT % {n})::INTEGER, 0)"


def spark_bucket(column, n_buckets: int):
    """The Spark column of :func:`bucket_of` for the column ``column``."""
    from pyspark.sql import functions as F

    n = _check(n_buckets)
    digits = F.substring(F.md5(column.cast("string")), 1, 8)
    return F.coalesce(F.pmod(F.conv(digits, 16, 10).cast("long"), F.lit(n)), F.lit(0)).cast("int")

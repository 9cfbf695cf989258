"""Scale check for pack-code parsing and report↔batch linkage; prints figures.

    .venv/bin/python benchmarks/bench_traceability.py                 # 10M codes, 1M rows
    .venv/bin/python benchmarks/bench_traceability.py --codes 1e6 --rows 1e5

Codes: 70% canonical GS1 HRI, 27% NMPA, 1% raw element strings with ``]d2`` and
``<GS>``, 1% Digital Links (all four on the vectorised path), ~1% malformed (bad check
digit, month 13 — vectorised; 19-digit NMPA, garbage — biip fallback). The biip fallback's
own per-row cost is measured separately on raw/Digital Link/HRI codes. Linkage: case-drug rows against --batches batches of 50 per
product, with scanned codes (in and out of the packs upload, valid and invalid), clean,
lower-case, prefixed, typo'd, junk and missing lots, and unmapped products.
Peak memory is the process's max RSS (``resource.getrusage``), which only grows; parsing
is therefore measured in a child process that only reads the generated codes (the
generator alone peaks at ~3.1 GB for 10M codes, which hid the parser's own peak).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from warehouse.linkage.lots import link_case_to_batch
from warehouse.linkage.pack_codes import gs1_check_digit, parse_pack_code, parse_pack_codes


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gtins(n: int, rng: np.random.Generator) -> list[str]:
    bodies = {f"0{rng.integers(10**10, 10**11)}{i % 10}" for i in range(n * 2)}  # 13 digits
    return [b + gs1_check_digit(b) for b in sorted(bodies)[:n]]


def _digits(rng: np.random.Generator, n: int, width: int) -> pl.Series:
    return pl.Series(rng.integers(0, 10**width, n, dtype=np.int64)).cast(pl.String).str.zfill(width)


def make_codes(n: int, seed: int = 1) -> pl.Series:
    rng = np.random.default_rng(seed)
    gtins = pl.Series(_gtins(2000, rng))
    kind = rng.random(n)
    df = pl.DataFrame(
        {
            "kind": kind,
            "gtin": gtins.gather(rng.integers(0, len(gtins), n)),
            "yy": pl.Series(rng.integers(25, 36, n)).cast(pl.String).str.zfill(2),
            "mm": pl.Series(rng.integers(1, 13, n)).cast(pl.String).str.zfill(2),
            "dd": pl.Series(rng.integers(0, 29, n)).cast(pl.String).str.zfill(2),
            "lot": pl.Series(rng.integers(0, 10**6, n)).cast(pl.String).str.zfill(6),
            "serial": _digits(rng, n, 12),
            "nmpa": "8" + _digits(rng, n, 6) + _digits(rng, n, 13),
        }
    )
    k = pl.col("kind")
    hri = pl.concat_str(
        pl.lit("(01)"),
        "gtin",
        pl.lit("(17)"),
        "yy",
        "mm",
        "dd",
        pl.lit("(10)L"),
        "lot",
        pl.lit("(21)"),
        "serial",
    )
    raw = pl.concat_str(
        pl.lit("]d201"),
        "gtin",
        pl.lit("17"),
        "yy",
        "mm",
        "dd",
        pl.lit("10L"),
        "lot",
        pl.lit("<GS>21"),
        "serial",
    )
    dl = pl.concat_str(
        pl.lit("https://id.gs1.org/01/"),
        "gtin",
        pl.lit("/10/L"),
        "lot",
        pl.lit("/21/"),
        "serial",
        pl.lit("?17="),
        "yy",
        "mm",
        "dd",
    )
    bad_gtin = pl.concat_str(
        pl.col("gtin").str.slice(0, 13),
        ((pl.col("gtin").str.slice(13, 1).cast(pl.Int32) + 1) % 10).cast(pl.String),
    )
    code = (
        pl.when(k < 0.70)
        .then(hri)
        .when(k < 0.97)
        .then(pl.col("nmpa"))
        .when(k < 0.98)
        .then(raw)
        .when(k < 0.99)
        .then(dl)
        .when(k < 0.9935)
        .then(pl.concat_str(pl.lit("(01)"), bad_gtin, hri.str.slice(18)))
        .when(k < 0.9965)
        .then(hri.str.replace(r"\(17\)(\d\d)\d\d", "(17)${1}13"))  # month 13
        .when(k < 0.998)
        .then(pl.col("nmpa").str.slice(0, 19))
        .otherwise(pl.lit("NOT-A-CODE"))
    )
    return df.select(code.alias("code"))["code"]


def bench_parse(n: int) -> None:
    t0 = time.perf_counter()
    codes = make_codes(n)
    t1 = time.perf_counter()
    print(f"generated {n:,} codes in {t1 - t0:.1f} s; peak RSS {peak_mb():,.0f} MB")
    # RSS only grows, and generating the codes peaks higher than parsing them: parse in a
    # fresh process that only reads the codes, so its peak is the parser's own
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "codes.parquet"
        codes.to_frame("code").write_parquet(path)
        subprocess.run([sys.executable, __file__, "--parse-file", str(path)], check=True)

    # per-row cost of the biip fallback path alone (non-canonical forms, distinct codes)
    sample = codes.filter(~codes.str.starts_with("(01)") & ~codes.str.starts_with("8")).head(20_000)
    fallback_share = (
        codes.filter(codes.str.starts_with("8") & (codes.str.len_chars() != 20) | (codes == "NOT-A-CODE")).len() / n
    )
    print(f"rows sent to the biip fallback: ~{fallback_share:.2%}")
    t3 = time.perf_counter()
    for code in sample.to_list():
        with contextlib.suppress(ValueError):
            parse_pack_code(code)
    t4 = time.perf_counter()
    print(
        f"parse_pack_code (biip) per row: {(t4 - t3) / len(sample) * 1e6:.1f} µs/code "
        f"over {len(sample):,} raw/Digital Link/malformed codes"
    )
    hri_sample = codes.filter(codes.str.starts_with("(01)")).head(20_000).to_list()
    t5 = time.perf_counter()
    for code in hri_sample:
        with contextlib.suppress(ValueError):
            parse_pack_code(code)
    t6 = time.perf_counter()
    print(
        f"parse_pack_code on canonical HRI: {(t6 - t5) / len(hri_sample) * 1e6:.1f} µs/code "
        f"(per row, biip; the vectorised figure is above)"
    )


def parse_file(path: str) -> None:
    codes = pl.read_parquet(path).get_column("code")
    before = peak_mb()
    t1 = time.perf_counter()
    parsed = parse_pack_codes(codes)
    t2 = time.perf_counter()
    n = codes.len()
    print(
        f"parse_pack_codes: {n:,} codes in {t2 - t1:.1f} s = {n / (t2 - t1):,.0f} codes/s; peak RSS "
        f"{peak_mb():,.0f} MB (codes read: {before:,.0f} MB; result {parsed.estimated_size() / 2**20:,.0f} MB)"
    )
    print(parsed.group_by("system", "error_reason").len().sort("len", descending=True), flush=True)


def make_world(n_rows: int, n_batches: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    per_product = 50
    n_products = n_batches // per_product
    gtins = _gtins(n_products, rng)
    products = pl.DataFrame(
        {
            "product_id": [f"P{i:05d}" for i in range(n_products)],
            "gtin": [g if i % 4 else None for i, g in enumerate(gtins)],
            "nmpa_drug_code": [f"8{i:06d}" if i % 4 == 0 else None for i in range(n_products)],
        }
    )
    batch_idx = np.arange(n_batches)
    letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
    lot = pl.Series(["".join(x) for x in letters[rng.integers(0, 24, (n_batches, 2))]]) + pl.Series(
        rng.integers(0, 10**5, n_batches)
    ).cast(pl.String).str.zfill(5)
    batches = pl.DataFrame(
        {
            "batch_id": [f"BAT-{i:07d}" for i in batch_idx],
            "product_id": [f"P{i // per_product:05d}" for i in batch_idx],
            "lot_number": lot,
        }
    ).unique(["product_id", "lot_number"])
    b = batches.join(products, on="product_id")
    # 10 uploaded packs per batch (1M packs at 100k batches)
    packs = b.select(
        pl.col("batch_id").repeat_by(10).explode(),
        pl.col("gtin").repeat_by(10).explode(),
        pl.col("nmpa_drug_code").repeat_by(10).explode(),
        pl.col("lot_number").repeat_by(10).explode(),
    ).with_columns(serial=pl.int_range(pl.len()).cast(pl.String).str.zfill(13))
    packs = packs.with_columns(
        pack_code=pl.when(pl.col("gtin").is_not_null())
        .then(pl.concat_str(pl.lit("(01)"), "gtin", pl.lit("(17)271200(10)"), "lot_number", pl.lit("(21)"), "serial"))
        .otherwise(pl.concat_str("nmpa_drug_code", "serial")),
        code_system=pl.when(pl.col("gtin").is_not_null()).then(pl.lit("gs1")).otherwise(pl.lit("nmpa")),
    )

    pick = rng.integers(0, packs.height, n_rows)
    rows = packs[pick].join(batches.select("batch_id", "product_id"), on="batch_id")
    u = pl.Series(rng.random(rows.height))
    lot = pl.col("lot_number")
    typo = pl.concat_str(lot.str.slice(0, 3), pl.lit("Z"), lot.str.slice(4))
    cd = rows.with_columns(u=u).select(
        pl.format("C{}", pl.int_range(pl.len())).alias("case_id"),
        pl.lit(1).alias("version"),
        pl.lit(1).alias("drug_seq"),
        pl.when(pl.col("u") < 0.95).then(pl.col("product_id")).alias("product_id"),
        pl.when(pl.col("u") < 0.30)
        .then(lot)
        .when(pl.col("u") < 0.45)
        .then(lot.str.to_lowercase())
        .when(pl.col("u") < 0.55)
        .then(pl.concat_str(pl.lit("Lot: "), lot.str.to_lowercase()))
        .when(pl.col("u") < 0.65)
        .then(typo)
        .when(pl.col("u") < 0.72)
        .then(pl.lit("UNKNOWN"))
        .alias("lot_as_reported"),
        pl.when((pl.col("u") > 0.80) & (pl.col("u") < 0.86))
        .then(pl.col("pack_code"))
        .when((pl.col("u") > 0.86) & (pl.col("u") < 0.88) & pl.col("gtin").is_not_null())
        .then(
            pl.concat_str(
                pl.lit("https://id.gs1.org/01/"),
                "gtin",
                pl.lit("/10/"),
                lot,
                pl.lit("/21/X"),
                "serial",
                pl.lit("?17=271200"),
            )
        )  # not uploaded
        .when((pl.col("u") > 0.88) & (pl.col("u") < 0.89))
        .then(pl.lit("(01)00000000000001(21)X"))  # bad check digit
        .alias("pack_code_as_reported"),
    )
    return cd, products, batches, packs.select("pack_code", "code_system", "batch_id", "serial")


def bench_link(n_rows: int, n_batches: int) -> None:
    t0 = time.perf_counter()
    case_drugs, products, batches, packs = make_world(n_rows, n_batches)
    t1 = time.perf_counter()
    print(
        f"world: {case_drugs.height:,} case-drug rows, {products.height:,} products, "
        f"{batches.height:,} batches, {packs.height:,} packs ({t1 - t0:.1f} s)"
    )
    linked = link_case_to_batch(case_drugs, products, batches, packs)
    t2 = time.perf_counter()
    print(
        f"link_case_to_batch: {case_drugs.height:,} rows in {t2 - t1:.1f} s = "
        f"{case_drugs.height / (t2 - t1):,.0f} rows/s; peak RSS {peak_mb():,.0f} MB"
    )
    print(
        linked.group_by("method")
        .agg(pl.len(), pl.col("confidence").first(), ambiguous=(pl.col("candidates").list.len() > 0).sum())
        .sort("len", descending=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=float, default=10e6)
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--batches", type=float, default=1e5)
    parser.add_argument("--parse-file", help=argparse.SUPPRESS)  # child process of bench_parse
    args = parser.parse_args()
    if args.parse_file:
        parse_file(args.parse_file)
        return
    print(f"polars {pl.__version__}, threads {pl.thread_pool_size()}")
    bench_parse(int(args.codes))
    bench_link(int(args.rows), int(args.batches))


if __name__ == "__main__":
    main()

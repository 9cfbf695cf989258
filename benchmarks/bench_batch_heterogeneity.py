"""Scale benchmark for signals.batch_heterogeneity: 300 products x 1,000 PTs x ~10 batches.

    .venv/bin/python benchmarks/bench_batch_heterogeneity.py [--products 300] [--pts 1000]

The synthetic world (seeded): every product has 6-14 batches with exposure U(2k, 50k) packs,
the same for every PT; PT base rates are log-normal (median 2e-6 per pack, sd 1.5 on the log
scale) times a product factor, so most product-PT groups have 0-2 reports — sparse, as in real
data; 1% of the product-PTs expecting >= 3 reports get one 10x batch (with short onset).  One row per case (onset days,
exponential, mean 20; 3 for the planted batches) feeds the onset comparison.

Each part runs in a fresh *spawned* interpreter that reads the world from a temp parquet file,
so its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own: printed as the
process peak and as the increase over the baseline after loading the inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_world(n_products: int, n_pts: int, seed: int = 20240601) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    nb = rng.integers(6, 15, n_products)
    bp = np.repeat(np.arange(n_products), nb)  # product of each batch
    bidx = np.concatenate([np.arange(k) for k in nb])
    bexp = rng.uniform(2_000, 50_000, bp.size)
    pt_rate = np.exp(rng.normal(np.log(2e-6), 1.5, n_pts))
    prod_factor = np.exp(rng.normal(0, 0.5, n_products))
    # rows: every batch x every PT (sorted by product, then PT, then batch later by the module)
    B, E = np.meshgrid(np.arange(bp.size), np.arange(n_pts), indexing="ij")
    B, E = B.ravel(), E.ravel()
    prod = bp[B]
    lam = pt_rate[E] * prod_factor[prod] * bexp[B]
    # plant where a 10x batch is detectable at all: product-PTs expecting >= 3 reports in total
    expect_pe = np.outer(prod_factor * np.bincount(bp, weights=bexp, minlength=n_products), pt_rate).ravel()
    planted_pe = (rng.random(n_products * n_pts) < 0.01) & (expect_pe >= 3)
    planted = planted_pe[prod * n_pts + E] & (bidx[B] == 0)
    lam = np.where(planted, lam * 10, lam)
    y = rng.poisson(lam)
    frame = pl.DataFrame(
        {
            "p": prod.astype(np.int32),
            "e": E.astype(np.int32),
            "b": bidx[B].astype(np.int32),
            "cases": y.astype(np.int64),
            "exposure": bexp[B],
            "planted": planted,
        }
    ).select(
        pl.format("P{}", pl.col("p").cast(pl.String).str.zfill(3)).alias("product"),
        pl.format("PT{}", pl.col("e").cast(pl.String).str.zfill(4)).alias("event"),
        pl.format("LOT{}", pl.col("b").cast(pl.String).str.zfill(2)).alias("batch"),
        "cases",
        "exposure",
        "planted",
    )
    rep = np.repeat(np.arange(frame.height), y)
    short = planted[rep]
    onset = np.floor(rng.exponential(np.where(short, 3.0, 20.0))).astype(np.float64)
    onsets = frame.select("product", "event", "batch")[rep].with_columns(onset_days=pl.Series(onset))
    return frame, onsets


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _part(name: str, workdir: str, queue) -> None:
    from signals import batch_heterogeneity as bh

    frame = pl.read_parquet(os.path.join(workdir, "frame.parquet"))
    info = ""
    if name == "exact+EB (batch_rate_tests)":
        base = _rss_mb()
        c0, t = _cpu_s(), time.perf_counter()
        out = bh.batch_rate_tests(frame)
        dt, cpu, peak = time.perf_counter() - t, _cpu_s() - c0, _rss_mb()  # peak of this call
        info = (
            f"{out['p_exact'].is_not_null().sum():,} batches tested, {(out['q_exact'] < 0.05).sum():,} with q<0.05, "
            f"flag rule hits {((out['q_exact'] < 0.05) & (out['rr_shrunk_lo'] > 1) & (out['cases'] >= 3)).sum():,} "
            f"(planted batches: {out['planted'].sum():,})"
        )
        if "discrete_fdr_alpha" in bh.batch_rate_tests.__code__.co_varnames:
            t_ = bh.batch_rate_tests(frame, discrete_fdr_alpha=0.05)
            info += (
                f"; Tarone-subset BH (Gilbert 2005): {t_['q_exact'].is_not_null().sum():,} tests kept, "
                f"{(t_['q_exact'] < 0.05).sum():,} with q<0.05, planted found "
                f"{(t_.filter(pl.col('planted'))['q_exact'] < 0.05).mean():.0%}, "
                f"false {(t_.filter(~pl.col('planted'))['q_exact'] < 0.05).sum():,}"
            )
    elif name.startswith("NB"):
        groups = frame.group_by("product", "event").agg(pl.col("cases").sum().alias("N"), pl.len().alias("nb"))
        keep = groups.filter((pl.col("N") > 0) & (pl.col("nb") >= 2)).select("product", "event")
        sub = frame.join(keep, on=["product", "event"], maintain_order="left")
        del frame
        base = _rss_mb()
        c0, t = _cpu_s(), time.perf_counter()
        out = bh.batch_overdispersion(sub)
        dt, cpu, peak = time.perf_counter() - t, _cpu_s() - c0, _rss_mb()  # peak of this call
        notes = out.group_by("product", "event").agg(pl.col("fit_note").first())["fit_note"].value_counts()
        notes = ", ".join(
            f"{r['fit_note']}={r['count']:,}" for r in notes.sort("count", descending=True).iter_rows(named=True)
        )
        # the statsmodels reference engine on a sample, to extrapolate its cost
        samp = keep.sample(200, seed=1)
        s_frame = sub.join(samp, on=["product", "event"])
        t2 = time.perf_counter()
        bh.batch_overdispersion(s_frame, engine="statsmodels")
        per_group = (time.perf_counter() - t2) / samp.height
        info = (
            f"{keep.height:,} product-PT groups with >= 1 case ({sub.height:,} batch rows); fits: {notes}; "
            f"statsmodels loop engine: {per_group * 1e3:.1f} ms/group -> ~{per_group * keep.height / 60:.0f} min for all"
        )
    elif name == "funnel":
        base = _rss_mb()
        c0, t = _cpu_s(), time.perf_counter()
        per, grid = bh.funnel_limits(frame, grid_points=50)
        dt, cpu, peak = time.perf_counter() - t, _cpu_s() - c0, _rss_mb()  # peak of this call
        info = f"{per.height:,} batch rows, grid {grid.height:,} rows; above 99.8%: {per['above_998'].sum():,}"
    elif name == "onset":
        onsets = pl.read_parquet(os.path.join(workdir, "onsets.parquet"))
        del frame
        base = _rss_mb()
        c0, t = _cpu_s(), time.perf_counter()
        out = bh.onset_comparison(onsets)
        dt, cpu, peak = time.perf_counter() - t, _cpu_s() - c0, _rss_mb()  # peak of this call
        info = f"{onsets.height:,} cases -> {out.height:,} batch rows, {out['p_mwu'].is_not_null().sum():,} with a test"
    elif name == "all joined (batch_heterogeneity)":
        onsets = pl.read_parquet(os.path.join(workdir, "onsets.parquet"))
        base = _rss_mb()
        c0, t = _cpu_s(), time.perf_counter()
        out = bh.batch_heterogeneity(frame, onsets)
        dt, cpu, peak = time.perf_counter() - t, _cpu_s() - c0, _rss_mb()  # peak of this call
        tp = out.filter(pl.col("planted"))["flagged"].mean()
        info = f"{out['flagged'].sum():,} flagged; planted found {tp:.0%}; false flags {out.filter(~pl.col('planted'))['flagged'].sum():,}"
    queue.put((name, dt, cpu, base, peak, info))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=300)
    ap.add_argument("--pts", type=int, default=1000)
    ap.add_argument("--skip-all", action="store_true", help="skip the all-joined run")
    args = ap.parse_args()
    t = time.perf_counter()
    frame, onsets = make_world(args.products, args.pts)
    n_groups = args.products * args.pts
    print(
        f"world: {args.products} products x {args.pts} PTs = {n_groups:,} product-PT groups, {frame.height:,} batch rows, "
        f"{int(frame['cases'].sum()):,} cases, {(frame.group_by('product', 'event').agg(pl.col('cases').sum())['cases'] > 0).sum():,} groups "
        f"with >= 1 case; generated in {time.perf_counter() - t:.1f} s; cpus={os.cpu_count()}, load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    parts = ["exact+EB (batch_rate_tests)", "NB GLM (batch_overdispersion)", "funnel", "onset"]
    if not args.skip_all:
        parts.append("all joined (batch_heterogeneity)")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as d:
        frame.write_parquet(os.path.join(d, "frame.parquet"))
        onsets.write_parquet(os.path.join(d, "onsets.parquet"))
        del frame, onsets
        print(f"{'part':34s} {'wall s':>8s} {'CPU s':>7s} {'peak RSS MB':>12s} {'+ over inputs':>14s}  notes")
        for name in parts:
            q = ctx.Queue()
            p = ctx.Process(target=_part, args=(name, d, q))
            p.start()
            res = None
            while res is None and (p.is_alive() or not q.empty()):
                with contextlib.suppress(queue.Empty):
                    res = q.get(timeout=1)
            p.join()
            if res is None:
                print(f"{name:34s} FAILED (child exit code {p.exitcode}; see stderr)", flush=True)
                continue
            name, dt, cpu, base, peak, info = res
            print(f"{name:34s} {dt:8.2f} {cpu:7.2f} {peak:12.0f} {peak - base:14.0f}  {info}", flush=True)


if __name__ == "__main__":
    main()

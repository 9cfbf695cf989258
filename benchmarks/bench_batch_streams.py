"""Speed of the whole per-batch sequential surveillance: 10k batch x PT streams over 104 weekly looks.

Builds a synthetic exposure/report world (products x batches x PTs), then times
``signals.batch_surveillance.monitor_batch_streams``: reporting-delay-adjusted exposure,
leave-one-out baselines, per-product Bonferroni alphas, exact continuous and group-sequential
MaxSPRT critical values, and the crossing looks.  Prints time and peak memory.

    python benchmarks/bench_batch_streams.py [n_products] [batches_per_product] [pts] [weeks]
"""

from __future__ import annotations

import datetime as dt
import resource
import sys
import time

import numpy as np
import polars as pl

from signals.batch_surveillance import SurveillanceDesign, monitor_batch_streams, weekly_looks


def make_world(n_products: int, n_batches: int, n_pts: int, weeks: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    p = np.repeat(np.arange(n_products), n_batches)
    b = np.arange(n_products * n_batches)
    first = rng.integers(0, weeks - 10, b.size)
    life = rng.integers(10, 40, b.size)
    rows_b, rows_w = [], []
    for i in range(b.size):
        w = np.arange(first[i], min(first[i] + life[i], weeks))
        rows_b.append(np.full(w.size, i))
        rows_w.append(w)
    bi, wi = np.concatenate(rows_b), np.concatenate(rows_w)
    k = rng.poisson(30, bi.size).astype(float) + 1
    weeks_d = np.array([start + dt.timedelta(weeks=int(x)) for x in range(weeks)])
    packs = pl.DataFrame(
        {"product": [f"P{x}" for x in p[bi]], "batch": [f"B{x}" for x in bi], "week": weeks_d[wi].tolist(), "packs": k}
    )
    rate = rng.gamma(2, 0.001, (n_products, n_pts))
    lam = k[:, None] * rate[p[bi]]
    lam[bi % 97 == 0] *= 6  # some defective batches
    n = rng.poisson(lam)
    r, c = np.nonzero(n)
    reps = n[r, c]
    r, c = np.repeat(r, reps), np.repeat(c, reps)
    lag = rng.geometric(0.3, r.size)
    cases = pl.DataFrame(
        {
            "case_id": [f"C{x}" for x in range(r.size)],
            "product": [f"P{x}" for x in p[bi[r]]],
            "batch": [f"B{x}" for x in bi[r]],
            "event": [f"E{x}" for x in c],
            "received_on": [start + dt.timedelta(weeks=int(wi[x]), days=int(7 * g)) for x, g in zip(r, lag)],
        }
    )
    events = pl.DataFrame(
        {
            "product": [f"P{x}" for x in range(n_products) for _ in range(n_pts)],
            "event": [f"E{y}" for _ in range(n_products) for y in range(n_pts)],
        }
    )
    pmf = np.bincount(np.minimum(lag, 52), minlength=53) / lag.size
    return packs, cases, events, weekly_looks(start, start + dt.timedelta(weeks=weeks - 1)), pmf


def main() -> None:
    n_products = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_batches = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    n_pts = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    weeks = int(sys.argv[4]) if len(sys.argv) > 4 else 104
    t = time.perf_counter()
    packs, cases, events, looks, pmf = make_world(n_products, n_batches, n_pts, weeks)
    print(
        f"world: {n_products * n_batches * n_pts:,} streams ({n_products} products x {n_batches} batches x "
        f"{n_pts} PTs), {len(looks)} weekly looks, {cases.height:,} reports; built in {time.perf_counter() - t:.1f} s"
    )
    t = time.perf_counter()
    out = monitor_batch_streams(packs, cases, events, looks, pmf, design=SurveillanceDesign())
    dt_ = time.perf_counter() - t
    print(
        f"monitor_batch_streams: {dt_:.2f} s for {out.height:,} streams ({out['signalled'].sum():,} crossed the "
        f"continuous boundary, {out['signalled_group'].sum():,} the group boundary)"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

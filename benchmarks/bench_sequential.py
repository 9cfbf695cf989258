"""Benchmark: exact Poisson MaxSPRT critical values and the vectorised monitor.

Run: .venv/bin/python benchmarks/bench_sequential.py [n_streams] [n_looks]
Prints figures only (no assertions).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from signals import sequential as seq


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench_cv() -> None:
    print("continuous CV, cold (exact recursion + secant solve), alpha=0.05:")
    for M in (1, 4):
        for T in (1.0, 10.0, 100.0, 1000.0):
            if M > 1 and T < 2:
                continue  # P(N(1) >= 4) < 0.05: no critical value exists (as in R)
            seq._cv_cached.cache_clear()
            t = time.perf_counter()
            cv = seq.maxsprt_poisson_cv(T, 0.05, M)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            seq.maxsprt_poisson_cv(T, 0.05, M)
            warm = time.perf_counter() - t
            print(f"  T={T:7.1f} M={M}: CV={cv:.6f}  cold {cold * 1e3:8.1f} ms  cached {warm * 1e6:6.1f} us")
    print("group-sequential CV (equal looks), alpha=0.05, M=1:")
    for T, looks in ((10.0, 104), (100.0, 104), (1000.0, 104)):
        seq._group_cv_cached.cache_clear()
        t = time.perf_counter()
        cv = seq.maxsprt_poisson_group_cv(T, looks=looks)
        print(f"  T={T:7.1f} looks={looks}: CV={cv:.6f}  {(time.perf_counter() - t) * 1e3:8.1f} ms")


def synthetic_streams(n_streams: int, n_looks: int, seed: int = 2024):
    """Batch x PT streams: weekly expected counts (log-normal rates, so T spans ~3 decades),
    Poisson observations under H0, and 1 % of streams with RR=3 from a random week on."""
    rng = np.random.default_rng(seed)
    weekly = np.exp(rng.normal(np.log(0.05), 1.3, size=n_streams))  # T median ~5
    season = 1.0 + 0.2 * np.sin(np.arange(n_looks) * 2 * np.pi / 52)
    inc_exp = weekly[:, None] * season[None, :]
    rr = np.ones((n_streams, n_looks))
    elevated = rng.random(n_streams) < 0.01
    start = rng.integers(0, n_looks // 2, size=n_streams)
    rr[elevated] = np.where(np.arange(n_looks)[None, :] >= start[elevated, None], 3.0, 1.0)
    obs = np.cumsum(rng.poisson(inc_exp * rr), axis=1).astype(np.float64)
    exp_ = np.cumsum(inc_exp, axis=1)
    T = exp_[:, -1].copy()
    return obs, exp_, T, elevated


def bench_monitor(n_streams: int, n_looks: int) -> None:
    obs, exp_, T, elevated = synthetic_streams(n_streams, n_looks)
    print(
        f"monitor: {n_streams} streams x {n_looks} weekly looks; "
        f"T from {T.min():.3g} to {T.max():.3g} (median {np.median(T):.3g}); "
        f"{elevated.sum()} elevated streams"
    )
    rss0 = _maxrss_mb()
    seq._cv_cached.cache_clear()
    t = time.perf_counter()
    res = seq.maxsprt_poisson_monitor(obs, exp_, T, alpha=0.05, min_events=1)
    cold = time.perf_counter() - t
    n_cv = len(np.unique(res.T_used[np.isfinite(res.T_used)]))
    t = time.perf_counter()
    res = seq.maxsprt_poisson_monitor(obs, exp_, T, alpha=0.05, min_events=1)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    res4 = seq.maxsprt_poisson_monitor(obs, exp_, T, alpha=0.05, min_events=4)
    cold4 = time.perf_counter() - t
    sig = res.first_look >= 0
    print(f"  distinct rounded T (CVs computed): {n_cv}")
    print(f"  M=1 first run (incl. CVs): {cold:.2f} s; rerun with cached CVs: {warm * 1e3:.1f} ms")
    print(f"  M=4 first run (incl. CVs): {cold4:.2f} s")
    print(
        f"  signals M=1: {sig.sum()} ({(sig & elevated).sum()} of {elevated.sum()} elevated, "
        f"{(sig & ~elevated).sum() / max((~elevated).sum(), 1):.4f} of null streams)"
    )
    sig4 = res4.first_look >= 0
    print(
        f"  signals M=4: {sig4.sum()} ({(sig4 & elevated).sum()} elevated, "
        f"{(sig4 & ~elevated).sum() / max((~elevated).sum(), 1):.4f} of null streams)"
    )
    print(f"  peak RSS: {_maxrss_mb():.0f} MB (before monitor {rss0:.0f} MB; inputs {2 * obs.nbytes / 2**20:.0f} MB)")


if __name__ == "__main__":
    n_streams = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_looks = int(sys.argv[2]) if len(sys.argv) > 2 else 104
    bench_cv()
    bench_monitor(n_streams, n_looks)

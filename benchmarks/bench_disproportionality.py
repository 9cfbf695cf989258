"""Disproportionality battery vs DuckDB contingency counts, same process.

Goal (issue): scoring every pair — PRR/ROR/χ²/IC, the MGPS prior fit (with
squashing) and EBGM/EB05/EB95, the regulator rules — costs no more wall time
than DuckDB takes to build the contingency counts from the report rows, with
peak RSS under 2 GB.  Wall time and CPU time (all threads of the process) are
printed for both: on a shared machine the wall-time ratio moves with the load,
the CPU-time ratio much less.

Synthetic report rows: reports carry 1 + Poisson(2) (drug, event) rows; drugs
and events are drawn from Zipf-like (rank^-s) popularity over 30 000 drugs and
12 000 events, so a few products/events dominate and most pairs are rare,
as in FAERS/VigiBase.  Ids are integers (dictionary-encoded, as in the
warehouse).  Prints figures only; no assertions.

    .venv/bin/python benchmarks/bench_disproportionality.py [--rows 1e6 6e6 1e7] [--strata]

(6e6 rows are ~2M reports and ~3.2M pairs.)
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
import polars as pl

from signals import mgps
from signals.disproportionality import score
from signals.rules import apply_rules
from warehouse.queries.counts import contingency_counts


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zipf_choice(rng, n_items: int, size: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n_items + 1) ** s
    cdf = np.cumsum(w / w.sum())
    return np.searchsorted(cdf, rng.random(size)).astype(np.int32)


def report_rows(n_rows: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    per = 1 + rng.poisson(2.0, size=int(n_rows / 3 * 1.05))
    per = per[: np.searchsorted(np.cumsum(per), n_rows) + 1]
    rid = np.repeat(np.arange(per.size, dtype=np.int64), per)[:n_rows]
    m = rid.size
    # drugs and events of one report are correlated in real data (one or two
    # suspect products per report); draw a report-level drug and vary it rarely
    drug_r = zipf_choice(rng, 30_000, per.size, 1.05)
    drug = drug_r[rid]
    swap = rng.random(m) < 0.3
    drug[swap] = zipf_choice(rng, 30_000, int(swap.sum()), 1.05)
    event = zipf_choice(rng, 12_000, m, 0.95)
    # heterogeneity: 30 % of rows draw the event from the drug's own profile
    # (the same Zipf popularity, rotated by a drug-specific offset), so every
    # drug has its own common events and true RRs spread over orders of
    # magnitude, as between therapeutic classes in real data
    own = rng.random(m) < 0.30
    prof = zipf_choice(rng, 12_000, int(own.sum()), 1.2).astype(np.int64)
    event[own] = ((prof + drug[own].astype(np.int64) * 7919) % 12_000).astype(np.int32)
    sex = rng.integers(0, 2, per.size).astype(np.int8)[rid]
    age = rng.integers(0, 6, per.size).astype(np.int8)[rid]
    return pl.DataFrame({"report_id": rid, "drug": drug, "event": event, "sex": sex, "age_band": age})


def run(n_rows: int, strata: list[str] | None) -> None:
    rows = report_rows(n_rows)
    n_reports = rows["report_id"].n_unique()
    con = duckdb.connect()
    con.register("rows_df", rows)
    con.execute("CREATE TABLE reports AS SELECT * FROM rows_df")
    con.unregister("rows_df")
    del rows

    t0, c0 = time.perf_counter(), cpu_s()
    counts = contingency_counts(con, "reports", strata=strata)
    t_duck, c_duck = time.perf_counter() - t0, cpu_s() - c0

    t0, c0 = time.perf_counter(), cpu_s()
    prior = mgps.fit_prior(counts["n11"].to_numpy(), counts["e"].to_numpy())
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    scored = score(counts, prior=prior)
    t_score = time.perf_counter() - t1
    t1 = time.perf_counter()
    ruled = apply_rules(scored)
    t_rules = time.perf_counter() - t1
    battery, c_battery = time.perf_counter() - t0, cpu_s() - c0

    fired = ruled.select(pl.col("rules_fired").list.len().gt(0).sum()).item()
    print(
        f"\n== {n_rows:,} report rows, {n_reports:,} reports, {counts.height:,} pairs"
        f"{', strata ' + '+'.join(strata) if strata else ''}"
    )
    print(f"DuckDB contingency counts : {t_duck:7.2f} s   (CPU {c_duck:.2f} s)")
    print(
        f"prior fit (squashed to {prior.squashed_points:,} pts): {t_fit:7.2f} s  "
        f"theta=({prior.alpha1:.3g}, {prior.beta1:.3g}, {prior.alpha2:.3g}, {prior.beta2:.3g}, {prior.p:.3g})"
    )
    print(f"score (PRR/ROR/chi2/IC/EBGM/EB05/EB95): {t_score:7.2f} s")
    print(f"rules                     : {t_rules:7.2f} s   ({fired:,} pairs fire >= 1 rule)")
    print(
        f"battery total             : {battery:7.2f} s   (CPU {c_battery:.2f} s)   ratio battery/DuckDB = "
        f"{battery / t_duck:.2f} wall, {c_battery / c_duck:.2f} CPU"
    )
    print(f"peak RSS so far           : {peak_rss_mb():7.0f} MB")
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--strata", action="store_true", help="stratified E by sex x age band")
    args = ap.parse_args()
    print(f"duckdb {duckdb.__version__}, polars {pl.__version__}, numpy {np.__version__}")
    for r in args.rows:
        run(int(r), ["sex", "age_band"] if args.strata else None)


if __name__ == "__main__":
    main()

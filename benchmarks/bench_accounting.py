"""What the row accounting and the plausibility rules cost, as a share of the inbox load time.

    python -m benchmarks.bench_accounting --scale 1            # generate a world in a temp folder
    python -m benchmarks.bench_accounting --inbox path/to/inbox [--repeat 2]

Loads the inbox with every platform loader into an in-memory warehouse (as the graph does, minus
Dagster) and times, inside that load:

- accounting: counting the lines of every CSV (exact line numbers), mapping quarantined rows to
  their line, superseded-row detection, filling and writing load_manifest, and afterwards the
  blocking ``rows_accounted_for`` checks of every input (assets.ingestion.accounting_violations);
- plausibility: the released-units rule (greedy excess per batch), and the rules that are SQL
  branches of the delivery resolution (quantity, run clock, release..expiry), measured as the
  difference of the delivery loader with the rules on and off (``PVTRACE_PLAUSIBILITY_OFF``),
  the minimum of ``--repeat`` loads each.

Prints seconds and shares; the goal is < 5 % of the load time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

TIMED: dict[str, float] = defaultdict(float)


def _timed(module, name: str, bucket: str):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMED[bucket] += time.perf_counter() - t0

    setattr(module, name, wrapper)
    return original


@contextmanager
def _env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _instrument() -> None:
    from warehouse.inputs import inbox
    from warehouse.inputs.platform import cases, deliveries, packs, reference, supply

    _timed(inbox, "_count_lines", "accounting: line counts (exact line numbers)")
    _timed(inbox.CsvRead, "line_of", "accounting: line of each quarantined row")
    for mod in (inbox, deliveries, packs, reference, cases, supply):
        for name, bucket in (
            ("account", "accounting: manifest rows (account)"),
            ("write_manifest", "accounting: manifest rows (write)"),
            ("counts_by_file", "accounting: manifest rows"),
            ("superseded_rows", "accounting: superseded rows"),
            ("redact_text", "redaction of quarantined raw rows"),
        ):
            # inbox.account calls inbox.counts_by_file itself: time it there once, through account
            if hasattr(mod, name) and not (mod is inbox and name == "counts_by_file"):
                _timed(mod, name, bucket)
    _timed(deliveries, "_mark_excess", "plausibility: released units (greedy excess)")


def load_all(inbox: Path):
    from warehouse.inputs.platform.cases import load_cases
    from warehouse.inputs.platform.deliveries import load_deliveries, load_medication_logs
    from warehouse.inputs.platform.packs import load_packs
    from warehouse.inputs.platform.reference import load_reference
    from warehouse.inputs.platform.supply import load_supply_events
    from warehouse.schema import connect

    con = connect(":memory:")
    times = {}
    for name, fn, args in (
        ("reference", load_reference, ()),
        ("packs", load_packs, ()),
        ("supply", load_supply_events, ()),
        ("deliveries", load_deliveries, ("bench-salt",)),
        ("medication_logs", load_medication_logs, ("bench-salt",)),
        ("cases", load_cases, ("bench-salt",)),
    ):
        t0 = time.perf_counter()
        fn(con, inbox, *args)
        times[name] = time.perf_counter() - t0
    return con, times


def deliveries_only(con, inbox: Path) -> float:
    from warehouse.inputs.platform.deliveries import load_deliveries

    t0 = time.perf_counter()
    load_deliveries(con, inbox, "bench-salt")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inbox", help="an existing inbox (default: generate one)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=2, help="loads of the delivery file per rule setting")
    args = parser.parse_args(argv)

    from assets.ingestion import ACCOUNTED, accounting_violations
    from warehouse.inputs.platform.plausibility import DISABLE_ENV, RULES

    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(args.inbox) if args.inbox else Path(tmp) / "inbox"
        if not args.inbox:
            from sample_data.world import generate_world

            t0 = time.perf_counter()
            generate_world(inbox, seed=args.seed, scale=args.scale)
            print(f"world (seed {args.seed}, scale {args.scale}) generated in {time.perf_counter() - t0:.1f} s")
        _instrument()
        with _env("PVTRACE_CLOCK", None):
            con, times = load_all(inbox)
            t0 = time.perf_counter()
            bad = {k: v for k in ACCOUNTED if (v := accounting_violations(con, k))}
            TIMED["accounting: rows_accounted_for checks"] += time.perf_counter() - t0
            assert not bad, bad
            rows = con.sql("SELECT sum(rows_read), count(*) FROM load_manifest").fetchone()
            on = min(deliveries_only(con, inbox) for _ in range(args.repeat))
            with _env(DISABLE_ENV, ",".join(RULES)):
                off = min(deliveries_only(con, inbox) for _ in range(args.repeat))
        load = sum(times.values())
        TIMED["plausibility: SQL rules in delivery resolution (on - off)"] = max(on - off, 0.0)

    print(f"\ninbox load: {load:.2f} s for {rows[0]:,} rows in {rows[1]} files")
    for name, secs in times.items():
        print(f"  {name:<16} {secs:7.2f} s")
    print(f"\ndelivery loader, min of {args.repeat}: rules on {on:.2f} s, off {off:.2f} s")
    print(f"\n{'component':<62} {'seconds':>8} {'share of load':>14}")
    groups: dict[str, float] = defaultdict(float)
    for bucket, secs in sorted(TIMED.items()):
        print(f"{bucket:<62} {secs:8.3f} {secs / load:14.2%}")
        groups[bucket.split(":")[0]] += secs
    for group, secs in groups.items():
        print(f"{'TOTAL ' + group:<62} {secs:8.3f} {secs / load:14.2%}")


if __name__ == "__main__":
    main()

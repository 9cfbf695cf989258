"""CLI: ``python -m sample_data --out inbox --seed 42 --scale 1.0`` writes a synthetic inbox."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sample_data.world import generate_world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sample_data", description="Write a seeded synthetic PV Trace inbox."
    )
    parser.add_argument("--out", type=Path, default=Path("inbox"), help="inbox folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = ~50k patients, ~200k deliveries, ~20k cases")
    parser.add_argument("--null", action="store_true", help="the same world with no planted effect")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    truth = generate_world(args.out, seed=args.seed, scale=args.scale, null=args.null)
    elapsed = time.perf_counter() - started
    counts = ", ".join(f"{k} {v:,}" for k, v in truth["counts"].items())
    print(f"wrote synthetic inbox to {args.out.resolve()} in {elapsed:.1f} s (seed {args.seed}, scale {args.scale})")
    print(f"  {counts}")
    for s in truth["signals"]:
        where = s.get("batch_id") or s["product_id"]
        print(
            f"  planted {s['kind']}: {where} {s.get('pt') or ', '.join(s['pts'])} "
            f"x{s['rate_ratio']} from {s['starts_on']} "
            f"({s['observed_cases']} cases vs {s['expected_background_cases']} expected)"
        )
    print(f"  ground truth: {(args.out / 'ground_truth.json').resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

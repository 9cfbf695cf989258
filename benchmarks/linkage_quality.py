"""Report↔batch linkage against the synthetic world's truth: precision and recall per method and source.

    .venv/bin/python benchmarks/linkage_quality.py [--seed 42] [--scale 1.0] [--inbox DIR]

Prints the precision and recall per link method and report source that ``assets/linkage_evaluation.py``
computes against the synthetic world's truth (its docstring defines each figure).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.linkage_evaluation import linkage_quality, load_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--inbox", type=Path, help="an existing synthetic inbox (else one is generated)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        inbox = args.inbox
        if inbox is None:
            from sample_data.world import generate_world

            inbox = Path(tmp) / "inbox"
            t = time.perf_counter()
            generate_world(inbox, seed=args.seed, scale=args.scale)
            print(f"world seed={args.seed} scale={args.scale} generated in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        con = load_world(inbox)
        result = linkage_quality(con, inbox)
        print(f"loaded and linked in {time.perf_counter() - t:.1f} s\n")
    with pl.Config(
        tbl_rows=20,
        tbl_cols=12,
        tbl_width_chars=200,
        fmt_str_lengths=20,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print("overall (latest case versions, all drug roles):", result["overall"])
        print("\nper link method (precision = correct / linked; recall_share = correct / all case drugs)")
        print(result["by_method"])
        print("\nper report source")
        print(result["by_source"])
        print("\nper drug role")
        print(result["by_role"])


if __name__ == "__main__":
    main()

"""E2B(R3) batch: write, ICH XSD validation and the business rules, for a batch of N synthetic ICSRs.

The ICSRs are the two synthetic cases of tests/reports/test_e2b.py repeated with distinct safety report ids
(FDA profile: the most rules). Prints figures only; no assertions.

    .venv/bin/python benchmarks/bench_e2b.py [--icsrs 500 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

from reports.e2b.rules import evaluate
from reports.e2b.validation import validate
from reports.e2b.writer import to_xml
from tests.reports.test_e2b import CREATED, batch_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--icsrs", type=int, nargs="+", default=[500])
    args = parser.parse_args()
    base = batch_for("fda")
    validate(to_xml(base))  # compile the schema once (about a second), outside the timings
    for n in args.icsrs:
        icsrs = tuple(
            dataclasses.replace(i, safety_report_id=f"{i.safety_report_id}-{k}")
            for k in range((n + len(base.icsrs) - 1) // len(base.icsrs))
            for i in base.icsrs
        )[:n]
        batch = dataclasses.replace(base, icsrs=icsrs)
        t0 = time.perf_counter()
        xml = to_xml(batch)
        t1 = time.perf_counter()
        errors = validate(xml)
        t2 = time.perf_counter()
        ev = evaluate(xml, "fda", clock=CREATED, meddra_loaded=True)
        t3 = time.perf_counter()
        print(
            f"{n:>6} ICSRs, {len(xml) / 1e6:5.1f} MB: write {t1 - t0:5.2f} s, XSD {t2 - t1:5.2f} s "
            f"({len(errors)} errors), {len(ev.rules)} rules {t3 - t2:5.2f} s ({(t3 - t2) / n * 1e3:.1f} ms/ICSR, "
            f"{len(ev.of('reject'))} rejections); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()

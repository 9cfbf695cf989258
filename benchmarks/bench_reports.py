"""The periodic reports of a run, rendered side by side: WeasyPrint (HTML -> PDF) vs Typst, sequential vs parallel.

    python benchmarks/bench_reports.py --warehouse output/pvtrace.duckdb --inbox inbox
        [--engines typst weasyprint] [--jobs 1 2] [--out benchmarks/out/reports]

Builds every jurisdiction's report inputs for the latest month the data covers (the same queries
as the ``regulatory_report_<j>`` assets; a fixed run id and time), then renders the four PDFs
with each engine, one after another (``--jobs 1``) and in a process pool (``--jobs 2``). Prints,
per jurisdiction and engine: seconds (wall and CPU), pages, MB; and the wall time of the four together. The
content is the same for both engines (one Jinja2 context); only the typesetter differs.
Prints figures only.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def build_inputs(warehouse: str, inbox: str) -> list:
    """ReportInputs for each jurisdiction and the latest month, as the report assets build them."""
    import datetime as dt

    from assets.generation import report_months
    from assets.reporting import report_inputs
    from reports.jurisdictions import JURISDICTIONS
    from warehouse.schema import connect

    start = dt.date.fromisoformat(report_months(warehouse, "latest")[0])
    end = (dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)) - dt.timedelta(days=1)
    out = []
    con = connect(warehouse, read_only=True)
    try:
        for j in JURISDICTIONS.values():
            inputs = report_inputs(
                con,
                j,
                start,
                end,
                Path(inbox),
                run_id="bench",
                generated_at="2026-01-01T04:00:00+00:00",
                version="bench",
            )
            e2b = Path(warehouse).parent / "e2b" / f"e2b_icsr_{j.code}_{start:%Y-%m}.status.json"
            inputs.e2b = json.loads(e2b.read_text()) if e2b.exists() else {}
            inputs.files["clock"] = f"expedited_clock_{j.code}_{start:%Y-%m}.csv"
            out.append(inputs)
    finally:
        con.close()
    return out


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def render_one(args: tuple) -> dict:
    """Render one report with one engine (a pool worker); returns its figures."""
    inputs, engine, folder = args
    from reports import periodic_report as pr

    t0, c0 = time.perf_counter(), _cpu()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if engine == "typst":
        path = pr.write_pdf(inputs, folder / f"{inputs.stem}.typst.pdf")
    else:
        import weasyprint

        # the charts as <img> data URIs, as the WeasyPrint-era HTML had them: WeasyPrint draws an image with
        # its SVG renderer ~4x faster than it styles inline SVG nodes
        html = re.sub(
            r"<svg .*?</svg>",
            lambda m: f'<img src="data:image/svg+xml;base64,{base64.b64encode(m.group(0).encode()).decode()}">',
            pr.render_periodic_report(inputs),
            flags=re.S,
        )
        path = folder / f"{inputs.stem}.weasyprint.pdf"
        weasyprint.HTML(string=html, base_url=str(folder)).write_pdf(path)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=False).stdout
    pages = next((int(line.split()[-1]) for line in info.splitlines() if line.startswith("Pages:")), -1)
    return {
        "code": inputs.jurisdiction.code,
        "engine": engine,
        "seconds": seconds,
        "cpu": cpu,
        "pages": pages,
        "mb": path.stat().st_size / 2**20,
        "path": str(path),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warehouse", default=str(ROOT / "output" / "pvtrace.duckdb"))
    ap.add_argument("--inbox", default=str(ROOT / "inbox"))
    ap.add_argument("--engines", nargs="+", default=["typst", "weasyprint"], choices=["typst", "weasyprint"])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "reports"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    inputs = build_inputs(args.warehouse, args.inbox)
    print(f"report inputs for {len(inputs)} jurisdictions (queries): {time.perf_counter() - t0:.1f} s")
    print(f"{'engine':<11}{'jobs':>5}{'report':>7}{'seconds':>9}{'CPU s':>8}{'pages':>7}{'MB':>7}")
    for engine in args.engines:
        for jobs in args.jobs:
            work = [(i, engine, args.out) for i in inputs]
            t0 = time.perf_counter()
            if jobs == 1:
                rows = [render_one(w) for w in work]
            else:
                # the largest documents first, so the pool ends together
                work.sort(key=lambda w: -w[0].signals.height)
                # spawn, not fork: a forked child of a process that ran polars/DuckDB threads can deadlock
                with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                    rows = list(pool.map(render_one, work))
            wall = time.perf_counter() - t0
            for r in sorted(rows, key=lambda r: r["code"]):
                print(
                    f"{engine:<11}{jobs:>5}{r['code']:>7}{r['seconds']:>9.1f}{r['cpu']:>8.1f}{r['pages']:>7}{r['mb']:>7.2f}"
                )
            print(
                f"{engine:<11}{jobs:>5}{'all 4':>7}{wall:>9.1f}{sum(r['cpu'] for r in rows):>8.1f}"
                f"{sum(r['pages'] for r in rows):>7}"
                f"{sum(r['mb'] for r in rows):>7.2f}   (wall time of the four; peak RSS "
                f"{max(r['rss_mb'] for r in rows):.0f} MB)"
            )


if __name__ == "__main__":
    main()

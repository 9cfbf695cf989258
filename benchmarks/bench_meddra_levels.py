"""The planted hypersensitivity batch defect counted at PT, SMQ narrow and SMQ broad level (issue 17).

    .venv/bin/python benchmarks/bench_meddra_levels.py --inbox inbox --warehouse output/pvtrace.duckdb

Needs a finished `pvtrace run` (or demo) on a synthetic world. Copies the warehouse, loads the synthetic
terminology (MedDRA file format) into the copy, and for the defect's product counts the product x event pairs at
monthly cut-offs with the existing counting code (`report_event_rows_sql` -> `contingency_counts`), the event
column mapped by `warehouse.terminology.hierarchy.map_events_sql` as the pipeline maps it at that level
(`--event-level`: unmapped reports keep counting in N); each cut-off is scored with the fitted MGPS
prior and the regulator rules. Prints n11, E, EB05 and the first cut-off at which a rule fired (detection delay
from the defect's start)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl

from sample_data.terminology import VERSION, write_terminology
from signals.scoring import score_pairs
from warehouse.queries import read_model
from warehouse.queries.counts import contingency_counts
from warehouse.queries.detection_inputs import STRATA, report_event_rows_sql
from warehouse.schema import connect
from warehouse.terminology.hierarchy import map_events_sql
from warehouse.terminology.meddra import load_release

SMQ = "Hypersensitivity (synthetic SMQ)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inbox", required=True)
    ap.add_argument("--warehouse", required=True)
    args = ap.parse_args()
    truth = json.loads(Path(args.inbox, "ground_truth.json").read_text())
    defect = next(s for s in truth["signals"] if s["kind"] == "batch_defect")
    start = dt.date.fromisoformat(defect["starts_on"])
    with tempfile.TemporaryDirectory() as tmp:
        wh = Path(tmp, "w.duckdb")
        shutil.copy(args.warehouse, wh)
        con = connect(str(wh))
        load_release(con, write_terminology(Path(tmp, "t"), languages=("en",))[0])
        read_model.install(con)
        last = con.execute("SELECT max(received_on) FROM latest_case").fetchone()[0]
        cutoffs, d = [], dt.date(start.year, start.month, 1)
        while d <= last:
            d = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            cutoffs.append(d - dt.timedelta(days=1))
        con.register("_cutoffs", pl.DataFrame({"cutoff": cutoffs}).to_arrow())
        print(
            f"defect: product {defect['product_id']} batch {defect['lot_number']}, starts {start}, PTs {defect['pts']}"
        )
        print(
            f"{'level':<11} {'event':<34} {'n11 at end':>10} {'E at end':>8} {'EB05 end':>8}  first rule fired (delay)"
        )
        for level, event in (("pt", "Hypersensitivity"), ("smq_narrow", SMQ), ("smq_broad", SMQ)):
            # as the pipeline counts at that level: reports with no PT of the group still count in N and n1.
            rows = map_events_sql(report_event_rows_sql("product"), level, VERSION, keep_unmapped=True)
            rows = f"SELECT k.cutoff, r.* FROM ({rows}) r JOIN _cutoffs k ON r.received_on <= k.cutoff"
            counts = contingency_counts(con, rows, strata=STRATA, by=["cutoff"])
            first, final = None, None
            for (cutoff,), part in counts.sort("cutoff").group_by(["cutoff"], maintain_order=True):
                scored = score_pairs(part.drop("cutoff"), prior="fit", min_count=1).scored
                row = scored.filter((pl.col("drug") == defect["product_id"]) & (pl.col("event") == event))
                if row.height:
                    final = row.row(0, named=True)
                    if first is None and len(final["rules_fired"]) > 0:
                        first = cutoff
            delay = f"{first} ({(first - start).days} d)" if first else "never"
            n11 = final["n11"] if final else 0
            e = f"{final['e']:.1f}" if final else "-"
            eb05 = f"{final['eb05']:.2f}" if final and final.get("eb05") is not None else "-"
            print(f"{level:<11} {event:<34} {n11:>10} {e:>8} {eb05:>8}  {delay}")
        con.close()


if __name__ == "__main__":
    main()

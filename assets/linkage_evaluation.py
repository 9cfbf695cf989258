"""Report↔batch linkage against the synthetic world's truth: precision and recall per method and source.

The generator writes the batch each case drug really came from
(``ground_truth_case_batches.parquet``); the linkage never sees it. Over the latest version of
every loaded case (all drug roles):

- **precision** of a method = links to the true batch / links the method made (a batch chosen);
- **recall** of a report source = case drugs linked to their true batch / case drugs of that source;
- ``recall_given`` = the same over the case drugs whose reporter typed a lot or scanned a code
  (the rest cannot be linked to a batch by anyone);
- per method, ``recall_share`` = case drugs that method linked correctly / all case drugs, so the
  shares add up to the overall recall.

Used by ``benchmarks/linkage_quality.py`` (prints the figures) and its test; like
:mod:`assets.evaluation`, an evaluation on planted truth, not part of the graph.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.inputs.platform.cases import load_cases
from warehouse.inputs.platform.packs import load_packs
from warehouse.inputs.platform.reference import load_reference
from warehouse.linkage.case_batch_links import rebuild_case_batch_links
from warehouse.schema import connect

SALT = "linkage-quality"


def load_world(inbox: Path, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """Reference, packs and cases of an inbox into a warehouse, then the linkage, as the graph does."""
    con = con or connect(":memory:")
    load_reference(con, inbox)
    load_packs(con, inbox)
    load_cases(con, inbox, SALT)
    rebuild_case_batch_links(con)
    return con


def scored_links(con: duckdb.DuckDBPyConnection, inbox: Path) -> pl.DataFrame:
    """One row per case drug of the latest case versions: link, truth, and whether they agree."""
    truth = pl.read_parquet(Path(inbox) / "ground_truth_case_batches.parquet").select(
        pl.col("case_id").cast(pl.String),
        pl.col("version").cast(pl.Int32),
        pl.col("drug_index").cast(pl.Int32).alias("drug_seq"),
        pl.col("batch_id").alias("true_batch_id"),
    )
    con.register("_truth", truth.to_arrow())
    try:
        return con.sql(
            """
            SELECT d.case_id, d.version, d.drug_seq, d.role, c.source, l.method, l.batch_id, t.true_batch_id,
                   nullif(trim(d.lot_reported), '') IS NOT NULL OR d.pack_code_reported IS NOT NULL AS lot_or_code,
                   l.batch_id IS NOT NULL AS linked, l.batch_id IS NOT DISTINCT FROM t.true_batch_id AS correct
            FROM latest_case_drug d
            JOIN latest_case c USING (case_id, version)
            JOIN case_batch_link l USING (case_id, version, drug_seq)
            JOIN _truth t USING (case_id, version, drug_seq)
            """
        ).pl()
    finally:
        con.unregister("_truth")


def _table(scored: pl.DataFrame, by: str) -> pl.DataFrame:
    total = scored.height
    return (
        scored.group_by(by)
        .agg(
            pl.len().alias("case_drugs"),
            pl.col("lot_or_code").sum().alias("lot_or_code"),
            pl.col("linked").sum().alias("linked"),
            (pl.col("linked") & pl.col("correct")).sum().alias("correct"),
        )
        .with_columns(
            (pl.col("correct") / pl.col("linked")).round(4).alias("precision"),
            (pl.col("correct") / pl.col("case_drugs")).round(4).alias("recall"),
            (pl.col("correct") / pl.col("lot_or_code")).round(4).alias("recall_given"),
            (pl.col("correct") / total).round(4).alias("recall_share"),
        )
        .sort("case_drugs", descending=True)
    )


def linkage_quality(con: duckdb.DuckDBPyConnection, inbox: Path) -> dict[str, pl.DataFrame | dict]:
    scored = scored_links(con, inbox)
    linked = int(scored["linked"].sum())
    correct = int((scored["linked"] & scored["correct"]).sum())
    given = int(scored["lot_or_code"].sum())
    overall = {
        "case_drugs": scored.height,
        "lot_or_code": given,
        "linked": linked,
        "correct": correct,
        "precision": round(correct / max(linked, 1), 4),
        "recall": round(correct / max(scored.height, 1), 4),
        "recall_given": round(correct / max(given, 1), 4),
    }
    return {
        "overall": overall,
        "by_method": _table(scored, "method"),
        "by_source": _table(scored, "source"),
        "by_role": _table(scored, "role"),
    }

"""Store report↔batch links: read the case drugs and traceability tables, link (warehouse.linkage.lots), replace."""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.inputs.inbox import replace_rows
from warehouse.linkage.lots import link_case_to_batch

LINK_COLUMNS = [
    "case_id",
    "version",
    "drug_seq",
    "batch_id",
    "product_id",
    "method",
    "confidence",
    "candidates",
    "reason",
]


def rebuild_case_batch_links(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Link every case drug (all versions, every source) to its batch and replace ``case_batch_link``."""
    links = link_case_to_batch(
        con.sql("SELECT case_id, version, drug_seq, product_id, lot_reported, pack_code_reported FROM case_drug").pl(),
        con.sql("SELECT * FROM product").pl(),
        con.sql("SELECT * FROM batch").pl(),
        con.sql("SELECT * FROM pack").pl(),
    ).select(LINK_COLUMNS)
    replace_rows(con, "case_batch_link", links)
    return links

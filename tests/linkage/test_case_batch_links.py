"""Linkage on the engine: deciding each distinct reported value once and joining back gives, row for
row, the links of deciding every case drug (warehouse.linkage.lots.link_case_to_batch on the whole table)."""

from __future__ import annotations

from polars.testing import assert_frame_equal

from tests.mini_inbox import write_mini_inbox
from tests.warehouse.test_batch_record import load_and_link
from warehouse.engine import engine_from_config
from warehouse.linkage.case_batch_links import LINK_COLUMNS, rebuild_case_batch_links, reported_values
from warehouse.linkage.lots import link_case_to_batch
from warehouse.schema import connect

KEYS = ["case_id", "version", "drug_seq"]


def test_links_joined_back_equal_links_decided_per_row(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    load_and_link(con, write_mini_inbox(tmp_path / "inbox"))
    n = rebuild_case_batch_links(con)
    stored = con.sql("SELECT * FROM case_batch_link ORDER BY case_id, version, drug_seq").pl()
    per_row = link_case_to_batch(
        con.sql("SELECT case_id, version, drug_seq, product_id, lot_reported, pack_code_reported FROM case_drug").pl(),
        con.sql("SELECT product_id, gtin, nmpa_drug_code FROM product").pl(),
        con.sql("SELECT batch_id, product_id, lot_number FROM batch").pl(),
        con.sql("SELECT pack_code, batch_id, serial FROM pack").pl(),
    ).select(LINK_COLUMNS)
    assert n == stored.height == per_row.height > 0
    assert stored["method"].n_unique() >= 3
    assert_frame_equal(stored, per_row.sort(KEYS))
    # idempotent, and the engine hands over no more reported values than there are case drugs
    assert rebuild_case_batch_links(con) == n
    assert reported_values(engine_from_config("duckdb", duckdb_con=con)).height <= n
    con.close()

"""The score columns live once: the statistics' names in signals.disproportionality, the stored columns in the
``disproportionality_score`` table (warehouse/schema.py); the warehouse may not import signals, so this test
holds them together."""

from __future__ import annotations

import datetime as dt

import polars as pl

from assets.register import FIGURES
from signals.disproportionality import EB_COLUMNS, SCORE_COLUMNS
from warehouse.queries.detection_inputs import score_columns, store_scores
from warehouse.schema import connect


def test_the_score_table_holds_every_statistic_signals_defines_and_every_quoted_figure():
    con = connect(":memory:")
    stored = score_columns(con)
    assert set(SCORE_COLUMNS) | set(EB_COLUMNS) <= set(stored)
    assert set(FIGURES) <= set(stored)
    assert stored[:3] == ["level", "drug", "event"]


def test_store_scores_writes_the_table_columns_and_nulls_a_missing_statistic():
    con = connect(":memory:")
    scored = pl.DataFrame(
        {"drug": ["d"], "event": ["e"], "n11": [3], "n1_": [10], "n_1": [20], "n": [1000], "e": [0.2]}
        | {c: [1.5] for c in SCORE_COLUMNS}
        | {"rules_fired": [["ema_sdr"]]}
    )
    assert store_scores(con, "product", scored, dt.date(2025, 1, 31)) == 1
    row = con.sql("SELECT prr, ic975, ebgm, rules_fired, data_lock_point FROM disproportionality_score").fetchone()
    assert row == (1.5, 1.5, None, ["ema_sdr"], dt.date(2025, 1, 31))

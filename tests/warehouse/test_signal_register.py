"""The signal register keeps ids stable, never overwrites an analyst's status, and is idempotent."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from warehouse.schema import connect
from warehouse.stores.signal_register import signal_id, update_register

DAY = dt.date(2025, 3, 31)


def detections(*rows):
    return pl.DataFrame(
        [
            {
                "level": "product",
                "product_id": p,
                "ingredient": None,
                "pt": pt,
                "batch_id": None,
                "methods": m,
                "figures": {"n11": n},
            }
            for p, pt, m, n in rows
        ],
        schema={
            "level": pl.String,
            "product_id": pl.String,
            "ingredient": pl.String,
            "pt": pl.String,
            "batch_id": pl.String,
            "methods": pl.List(pl.String),
            "figures": pl.Object,
        },
    )


def test_signal_id_is_stable_and_case_insensitive_in_pt():
    assert signal_id("product", "P1", "Nausea", None) == signal_id("product", "P1", "nausea", None)
    assert signal_id("product", "P1", "Nausea", None) != signal_id("product", "P1", "Nausea", "B1")
    assert signal_id("product", "P1", "Nausea", None).startswith("SIG-")


def test_new_then_refreshed_then_idempotent():
    con = connect(":memory:")
    d1 = dt.date(2025, 1, 31)
    first = update_register(con, detections(("P1", "Nausea", ["evans"], 5)), d1, "run1")
    assert first == {"new": 1, "refreshed": 0, "total": 1}
    d2 = dt.date(2025, 2, 28)
    second = update_register(
        con, detections(("P1", "Nausea", ["evans", "ema_sdr"], 9), ("P2", "Rash", ["who_umc"], 4)), d2, "run2"
    )
    assert second == {"new": 1, "refreshed": 1, "total": 2}
    row = con.sql(
        "SELECT first_detected, last_detected, methods, figures->>'n11' FROM signal WHERE product_id='P1'"
    ).fetchone()
    assert row == (d1, d2, ["evans", "ema_sdr"], "9")
    history = con.sql("SELECT count(*) FROM signal_history").fetchone()[0]
    again = update_register(
        con, detections(("P1", "Nausea", ["evans", "ema_sdr"], 9), ("P2", "Rash", ["who_umc"], 4)), d2, "run3"
    )
    assert again == {"new": 0, "refreshed": 2, "total": 2}
    assert con.sql("SELECT count(*) FROM signal_history").fetchone()[0] == history


def test_detection_does_not_overwrite_an_analyst_status():
    con = connect(":memory:")
    update_register(con, detections(("P1", "Nausea", ["evans"], 5)), dt.date(2025, 1, 31), "run1")
    con.execute("UPDATE signal SET status = 'refuted'")
    update_register(con, detections(("P1", "Nausea", ["evans"], 6)), dt.date(2025, 2, 28), "run2")
    assert con.sql("SELECT status FROM signal").fetchone()[0] == "refuted"


def test_per_row_detected_on_sets_first_detected_and_is_optional():
    con = connect(":memory:")
    frame = pl.DataFrame(
        [
            {
                "level": "batch",
                "product_id": "P1",
                "ingredient": None,
                "pt": "Hypersensitivity",
                "batch_id": "B1",
                "methods": ["maxsprt"],
                "figures": '{"n11": 4}',
                "detected_on": dt.date(2025, 5, 18),
            },
            {
                "level": "product",
                "product_id": "P1",
                "ingredient": None,
                "pt": "Rash",
                "batch_id": None,
                "methods": ["evans"],
                "figures": '{"n11": 3}',
                "detected_on": None,
            },
        ],
        schema={
            "level": pl.String,
            "product_id": pl.String,
            "ingredient": pl.String,
            "pt": pl.String,
            "batch_id": pl.String,
            "methods": pl.List(pl.String),
            "figures": pl.String,
            "detected_on": pl.Date,
        },
    )
    dlp = dt.date(2025, 12, 31)
    assert update_register(con, frame, dlp, "run1")["new"] == 2
    got = {pt: (f, last) for pt, f, last in con.sql("SELECT pt, first_detected, last_detected FROM signal").fetchall()}
    assert got["Hypersensitivity"] == (dt.date(2025, 5, 18), dlp)
    assert got["Rash"] == (dlp, dlp)
    # a later run keeps the first detection date and moves last_detected on
    update_register(con, frame, dt.date(2026, 1, 31), "run2")
    assert con.sql("SELECT first_detected, last_detected FROM signal WHERE pt = 'Hypersensitivity'").fetchone() == (
        dt.date(2025, 5, 18),
        dt.date(2026, 1, 31),
    )


def test_priority_is_stored_per_signal_and_overwritten_by_the_next_run(tmp_path):
    from warehouse.stores.signal_register import PRIORITY_COLUMNS, store_priority

    con = connect(str(tmp_path / "w.duckdb"))
    update_register(con, detections(("P1", "Nausea", ["evans"], 5), ("P2", "Rash", ["evans"], 3)), DAY, "r1")
    ids = [signal_id("product", "P1", "Nausea", None), signal_id("product", "P2", "Rash", None)]

    def frame(p):
        return pl.DataFrame({"signal_id": ids, **{c: [p, p / 2] for c in PRIORITY_COLUMNS}, "priority_on": [DAY, DAY]})

    assert store_priority(con, frame(0.8)) == 2
    assert store_priority(con, frame(0.6)) == 2
    rows = con.execute("SELECT signal_id, priority, priority_reporter, priority_on FROM signal ORDER BY 1").fetchall()
    assert sorted(rows) == sorted([(ids[0], 0.6, 0.6, DAY), (ids[1], 0.3, 0.3, DAY)])
    # a score is not a decision: no history row
    assert con.execute("SELECT count(*) FROM signal_history").fetchone()[0] == 2
    with pytest.raises(ValueError, match="lacks"):
        store_priority(con, pl.DataFrame({"signal_id": ids}))

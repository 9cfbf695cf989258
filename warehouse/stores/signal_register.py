"""The signal register: stable ids, which methods fired, first/last detection, status history.

A signal is identified by what it is about — level (``product`` / ``ingredient`` / ``batch``),
the product or ingredient, the PT and the batch (or none) — so the same finding keeps its id
across runs. Detection never overwrites an analyst's status: it adds new signals as ``new``,
refreshes figures and ``last_detected`` of those that fire again, and writes history rows only
when something changes, so re-running a detection is idempotent.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import polars as pl

STATUSES = ("new", "under_review", "escalated", "validated", "refuted", "closed")
DETECTION_ACTOR = "pvtrace-detection"


def signal_id(level: str, subject: str, pt: str, batch_id: str | None, event_level: str | None = None) -> str:
    """Stable id from what the signal is about (``SIG-`` + 12 hex digits of SHA-1); ``event_level`` above PT
    (issue 17: an HLT and an HLGT may share a name) is part of it, PT-level ids are as before."""
    key = "|".join(
        [level, subject, pt.lower(), batch_id or ""] + ([event_level] if event_level not in (None, "pt") else [])
    )
    return "SIG-" + hashlib.sha1(key.encode()).hexdigest()[:12].upper()


def update_register(
    con: duckdb.DuckDBPyConnection, detections: pl.DataFrame, detected_on, run_id: str
) -> dict[str, int]:
    """Merge this run's detections into ``signal``.

    ``detections`` columns: level, product_id, ingredient, pt, batch_id, methods (list[str]),
    figures (dict or JSON text), and optionally ``detected_on`` (date) per row: when the evidence
    first crossed its threshold (e.g. the date of a MaxSPRT look), which becomes
    ``first_detected`` of a new signal; rows without it (or frames without the column) use
    ``detected_on``, the run's date (data lock point).  ``last_detected`` is always the run's
    date.  Returns counts of new and refreshed signals.
    """
    if detections.height == 0:
        return {"new": 0, "refreshed": 0, "total": con.sql("SELECT count(*) FROM signal").fetchone()[0]}
    subject = pl.coalesce("product_id", "ingredient")
    if "event_level" not in detections.columns:  # issue 17: the run's MedDRA level, PT unless said
        detections = detections.with_columns(pl.lit("pt").alias("event_level"))
    frame = detections.with_columns(
        pl.struct("level", subject.alias("_s"), "pt", "batch_id", "event_level")
        .map_elements(
            lambda r: signal_id(r["level"], r["_s"], r["pt"], r["batch_id"], r["event_level"]), return_dtype=pl.String
        )
        .alias("signal_id"),
        pl.col("figures").map_elements(
            lambda f: f if isinstance(f, str) else json.dumps(f, sort_keys=True, default=float), return_dtype=pl.String
        ),
    ).unique(subset=["signal_id"], keep="first", maintain_order=True)
    row_date = pl.col("detected_on").cast(pl.Date) if "detected_on" in frame.columns else pl.lit(None, dtype=pl.Date)
    frame = frame.with_columns(pl.coalesce(row_date, pl.lit(detected_on).cast(pl.Date)).alias("_first"))
    con.register(
        "_det",
        frame.select(
            "signal_id",
            "level",
            "product_id",
            "ingredient",
            "pt",
            "batch_id",
            "methods",
            "figures",
            "_first",
            "event_level",
        ).to_arrow(),
    )
    (new,) = con.execute("SELECT count(*) FROM _det WHERE signal_id NOT IN (SELECT signal_id FROM signal)").fetchone()
    con.execute(
        """
        INSERT INTO signal_history (signal_id, changed_at, from_status, to_status, actor, comment, run_id)
        SELECT signal_id, current_timestamp, NULL, 'new', ?, 'detected: ' || array_to_string(methods, ', '), ?
        FROM _det WHERE signal_id NOT IN (SELECT signal_id FROM signal)
        """,
        [DETECTION_ACTOR, run_id],
    )
    con.execute(
        """
        INSERT INTO signal (signal_id, level, product_id, ingredient, pt, batch_id, methods, figures,
                            first_detected, last_detected, status, event_level)
        SELECT signal_id, level, product_id, ingredient, pt, batch_id, methods, figures::JSON, _first,
               greatest(_first, ?::DATE), 'new', event_level
        FROM _det WHERE signal_id NOT IN (SELECT signal_id FROM signal)
        """,
        [detected_on],
    )
    con.execute(
        """
        UPDATE signal SET methods = _det.methods, figures = _det.figures::JSON,
               last_detected = greatest(signal.last_detected, ?::DATE)
        FROM _det WHERE signal.signal_id = _det.signal_id
        """,
        [detected_on],
    )
    con.unregister("_det")
    total = con.sql("SELECT count(*) FROM signal").fetchone()[0]
    return {"new": int(new), "refreshed": frame.height - int(new), "total": int(total)}


PRIORITY_COLUMNS = (
    "priority",
    "priority_strength",
    "priority_batch",
    "priority_seriousness",
    "priority_recency",
    "priority_completeness",
    "priority_reporter",
)


def store_priority(con: duckdb.DuckDBPyConnection, scored: pl.DataFrame) -> int:
    """Write each signal's priority score and components (``signal_id``, :data:`PRIORITY_COLUMNS`,
    ``priority_on``: the data lock point they were computed at) into ``signal``; returns rows updated.

    The score is a view of the evidence at a data lock point, not an analyst's decision: it is
    overwritten at every run and writes no history (re-running at the same DLP changes nothing)."""
    missing = [c for c in ("signal_id", *PRIORITY_COLUMNS, "priority_on") if c not in scored.columns]
    if missing:
        raise ValueError(f"priority frame lacks {missing}")
    if scored.height == 0:
        return 0
    con.register("_prio", scored.select("signal_id", *PRIORITY_COLUMNS, "priority_on").to_arrow())
    try:
        sets = ", ".join(f"{c} = _prio.{c}" for c in (*PRIORITY_COLUMNS, "priority_on"))
        con.execute(f"UPDATE signal SET {sets} FROM _prio WHERE signal.signal_id = _prio.signal_id")
    finally:
        con.unregister("_prio")
    return scored.height


#: What a register row is, apart from its figures: what two runs on the same data must agree on exactly.
REGISTER_KEY_COLUMNS = ("signal_id", "level", "product_id", "ingredient", "pt", "batch_id", "methods", "status")


def register_differences(a: duckdb.DuckDBPyConnection, b: duckdb.DuckDBPyConnection) -> dict:
    """How the signal registers of two warehouses differ (e.g. one run per engine on the same inbox).

    Returns ``rows_a``, ``rows_b``, ``only_a`` / ``only_b`` (signal ids in one register only),
    ``changed`` (ids whose :data:`REGISTER_KEY_COLUMNS` differ), ``figures_compared``,
    ``figures_differing`` (figures not equal as stored, i.e. after the register's rounding to
    ``signals.scoring.FIGURE_SIG_DIGITS`` significant digits), ``max_rel_diff`` (largest relative
    difference among those) and ``examples`` (up to five differing figures: id, name, a, b)."""
    cols = ", ".join(REGISTER_KEY_COLUMNS)
    rows = [{r[0]: r for r in con.sql(f"SELECT {cols}, figures FROM signal").fetchall()} for con in (a, b)]
    ra, rb = rows
    common = sorted(ra.keys() & rb.keys())
    changed = [k for k in common if ra[k][:-1] != rb[k][:-1]]
    compared, differing, max_rel, examples = 0, 0, 0.0, []
    for k in common:
        fa, fb = json.loads(ra[k][-1] or "{}"), json.loads(rb[k][-1] or "{}")
        for name in sorted(fa.keys() | fb.keys()):
            x, y = fa.get(name), fb.get(name)
            compared += 1
            if x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y):
                continue
            differing += 1
            if isinstance(x, int | float) and isinstance(y, int | float) and max(abs(x), abs(y)) > 0:
                max_rel = max(max_rel, abs(x - y) / max(abs(x), abs(y)))
            if len(examples) < 5:
                examples.append((k, name, x, y))
    return {
        "rows_a": len(ra),
        "rows_b": len(rb),
        "only_a": sorted(ra.keys() - rb.keys()),
        "only_b": sorted(rb.keys() - ra.keys()),
        "changed": changed,
        "figures_compared": compared,
        "figures_differing": differing,
        "max_rel_diff": max_rel,
        "examples": examples,
    }

"""What the batch statistics count, and where their results are stored.

Counted reports are the read model's (``pv_counted_drug`` in :mod:`warehouse.queries.read_model`,
as for the disproportionality counts): the latest version of each case, not flagged as a
suspected duplicate, with the drug in a *suspect* or *interacting* role.  On top of that a report is attributed to a batch only through
``case_batch_link`` with ``confidence >= MIN_LINK_CONFIDENCE`` (0.8): scanned pack codes (1.0 /
0.99), exact (0.98) and normalised (0.95) lot matches and unambiguous one-edit fuzzy lot
matches (0.8).  Fuzzy links are kept because they are only made when exactly one batch of the
product is one edit away (on the synthetic world every fuzzy link names the true batch); links
with no single batch (``product_only``, ``unlinked``: confidence 0) cannot be attributed to a
batch and are left out.  The numerator of a batch rate is therefore "linked reports": about
half of all reports here.

*Dispensing-record attribution.*  A report whose drug has no such link (no lot, junk lot,
ambiguous lot) but names the product, a pseudonymous patient and a start date is attributed to
the batch of that patient's own delivery of that product within a day of the start date (UTC
dates), when those deliveries are all of one batch (``attribution = 'dispensing_record'``;
confidence comparable to a normalised lot, 0.9).  This uses the post-delivery log, the
denominator's own source, so numerator and denominator come from the same traceability
records; on the synthetic world it attributes about 60% of the otherwise unlinked suspect
drugs, every one to its true batch.  It is applied here for the batch statistics only; the
link table (``warehouse.linkage.lots``) is unchanged.  The batch-vs-rest comparison is unbiased as long as the linkage rate
does not differ between batches of one product, which is what the comparison assumes.

Exposure (the denominator) is *packs delivered* (``delivery.quantity``), the primary
denominator of PV Trace (see ``warehouse.queries.exposure``): a case is one patient with one delivered
pack, so reports per pack delivered is the natural rate.

Time to onset: ``reaction.onset_date - drug.start_date`` in days when both exist and the
difference is >= 0 (the start date is the date the patient began the linked pack: for app and
HCP reports it is the delivery date).  Otherwise it is null and the case does not enter the
onset comparison.  The received date is *not* used as a fallback: received − onset is a
reporting delay, not a time to onset, and mixing the two would make every batch with slow
reporters look like a "long onset" batch.

Counts are of distinct reports per (product, event, batch): a case with two linked packs of
different batches counts once for each batch, which is right for a batch comparison.
"""

from __future__ import annotations

import duckdb
import ibis
import polars as pl

from warehouse.engine.engines import DuckDBEngine, Engine
from warehouse.engine.read_model import READ_MODEL_TABLES, prepare, read_model_table
from warehouse.terminology.hierarchy import event_map_on, map_events, run_event_level

MIN_LINK_CONFIDENCE = 0.8

DISPENSING_RECORD_CONFIDENCE = 0.9

#: The warehouse tables :func:`batch_case_rows_expr` reads (with the read model's): a Spark engine needs them.
BATCH_CASE_TABLES = ("delivery",)


def batch_case_rows_expr(engine: Engine, min_confidence: float = MIN_LINK_CONFIDENCE) -> ibis.Table:
    """One row per counted (case, product, batch, PT): the rule above, as one expression for any engine."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    drugs = read_model_table(engine, "pv_counted_drug")
    cases = read_model_table(engine, "pv_counted_case").select("case_id", "patient_key", "received_on")
    # the read model's counted suspect/interacting drugs
    k = drugs.join(cases, "case_id").select(
        "case_id",
        "patient_key",
        "received_on",
        "version",
        "drug_seq",
        "start_date",
        "product_id",
        link_batch=drugs.batch_id,
        link_confidence=drugs.link_confidence,
    )
    # the patient's own deliveries of that product within a day of the reported start date (UTC dates)
    dl = engine.table("delivery")
    dl = dl.select(
        dl_patient=dl.patient_key, dl_product=dl.product_id, dl_batch=dl.batch_id, dl_day=dl.delivered_at.date()
    )
    want = k.filter(k.link_batch.isnull() & k.patient_key.notnull() & k.start_date.notnull())
    near = want.join(
        dl,
        [
            want.patient_key == dl.dl_patient,
            want.product_id == dl.dl_product,
            dl.dl_day.delta(want.start_date, unit="day").between(-1, 1),
        ],
    )
    dispensed = (
        near.group_by(ds_case=near.case_id, ds_seq=near.drug_seq)
        .aggregate(ds_batch=near.dl_batch.min(), n_batches=near.dl_batch.nunique())
        .filter(lambda t: t.n_batches == 1)
        .drop("n_batches")
    )
    a = k.left_join(dispensed, [k.case_id == dispensed.ds_case, k.drug_seq == dispensed.ds_seq])
    linked = a.link_confidence >= min_confidence
    a = a.select(
        "case_id",
        "received_on",
        "start_date",
        product=a.product_id,
        batch=ibis.coalesce(ibis.cases((linked, a.link_batch), else_=None), a.ds_batch),
        attribution=ibis.cases(
            (linked & a.link_batch.notnull(), "case_batch_link"),
            (a.ds_batch.notnull(), "dispensing_record"),
            else_=None,
        ),
    )
    a = a.filter(a.batch.notnull() & a.product.notnull())
    r = read_model_table(engine, "latest_case_reaction").select(
        r_case=lambda t: t.case_id, pt=lambda t: t.pt, soc=lambda t: t.soc, onset_date=lambda t: t.onset_date
    )
    out = a.join(r, a.case_id == r.r_case)
    return out.select(
        "case_id",
        "product",
        "batch",
        "attribution",
        "pt",
        soc=out.soc.fill_null("Unknown SOC"),
        received_on=out.received_on,
        start_date=out.start_date,
        onset_date=out.onset_date,
        onset_days=ibis.cases(
            (out.onset_date >= out.start_date, out.onset_date.delta(out.start_date, unit="day")), else_=None
        ).cast("int64"),
    ).distinct()


def batch_case_rows(
    con: duckdb.DuckDBPyConnection,
    min_confidence: float = MIN_LINK_CONFIDENCE,
    engine: Engine | None = None,
    event_level: str | None = None,
) -> pl.DataFrame:
    """One row per counted (case, product, batch, PT): received_on, soc, onset_days (see module doc).

    Computed by ``engine`` (given the read model's tables and :data:`BATCH_CASE_TABLES`), else by DuckDB on ``con``.
    ``event_level`` (default: the run's, issue 17): above PT the ``pt`` column holds the PT's group (HLT, HLGT,
    SOC, SMQ of the newest loaded MedDRA release; one row per case and group), so the batch methods run per group."""
    event_level = event_level or run_event_level()
    engine = engine or DuckDBEngine(con)
    prepare(engine)
    with event_map_on(engine, con, event_level) as mapping:
        return engine.run(
            ("batch_case_rows", min_confidence, event_level),
            lambda e: map_events(batch_case_rows_expr(e, min_confidence), e, mapping, event_col="pt"),
            (*READ_MODEL_TABLES, *BATCH_CASE_TABLES),
        )


def batch_exposure(con: duckdb.DuckDBPyConnection, up_to=None) -> pl.DataFrame:
    """Packs delivered per (product, batch), optionally only deliveries on or before ``up_to``."""
    where = "WHERE week <= ?" if up_to is not None else ""
    return con.execute(
        f"SELECT product_id AS product, batch_id AS batch, sum(packs_delivered)::DOUBLE AS exposure, "
        f"min(week) FILTER (WHERE packs_delivered > 0) AS first_week "
        f"FROM exposure_weekly {where} GROUP BY ALL HAVING sum(packs_delivered) > 0",
        [up_to] if up_to is not None else [],
    ).pl()


def weekly_batch_exposure(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Packs delivered per (product, batch, week) summed over regions (weeks with deliveries only)."""
    return con.sql(
        "SELECT product_id AS product, batch_id AS batch, week, sum(packs_delivered)::DOUBLE AS packs "
        "FROM exposure_weekly GROUP BY ALL HAVING sum(packs_delivered) > 0 ORDER BY ALL"
    ).pl()


# ---- storage ------------------------------------------------------------------------------------
HETEROGENEITY_COLUMNS = [
    "level",
    "product_id",
    "event",
    "batch_id",
    "cases",
    "exposure",
    "n_batches",
    "cases_total",
    "exposure_total",
    "rate",
    "rate_rest",
    "expected",
    "rr",
    "rr_lo",
    "rr_hi",
    "p_exact",
    "q_exact",
    "eb_alpha",
    "eb_method",
    "rr_shrunk",
    "rr_shrunk_lo",
    "rr_shrunk_hi",
    "model",
    "nb_alpha",
    "resid_pearson",
    "p_nb",
    "q_nb",
    "target_rate",
    "lo95",
    "hi95",
    "lo998",
    "hi998",
    "above_95",
    "above_998",
    "n_onset",
    "n_onset_rest",
    "median_batch",
    "median_rest",
    "p_ks",
    "p_mwu",
    "q_mwu",
    "flagged",
    "data_lock_point",
]
FUNNEL_COLUMNS = ["level", "product_id", "event", "exposure", "target_rate", "lo95", "hi95", "lo998", "hi998"]
SEQUENTIAL_COLUMNS = [
    "product_id",
    "batch_id",
    "pt",
    "first_week",
    "looks",
    "observed",
    "expected",
    "llr",
    "expected_total",
    "alpha",
    "min_events",
    "cv",
    "signalled",
    "crossing_look",
    "crossed_on",
    "observed_at_crossing",
    "expected_at_crossing",
    "cv_group",
    "signalled_group",
    "crossing_look_group",
    "crossed_on_group",
    "data_lock_point",
]


def _store(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    frame: pl.DataFrame,
    where: str = "",
    params: list | None = None,
) -> int:
    for col in columns:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(col))
    con.execute(f"DELETE FROM {table} {where}", params or [])
    con.register("_rows", frame.select(columns).to_arrow())
    con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM _rows")
    con.unregister("_rows")
    return frame.height


def store_heterogeneity(con, level: str, scored: pl.DataFrame, grid: pl.DataFrame, data_lock_point) -> int:
    """Replace one level's rows of ``batch_heterogeneity`` and ``batch_funnel`` with this run's."""
    frame = scored.rename({"product": "product_id", "batch": "batch_id"}, strict=False).with_columns(
        pl.lit(level).alias("level"), pl.lit(data_lock_point).cast(pl.Date).alias("data_lock_point")
    )
    n = _store(con, "batch_heterogeneity", HETEROGENEITY_COLUMNS, frame, "WHERE level = ?", [level])
    g = grid.rename({"product": "product_id"}, strict=False).with_columns(pl.lit(level).alias("level"))
    _store(con, "batch_funnel", FUNNEL_COLUMNS, g, "WHERE level = ?", [level])
    return n


def store_sequential(con, frame: pl.DataFrame, data_lock_point) -> int:
    """Replace ``sequential_monitoring`` with this run's streams."""
    f = frame.with_columns(pl.lit(data_lock_point).cast(pl.Date).alias("data_lock_point"))
    return _store(con, "sequential_monitoring", SEQUENTIAL_COLUMNS, f)


def product_routes(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.sql("SELECT product_id, coalesce(route, '') FROM product").fetchall())


def batch_units_released(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql("SELECT batch_id AS batch, units_released::DOUBLE AS units_released FROM batch").pl()


def flagged_heterogeneity(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Stored heterogeneity rows that are flagged, with the figures a register row quotes."""
    return con.sql(
        "SELECT level AS event_level, product_id, event AS pt, batch_id, cases, exposure, expected, rr, rr_lo, rr_hi, "
        "p_exact, q_exact, rr_shrunk, rr_shrunk_lo, rr_shrunk_hi, median_batch AS onset_median_days, "
        "median_rest AS onset_median_days_rest FROM batch_heterogeneity WHERE flagged"
    ).pl()


def crossed_streams(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Stored MaxSPRT streams that crossed a boundary, with the figures a register row quotes."""
    return con.sql(
        "SELECT product_id, batch_id, pt, observed, expected AS seq_expected, llr, cv, alpha, expected_total, "
        "crossed_on, observed_at_crossing, expected_at_crossing, signalled, signalled_group, crossed_on_group "
        "FROM sequential_monitoring WHERE signalled OR signalled_group"
    ).pl()

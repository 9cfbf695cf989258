"""What the dashboard reads: a private snapshot of the warehouse, and the evidence computed from it.

Concurrency (DuckDB allows one writing process, and a reader's shared lock also stops a writer
from opening the file): the dashboard never opens the warehouse to read. It copies the file
(``<warehouse>.dashboard-snapshot.duckdb``) — a plain file copy takes no DuckDB lock, so the
pipeline is never blocked by a page view — and reads the copy. A copy is kept only if the
warehouse's size and mtime are the same before and after copying (no checkpoint ran meanwhile)
and the copy opens and has a ``signal`` table; otherwise the last good snapshot keeps being
served, with a banner saying the pipeline is writing. Refreshing waits until the warehouse has
been quiet for ``quiet_s`` seconds, so a run in progress is not copied between every asset.

Evidence for every signal is computed once per snapshot (a second or so at scale 1) from the
read model (:mod:`warehouse.queries.read_model`: which cases count, a signal's cases, its batches,
its figures — the same definitions the reports and the alerts filter), plus what the dashboard
alone needs: SOC per PT, triage priority, funnel-plot data. A batch-level signal shows its own
batch's cases and figures, not its product's.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from signals.batch_heterogeneity import funnel_limits
from warehouse.queries.read_model import AGE_BAND_SQL, install
from warehouse.stores.signal_register import DETECTION_ACTOR

# Triage order (documented in the README): status, then the priority score (signals.priority, stored by
# the register step; highest first), then — for ties and for a register not scored yet — batch-level
# before product before ingredient, serious cases, the strength of the evidence (EB05, else the ROR
# lower bound) and the number of cases.
STATUS_RANK = {"new": 0, "escalated": 1, "under_review": 2, "validated": 3, "refuted": 4, "closed": 5}
LEVEL_RANK = {"batch": 0, "product": 1, "ingredient": 2}
# regulator rule -> the statistical method behind it (the list filters by either)
RULE_METHOD = {"evans": "PRR", "ema_sdr": "ROR", "who_umc": "IC", "fda_mgps": "EBGM"}


class SnapshotUnavailable(RuntimeError):
    """No snapshot could be taken yet (the warehouse is missing or being written)."""


@dataclass
class Evidence:
    """Everything the pages show, for one snapshot."""

    taken_at: datetime
    signals: pl.DataFrame  # one row per signal, with priority columns
    batches: pl.DataFrame  # signal_batches
    cases: pl.DataFrame  # de-identified cases per signal (+ tto_days)
    history: pl.DataFrame  # signal_history
    scores: pl.DataFrame  # disproportionality_score rows of the signals
    funnel_points: pl.DataFrame
    funnel_grid: pl.DataFrame
    products: list[tuple[str, str]] = field(default_factory=list)
    path: Path | None = None

    def signal(self, signal_id: str) -> dict | None:
        rows = self.signals.filter(pl.col("signal_id") == signal_id).to_dicts()
        return rows[0] if rows else None


def _signature(path: Path) -> tuple:
    st = path.stat()
    wal = Path(str(path) + ".wal")
    wst = wal.stat() if wal.exists() else None
    return (st.st_mtime_ns, st.st_size, wst.st_mtime_ns if wst else None, wst.st_size if wst else None)


class Snapshot:
    """A copy of the warehouse refreshed when it has changed and been quiet; thread-safe."""

    def __init__(self, warehouse: str | Path, *, quiet_s: float = 2.0, copy_wal: bool = True):
        self.warehouse = Path(warehouse)
        self.path = Path(str(warehouse) + ".dashboard-snapshot.duckdb")
        self.quiet_s = quiet_s
        self.copy_wal = copy_wal
        self._lock = threading.Lock()
        self._evidence: Evidence | None = None
        self._signature: tuple | None = None  # of the warehouse when the snapshot was taken
        self._seen: tuple | None = None  # last signature observed, and when
        self._seen_at = 0.0
        self.last_error: str | None = None
        self._force_next = False

    # ---- state ----
    @property
    def stale(self) -> bool:
        """True when the warehouse has changed since the snapshot (the pipeline is, or was just, writing)."""
        try:
            return self._signature is not None and _signature(self.warehouse) != self._signature
        except FileNotFoundError:
            return True

    def evidence(self) -> Evidence:
        """The current evidence, refreshing first if the warehouse changed and is quiet."""
        self.refresh()
        if self._evidence is None:
            raise SnapshotUnavailable(self.last_error or "no snapshot of the warehouse yet")
        return self._evidence

    def invalidate(self) -> None:
        """Refresh at the next request without waiting for the quiet period (after our own write)."""
        self._force_next = True

    def quiet(self) -> bool:
        """True when the warehouse file has not changed for ``quiet_s`` seconds."""
        try:
            sig = _signature(self.warehouse)
        except FileNotFoundError:
            return False
        now = time.monotonic()
        with self._lock:
            if sig != self._seen:
                self._seen, self._seen_at = sig, now
            return now - self._seen_at >= self.quiet_s

    # ---- refresh ----
    def refresh(self, force: bool = False) -> bool:
        with self._lock:
            if not self.warehouse.exists():
                self.last_error = f"warehouse {self.warehouse} does not exist"
                return False
            sig = _signature(self.warehouse)
            if self._evidence is None and self.path.exists() and not force:
                self._load_existing()
            if sig == self._signature and not force:
                return False
            now = time.monotonic()
            if sig != self._seen:
                self._seen, self._seen_at = sig, now
            quiet = now - self._seen_at >= self.quiet_s
            if not (quiet or force or self._force_next or self._evidence is None):
                return False
            taken = self._take(sig)
            if taken:
                self._force_next = False
            return taken

    def _load_existing(self) -> None:
        try:
            self._evidence = self._compute(self.path)
            self._signature = None  # unknown warehouse state: refresh when possible
        except Exception as exc:
            self.last_error = f"old snapshot unreadable: {exc}"

    def _take(self, sig: tuple) -> bool:
        tmp = self.path.with_name(self.path.name + ".tmp")
        for with_wal in (True, False) if self.copy_wal else (False,):
            try:
                shutil.copyfile(self.warehouse, tmp)
                wal = Path(str(self.warehouse) + ".wal")
                tmp_wal = Path(str(tmp) + ".wal")
                tmp_wal.unlink(missing_ok=True)
                if with_wal and wal.exists():
                    shutil.copyfile(wal, tmp_wal)
                if _signature(self.warehouse) != sig:
                    self.last_error = "the pipeline is writing the warehouse"
                    return False
                evidence = self._compute(tmp)  # validates the copy (replays a copied WAL)
            except (duckdb.Error, OSError, pl.exceptions.PolarsError) as exc:
                self.last_error = f"snapshot failed: {exc}"
                continue
            finally:
                Path(str(tmp) + ".wal").unlink(missing_ok=True)
            os.replace(tmp, self.path)
            evidence.path = self.path
            self._evidence, self._signature, self.last_error = evidence, sig, None
            return True
        tmp.unlink(missing_ok=True)
        return False

    @staticmethod
    def _compute(path: Path) -> Evidence:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return compute_evidence(con)
        finally:
            con.close()


# ---- evidence -----------------------------------------------------------------------------
def _has_table(con, name: str) -> bool:
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    )


# every register row with its product, manufacturer and batch lot
OVERVIEW_SQL = """
    SELECT signal_id, level, product_id, product_name, ingredient, manufacturer_id, manufacturer_name, pt, batch_id,
           methods, figures, first_detected, last_detected, status, priority AS score,
           priority_strength, priority_batch, priority_seriousness, priority_recency, priority_completeness,
           priority_reporter
    FROM pv_signal ORDER BY status = 'new' DESC, first_detected DESC, signal_id
"""

# a signal's batches with the batch facts the batch table shows
BATCHES_SQL = """
    SELECT signal_id, batch_id, lot_number, product_id, site, manufactured_on, expiry_on, released_on, units_released,
           recall_status, units_delivered, regions, first_delivery, last_delivery, cold_chain_excursions, max_temp_c,
           linked_cases, cases_by_method, cases_per_10k_packs
    FROM pv_signal_batch(NULL) ORDER BY signal_id, linked_cases DESC, batch_id
"""

# a signal's cases, de-identified (age band, no patient key, no narrative), with the time to onset per case
CASES_SQL = f"""
    WITH tto AS (SELECT signal_id, case_id, min(tto_days) AS tto_days FROM pv_signal_case(NULL) GROUP BY ALL)
    SELECT k.*, tto.tto_days FROM (
        SELECT DISTINCT signal_id, case_id, received_on, onset_date, {AGE_BAND_SQL} AS age_band,
               coalesce(sex, 'unknown') AS sex, serious, array_to_string(seriousness, ', ') AS seriousness,
               coalesce(outcome, 'unknown') AS outcome, source, batch_id, link_method
        FROM pv_signal_case(NULL)) k
    JOIN tto USING (signal_id, case_id)
    ORDER BY signal_id, received_on, case_id
"""


def compute_evidence(con: duckdb.DuckDBPyConnection) -> Evidence:
    install(con)
    overview = con.sql(OVERVIEW_SQL).pl()
    batches = con.sql(BATCHES_SQL).pl()
    cases = con.sql(CASES_SQL).pl()
    history = con.sql("SELECT * FROM signal_history ORDER BY signal_id, changed_at").pl()
    soc = con.sql("SELECT pt, mode(soc) AS soc FROM latest_case_reaction WHERE soc IS NOT NULL GROUP BY pt").pl()
    scores = con.sql("SELECT * FROM pv_signal_score").pl()  # none for a batch-level signal: its figures are its own
    detected = (
        history.filter(pl.col("actor") == DETECTION_ACTOR)
        .group_by("signal_id")
        .agg(pl.col("changed_at").min().alias("detected_at"))
    )
    per_signal = cases.group_by("signal_id").agg(
        pl.col("case_id").n_unique().alias("n_cases"),
        pl.col("case_id").filter(pl.col("serious").fill_null(False)).n_unique().alias("n_serious"),
    )
    lots = batches.group_by("signal_id").agg(pl.col("batch_id").alias("batch_ids"), pl.col("lot_number").alias("lots"))
    figs = overview.select(
        "signal_id",
        pl.col("figures").map_elements(lambda f: json.loads(f) if f else {}, return_dtype=pl.Object).alias("fig"),
    )
    strength = {
        r["signal_id"]: (
            r["fig"].get("eb05") if r["fig"].get("eb05") is not None else r["fig"].get("ror_lo95"),
            r["fig"].get("n11"),
        )
        for r in figs.iter_rows(named=True)
    }
    signals = (
        overview.join(soc, on="pt", how="left")
        .join(per_signal, on="signal_id", how="left")
        .join(lots, on="signal_id", how="left")
        .join(detected, on="signal_id", how="left")
        .with_columns(
            pl.col("n_cases").fill_null(0),
            pl.col("n_serious").fill_null(0),
            pl.col("signal_id")
            .replace_strict({k: v[0] for k, v in strength.items()}, default=None, return_dtype=pl.Float64)
            .alias("strength"),
            pl.col("signal_id")
            .replace_strict({k: v[1] for k, v in strength.items()}, default=None, return_dtype=pl.Int64)
            .alias("n11"),
        )
    )
    signals = prioritise(signals)
    points, grid = funnel_data(con, batches, signals)
    products = [(r[0], r[1]) for r in con.sql("SELECT product_id, name FROM product ORDER BY name").fetchall()]
    return Evidence(
        taken_at=datetime.now(),
        signals=signals,
        batches=batches,
        cases=cases,
        history=history,
        scores=scores,
        funnel_points=points,
        funnel_grid=grid,
        products=products,
    )


def prioritise(signals: pl.DataFrame) -> pl.DataFrame:
    """Sort by triage priority and number the rows (1 = look at first)."""
    ranked = signals.with_columns(
        pl.col("status").replace_strict(STATUS_RANK, default=9, return_dtype=pl.Int32).alias("_s"),
        pl.col("level").replace_strict(LEVEL_RANK, default=9, return_dtype=pl.Int32).alias("_l"),
    ).sort(
        ["_s", "score", "_l", "n_serious", "strength", "n11", "signal_id"],
        descending=[False, True, False, True, True, True, False],
        nulls_last=True,
    )
    return ranked.drop("_s", "_l").with_row_index("priority", offset=1)


def funnel_data(con, batches: pl.DataFrame, signals: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (product, PT) of a product/batch signal: every batch of the product (cases may be 0) with its
    exposure (packs delivered) and exact Poisson funnel limits. Uses the batch-heterogeneity tables
    when the pipeline wrote them for that pair, else :func:`signals.batch_heterogeneity.funnel_limits`."""
    pairs = signals.filter(pl.col("product_id").is_not_null()).select("product_id", "pt").unique()
    if pairs.height == 0:
        return pl.DataFrame(), pl.DataFrame()
    stored_points = stored_grid = None
    if _has_table(con, "batch_heterogeneity") and _has_table(con, "batch_funnel"):
        stored_points = con.sql(
            "SELECT product_id AS product, event, batch_id AS batch, cases, exposure, rate, target_rate, lo95, hi95, "
            "lo998, hi998, above_95, above_998 FROM batch_heterogeneity WHERE level IN ('pt', 'PT', 'event')"
        ).pl()
        stored_grid = con.sql(
            "SELECT product_id AS product, event, exposure, target_rate, lo95, hi95, lo998, hi998 FROM batch_funnel "
            "WHERE level IN ('pt', 'PT', 'event')"
        ).pl()
        if stored_points.height == 0:
            stored_points = stored_grid = None
    if stored_points is not None:
        keys = pairs.rename({"product_id": "product", "pt": "event"})
        return (
            stored_points.join(keys, on=["product", "event"], how="semi"),
            stored_grid.join(keys, on=["product", "event"], how="semi"),
        )
    exposure = con.sql(
        "SELECT b.product_id AS product, b.batch_id AS batch, b.lot_number AS lot, sum(d.quantity)::DOUBLE AS exposure "
        "FROM batch b JOIN delivery d USING (batch_id) GROUP BY ALL HAVING sum(d.quantity) > 0"
    ).pl()
    cases = (
        batches.join(signals.filter(pl.col("product_id").is_not_null()).select("signal_id", "pt"), on="signal_id")
        .group_by(pl.col("product_id").alias("product"), pl.col("pt").alias("event"), pl.col("batch_id").alias("batch"))
        .agg(pl.col("linked_cases").max().alias("cases"))
    )
    frame = (
        pairs.rename({"product_id": "product", "pt": "event"})
        .join(exposure, on="product")
        .join(cases, on=["product", "event", "batch"], how="left")
        .with_columns(pl.col("cases").fill_null(0).cast(pl.Int64))
    )
    if frame.height == 0:
        return pl.DataFrame(), pl.DataFrame()
    points, grid = funnel_limits(frame.drop("lot"), grid_points=40)
    return points, grid


# ---- list filtering -----------------------------------------------------------------------
FILTERS = ("product", "ingredient", "soc", "pt", "method", "rule", "status", "batch", "since")


def filter_signals(signals: pl.DataFrame, f: dict, last_review: datetime | None = None) -> pl.DataFrame:
    out = signals
    if f.get("product"):
        out = out.filter(pl.col("product_id") == f["product"])
    if f.get("ingredient"):
        out = out.filter(pl.col("ingredient").str.to_lowercase().str.contains(f["ingredient"].lower(), literal=True))
    if f.get("soc"):
        out = out.filter(pl.col("soc") == f["soc"])
    if f.get("pt"):
        out = out.filter(pl.col("pt").str.to_lowercase().str.contains(f["pt"].lower(), literal=True))
    if f.get("rule"):
        out = out.filter(pl.col("methods").list.contains(f["rule"]))
    if f.get("method"):
        rules = [r for r, m in RULE_METHOD.items() if m == f["method"]] or [f["method"]]
        out = out.filter(pl.any_horizontal(pl.col("methods").list.contains(r) for r in rules))
    if f.get("status"):
        out = out.filter(pl.col("status") == f["status"])
    if f.get("batch"):
        b = f["batch"].strip()
        out = out.filter(
            (pl.col("batch_id") == b) | pl.col("batch_ids").list.contains(b) | pl.col("lots").list.contains(b)
        )
    if f.get("since") and last_review is not None:  # never reviewed: everything is new
        out = out.filter(pl.col("detected_at") > last_review)
    return out


def facet_values(signals: pl.DataFrame) -> dict[str, list]:
    rules = sorted({r for ms in signals["methods"].to_list() for r in (ms or [])})
    return {
        "soc": sorted(x for x in signals["soc"].unique().to_list() if x),
        "rule": rules,
        "method": sorted({RULE_METHOD.get(r, r) for r in rules}),
        "status": list(STATUS_RANK),
    }

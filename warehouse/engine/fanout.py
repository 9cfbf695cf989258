"""The per-product statistics fanned out over product buckets: in one process, a process pool or Spark.

Batch heterogeneity, sequential monitoring (MaxSPRT) and the MGPS posterior with the
disproportionality battery are computed *within* a product (heterogeneity, MaxSPRT: the batches
of one product against each other) or *within* a pair (the posterior, given the prior). Only a
few small steps look across products, and they stay on one node (the driver):

=========================  =============================================  ==========================
step                       per bucket (in parallel)                       global (driver)
=========================  =============================================  ==========================
batch heterogeneity        every (product, event) group: exact test, EB,  the family-wide q-values
                           NB dispersion, funnel, onset                   (Tarone-BH q_exact, BH
                                                                          q_nb, q_mwu) and the flag
sequential monitoring      every batch × event stream of the product      the weekly looks and the
                                                                          reporting-delay pmf
disproportionality (MGPS)  PRR/ROR/χ²/IC, posterior EBGM/EB05/EB95 given  the prior fit; BH q over
                           the prior, Fisher mid-p, the rules             the Fisher p-values
=========================  =============================================  ==========================

So a fanned-out run returns the frames the single-process call returns (the tests check it
on both local paths and on local Spark). The statistics are the pure functions of ``signals``
(``signals.batch_detection``, ``signals.scoring``, ``signals.batch_heterogeneity.family_multiplicity``);
this module only splits, ships and stacks frames — the one reason ``warehouse`` imports ``signals``.

A *bucket* is :mod:`warehouse.lake.buckets`' rule (first 32 bits of the key's MD5, mod n): the
same number in Python and in Spark, so a product lands in the same bucket on every engine and run.

Modes (:data:`MODES`, ``PVTRACE_FANOUT``; buckets ``PVTRACE_FANOUT_BUCKETS``, workers
``PVTRACE_FANOUT_WORKERS``):

* ``single`` — the plain single call (the default: on the demo and 10× worlds the statistics
  take seconds and splitting only adds overhead, see docs/scale.md);
* ``buckets`` — bucket by bucket in this process (bounded memory, same results);
* ``process`` — a ``spawn`` process pool, one bucket per task;
* ``spark`` — ``groupBy(bucket).applyInArrow``: every input frame travels as a struct column of
  one unioned Spark DataFrame (so a bucket's frames arrive together in one Python worker), and
  every output frame comes back as Arrow IPC bytes (its schema is whatever the statistics
  return, known only after the call). Inputs may be polars frames or Spark DataFrames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from signals.batch_detection import DESIGN, FLAG_RULE, LEVELS, onset_frame, stream_schedule
from signals.batch_detection import heterogeneity_by_level as _heterogeneity_by_level
from signals.batch_detection import sequential_streams as _sequential_streams
from signals.batch_heterogeneity import BATCH_KEYS, family_multiplicity, onset_comparison
from signals.multiplicity import benjamini_hochberg
from signals.scoring import ScoredPairs, fit_pairs_prior
from signals.scoring import score_pairs as _score_pairs
from warehouse.lake.buckets import bucket_of, spark_bucket

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame

__all__ = [
    "MODES",
    "FanOut",
    "bucket_of",
    "heterogeneity_by_level",
    "run_buckets",
    "score_pairs",
    "sequential_streams",
    "spark_bucket",
]

MODES = ("single", "buckets", "process", "spark")
#: the FDR level of ``signals.multiplicity.add_fdr`` as ``signals.scoring.score_pairs`` calls it
#: (its default); the fan-out recomputes ``q_bh``/``fdr_signal`` over all pairs at this level
PAIRS_FDR_ALPHA = 0.05

Frames = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class FanOut:
    """How to fan out: ``mode`` (one of :data:`MODES`), ``buckets`` (number of product buckets),
    ``workers`` (process pool size; None = the CPUs this process may use), ``spark`` (a session
    for mode ``spark``; None = :func:`warehouse.engine.spark.spark_session`)."""

    mode: str = "single"
    buckets: int = 16
    workers: int | None = None
    spark: Any = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"fan-out mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.buckets, bool) or int(self.buckets) != self.buckets or not 1 <= self.buckets <= 100_000:
            raise ValueError(f"buckets must be an integer in [1, 100000], got {self.buckets!r}")
        if self.workers is not None and (int(self.workers) != self.workers or self.workers < 1):
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FanOut:
        """``PVTRACE_FANOUT`` (mode, default single), ``PVTRACE_FANOUT_BUCKETS`` (16),
        ``PVTRACE_FANOUT_WORKERS`` (CPUs)."""
        env = os.environ if environ is None else environ
        workers = env.get("PVTRACE_FANOUT_WORKERS")
        try:
            return cls(
                mode=(env.get("PVTRACE_FANOUT") or "single").strip().lower(),
                buckets=int(env.get("PVTRACE_FANOUT_BUCKETS") or 16),
                workers=int(workers) if workers else None,
            )
        except ValueError as exc:
            raise ValueError(f"PVTRACE_FANOUT*: {exc}") from exc


# ---- buckets ------------------------------------------------------------------------------------
def _split(frames: Frames, keys: Mapping[str, str], n_buckets: int) -> dict[int, Frames]:
    """{bucket: {name: the frame's rows of that bucket}} for every bucket some frame has rows in."""
    parts: dict[int, Frames] = {}
    for name, frame in frames.items():
        b = bucket_of(frame[keys[name]], n_buckets)
        for (bucket,), part in frame.with_columns(b.alias("_bucket")).partition_by("_bucket", as_dict=True).items():
            parts.setdefault(int(bucket), {})[name] = part.drop("_bucket")
    for bucket in parts.values():  # a bucket missing one input gets it empty
        for name, frame in frames.items():
            bucket.setdefault(name, frame.clear())
    return dict(sorted(parts.items()))


# ---- running buckets ----------------------------------------------------------------------------
def run_buckets(
    fn: Callable[[Frames], Frames],
    frames: Mapping[str, pl.DataFrame | SparkFrame],
    keys: Mapping[str, str],
    fan: FanOut,
) -> list[Frames]:
    """``fn`` applied to each bucket's frames; the list of its outputs (buckets in order).

    ``fn`` must be a module-level function (it is pickled to worker processes or Spark
    executors) taking and returning ``{name: polars frame}``. ``keys``: the bucketing column of
    each input frame. Mode ``single`` is treated as one bucket holding everything.
    """
    if fan.mode == "spark":
        return _run_spark(fn, frames, keys, fan)
    frames = {k: _as_polars(v) for k, v in frames.items()}
    if fan.mode == "single":
        return [fn(dict(frames))]
    parts = list(_split(frames, keys, fan.buckets).values())
    if fan.mode == "buckets" or len(parts) <= 1:
        return [fn(p) for p in parts]
    import multiprocessing

    workers = fan.workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(
        max_workers=min(workers, len(parts)), mp_context=multiprocessing.get_context("spawn")
    ) as ex:
        return list(ex.map(fn, parts))


def _as_polars(frame) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"modes other than spark take polars frames, got {type(frame).__name__}")


_OUT_SCHEMA = "_bucket int, name string, ipc binary"


def _run_spark(fn, frames, keys, fan: FanOut) -> list[Frames]:
    from pyspark.sql import functions as F

    spark = fan.spark
    if spark is None:
        from warehouse.engine.spark import spark_session

        spark = spark_session()
    names = sorted(frames)
    parts = []
    for name in names:
        df = frames[name]
        if isinstance(df, pl.DataFrame):
            df = spark.createDataFrame(df.to_arrow())
        parts.append(
            df.select(spark_bucket(F.col(keys[name]), fan.buckets).alias("_bucket"), F.struct(*df.columns).alias(name))
        )
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    result = union.groupBy("_bucket").applyInArrow(
        partial(_arrow_bucket, fn=fn, names=tuple(names)), schema=_OUT_SCHEMA
    )
    table = result.toArrow()
    out: dict[int, Frames] = {}
    for bucket, name, ipc in zip(*(table[c].to_pylist() for c in ("_bucket", "name", "ipc")), strict=True):
        out.setdefault(bucket, {})[name] = pl.read_ipc(ipc) if ipc is not None else None
    return [out[b] for b in sorted(out)]


def _arrow_bucket(table: pa.Table, fn, names: tuple[str, ...]) -> pa.Table:
    """One Spark group (a bucket): unpack the struct column of each input, call ``fn``, pack its
    outputs as Arrow IPC bytes (a None output travels as a null)."""
    bucket = table["_bucket"][0].as_py() if table.num_rows else 0
    frames = {}
    for name in names:
        col = table[name].combine_chunks()
        rows = pa.Table.from_struct_array(col.filter(col.is_valid())) if table.num_rows else None
        frames[name] = pl.from_arrow(rows) if rows is not None else pl.DataFrame()
    result = fn(frames)
    blobs = []
    for frame in result.values():
        if frame is None:
            blobs.append(None)
            continue
        sink = pa.BufferOutputStream()
        frame.write_ipc(sink)
        blobs.append(sink.getvalue().to_pybytes())
    return pa.table(
        {
            "_bucket": pa.array([bucket] * len(result), pa.int32()),
            "name": pa.array(list(result), pa.string()),
            "ipc": pa.array(blobs, pa.binary()),
        }
    )


def _stack(outputs: list[Frames], name: str) -> list[pl.DataFrame]:
    return [o[name] for o in outputs if o.get(name) is not None and o[name].height]


# ---- batch heterogeneity ------------------------------------------------------------------------
def _heterogeneity_bucket(frames: Frames) -> Frames:
    cases, exposure = frames["cases"], frames["exposure"]
    out: Frames = {}
    orphans = cases.join(exposure.select("product", "batch"), on=["product", "batch"], how="anti").height > 0
    for level, (scored, grid) in _heterogeneity_by_level(cases, exposure).items():
        out[f"{level}_scored"] = scored if "flagged" in scored.columns else None
        out[f"{level}_grid"] = grid
        extra = pl.DataFrame(schema={"p_mwu": pl.Float64})
        if orphans and "flagged" in scored.columns:
            # onset comparisons of batches without exposure: in the q_mwu family, not in the rows
            extra = (
                onset_comparison(onset_frame(cases, level))
                .join(scored.select(BATCH_KEYS), on=BATCH_KEYS, how="anti")
                .select("p_mwu")
                .drop_nulls()
            )
        out[f"{level}_more_p_mwu"] = extra
    return out


def heterogeneity_by_level(
    cases: pl.DataFrame, exposure: pl.DataFrame, fan: FanOut = FanOut()
) -> dict[str, tuple[pl.DataFrame, pl.DataFrame | None]]:
    """:func:`signals.batch_detection.heterogeneity_by_level` fanned out over product buckets.

    Same return value (per level: the scored rows sorted by product, event, batch with the
    family-wide q-values and ``flagged``; the funnel grid), whatever ``fan``."""
    if fan.mode == "single" or cases.height == 0 or exposure.height == 0:
        return _heterogeneity_by_level(cases, exposure)
    outputs = run_buckets(
        _heterogeneity_bucket, {"cases": cases, "exposure": exposure}, {"cases": "product", "exposure": "product"}, fan
    )
    result = {}
    for level in LEVELS:
        scored = _stack(outputs, f"{level}_scored")
        if not scored:  # no bucket had a batch x event row at this level: as the single call
            result[level] = _heterogeneity_by_level(cases.head(0), exposure.head(0))[level]
            continue
        more = pl.concat([o[f"{level}_more_p_mwu"] for o in outputs if o.get(f"{level}_more_p_mwu") is not None])
        stacked = pl.concat(scored, how="vertical_relaxed").sort(BATCH_KEYS, maintain_order=True)
        stacked = family_multiplicity(stacked, rule=FLAG_RULE, with_onset=True, more_p_mwu=more["p_mwu"].to_numpy())
        grids = _stack(outputs, f"{level}_grid")
        grid = pl.concat(grids, how="vertical_relaxed").sort("product", "event", maintain_order=True) if grids else None
        result[level] = (stacked, grid)
    return result


# ---- sequential monitoring ----------------------------------------------------------------------
def _sequential_bucket(frames: Frames, schedule, dlp, design) -> Frames:
    routes = dict(frames["routes"].select("product", "route").iter_rows())
    out = _sequential_streams(frames["packs"], frames["cases"], routes, frames["units"], dlp, design, schedule)
    return {"streams": out if out.height else None}


def sequential_streams(
    packs: pl.DataFrame,
    cases: pl.DataFrame,
    routes: dict[str, str],
    units_released: pl.DataFrame,
    dlp,
    fan: FanOut = FanOut(),
    design=None,
) -> pl.DataFrame:
    """:func:`signals.batch_detection.sequential_streams` fanned out over product buckets: the
    looks and the reporting-delay pmf (:func:`signals.batch_detection.stream_schedule`) are
    computed once over every product, then each bucket's streams run apart. Same frame (rows
    sorted by product, event, batch) whatever ``fan``."""
    design = design or DESIGN
    if fan.mode == "single" or packs.height == 0 or dlp is None:
        return _sequential_streams(packs, cases, routes, units_released, dlp, design)
    schedule = stream_schedule(packs, cases, dlp)
    route_frame = pl.DataFrame(
        {"product": list(routes), "route": list(routes.values())}, schema={"product": pl.String, "route": pl.String}
    )
    units = units_released.join(packs.select("product", "batch").unique(), on="batch", how="inner")
    outputs = run_buckets(
        partial(_sequential_bucket, schedule=schedule, dlp=dlp, design=design),
        {"packs": packs, "cases": cases, "routes": route_frame, "units": units},
        {"packs": "product", "cases": "product", "routes": "product", "units": "product"},
        fan,
    )
    streams = _stack(outputs, "streams")
    if not streams:
        return pl.DataFrame()
    return pl.concat(streams, how="vertical_relaxed").sort("product_id", "pt", "batch_id", maintain_order=True)


# ---- disproportionality with the MGPS posterior -------------------------------------------------
def _pairs_bucket(frames: Frames, prior, min_count: int) -> Frames:
    return {"scored": _score_pairs(frames["counts"], prior=prior, min_count=min_count, fdr=True).scored}


def score_pairs(counts: pl.DataFrame, *, min_count: int = 1, fan: FanOut = FanOut()) -> ScoredPairs:
    """``signals.scoring.score_pairs(counts, prior="fit", min_count=min_count, fdr=True)``
    fanned out over drug buckets: the prior is fitted once on every pair (driver), each bucket
    scores its pairs under it (battery, posterior EBGM/EB05/EB95, Fisher mid-p, rules), and the
    BH q-values are recomputed over all pairs. Same frame and row order as the single call."""
    if fan.mode == "single" or counts.height == 0:
        return _score_pairs(counts, prior="fit", min_count=min_count, fdr=True)
    prior = fit_pairs_prior(counts, min_count=min_count)
    indexed = counts.with_row_index("_fanout_row").with_columns(pl.col("_fanout_row").cast(pl.Int64))
    outputs = run_buckets(
        partial(_pairs_bucket, prior=prior, min_count=min_count), {"counts": indexed}, {"counts": "drug"}, fan
    )
    scored = pl.concat(_stack(outputs, "scored"), how="vertical_relaxed").sort("_fanout_row").drop("_fanout_row")
    reject, q = benjamini_hochberg(scored["p_fisher"].cast(pl.Float64).fill_null(np.nan).to_numpy(), PAIRS_FDR_ALPHA)
    scored = scored.with_columns(
        pl.Series("q_bh", q, dtype=pl.Float64, nan_to_null=True), pl.Series("fdr_signal", reject)
    )
    return ScoredPairs(scored, prior)

"""eRMR-style CSV per active substance: one row per drug–event pair, as in EMA's electronic Reaction Monitoring Report.

Columns follow the eRMR layout as far as PV Trace has the data (EMA/849944/2016 §4.1.3 and the EVDAS
MAH manual, from memory [M]): substance, PT, New/Total counts (all, serious, fatal), ROR with its
95% lower bound (ROR(−)) and the SDR flag (ROR(−) > 1 with n ≥ 5, or n ≥ 3 under additional
monitoring). Not available here, so left out rather than faked: the MedDRA hierarchy (HLT, HLGT,
SOC codes), IME/DME flags, EEA/paediatric/geriatric splits and relative RORs.

"New" = cases first received in the period; "Total" = cases received up to the data lock point.
Counts are distinct reports, suspect or interacting role, latest versions, duplicates excluded.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from pathlib import Path

import polars as pl

COLUMNS = [
    "active_substance",
    "pt",
    "new_count",
    "total_count",
    "new_serious",
    "total_serious",
    "new_fatal",
    "total_fatal",
    "ror",
    "ror_lower_95",
    "ror_upper_95",
    "sdr",
    "additional_monitoring",
    "period_start",
    "data_lock_point",
]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "substance"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "Y" if v else "N"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def ermr_rows(scored: pl.DataFrame, period: tuple[dt.date, dt.date]) -> pl.DataFrame:
    """``scored``: substance_event_counts + signals.disproportionality.score + the ``ema_sdr`` rule column."""
    return scored.select(
        pl.col("ingredient").alias("active_substance"),
        "pt",
        "new_count",
        "total_count",
        "new_serious",
        "total_serious",
        "new_fatal",
        "total_fatal",
        "ror",
        pl.col("ror_lo95").alias("ror_lower_95"),
        pl.col("ror_hi95").alias("ror_upper_95"),
        pl.col("ema_sdr").fill_null(False).alias("sdr"),
        "additional_monitoring",
        pl.lit(period[0]).alias("period_start"),
        pl.lit(period[1]).alias("data_lock_point"),
    ).sort("active_substance", "pt")


def write_ermr(scored: pl.DataFrame, folder: Path, *, period: tuple[dt.date, dt.date]) -> list[Path]:
    """One CSV per active substance (``ermr_<substance>_<YYYY-MM>.csv``), rows sorted by PT; SDRs are rows with sdr = Y."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ermr_rows(scored, period)
    paths = []
    for (substance,), part in sorted(rows.partition_by("active_substance", as_dict=True).items()):
        path = folder / f"ermr_{slug(substance)}_{period[0]:%Y-%m}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(COLUMNS)
            for r in part.iter_rows(named=True):
                w.writerow([r[c].isoformat() if isinstance(r[c], dt.date) else _fmt(r[c]) for c in COLUMNS])
        paths.append(path)
    return paths

"""Contingency counts from report-level rows, stratified expected counts,
Mantel–Haenszel ROR and subgroup runs — pure polars.

Input is one row per (report, drug, event) mention, with optional stratum
columns that describe the report (age band, sex, report year, region…).
Every count is a count of **distinct reports**:

* n11 — reports mentioning both the drug and the event,
* n1_ — reports mentioning the drug, n_1 — reports mentioning the event,
* n   — all reports (distinct non-null report ids in the input).

Rows with a null drug (event) still count towards n and towards the event's
(drug's) margin; pairs need both.  Null stratum values form their own stratum.

Stratified expected count (DuMouchel, 1999; as openEBGM ``processRaw(stratify =
TRUE)``)::

    E = Σ_s n1_(s)·n_1(s)/n(s)

over strata s, where n1_(s), n_1(s), n(s) count distinct reports in stratum s.

References
----------
DuMouchel W (1999). Am Stat 53:177–190.
Mantel N, Haenszel W (1959). Statistical aspects of the analysis of data from
retrospective studies of disease. J Natl Cancer Inst 22:719–748.
Robins J, Breslow N, Greenland S (1986). Estimators of the Mantel–Haenszel
variance consistent in both sparse data and large-strata limiting models.
Biometrics 42:311–323.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from signals.disproportionality import Z975

__all__ = ["contingency_counts", "subgroup_counts", "mantel_haenszel_ror"]

COUNT_COLUMNS = ("drug", "event", "n11", "n1_", "n_1", "n", "e")


def _src(reports, report_col, drug_col, event_col, strata, by):
    keep = [*by, report_col, drug_col, event_col, *strata]
    lf = reports.lazy() if isinstance(reports, pl.DataFrame) else reports
    names = lf.collect_schema().names()
    missing = [c for c in keep if c not in names]
    if missing:
        raise ValueError(f"report rows lack column(s) {missing}")
    return (
        lf.select(keep)
        .rename({report_col: "_rid", drug_col: "drug", event_col: "event"})
        .filter(pl.col("_rid").is_not_null())
    )


def _nuniq(name):
    return pl.col("_rid").n_unique().cast(pl.Int64).alias(name)


def contingency_counts(
    reports: pl.DataFrame | pl.LazyFrame,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Per-pair ``drug, event, n11, n1_, n_1, n, e`` from report-level rows.

    ``e`` is n1_·n_1/n without ``strata`` and Σ_s n1_(s)·n_1(s)/n(s) with it.
    ``by`` runs the whole computation separately within each subgroup (all
    counts, margins and n are then subgroup-specific) and keeps the ``by``
    columns first.  Sorted by (by…, drug, event); integer counts are Int64.
    """
    strata = list(strata or [])
    by = list(by or [])
    src = _src(reports, report_col, drug_col, event_col, strata, by)
    has_d = pl.col("drug").is_not_null()
    has_e = pl.col("event").is_not_null()
    pairs = src.filter(has_d & has_e).group_by([*by, "drug", "event"]).agg(_nuniq("n11"))
    drugs = src.filter(has_d).group_by([*by, "drug"]).agg(_nuniq("n1_"))
    events = src.filter(has_e).group_by([*by, "event"]).agg(_nuniq("n_1"))
    out = pairs.join(drugs, on=[*by, "drug"]).join(events, on=[*by, "event"])
    if by:
        tot = src.group_by(by).agg(_nuniq("n"))
        out = out.join(tot, on=by, nulls_equal=True)
    else:
        n_total = src.select(_nuniq("n")).collect().item()
        out = out.with_columns(pl.lit(n_total, dtype=pl.Int64).alias("n"))
    if not strata:
        out = out.with_columns(e=pl.col("n1_").cast(pl.Float64) * pl.col("n_1") / pl.col("n"))
    else:
        out = out.join(_stratified_e(src, pairs, by, strata), on=[*by, "drug", "event"], how="left", nulls_equal=True)
    cols = [*by, "drug", "event", "n11", "n1_", "n_1", "n", "e"]
    return out.select(cols).sort([*by, "drug", "event"]).collect()


def _stratum_margins(src, by, strata):
    keys = [*by, *strata]
    sd = src.filter(pl.col("drug").is_not_null()).group_by([*keys, "drug"]).agg(_nuniq("n1s"))
    se = src.filter(pl.col("event").is_not_null()).group_by([*keys, "event"]).agg(_nuniq("n_1s"))
    st = src.group_by(keys).agg(_nuniq("ns"))
    return sd, se, st


def _pair_strata(src, pairs, by, strata):
    """One row per (pair, stratum shared by its drug and its event) with the
    stratum margins — the only strata that contribute to E or to MH sums."""
    keys = [*by, *strata]
    sd, se, st = _stratum_margins(src, by, strata)
    return (
        pairs.select([*by, "drug", "event"])
        .join(sd, on=[*by, "drug"], nulls_equal=True)
        .join(se, on=[*keys, "event"], nulls_equal=True)
        .join(st, on=keys, nulls_equal=True)
    )


def _stratified_e(src, pairs, by, strata):
    return (
        _pair_strata(src, pairs, by, strata)
        .group_by([*by, "drug", "event"])
        .agg(e=(pl.col("n1s").cast(pl.Float64) * pl.col("n_1s") / pl.col("ns")).sum())
    )


def subgroup_counts(reports, *, by: Sequence[str], **kw) -> pl.DataFrame:
    """Counts within each subgroup (e.g. ``by=["sex"]``): a shorthand for
    :func:`contingency_counts` with ``by``; feed the result to ``score``."""
    return contingency_counts(reports, by=by, **kw)


def mantel_haenszel_ror(
    reports: pl.DataFrame | pl.LazyFrame,
    *,
    strata: Sequence[str],
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    z: float = Z975,
) -> pl.DataFrame:
    """Mantel–Haenszel ROR over strata with the Robins–Breslow–Greenland CI.

    Per stratum s with cells a, b, c, d and total n_s:
    R_s = a·d/n_s, S_s = b·c/n_s, P_s = (a+d)/n_s, Q_s = (b+c)/n_s;
    ROR_MH = ΣR/ΣS (Mantel & Haenszel, 1959) and
    Var(ln ROR_MH) = ΣPR/(2(ΣR)²) + Σ(PS+QR)/(2·ΣR·ΣS) + ΣQS/(2(ΣS)²)
    (Robins, Breslow & Greenland, 1986).  Strata in which the drug or the
    event is absent have R = S = 0 and do not contribute.  Null where ΣR or
    ΣS is 0 (bounds) or ΣS is 0 (point).

    Returns ``drug, event, ror_mh, ror_mh_lo95, ror_mh_hi95``.
    """
    strata = list(strata)
    if not strata:
        raise ValueError("mantel_haenszel_ror needs at least one stratum column")
    src = _src(reports, report_col, drug_col, event_col, strata, [])
    both = src.filter(pl.col("drug").is_not_null() & pl.col("event").is_not_null())
    pairs = both.group_by(["drug", "event"]).agg(_nuniq("n11"))
    a_s = both.group_by(["drug", "event", *strata]).agg(_nuniq("a"))
    cells = (
        _pair_strata(src, pairs, [], strata)
        .join(a_s, on=["drug", "event", *strata], how="left", nulls_equal=True)
        .with_columns(a=pl.col("a").fill_null(0).cast(pl.Float64))
        .with_columns(b=pl.col("n1s") - pl.col("a"), c=pl.col("n_1s") - pl.col("a"))
        .with_columns(d=pl.col("ns") - pl.col("a") - pl.col("b") - pl.col("c"))
        .with_columns(
            R=pl.col("a") * pl.col("d") / pl.col("ns"),
            S=pl.col("b") * pl.col("c") / pl.col("ns"),
            P=(pl.col("a") + pl.col("d")) / pl.col("ns"),
            Q=(pl.col("b") + pl.col("c")) / pl.col("ns"),
        )
    )
    agg = cells.group_by(["drug", "event"]).agg(
        sR=pl.col("R").sum(),
        sS=pl.col("S").sum(),
        sPR=(pl.col("P") * pl.col("R")).sum(),
        sPSQR=(pl.col("P") * pl.col("S") + pl.col("Q") * pl.col("R")).sum(),
        sQS=(pl.col("Q") * pl.col("S")).sum(),
    )
    df = pairs.select("drug", "event").join(agg, on=["drug", "event"], how="left").sort("drug", "event").collect()
    sR, sS = df["sR"].to_numpy(), df["sS"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        point = np.where(sS > 0, sR / sS, np.nan)
        var = (
            df["sPR"].to_numpy() / (2 * sR**2)
            + df["sPSQR"].to_numpy() / (2 * sR * sS)
            + df["sQS"].to_numpy() / (2 * sS**2)
        )
        ok = (sR > 0) & (sS > 0) & np.isfinite(var)
        half = z * np.sqrt(np.where(ok, var, 0.0))
        lo = np.where(ok, np.exp(np.log(np.where(ok, point, 1.0)) - half), np.nan)
        hi = np.where(ok, np.exp(np.log(np.where(ok, point, 1.0)) + half), np.nan)

    def mk(name, v):
        return pl.Series(name, v, dtype=pl.Float64, nan_to_null=True)

    return df.select("drug", "event").with_columns(mk("ror_mh", point), mk("ror_mh_lo95", lo), mk("ror_mh_hi95", hi))

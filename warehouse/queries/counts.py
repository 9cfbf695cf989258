"""Drug–event contingency counts: one Ibis expression, run by DuckDB (as SQL text) or by any engine.

Detection (:mod:`warehouse.queries.detection_inputs`), the evaluation replay (every weekly
cut-off in one statement, ``by=["cutoff"]``) and the eRMR export's margins all use
:func:`contingency_counts_expr` — directly on an :class:`~warehouse.engine.Engine` (DuckDB or
Spark), or through :func:`contingency_counts_sql` / :func:`contingency_counts`, its DuckDB SQL
text over any relation. Definitions as :func:`signals.stratification.contingency_counts` (the
pure polars implementation, kept as the independent reference the tests compare against):
distinct reports; rows with a null report id do not count; rows with a null drug/event still
count towards n and the other margin; null stratum values form their own stratum. ``by`` runs
the whole computation separately within each group (every count, margin and n is then per
group). The SQL sticks to features DuckDB 1.5 and 2.0 share and returns through ``con.sql(q).pl()``.
"""

from __future__ import annotations

import functools
import re

import ibis
import polars as pl

__all__ = ["contingency_counts", "contingency_counts_expr", "contingency_counts_sql", "counts_source"]

# The stratified E in fixed point (see _exact_sum): a term t = n1s·n_1s/ns is one IEEE division, the same bits on
# every engine; it is cut exactly into its integer part and four 26-bit fractional chunks (to 2^-104: every bit of
# a double ≥ 2^-52, and t ≥ 1/ns), each chunk summed as an integer (exact, in any order: below 2^53 for up to
# 2^27 strata per pair), and the sums put together in one fixed order of IEEE operations.
_CHUNK_BITS = 26
_FRACTION_CHUNKS = 4

_SUBQUERY = re.compile(r"^\s*(\(|select\b|with\b|from\b|values\b)", re.IGNORECASE)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relation_sql(relation: str) -> str:
    """A table/view name is used as written (it may be schema-qualified);
    a query is wrapped as a subquery."""
    if _SUBQUERY.match(relation):
        return f"({relation.strip().rstrip(';')})"
    return relation


def counts_source(
    rows: ibis.Table,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
    by: list[str] | None = None,
) -> ibis.Table:
    """``rows`` renamed to the columns :func:`contingency_counts_expr` reads: rid, drug, event, s0…, b0…"""
    strata, by = list(strata or []), list(by or [])
    return rows.select(
        **{f"b{i}": rows[b] for i, b in enumerate(by)},
        rid=rows[report_col],
        drug=rows[drug_col],
        event=rows[event_col],
        **{f"s{i}": rows[s] for i, s in enumerate(strata)},
    )


def _fixed_point_chunks(t: ibis.FloatingValue) -> list[ibis.IntegerValue]:
    """A non-negative double ``t`` cut exactly into integers c0 = ⌊t⌋, c1…c4 (each < 2^26) with
    t = c0 + c1·2^-26 + … + c4·2^-104 for every t ≥ 2^-52: subtracting the floor and scaling by a power
    of two are exact in IEEE arithmetic, so every engine cuts the same bits the same way."""
    chunks, rest = [], t
    for _ in range(1 + _FRACTION_CHUNKS):
        c = rest.floor()
        chunks.append(c)
        rest = (rest - c.cast("float64")) * float(2**_CHUNK_BITS)
    return chunks


def _exact_sum(sums: list[ibis.IntegerValue]) -> ibis.FloatingValue:
    """Σ_j S_j·2^(-26j) of the chunk sums as a double, smallest first, in one fixed order (each S_j < 2^53
    converts exactly; each product is exact; the four additions round as IEEE does on every engine)."""
    out = None
    for j in reversed(range(len(sums))):
        part = sums[j].cast("float64") * float(2.0 ** (-_CHUNK_BITS * j))
        out = part if out is None else out + part
    return out


def contingency_counts_expr(src: ibis.Table, n_strata: int = 0, by: list[str] | None = None) -> ibis.Table:
    """Per pair ``[by…,] drug, event, n11, n1_, n_1, n, e`` from report rows ``src`` (columns of
    :func:`counts_source`: rid, drug, event, s0…s{n_strata-1}, b0…b{len(by)-1}); the by-columns
    come out under the names in ``by``.

    n11 = distinct reports with the drug and the event; n1_ / n_1 = distinct reports with the
    drug / the event; n = distinct reports; e = n1_·n_1/n, or Σ_s n1_(s)·n_1(s)/n(s) over the
    strata (DuMouchel, 1999, "Bayesian data mining in large frequency tables", Am Stat 53:177).
    Group and stratum keys match null-safely (a null stratum is a stratum); the stratified sum is
    exact (fixed point, :func:`_fixed_point_chunks`), so E does not depend on the engine or its summation order. Not sorted: sort
    with ``order_by`` where order matters (the callers below do)."""
    by = list(by or [])
    bk = [f"b{i}" for i in range(len(by))]
    sk = [f"s{i}" for i in range(n_strata)]
    src = src.filter(src.rid.notnull())
    has_drug, has_event = src.drug.notnull(), src.event.notnull()

    def renamed(t: ibis.Table, suffix: str, keys: list[str]) -> ibis.Table:
        return t.rename({f"{k}{suffix}": k for k in keys})

    pairs = src.filter(has_drug & has_event).group_by([*bk, "drug", "event"]).aggregate(n11=src.rid.nunique())
    drugs = renamed(src.filter(has_drug).group_by([*bk, "drug"]).aggregate(n1_=src.rid.nunique()), "_d", [*bk, "drug"])
    events = renamed(
        src.filter(has_event).group_by([*bk, "event"]).aggregate(n_1=src.rid.nunique()), "_v", [*bk, "event"]
    )
    tot = (
        renamed(src.group_by(bk).aggregate(n=src.rid.nunique()), "_t", bk) if bk else src.aggregate(n=src.rid.nunique())
    )
    out = pairs.join(drugs, [pairs.drug == drugs.drug_d, *[pairs[k].identical_to(drugs[f"{k}_d"]) for k in bk]])
    out = out.join(events, [out.event == events.event_v, *[out[k].identical_to(events[f"{k}_v"]) for k in bk]])
    out = out.join(tot, [out[k].identical_to(tot[f"{k}_t"]) for k in bk]) if bk else out.cross_join(tot)
    if sk:
        sd = renamed(
            src.filter(has_drug).group_by([*bk, "drug", *sk]).aggregate(n1s=src.rid.nunique()), "_d", [*bk, "drug", *sk]
        )
        se = renamed(
            src.filter(has_event).group_by([*bk, "event", *sk]).aggregate(n_1s=src.rid.nunique()),
            "_v",
            [*bk, "event", *sk],
        )
        st = renamed(src.group_by([*bk, *sk]).aggregate(ns=src.rid.nunique()), "_t", [*bk, *sk])
        ex = pairs.select(*bk, "drug", "event")
        ex = ex.join(sd, [ex.drug == sd.drug_d, *[ex[k].identical_to(sd[f"{k}_d"]) for k in bk]])
        ex = ex.join(se, [ex.event == se.event_v, *[ex[f"{k}_d"].identical_to(se[f"{k}_v"]) for k in [*bk, *sk]]])
        ex = ex.join(st, [ex[f"{k}_d"].identical_to(st[f"{k}_t"]) for k in [*bk, *sk]])
        # each stratum's term in double, summed exactly (_exact_sum): E is then the same bits whatever order a
        # parallel aggregation (DuckDB threads, Spark tasks) adds the terms in, and on either engine
        term = ex.n1s.cast("float64") * ex.n_1s / ex.ns
        chunks = _fixed_point_chunks(term)
        ex = ex.group_by([*bk, "drug", "event"]).aggregate(**{f"c{j}": c.sum() for j, c in enumerate(chunks)})
        ex = ex.select(*bk, "drug", "event", e=_exact_sum([ex[f"c{j}"] for j in range(len(chunks))]))
        ex = renamed(ex, "_x", [*bk, "drug", "event"])
        out = out.join(
            ex,
            [out.drug == ex.drug_x, out.event == ex.event_x, *[out[k].identical_to(ex[f"{k}_x"]) for k in bk]],
        )
        e = out.e
    else:
        e = out.n1_.cast("float64") * out.n_1 / out.n
    return out.select(
        **{name: out[k] for name, k in zip(by, bk, strict=True)},
        drug=out.drug,
        event=out.event,
        n11=out.n11.cast("int64"),
        n1_=out.n1_.cast("int64"),
        n_1=out.n_1.cast("int64"),
        n=out.n.cast("int64"),
        e=e.cast("float64"),
    )


@functools.lru_cache(maxsize=64)
def _counts_select_sql(n_by: int, n_strata: int, by: tuple[str, ...]) -> str:
    """The DuckDB SELECT of :func:`contingency_counts_expr` over a relation called ``src``."""
    columns = {**{f"b{i}": "string" for i in range(n_by)}, "rid": "string", "drug": "string", "event": "string"}
    columns.update({f"s{i}": "string" for i in range(n_strata)})
    return ibis.to_sql(contingency_counts_expr(ibis.table(columns, name="src"), n_strata, list(by)), dialect="duckdb")


def contingency_counts_sql(
    relation: str,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
    by: list[str] | None = None,
) -> str:
    """DuckDB SQL text of :func:`contingency_counts_expr` over ``relation`` (a table/view name, or a
    query), sorted by (by…, drug, event): for :func:`contingency_counts`, EXPLAIN, or a CTE of a larger query."""
    strata, by = list(strata or []), list(by or [])
    cols = [*(f"{_q(b)} AS b{i}" for i, b in enumerate(by)), f"{_q(report_col)} AS rid"]
    cols += [
        f"{_q(drug_col)} AS drug",
        f"{_q(event_col)} AS event",
        *(f"{_q(s)} AS s{i}" for i, s in enumerate(strata)),
    ]
    order = ", ".join([*(_q(b) for b in by), "drug", "event"])
    return (
        f"WITH src AS (SELECT {', '.join(cols)} FROM {_relation_sql(relation)} AS rel)\n"
        f"SELECT * FROM (\n{_counts_select_sql(len(by), len(strata), tuple(by))}\n) AS counts\nORDER BY {order}"
    )


def contingency_counts(
    con,
    relation: str,
    *,
    report_col: str = "report_id",
    drug_col: str = "drug",
    event_col: str = "event",
    strata: list[str] | None = None,
    by: list[str] | None = None,
    params: dict | None = None,
) -> pl.DataFrame:
    """Per-pair ``[by…,] drug, event, n11, n1_, n_1, n, e`` for the report rows in
    ``relation`` (a table, a view, or a SELECT query; ``params`` binds its ``$names``), computed by DuckDB.

    ``e`` = n1_·n_1/n, or Σ_s n1_(s)·n_1(s)/n(s) over the ``strata`` columns
    (DuMouchel, 1999).  Sorted by (by…, drug, event).
    """
    q = contingency_counts_sql(
        relation, report_col=report_col, drug_col=drug_col, event_col=event_col, strata=strata, by=by
    )
    return con.sql(q, params=params).pl() if params else con.sql(q).pl()

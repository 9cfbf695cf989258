"""Report-level counting checked against brute-force set arithmetic and
statsmodels' StratifiedTable (Mantel–Haenszel, Robins–Breslow–Greenland)."""

import itertools
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from statsmodels.stats.contingency_tables import StratifiedTable

from signals.stratification import contingency_counts, mantel_haenszel_ror, subgroup_counts


def synthetic_reports(seed=3, n_reports=400):
    rng = np.random.default_rng(seed)
    rows = []
    for rid in range(n_reports):
        sex = rng.choice(["F", "M"])
        age = rng.choice(["0-17", "18-64", "65+"])
        drugs = rng.choice(
            ["A", "B", "C", "D", "E"], size=rng.integers(1, 3), replace=False, p=[0.4, 0.3, 0.15, 0.1, 0.05]
        )
        events = rng.choice(["x", "y", "z", "w"], size=rng.integers(1, 3), replace=False, p=[0.4, 0.3, 0.2, 0.1])
        for d, e in itertools.product(drugs, events):
            rows.append((f"r{rid}", d, e, sex, age))
            if rng.random() < 0.1:  # duplicated row: counts must stay distinct reports
                rows.append((f"r{rid}", d, e, sex, age))
    return pl.DataFrame(rows, schema=["report_id", "drug", "event", "sex", "age"], orient="row")


def brute(df, strata=()):
    rec = df.to_dicts()
    reports = {r["report_id"] for r in rec}
    by_drug, by_event, by_pair = defaultdict(set), defaultdict(set), defaultdict(set)
    st_of = {r["report_id"]: tuple(r[s] for s in strata) for r in rec}
    for r in rec:
        by_drug[r["drug"]].add(r["report_id"])
        by_event[r["event"]].add(r["report_id"])
        by_pair[(r["drug"], r["event"])].add(r["report_id"])
    out = {}
    for (d, e), ids in by_pair.items():
        if strata:
            exp = 0.0
            for s in set(st_of.values()):
                ns = sum(1 for x in reports if st_of[x] == s)
                exp += sum(1 for x in by_drug[d] if st_of[x] == s) * sum(1 for x in by_event[e] if st_of[x] == s) / ns
        else:
            exp = len(by_drug[d]) * len(by_event[e]) / len(reports)
        out[(d, e)] = (len(ids), len(by_drug[d]), len(by_event[e]), len(reports), exp)
    return out


@pytest.mark.parametrize("strata", [None, ["sex"], ["sex", "age"]])
def test_counts_match_brute_force(strata):
    df = synthetic_reports()
    got = contingency_counts(df, strata=strata)
    ref = brute(df, strata or ())
    assert got.height == len(ref)
    assert got.columns == ["drug", "event", "n11", "n1_", "n_1", "n", "e"]
    assert got.select(["drug", "event"]).to_dicts() == sorted(
        got.select(["drug", "event"]).to_dicts(), key=lambda r: (r["drug"], r["event"])
    )
    for r in got.iter_rows(named=True):
        n11, n1_, n_1, n, e = ref[(r["drug"], r["event"])]
        assert (r["n11"], r["n1_"], r["n_1"], r["n"]) == (n11, n1_, n_1, n)
        assert r["e"] == pytest.approx(e, rel=1e-12)


def test_stratified_e_sums_to_unstratified_when_one_stratum():
    df = synthetic_reports().with_columns(one=pl.lit("all"))
    a = contingency_counts(df, strata=["one"])
    b = contingency_counts(df)
    np.testing.assert_allclose(a["e"].to_numpy(), b["e"].to_numpy(), rtol=1e-12)


def test_custom_column_names_and_lazy_input():
    df = synthetic_reports().rename({"report_id": "id", "drug": "var1", "event": "var2"})
    got = contingency_counts(df.lazy(), report_col="id", drug_col="var1", event_col="var2", strata=["sex"])
    assert got.height == len(brute(synthetic_reports()))


def test_subgroups_equal_filtered_runs():
    df = synthetic_reports()
    sub = subgroup_counts(df, by=["sex"], strata=["age"])
    for sex in ("F", "M"):
        want = contingency_counts(df.filter(pl.col("sex") == sex), strata=["age"])
        got = sub.filter(pl.col("sex") == sex).drop("sex")
        assert_frame_equal(got, want, rel_tol=1e-12)  # e summed in another order


def test_mantel_haenszel_against_statsmodels():
    df = synthetic_reports(seed=11, n_reports=600)
    mh = mantel_haenszel_ror(df, strata=["sex", "age"])
    rec = df.to_dicts()
    st_of = {r["report_id"]: (r["sex"], r["age"]) for r in rec}
    strata = sorted(set(st_of.values()))
    checked = 0
    for row in mh.iter_rows(named=True):
        d, e = row["drug"], row["event"]
        tables = []
        for s in strata:
            ids = {r["report_id"] for r in rec if st_of[r["report_id"]] == s}
            hd = {r["report_id"] for r in rec if r["drug"] == d and st_of[r["report_id"]] == s}
            he = {r["report_id"] for r in rec if r["event"] == e and st_of[r["report_id"]] == s}
            a = len(hd & he)
            b, c = len(hd) - a, len(he) - a
            tables.append([[a, b], [c, len(ids) - a - b - c]])
        t = StratifiedTable(np.array(tables, dtype=float).transpose(1, 2, 0))
        if row["ror_mh_lo95"] is None:
            continue
        assert row["ror_mh"] == pytest.approx(t.oddsratio_pooled, rel=1e-10)
        lo, hi = t.oddsratio_pooled_confint(alpha=0.05)
        assert row["ror_mh_lo95"] == pytest.approx(lo, rel=1e-6)
        assert row["ror_mh_hi95"] == pytest.approx(hi, rel=1e-6)
        checked += 1
    assert checked >= 10


def test_mh_null_when_undefined():
    # drug A only ever with event x: b = c = 0 in every stratum
    df = pl.DataFrame(
        {
            "report_id": ["1", "2", "3", "4"],
            "drug": ["A", "A", "B", "B"],
            "event": ["x", "x", "y", "y"],
            "sex": ["F", "M", "F", "M"],
        }
    )
    mh = mantel_haenszel_ror(df, strata=["sex"])
    assert mh["ror_mh"].null_count() == mh.height
    assert not mh["ror_mh_lo95"].is_nan().any()


def test_nulls_in_rows():
    df = pl.DataFrame(
        {
            "report_id": ["1", "1", "2", "3", None],
            "drug": ["A", "A", None, "A", "A"],
            "event": ["x", None, "x", "y", "x"],
            "sex": [None, None, "F", "F", "M"],
        }
    )
    got = contingency_counts(df, strata=["sex"])
    r = {(x["drug"], x["event"]): x for x in got.to_dicts()}
    assert r[("A", "x")]["n11"] == 1 and r[("A", "x")]["n1_"] == 2 and r[("A", "x")]["n_1"] == 2
    assert r[("A", "x")]["n"] == 3
    # strata: report 1 in the null stratum (n=1, n1_=1, n_1=1) -> 1; F stratum: drug 1 (r3), event 1 (r2), n 2 -> 0.5
    assert r[("A", "x")]["e"] == pytest.approx(1.5)

"""DuckDB contingency counts equal the pure-polars ones (signals.stratification)."""

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from signals import stratification
from warehouse.queries.counts import contingency_counts, contingency_counts_sql


def report_rows(seed=5, n_reports=3000):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 6, n_reports)
    rid = np.repeat(np.arange(n_reports), k)
    m = rid.size
    drug = rng.zipf(1.6, m) % 300
    event = rng.zipf(1.4, m) % 200
    sex = np.array(["F", "M", None], dtype=object)[rng.integers(0, 3, n_reports)][rid]
    age = np.array(["<18", "18-64", "65+"])[rng.integers(0, 3, n_reports)][rid]
    year = (2020 + rng.integers(0, 4, n_reports))[rid]
    df = pl.DataFrame(
        {
            "report_id": rid.astype(str),
            "drug": [f"d{x}" for x in drug],
            "event": [f"e{x}" for x in event],
            "sex": sex,
            "age_band": age,
            "year": year,
        }
    )
    # duplicate some rows and add a few nulls
    return pl.concat([df, df.sample(300, seed=1)]).with_columns(
        event=pl.when(pl.int_range(pl.len()) % 97 == 0).then(None).otherwise(pl.col("event"))
    )


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.register("reports_df", report_rows())
    c.execute("CREATE TABLE reports AS SELECT * FROM reports_df")
    yield c
    c.close()


@pytest.mark.parametrize("strata", [None, ["sex"], ["sex", "age_band", "year"]])
def test_duckdb_equals_polars(con, strata):
    got = contingency_counts(con, "reports", strata=strata)
    want = stratification.contingency_counts(report_rows(), strata=strata)
    assert got.height > 1000
    assert_frame_equal(got, want, rel_tol=1e-12, check_dtypes=True)


def test_subquery_and_column_names(con):
    q = "SELECT report_id AS id, drug AS var1, event AS var2, sex AS strat1 FROM reports WHERE year >= 2021"
    got = contingency_counts(con, q, report_col="id", drug_col="var1", event_col="var2", strata=["strat1"])
    src = report_rows().filter(pl.col("year") >= 2021)
    want = stratification.contingency_counts(src, strata=["sex"])
    assert_frame_equal(got, want, rel_tol=1e-12)


def test_sql_is_plain_text():
    sql = contingency_counts_sql("reports", strata=["sex"])
    assert sql.startswith("WITH src AS") and "IS NOT DISTINCT FROM" in sql

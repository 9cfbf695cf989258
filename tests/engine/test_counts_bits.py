"""The stratified expected count E is the same bits on DuckDB and on Spark (issue 15).

The MGPS prior is fitted on E; L-BFGS-B stops where the likelihood is flat (DuMouchel's α1 has a
standard error of ~2 on the CAERS data), so a last-bit difference in E moved EB05/EB95 by up to
~3e-4 between a DuckDB run and a Spark run. E is now summed in fixed point
(``warehouse.queries.counts``): the engines must agree bit for bit, and agree with the pure polars
reference (``signals.stratification``) to a few ulps."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from signals.stratification import contingency_counts as reference_counts
from warehouse.engine import engine_from_config
from warehouse.queries.counts import contingency_counts_expr, counts_source

pytestmark = pytest.mark.spark


def _reports(seed: int, n_reports: int) -> pl.DataFrame:
    """Report rows with skewed drug and event frequencies and two stratum columns (~30 strata)."""
    rng = np.random.default_rng(seed)
    rid = np.repeat(np.arange(n_reports), rng.integers(1, 4, n_reports))
    k = rid.size
    sex = rng.choice(["F", "M", None], n_reports)[rid]
    age = rng.choice([f"a{i}" for i in range(8)] + [None], n_reports)[rid]
    return pl.DataFrame(
        {
            "report_id": [f"r{i}" for i in rid],
            "drug": [f"d{i}" for i in rng.zipf(1.6, k) % 60],
            "event": [f"e{i}" for i in rng.zipf(1.4, k) % 150],
            "sex": sex,
            "age": age,
        }
    )


def test_stratified_e_is_bit_identical_on_duckdb_and_spark(spark):
    import duckdb

    rows = _reports(11, 3_000)
    strata = ["sex", "age"]
    con = duckdb.connect()
    duck = engine_from_config("duckdb", duckdb_con=con)
    spk = engine_from_config("spark", spark=spark)
    try:
        out = {}
        for name, eng in (("duckdb", duck), ("spark", spk)):
            t = eng.register("_bits_rows", rows)
            expr = contingency_counts_expr(counts_source(t, strata=strata), len(strata))
            out[name] = eng.to_polars(expr.order_by(["drug", "event"]))
            eng.drop("_bits_rows")
    finally:
        spk.close()
        duck.close()
        con.close()
    a, b = out["duckdb"], out["spark"]
    assert a.height > 500 and a.select("drug", "event").equals(b.select("drug", "event"))
    # the same bits, not merely close
    assert (a["e"].to_numpy().view(np.int64) == b["e"].to_numpy().view(np.int64)).all()
    ref = reference_counts(rows, report_col="report_id", drug_col="drug", event_col="event", strata=strata)
    ref = a.select("drug", "event").join(ref, on=["drug", "event"], how="left")
    np.testing.assert_allclose(a["e"].to_numpy(), ref["e"].to_numpy(), rtol=1e-14, atol=0)

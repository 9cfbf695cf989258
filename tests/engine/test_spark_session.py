"""The Spark session PV Trace builds computes in UTC and parses its configuration strictly."""

import datetime as dt

import pytest

from warehouse.engine.spark import _parse_conf


def test_conf_pairs_are_parsed_and_a_bad_pair_is_an_error():
    assert _parse_conf(" a=1 ; b = x=y ;") == {"a": "1", "b": "x=y"}
    assert _parse_conf(None) == {}
    with pytest.raises(ValueError, match="key=value"):
        _parse_conf("spark.sql.shuffle.partitions")


@pytest.mark.spark
def test_local_session_computes_dates_and_weeks_in_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    row = spark.sql(
        "SELECT to_date(timestamp'2026-03-29 23:30:00') AS d, "
        "CAST(date_trunc('week', timestamp'2026-03-29 23:30:00') AS date) AS w"
    ).collect()[0]
    # 2026-03-29 is a Sunday: the ISO week starts on Monday 2026-03-23, as in DuckDB's date_trunc
    assert row.d == dt.date(2026, 3, 29)
    assert row.w == dt.date(2026, 3, 23)

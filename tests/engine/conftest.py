"""A local Spark session shared by the tests of one worker (starting the JVM costs ~5 s)."""

import pytest


@pytest.fixture(scope="session")
def spark():
    from warehouse.engine.spark import SparkUnavailable, spark_session

    try:
        session = spark_session(master="local[1]", conf={"spark.sql.shuffle.partitions": "2"})
    except SparkUnavailable as exc:  # pragma: no cover - CI installs Java (Makefile system-deps)
        pytest.fail(str(exc))
    yield session
    session.stop()

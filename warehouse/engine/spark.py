"""The Apache Spark session PV Trace runs on, built from configuration.

Settings (environment, or the keyword arguments of :func:`spark_session`):

- ``PVTRACE_SPARK_REMOTE``: a Spark Connect URL (``sc://host:15002``; Databricks Connect uses
  the same protocol). When set, no local JVM is started.
- ``PVTRACE_SPARK_MASTER``: a classic master URL (``local[2]``, ``spark://host:7077``, ``yarn``);
  default ``local[N]`` with N the CPUs this process may use.
- ``PVTRACE_SPARK_CONF``: extra ``key=value`` pairs separated by ``;`` (for example the Delta Lake
  packages and catalog on a cluster that has them).

Every session computes in UTC (``spark.sql.session.timeZone``) so that date arithmetic and
``date_trunc('week', ...)`` agree with DuckDB, whose connections PV Trace also sets to UTC.
A local session needs a Java 17+ runtime; without one the error says so instead of py4j's trace.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

#: Settings every PV Trace session carries, whatever the master.
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

#: Settings for a single-machine session (tests, a laptop): no UI, few shuffle partitions.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "2g",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}


class SparkUnavailable(RuntimeError):
    """A Spark session cannot be started here (no Java runtime, or PySpark missing)."""


def _parse_conf(text: str | None) -> dict[str, str]:
    """``"a=1; b=2"`` → ``{"a": "1", "b": "2"}``; a pair without ``=`` is an error, not ignored."""
    out: dict[str, str] = {}
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"PVTRACE_SPARK_CONF: expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def _default_master() -> str:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return f"local[{max(1, cpus)}]"


def spark_session(
    master: str | None = None,
    remote: str | None = None,
    conf: dict[str, str] | None = None,
    app_name: str = "pvtrace",
) -> SparkSession:
    """Return the (possibly already running) Spark session for PV Trace.

    ``remote`` (or ``PVTRACE_SPARK_REMOTE``) wins over ``master``. Raises
    :class:`SparkUnavailable` with the reason when PySpark or, for a local session, Java is missing.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise SparkUnavailable("PySpark is not installed in this environment") from exc

    remote = remote or os.environ.get("PVTRACE_SPARK_REMOTE") or None
    settings = dict(BASE_CONF)
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    else:
        if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise SparkUnavailable(
                "a local Spark session needs a Java 17+ runtime: install it (Debian: "
                "apt-get install openjdk-17-jre-headless) or set PVTRACE_SPARK_REMOTE to a Spark Connect URL"
            )
        master = master or os.environ.get("PVTRACE_SPARK_MASTER") or _default_master()
        builder = builder.master(master)
        settings.update(LOCAL_CONF)
        if master.startswith("local"):  # Python UDF workers run this interpreter (its venv), not `python3`
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings.update(_parse_conf(os.environ.get("PVTRACE_SPARK_CONF")))
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    return session

"""Delta Lake tables written and read without a JVM (delta-rs), and read by DuckDB and Spark.

Why Delta Lake (not Iceberg): Delta is the native table format of Databricks, where pharma data
teams run Spark; ``deltalake`` (delta-rs) writes and reads it from Python with no JVM and no
catalog service, so the embedded default (DuckDB, one machine) and a Spark cluster share the same
files; partition overwrite by predicate (``replaceWhere``) is the primitive an incremental
update needs. Iceberg needs a catalog (REST, Hive, Glue) for atomic commits, and PyIceberg's
partition overwrite is younger; nothing here would use what Iceberg adds (hidden partitioning,
partition evolution).

Reading a snapshot:

* **DuckDB**: :func:`dataset` — delta-rs resolves the snapshot (the log's live files and their
  partition values) and hands an Arrow dataset that DuckDB scans with filter pushdown
  (``con.register(name, dataset(uri))``).
* **Spark with the Delta jars** (``io.delta:delta-spark`` on the cluster; Databricks has them):
  ``spark.read.format("delta").load(uri)`` — :func:`spark_read` uses it when the session has
  Delta's SQL extension configured.
* **Spark without them** (here: Maven Central is out of reach, so no ``io.delta`` jars):
  :func:`spark_read` asks delta-rs for the snapshot's file list and reads exactly those Parquet
  files with the table's schema, the partition columns parsed from the Hive-style paths
  (``day=2026-01-05/``) under ``basePath``. Reading the directory instead would be wrong: an
  overwritten partition's old files stay on disk until VACUUM. The file list is the snapshot
  only when the data files *are* the rows, which holds when the table uses none of the reader
  features that change that: no deletion vectors (rows deleted by a side file), no column
  mapping (Parquet column names are physical ids), no type widening; :func:`check_plain_parquet`
  refuses any reader feature outside :data:`PLAIN_READER_FEATURES`. Tables written by
  :func:`write_partitions` are reader version 1 (none of these). It also needs partition values
  that survive the path (dates, integers, plain strings: what the lake partitions by).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = ["PLAIN_READER_FEATURES", "check_plain_parquet", "dataset", "spark_read", "write_partitions"]

#: reader features under which a snapshot's Parquet files are exactly its rows
PLAIN_READER_FEATURES = frozenset({"timestampNtz", "vacuumProtocolCheck", "v2Checkpoint"})


def _literal(value) -> str:
    if isinstance(value, bool):
        raise TypeError("a boolean partition value is not supported")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"unsupported partition value {value!r} ({type(value).__name__})")


def exists(uri: str | Path) -> bool:
    return DeltaTable.is_deltatable(str(uri))


def write_partitions(uri: str | Path, data: pa.Table, partition_by: str | list[str], values: Iterable) -> int:
    """Replace the partitions ``values`` of the Delta table at ``uri`` with ``data`` in one commit
    (Delta's ``replaceWhere``), creating the table if it does not exist.

    ``partition_by`` is one column (``values``: its values) or several (``values``: one list of
    values per column; the partitions replaced are their cross product). Every row of ``data``
    must lie in them (delta-rs rejects the commit otherwise); partitions not named are untouched; a
    named partition with no row in ``data`` is emptied. Idempotent: writing the same ``data`` again
    gives the same snapshot. Returns the new version.
    """
    columns = [partition_by] if isinstance(partition_by, str) else list(partition_by)
    per_column = [values] if isinstance(partition_by, str) else list(values)
    if len(per_column) != len(columns):
        raise ValueError(f"one list of partition values per column of {columns}, got {len(per_column)}")
    per_column = [sorted(set(v)) for v in per_column]
    uri = str(uri)
    if not exists(uri):
        write_deltalake(uri, data, partition_by=columns, mode="overwrite")
    elif all(per_column):
        predicate = partition_predicate(dict(zip(columns, per_column, strict=True)))
        write_deltalake(uri, data, partition_by=columns, mode="overwrite", predicate=predicate)
    return DeltaTable(uri).version()


def partition_predicate(partitions: dict[str, Iterable]) -> str:
    """``col IN (values) AND ...``: the SQL predicate of a set of partitions (the cross product)."""
    return " AND ".join(f"{c} IN ({', '.join(_literal(v) for v in sorted(set(vs)))})" for c, vs in partitions.items())


def dataset(uri: str | Path, partitions: dict[str, Iterable] | None = None) -> pads.Dataset:
    """The current snapshot as an Arrow dataset (partition columns included), for DuckDB or Arrow;
    with ``partitions`` ({column: values}), only the files of those partitions: the log's partition
    values prune them before any fragment is built (with thousands of files, building every
    fragment costs seconds)."""
    table = DeltaTable(str(uri))
    if partitions and all(partitions.values()):
        return table.to_pyarrow_dataset(file_pruning_predicate=partition_predicate(partitions))
    return table.to_pyarrow_dataset()


def check_plain_parquet(table: DeltaTable) -> None:
    """Raise ``ValueError`` unless the snapshot's Parquet files are exactly its rows (module doc)."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    if protocol.min_reader_version == 2:
        raise ValueError("the Delta table uses column mapping (reader version 2): read it with Delta's own reader")
    odd = features - PLAIN_READER_FEATURES
    if odd:
        raise ValueError(
            f"the Delta table uses reader feature(s) {sorted(odd)} (e.g. deletion vectors, column mapping): "
            "its Parquet files are not its rows; read it with spark.read.format('delta') on a cluster with the "
            "io.delta jars"
        )


def _has_delta_reader(spark: SparkSession) -> bool:
    try:
        return "DeltaSparkSessionExtension" in (spark.conf.get("spark.sql.extensions", "") or "")
    except Exception:  # pragma: no cover - a Connect session may refuse the lookup
        return False


def spark_read(spark: SparkSession, uri: str | Path) -> SparkFrame:
    """The current snapshot of the Delta table at ``uri`` as a Spark DataFrame (module doc)."""
    uri = str(uri)
    if _has_delta_reader(spark):
        return spark.read.format("delta").load(uri)
    table = DeltaTable(uri)
    check_plain_parquet(table)
    arrow_schema = dataset(uri).schema
    empty = spark.createDataFrame(arrow_schema.empty_table())
    files = table.file_uris()
    if not files:
        return empty
    return spark.read.schema(empty.schema).option("basePath", table.table_uri).parquet(*files)

"""Storage at scale (issue 15): PV Trace's inputs as Delta Lake tables, partitioned for incremental updates.

``delta.py`` writes partitions by predicate and reads a snapshot from DuckDB (Arrow dataset) and
Spark (native Delta reader, or the snapshot's Parquet files); ``store.py`` the lake's tables and
their incremental, idempotent landing; ``buckets.py`` the one hash-bucket rule shared with the
statistics fan-out (``warehouse.engine.fanout``). The product runs without a lake: it is for
deployments whose inputs outgrow one DuckDB file (docs/scale.md).
"""

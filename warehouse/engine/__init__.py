"""Execution engines for the heavy set-based steps (docs/architecture.md, "Engines").

Embedded DuckDB is the default; Apache Spark (local, a cluster, or Spark Connect / Databricks
Connect) runs the same Ibis expressions when the data outgrow one machine. `spark.py` builds the
Spark session from configuration; nothing here imports pyspark until a Spark engine is asked for.
"""

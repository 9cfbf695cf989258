"""Execution engines for the heavy set-based steps (docs/architecture.md, "Engines").

Embedded DuckDB is the default; Apache Spark (local, a cluster, or Spark Connect / Databricks
Connect) runs the same Ibis expressions when the data outgrow one machine. `spark.py` builds the
Spark session from configuration; nothing here imports pyspark until a Spark engine is asked for.
"""

__all__ = ["ENGINES", "DuckDBEngine", "Engine", "SparkEngine", "engine_from_config"]


def __getattr__(name: str):
    """``from warehouse.engine import Engine, engine_from_config`` without importing Ibis up front."""
    if name in __all__:
        from warehouse.engine import engines

        return getattr(engines, name)
    raise AttributeError(name)

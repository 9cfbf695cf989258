"""Dagster resources: where the warehouse, the inbox and the outputs live.

Defaults come from environment variables so that ``pvtrace run``, ``dagster dev`` and the
schedules agree: ``PVTRACE_WAREHOUSE`` (DuckDB file), ``PVTRACE_INBOX`` and ``PVTRACE_OUTPUT``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from assets.engine import default_engine
from warehouse.files import private_dir, restrict_umask
from warehouse.pseudonym import load_salt
from warehouse.schema import connect

DEFAULT_INBOX = "inbox"
DEFAULT_OUTPUT = "output"
DEFAULT_WAREHOUSE = "output/pvtrace.duckdb"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. DuckDB allows one writing process: the job runs in process.

    ``published``: when ``path`` is a working copy that a run publishes over another file
    (assets/cli.py run_pipeline), that file; the files beside the warehouse (the pseudonym salt)
    are the published warehouse's, so keys stay the same across generations."""

    path: str
    published: str = ""

    @contextmanager
    def connect(self, read_only: bool = False):
        restrict_umask()  # the warehouse and its WAL: 0600 from the first byte
        if self.path != ":memory:":
            private_dir(Path(self.path).parent)
        con = connect(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self):
        """A connection inside one transaction: a failing step leaves the warehouse as it was."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def pseudonym_salt(self) -> str:
        return load_salt(self.published or self.path)


class InboxResource(dg.ConfigurableResource):
    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


class OutputResource(dg.ConfigurableResource):
    path: str

    def folder(self, *parts: str) -> Path:
        restrict_umask()  # reports, alerts, E2B files: 0600 in 0700 folders
        return private_dir(Path(self.path, *parts))


def default_resources(
    inbox: str | None = None,
    warehouse: str | None = None,
    output: str | None = None,
    published: str = "",
    engine: str | None = None,
) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(
            path=warehouse or os.environ.get("PVTRACE_WAREHOUSE", DEFAULT_WAREHOUSE), published=published
        ),
        "inbox": InboxResource(path=inbox or os.environ.get("PVTRACE_INBOX", DEFAULT_INBOX)),
        "output": OutputResource(path=output or os.environ.get("PVTRACE_OUTPUT", DEFAULT_OUTPUT)),
        "engine": default_engine(engine),  # issue 15: PVTRACE_ENGINE=duckdb|spark
    }

"""Pseudonymous patient keys: a salted SHA-256 of the platform's patient reference.

The raw reference never reaches a table. The salt comes from ``PVTRACE_PSEUDONYM_SALT``;
without it, a random salt is created once beside the warehouse file (mode 0600) so keys stay
stable across runs of the same warehouse — production deployments set the variable instead.
Keys are 128-bit prefixes of the digest: collisions are negligible at any realistic size.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import polars as pl

SALT_ENV = "PVTRACE_PSEUDONYM_SALT"


def load_salt(warehouse_path: str | Path) -> str:
    salt = os.environ.get(SALT_ENV)
    if salt:
        return salt
    if str(warehouse_path) == ":memory:":
        return secrets.token_hex(32)
    salt_file = Path(f"{warehouse_path}.salt")
    if not salt_file.exists():
        salt_file.parent.mkdir(parents=True, exist_ok=True)
        salt_file.write_text(secrets.token_hex(32))
        salt_file.chmod(0o600)
    return salt_file.read_text().strip()


def pseudonymise(refs: pl.Expr, salt: str) -> pl.Expr:
    """Vectorised salted hash of a string column (null stays null)."""
    import hashlib

    def _hash(batch: pl.Series) -> pl.Series:
        prefix = salt.encode()
        return pl.Series(
            [None if r is None else hashlib.sha256(prefix + r.encode()).hexdigest()[:32] for r in batch],
            dtype=pl.String,
        )

    return refs.map_batches(_hash, return_dtype=pl.String)


def pseudonym_sql(column: str) -> str:
    """The same key as :func:`pseudonymise`, computed inside DuckDB; bind the salt as ``$salt``.

    ``sha256`` of the UTF-8 bytes of salt + reference, hex, first 32 characters — identical
    to the Python path, so deliveries (hashed in SQL) and cases (hashed in Python) share keys.
    """
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE left(sha256($salt || {column}), 32) END"

"""Pseudonymous patient keys: a salted SHA-256 of the platform's patient reference.

The raw reference never reaches a table. Where the salt comes from (:func:`load_salt`), first match:

1. ``PVTRACE_PSEUDONYM_SALT``: the salt itself (e.g. injected by a secret manager);
2. ``PVTRACE_PSEUDONYM_SALT_FILE``: the path of a key file *outside* the data folder (refused if it
   lies inside the warehouse's folder: a copy of the data folder must not carry its own key);
3. the demo default: ``<warehouse>.salt`` beside the warehouse, created ``0600`` from the first
   byte (:func:`warehouse.files.write_private`). Outside the demo (``PVTRACE_DEMO`` unset) this
   logs a warning: production sets 1 or 2.

Keys stay stable across runs as long as the salt does; rotating it re-keys every patient (the
procedure is in the README's security section). Keys are 128-bit prefixes of the digest:
collisions are negligible at any realistic size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

import polars as pl

from warehouse.files import write_private

SALT_ENV = "PVTRACE_PSEUDONYM_SALT"
SALT_FILE_ENV = "PVTRACE_PSEUDONYM_SALT_FILE"
DEMO_ENV = "PVTRACE_DEMO"
MIN_SALT_CHARS = 16

log = logging.getLogger("pvtrace.pseudonym")
_warned: set[str] = set()  # warehouses already warned about (once per process, not once per asset)


class SaltError(ValueError):
    """The configured salt or key file cannot be used."""


def _checked(salt: str, where: str) -> str:
    salt = salt.strip()
    if len(salt) < MIN_SALT_CHARS:
        raise SaltError(f"the pseudonym salt from {where} is shorter than {MIN_SALT_CHARS} characters")
    return salt


def load_salt(warehouse_path: str | Path, *, demo: bool | None = None) -> str:
    """The pseudonym salt for this warehouse (see the module docstring for the order of sources).

    ``demo`` (default: ``PVTRACE_DEMO=1`` in the environment) silences the warning about the salt
    kept beside the warehouse."""
    salt = os.environ.get(SALT_ENV)
    if salt:
        return _checked(salt, SALT_ENV)
    key_file = os.environ.get(SALT_FILE_ENV)
    if key_file:
        key_path = Path(key_file).expanduser().resolve()
        if str(warehouse_path) != ":memory:":
            data_dir = Path(warehouse_path).resolve().parent
            if key_path.is_relative_to(data_dir):
                raise SaltError(
                    f"{SALT_FILE_ENV} points inside the warehouse's folder ({data_dir}): keep the key outside the data "
                    "folder, so that a copy or backup of the data does not carry its own key"
                )
        try:
            text = key_path.read_text()
        except OSError as exc:
            raise SaltError(f"{SALT_FILE_ENV}: cannot read the key file: {exc.strerror}") from None
        if os.stat(key_path).st_mode & 0o077:
            log.warning("the pseudonym key file %s is readable by other users: chmod 600 it", key_path)
        return _checked(text, SALT_FILE_ENV)
    if str(warehouse_path) == ":memory:":
        return secrets.token_hex(32)
    demo = os.environ.get(DEMO_ENV) == "1" if demo is None else demo
    if not demo and str(warehouse_path) not in _warned:
        _warned.add(str(warehouse_path))
        log.warning(
            "neither %s nor %s is set: using the demo salt kept beside the warehouse (%s.salt); set one of them "
            "in production",
            SALT_ENV,
            SALT_FILE_ENV,
            Path(warehouse_path).name,
        )
    salt_file = Path(f"{warehouse_path}.salt")
    if not salt_file.exists():
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile: use theirs
            write_private(salt_file, secrets.token_hex(32))
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

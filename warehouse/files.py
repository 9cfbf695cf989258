"""Private files and folders: what PV Trace writes is readable by its own user only, from the first byte.

The warehouse, its WAL, the dashboard's snapshot, the review store (password hashes, sessions),
the pseudonym salt and the output folders all hold personal or secret data. A file created
world-readable and ``chmod``-ed afterwards is readable in between, and DuckDB creates its files
(and the WAL, later) itself, so the only way to have them private from the first byte is the
process's file-creation mask:

* :func:`restrict_umask` sets the mask to at least ``0o077`` (new files ``0600``, new folders
  ``0700``). The ``pvtrace`` command, the dashboard and the Dagster resources call it before they
  create anything. It only ever *adds* bits to the mask, so calling it again is harmless.
* :func:`private_dir` creates a folder (and its missing parents) ``0700``.
* :func:`write_private` creates a new file with ``os.open(..., 0o600)`` and ``O_EXCL``: never an
  existing file, never a window with wider permissions.

Folders the user already had (``/srv/pv``) are left as they are: only what PV Trace creates is
made private.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def restrict_umask() -> int:
    """Make every file and folder this process creates from now on private; return the previous mask."""
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    return old


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and its missing parents as ``0700`` folders (existing folders are left alone)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask; never wider than 0700
    return path


def write_private(path: str | Path, data: str | bytes) -> Path:
    """Create a new file readable and writable by this user only and write ``data`` (FileExistsError if it exists)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return path


def is_private(path: str | Path) -> bool:
    """True when neither group nor others have any permission on ``path``."""
    return (os.stat(path).st_mode & 0o077) == 0

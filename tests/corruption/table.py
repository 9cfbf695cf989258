"""Print the corruption table for the closing note: each corruption → what the load did → rows of the
touched file read / loaded / quarantined, the reason and line.  ``python -m tests.corruption.table``"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.corruption.common import CORRUPTIONS, load_inbox, manifest
from tests.mini_inbox import CLOCK, write_mini_inbox
from warehouse.inputs.inbox import CLOCK_ENV
from warehouse.schema import connect


def main() -> None:
    os.environ.setdefault(CLOCK_ENV, CLOCK)
    print("| corruption | file | what the load did | read | loaded | quarantined |")
    print("|---|---|---|---:|---:|---:|")
    for c in CORRUPTIONS:
        with tempfile.TemporaryDirectory() as tmp:
            inbox = write_mini_inbox(Path(tmp) / "inbox")
            c.apply(inbox)
            con = connect(":memory:")
            load_inbox(con, inbox)
            row = manifest(con, inbox)[c.file]
            q = con.sql(
                "SELECT reason, line FROM quarantine WHERE source_file = ? AND reason = ? ORDER BY line LIMIT 1",
                params=[str(inbox / c.file), c.reason],
            ).fetchone()
        if c.reason is None:
            did = "file loaded, 0 rows (nothing to quarantine)"
        elif row["status"] == "rejected":
            did = f"file quarantined whole: `{row['error'][:60]}`; run goes on"
        else:
            did = f"row quarantined alone: `{q[0]}` at line {q[1]}; the file's other rows load"
        print(f"| {c.what} | {c.file} | {did} | {row['read']} | {row['loaded']} | {row['quarantined']} |")


if __name__ == "__main__":
    main()

"""Ways to break an inbox, one at a time: what a new user's corrupted files look like.

Each corruption edits an inbox in place (the mini inbox of the tests, or a generated world) and
says which file it touched, the quarantine reason PV Trace must give, and — when the corruption
is a single row — the line it put there. The corruption suite (tests/corruption) applies each
to a fresh inbox and checks that the run finishes and every row of every file is accounted for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Corruption:
    name: str
    what: str
    kind: str  # load_manifest kind of the touched file
    file: str  # relative to the inbox
    reason: str | None  # the quarantine reason expected (None: nothing to quarantine)
    line: int | None  # the line (CSV/JSONL) or row (Parquet) of the bad row; None for a whole file
    apply: Callable[[Path], None]


def _deliveries(inbox: Path) -> Path:
    return sorted((inbox / "deliveries").glob("*.csv"))[0]


def _cases(inbox: Path) -> Path:
    return sorted((inbox / "cases").glob("*.jsonl"))[0]


def _first_case(inbox: Path) -> dict:
    with _cases(inbox).open("rb") as fh:
        return json.loads(fh.readline())


def _insert_line(path: Path, at: int, line: bytes) -> None:
    """Put ``line`` so that it becomes line ``at`` (1-based) of the file."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(at - 1, line.rstrip(b"\n") + b"\n")
    path.write_bytes(b"".join(lines))


def _delivery_row(inbox: Path, **values: str) -> bytes:
    """A copy of the file's first data row with some fields replaced (text, unquoted)."""
    import csv
    import io

    path = _deliveries(inbox)
    with path.open(encoding="utf-8") as fh:
        header, first = list(csv.reader([fh.readline(), fh.readline()]))
    row = dict(zip(header, first, strict=True)) | values
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row[c] for c in header])
    return buf.getvalue().encode()


def short_row(inbox: Path) -> None:
    row = _delivery_row(inbox, delivery_id="BAD-SHORT").rstrip(b"\n").rsplit(b",", 1)[0]  # one field fewer
    _insert_line(_deliveries(inbox), 3, row)


def long_row(inbox: Path) -> None:
    row = _delivery_row(inbox, delivery_id="BAD-LONG").rstrip(b"\n") + b",extra"
    _insert_line(_deliveries(inbox), 3, row)


def blank_delivery_id(inbox: Path) -> None:
    _insert_line(_deliveries(inbox), 3, _delivery_row(inbox, delivery_id=""))


def field_over_2mb(inbox: Path) -> None:
    _insert_line(_deliveries(inbox), 3, _delivery_row(inbox, delivery_id="BAD-HUGE", pharmacy_id="P" * 2_500_000))


def quantity_fraction(inbox: Path) -> None:
    _insert_line(_deliveries(inbox), 3, _delivery_row(inbox, delivery_id="BAD-QTY", quantity="2.7"))


def _quantity_million(code: str, delivered_at: str) -> Callable[[Path], None]:
    def apply(inbox: Path) -> None:
        _insert_line(
            _deliveries(inbox),
            3,
            _delivery_row(
                inbox, delivery_id="BAD-MILLION", pack_code=code, delivered_at=delivered_at, quantity="1000000"
            ),
        )

    return apply


def empty_csv(inbox: Path) -> None:
    (inbox / "deliveries" / "deliveries_2099-01.csv").write_bytes(b"")


def header_only_csv(inbox: Path) -> None:
    header = _deliveries(inbox).read_bytes().splitlines(keepends=True)[0]
    (inbox / "deliveries" / "deliveries_2099-02.csv").write_bytes(header)


def utf16_csv(inbox: Path) -> None:
    text = _deliveries(inbox).read_text(encoding="utf-8")
    (inbox / "deliveries" / "deliveries_2099-03.csv").write_bytes(text.encode("utf-16"))


def non_utf8_case(inbox: Path) -> None:
    path = _cases(inbox)
    first = _first_case(inbox)
    first.update(case_id="BAD-LATIN1", narrative="café")
    _insert_line(path, 2, json.dumps(first, ensure_ascii=False).encode("latin-1"))


def received_2031(inbox: Path) -> None:
    path = _cases(inbox)
    first = _first_case(inbox)
    first.update(case_id="BAD-2031", received_on="2031-01-01")
    _insert_line(path, 2, json.dumps(first).encode())


def truncated_jsonl(inbox: Path) -> None:
    first, second = _first_case(inbox), _first_case(inbox)
    first.update(case_id="TRUNC-1")
    second.update(case_id="TRUNC-2")
    cut = json.dumps(second)
    (inbox / "cases" / "cases_2099-01.jsonl").write_text(
        json.dumps(first) + "\n" + cut[: len(cut) // 2], encoding="utf-8"
    )


def zero_byte_parquet(inbox: Path) -> None:
    (inbox / "medication_logs" / "medication_log_2099-01.parquet").write_bytes(b"")


def corrupt_parquet(inbox: Path) -> None:
    good = sorted((inbox / "packs").glob("*.parquet"))[0].read_bytes()
    (inbox / "packs" / "packs_9999.parquet").write_bytes(good[: len(good) // 2] + b"\x00garbage" + good[-64:])


def truncated_jsonld(inbox: Path) -> None:
    doc = sorted((inbox / "supply").glob("*.jsonld"))[0].read_bytes()
    (inbox / "supply" / "epcis_2099-01.jsonld").write_bytes(doc[: len(doc) // 2])


def corruptions(million_code: str, million_at: str) -> list[Corruption]:
    """Every corruption; ``million_code`` is a pack not yet delivered whose batch has real deliveries
    later than ``million_at`` (the mini inbox: tests/mini_inbox.MILLION_PACK)."""
    d = "deliveries/deliveries_2025-01.csv"
    c = "cases/cases_2025-02.jsonl"
    return [
        Corruption(
            "short_row", "a delivery row with one field too few", "deliveries", d, "wrong_field_count", 3, short_row
        ),
        Corruption(
            "long_row", "a delivery row with one field too many", "deliveries", d, "wrong_field_count", 3, long_row
        ),
        Corruption(
            "blank_delivery_id",
            "a delivery row with an empty delivery_id",
            "deliveries",
            d,
            "missing_key",
            3,
            blank_delivery_id,
        ),
        Corruption(
            "field_over_2mb", "a delivery row with a 2.5 MB field", "deliveries", d, "line_too_long", 3, field_over_2mb
        ),
        Corruption("quantity_2.7", "quantity 2.7", "deliveries", d, "bad_quantity", 3, quantity_fraction),
        Corruption(
            "quantity_1000000",
            "quantity 1,000,000 on a batch that released hundreds, before its real deliveries",
            "deliveries",
            d,
            "exceeds_released_units",
            3,
            _quantity_million(million_code, million_at),
        ),
        Corruption(
            "empty_csv",
            "a 0-byte deliveries CSV",
            "deliveries",
            "deliveries/deliveries_2099-01.csv",
            "empty_file",
            None,
            empty_csv,
        ),
        Corruption(
            "header_only_csv",
            "a deliveries CSV with its header and no row",
            "deliveries",
            "deliveries/deliveries_2099-02.csv",
            None,
            None,
            header_only_csv,
        ),
        Corruption(
            "utf16_csv",
            "a deliveries CSV saved as UTF-16",
            "deliveries",
            "deliveries/deliveries_2099-03.csv",
            "bad_encoding",
            None,
            utf16_csv,
        ),
        Corruption(
            "non_utf8_case", "a case line in Latin-1 (a non-UTF-8 byte)", "cases", c, "bad_encoding", 2, non_utf8_case
        ),
        Corruption("received_2031", "a case received_on 2031-01-01", "cases", c, "after_run_clock", 2, received_2031),
        Corruption(
            "truncated_jsonl",
            "a cases file cut in the middle of a line",
            "cases",
            "cases/cases_2099-01.jsonl",
            "bad_json",
            2,
            truncated_jsonl,
        ),
        Corruption(
            "zero_byte_parquet",
            "a 0-byte medication-log Parquet file",
            "medication_logs",
            "medication_logs/medication_log_2099-01.parquet",
            "empty_file",
            None,
            zero_byte_parquet,
        ),
        Corruption(
            "corrupt_parquet",
            "a pack Parquet file with a damaged middle",
            "packs",
            "packs/packs_9999.parquet",
            "corrupt_parquet",
            None,
            corrupt_parquet,
        ),
        Corruption(
            "truncated_jsonld",
            "an EPCIS JSON-LD document cut in half",
            "supply",
            "supply/epcis_2099-01.jsonld",
            "bad_json",
            None,
            truncated_jsonld,
        ),
    ]

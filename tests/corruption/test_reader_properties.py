"""Property-based: on arbitrary input the inbox readers raise only their documented errors.

- ``parse_case_line`` raises only ``CaseRejected`` (a reason and a detail), whatever the text or JSON;
- a loader given arbitrary bytes as one of its files finishes: the file, or its rows, are
  quarantined and every row is accounted for (the loaders' documented error, ``InboxError``, is
  only for an inbox with no file of a required kind);
- a quarantined raw copy never carries the patient reference it was given.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from assets.ingestion import accounting_violations
from tests.corruption.common import SALT, load_inbox
from tests.mini_inbox import CLOCK, case, write_mini_inbox
from warehouse.inputs.inbox import CLOCK_ENV, redact_text
from warehouse.inputs.platform.cases import CaseRejected, parse_case_line
from warehouse.inputs.platform.deliveries import load_deliveries
from warehouse.schema import connect

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
CASE_KEYS = list(case("X"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_case_or_a_case_rejected(text):
    try:
        parse_case_line(text)
    except CaseRejected as exc:
        assert exc.reason and isinstance(exc.detail, str)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(CASE_KEYS), json_values, max_size=len(CASE_KEYS)))
def test_any_json_in_place_of_case_fields_gives_a_case_or_a_case_rejected(overrides):
    doc = case("P1") | overrides
    try:
        parse_case_line(json.dumps(doc))
    except CaseRejected as exc:
        assert exc.reason


@settings(max_examples=200, deadline=None)
@given(
    ref=st.from_regex(r"PAT-[A-Za-z0-9]{1,12}", fullmatch=True),
    cut=st.integers(min_value=0, max_value=400),
    narrative_has_ref=st.booleans(),
)
def test_a_redacted_raw_row_never_carries_the_patient_reference(ref, cut, narrative_has_ref):
    doc = case("R1", patient_ref=ref, narrative=f"seen as {ref}" if narrative_has_ref else "n")
    line = json.dumps(doc)
    raw = line[: len(line) - cut] if cut < len(line) else line  # truncated lines too
    assert ref not in redact_text(raw, SALT, [ref])


@pytest.fixture(scope="module")
def loaded_mini(tmp_path_factory):
    """A clean mini inbox loaded once; each example copies it and replaces one file."""
    root = tmp_path_factory.mktemp("props")
    return write_mini_inbox(root / "inbox")


KINDS = {
    # kind: (file written, accounting kinds checked)
    "deliveries": "deliveries/deliveries_2099-01.csv",
    "cases": "cases/cases_2099-01.jsonl",
    "supply": "supply/epcis_2099-01.jsonld",
    "packs": "packs/packs_9999.parquet",
    "medication_logs": "medication_logs/medication_log_2099-01.parquet",
}
csv_like = st.lists(
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(['"', ",", "\n", "PAT-9"]),
        max_size=10,
    ),
    max_size=6,
).map(lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8"))


# each example loads a whole inbox (~1 s): few examples, no shrinking (a failure prints its bytes)
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.binary(max_size=300) | csv_like)
def test_any_bytes_as_an_inbox_file_are_quarantined_or_loaded_never_raised(loaded_mini, kind, data, monkeypatch):
    monkeypatch.setenv(CLOCK_ENV, CLOCK)
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        shutil.copytree(loaded_mini, inbox)
        if kind == "deliveries":  # a plausible header first, so the rows themselves are exercised
            data = b"delivery_id,delivered_at,pack_code,patient_ref,pharmacy_id,region,country,quantity\n" + data
        (inbox / KINDS[kind]).write_bytes(data)
        con = connect(":memory:")
        load_inbox(con, inbox)
        for k in ("packs", "supply", "deliveries", "medication_logs", "cases"):
            assert accounting_violations(con, k) == {}, k
        # a raw delivery row kept in quarantine has its patient_ref field replaced by the pseudonym
        # (rows whose fields cannot be placed keep no raw copy at all)
        for (raw,) in con.sql("SELECT raw FROM quarantine WHERE stage = 'deliveries' AND raw IS NOT NULL").fetchall():
            fields = next(csv.reader([raw]))
            assert fields[3] == "" or fields[3].startswith("pseudonym:"), raw
        load_deliveries(con, inbox, SALT)  # idempotent on the same bytes
        assert accounting_violations(con, "deliveries") == {}

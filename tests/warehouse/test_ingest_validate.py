"""The ingest's generic validation (warehouse/inputs/regulator/ingest.py ``_validate``) on staged rows broken
every way it names: each offending row quarantined with its reason and removed, every other row kept."""

from __future__ import annotations

import datetime as dt

from warehouse.inputs.regulator import create_staging
from warehouse.inputs.regulator.ingest import _validate
from warehouse.schema import connect

D = dt.date(2024, 1, 5)


def test_validate_quarantines_each_bad_row_and_keeps_the_rest():
    con = connect(":memory:")
    create_staging(con)
    cases = [
        ("C1", 1, D, "a.xml", 0),  # the same case version twice: the later document (1) is kept
        ("C1", 1, D, "b.xml", 1),
        ("C2", 1, None, "a.xml", 0),  # no received date
        (None, 1, D, "a.xml", 0),  # no case id
        ("C3", 2, D, "a.xml", 0),
    ]
    con.executemany(
        "INSERT INTO stg_case (case_id, version, received_on, source_file, _doc) VALUES (?, ?, ?, ?, ?)", cases
    )
    drugs = [
        ("C1", 1, 1, "suspect", 0),  # set aside with its document
        ("C1", 1, 1, "suspect", 1),
        ("C3", 2, 1, "suspect", 0),
        ("C3", 2, 1, "suspect", 0),  # the same drug_seq twice
        ("C3", 2, 2, None, 0),  # no role
        ("C9", 1, 1, "suspect", 0),  # no such case version
    ]
    con.executemany("INSERT INTO stg_drug (case_id, version, drug_seq, role, _doc) VALUES (?, ?, ?, ?, ?)", drugs)
    reactions = [("C1", 1, 1, "Rash", 1), ("C3", 2, 1, " ", 0), ("C3", 2, 2, "Fever", 0), ("C8", 1, 1, "Fever", 0)]
    con.executemany(
        "INSERT INTO stg_reaction (case_id, version, reaction_seq, pt, _doc) VALUES (?, ?, ?, ?, ?)", reactions
    )

    _validate(con)

    reasons = sorted(r for (r,) in con.sql("SELECT reason FROM stg_quarantine").fetchall())
    assert reasons == sorted(
        [
            "duplicate_case_version",
            "missing_received_date",
            "missing_case_key",
            "duplicate_drug_seq",
            "invalid_role",
            "orphan_drug",
            "missing_pt",
            "orphan_reaction",
        ]
    )
    assert con.sql("SELECT case_id, _doc FROM stg_case ORDER BY 1").fetchall() == [("C1", 1), ("C3", 0)]
    assert con.sql("SELECT case_id, drug_seq, _doc FROM stg_drug ORDER BY 1, 2").fetchall() == [
        ("C1", 1, 1),
        ("C3", 1, 0),
    ]
    assert con.sql("SELECT case_id, pt FROM stg_reaction ORDER BY 1").fetchall() == [("C1", "Rash"), ("C3", "Fever")]
    # on clean staging nothing is quarantined and nothing removed
    con.execute("DELETE FROM stg_quarantine")
    _validate(con)
    assert con.sql("SELECT count(*) FROM stg_quarantine").fetchone()[0] == 0
    assert con.sql("SELECT count(*) FROM stg_drug").fetchone()[0] == 2

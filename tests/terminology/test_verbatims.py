"""The synthetic patients' verbatims (sample_data.verbatims): what they write and the truth kept about it."""

from __future__ import annotations

import json

from sample_data.verbatims import LANGUAGE_OF_COUNTRY, patient_verbatims


def _line(case_id: str, version: int, source: str, country: str, pts: list[str]) -> str:
    reactions = [{"pt": p, "soc": "x", "onset_date": f"2025-01-0{i + 1}"} for i, p in enumerate(pts)]
    doc = {"case_id": case_id, "version": version, "source": source, "country": country, "reactions": reactions}
    return json.dumps(doc)


def test_patients_write_words_doctors_keep_pts_and_the_truth_lists_the_pts():
    lines = {
        "2025-01": [
            _line(f"PVT-{c}-2025-{i:06d}", 1, "patient_app", c, ["Nausea", "Headache"])
            for c in ("CN", "JP", "US")
            for i in range(40)
        ]
        + [_line("PVT-DE-2025-000999", 1, "hcp", "DE", ["Rash"]), '{"case_id": "PVT-trunc']
    }
    out, truth = patient_verbatims(lines, seed=3)
    docs = [json.loads(x) for x in out["2025-01"][:-1]]
    assert out["2025-01"][-1] == '{"case_id": "PVT-trunc'  # a truncated line stays as it was
    assert docs[-1]["reactions"][0]["pt"] == "Rash"  # the pharmacist's / doctor's report keeps its PT
    for d in docs[:-1]:
        assert all("pt" not in r and r["verbatim"] for r in d["reactions"])
        assert {r["language"] for r in d["reactions"]} == {LANGUAGE_OF_COUNTRY.get(d["country"], "en")}
    # every true PT of every patient case is in the truth, once; some cases name both in one sentence
    assert truth["case_id"].n_unique() == 120
    assert (truth["true_pts"].list.len() == 2).any() and (truth["true_pts"].list.len() == 1).any()
    assert sorted(truth.explode("true_pts")["true_pts"].to_list()) == sorted(["Nausea", "Headache"] * 120)


def test_a_follow_up_repeats_the_initial_words_and_the_seed_decides():
    first = {"m": [_line("PVT-CN-2025-000001", 1, "patient_app", "CN", ["Dizziness", "Nausea", "Rash"])]}
    follow = {"m": [_line("PVT-CN-2025-000001", 2, "patient_app", "CN", ["Dizziness", "Nausea", "Rash"])]}
    a, _ = patient_verbatims(first, seed=1)
    b, _ = patient_verbatims(follow, seed=1)
    assert json.loads(a["m"][0])["reactions"] == json.loads(b["m"][0])["reactions"]
    words = {json.dumps(json.loads(patient_verbatims(first, seed=s)[0]["m"][0])["reactions"]) for s in range(8)}
    assert len(words) > 1

"""assets.evaluation.product_alerts: every product-level alert classified against the world's truth."""

import datetime as dt

import polars as pl

from assets.evaluation import EXPECTATION_ORDER, product_alerts

TRUTH = {
    "signals": [{"kind": "product", "product_id": "P1", "pt": "Hepatotoxicity"}],
    "known_adrs": [{"product_id": "P1", "pt": "Diarrhoea"}, {"product_id": "P1", "pt": "Hepatotoxicity"}],
    "background": {
        "indication_events": [{"product_id": "P2", "pt": "Pneumonia"}],
        "stimulated_reporting": [{"product_id": "P2", "pt": "Tendonitis"}],
    },
}


def _disp(rows):
    return pl.DataFrame(
        rows,
        schema={"cutoff": pl.Date, "product": pl.String, "pt": pl.String, "rules_fired": pl.List(pl.String)},
        orient="row",
    )


def test_each_alert_gets_the_most_specific_kind_and_its_first_date():
    d1, d2 = dt.date(2024, 3, 3), dt.date(2024, 3, 10)
    disp = _disp(
        [
            (d2, "P1", "Hepatotoxicity", ["evans"]),
            (d1, "P1", "Hepatotoxicity", ["ema_sdr"]),
            (d1, "P1", "Diarrhoea", ["evans"]),
            (d1, "P2", "Pneumonia", ["who_umc"]),
            (d1, "P2", "Tendonitis", ["evans"]),
            (d1, "P2", "Rash", ["evans"]),
            (d1, "P2", "Cough", ["evans"]),
        ]
    )
    rates = pl.DataFrame({"product_id": ["P2", "P2"], "pt": ["Rash", "Cough"], "background_multiplier": [1.8, 1.1]})
    out = {(r["product"], r["pt"]): r for r in product_alerts(disp, TRUTH, rates).iter_rows(named=True)}
    hep = out[("P1", "Hepatotoxicity")]
    assert hep["kind"] == "planted" and hep["first_alert"] == d1 and hep["rules"] == "ema_sdr, evans"
    assert out[("P1", "Diarrhoea")]["kind"] == "known ADR"
    assert out[("P2", "Pneumonia")]["kind"] == "indication"
    assert out[("P2", "Tendonitis")]["kind"] == "stimulated reporting"
    assert out[("P2", "Rash")]["kind"] == "elevated background"
    assert out[("P2", "Cough")]["kind"] == "unexpected"
    # without the rates file nothing is 'elevated background'
    plain = product_alerts(disp, TRUTH)
    assert set(plain["kind"]) <= set(EXPECTATION_ORDER) - {"elevated background"}


def test_null_world_has_no_planted_kind():
    disp = _disp([(dt.date(2024, 3, 3), "P1", "Hepatotoxicity", ["evans"])])
    out = product_alerts(disp, {**TRUTH, "signals": []})
    assert out["kind"].to_list() == ["known ADR"]

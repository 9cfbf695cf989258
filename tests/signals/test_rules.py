import polars as pl
import pytest

from signals.rules import RULE_NAMES, RuleThresholds, apply_rules


def scored():
    return pl.DataFrame(
        {
            "n11": [3, 2, 5, 4, 4, 10],
            "prr": [2.0, 5.0, 1.9, None, 3.0, 2.5],
            "chi2": [4.0, 9.0, 10.0, 10.0, 3.99, 5.0],
            "chi2_yates": [3.0, 8.0, 9.0, 9.0, 3.0, 4.5],
            "ror_lo95": [1.01, 3.0, 1.5, 1.2, 1.0, None],
            "ic025": [0.01, 0.0, -0.1, 0.5, None, 1.0],
            "eb05": [2.0, 1.99, 3.0, None, 2.5, 0.1],
            "additional_monitoring": [False, False, False, True, None, False],
        }
    )


def test_rule_names_stable():
    assert RULE_NAMES == ("evans", "ema_sdr", "who_umc", "fda_mgps")


def test_each_rule_and_boundaries():
    out = apply_rules(scored())
    assert out["evans"].to_list() == [True, False, False, False, False, True]
    # n>=5 normally, n>=3 under additional monitoring; strict > 1 on the bound; null -> False
    assert out["ema_sdr"].to_list() == [False, False, True, True, False, False]
    assert out["who_umc"].to_list() == [True, False, False, True, False, True]
    assert out["fda_mgps"].to_list() == [True, False, True, False, True, False]
    assert out["rules_fired"].to_list() == [
        ["evans", "who_umc", "fda_mgps"],
        [],
        ["ema_sdr", "fda_mgps"],
        ["ema_sdr", "who_umc"],
        ["fda_mgps"],
        ["evans", "who_umc"],
    ]


def test_configurable_thresholds_and_subset():
    th = RuleThresholds(evans_chi2_column="chi2_yates", fda_eb05=1.5)
    out = apply_rules(scored(), rules=["evans", "fda_mgps"], thresholds=th)
    assert out["evans"].to_list() == [False, False, False, False, False, True]
    assert out["fda_mgps"].to_list() == [True, True, True, False, True, False]
    assert "who_umc" not in out.columns


def test_missing_inputs():
    df = scored().drop("eb05", "additional_monitoring")
    out = apply_rules(df)
    assert out["fda_mgps"].null_count() == out.height  # not evaluated
    assert out["ema_sdr"].to_list() == [False, False, True, False, False, False]
    with pytest.raises(ValueError, match="eb05"):
        apply_rules(df, rules=["fda_mgps"])
    with pytest.raises(ValueError, match="unknown"):
        apply_rules(df, rules=["nope"])

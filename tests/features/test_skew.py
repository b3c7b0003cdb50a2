"""Unit tests of the online/offline comparison."""

import pandas as pd

from mlplatform.features.skew import latest_rows, mismatch_rates, skew


def test_latest_rows_keeps_the_newest_row_per_entity():
    offline = pd.DataFrame(
        {
            "id": ["a", "a", "b"],
            "feature_ts": pd.to_datetime(["2026-01-02", "2026-01-03", "2026-01-01"]),
            "x": [1, 2, 3],
        }
    )
    assert latest_rows(offline, "id")["x"].to_dict() == {"a": 2, "b": 3}


def test_skew_reports_each_differing_value_and_treats_nulls_as_equal():
    offline = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, None, 3.0], "s": ["DE", "FR", None]}).set_index(
        "id"
    )
    online = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0 + 1e-12, None, 4.0], "s": ["DE", "FR", None]})
    assert skew(offline, online, "id", ["x", "s"]) == [
        {"id": "c", "feature": "x", "offline": 3.0, "online": 4.0}
    ]


def test_an_entity_missing_online_is_skew():
    offline = pd.DataFrame({"id": ["a"], "x": [1.0]}).set_index("id")
    online = pd.DataFrame({"id": ["b"], "x": [1.0]})
    assert skew(offline, online, "id", ["x"])[0]["online"] is None


def test_mismatch_rates_count_differing_served_values_per_feature():
    recomputed = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["web", "pos", None, "pos"]})
    served = pd.DataFrame({"x": [1.0, 2.5, 3.0, 4.0 + 1e-12], "c": ["web", "pos", None, "atm"]})
    rates = mismatch_rates(served, recomputed, ["x", "c"]).set_index("feature")
    assert rates.loc["x", "mismatches"] == 1 and rates.loc["x", "mismatch_rate"] == 0.25
    assert rates.loc["x", "max_abs_difference"] == 0.5
    assert rates.loc["c", "mismatches"] == 1 and rates.loc["c", "compared"] == 4
    assert mismatch_rates(recomputed, recomputed, ["x", "c"])["mismatches"].sum() == 0

"""PSI, KS and delayed-label performance as plain functions."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.monitoring.drift import drift_table, labelled_performance, psi

RNG = np.random.default_rng(3)
REFERENCE = pd.Series(RNG.normal(100, 20, 20_000))


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    assert psi(REFERENCE, pd.Series(RNG.normal(100, 20, 5_000))) < 0.02
    assert 0.1 < psi(REFERENCE, pd.Series(RNG.normal(108, 20, 5_000))) < 0.25
    assert psi(REFERENCE, pd.Series(RNG.normal(140, 20, 5_000))) > 1.0


def test_psi_of_categories_is_zero_for_the_same_mix_and_large_for_a_new_category():
    before = pd.Series(["pos"] * 600 + ["online"] * 400)
    assert psi(before, before.sample(frac=1, random_state=1)) == pytest.approx(0.0, abs=1e-12)
    after = pd.Series(["pos"] * 300 + ["online"] * 300 + ["crypto"] * 400)
    assert psi(before, after) > 1.0


def test_psi_without_data_is_not_a_number():
    assert np.isnan(psi(REFERENCE, pd.Series([], dtype=float)))


def test_the_drift_table_ranks_features_and_tests_numeric_ones():
    reference = pd.DataFrame({"amount": REFERENCE, "channel": ["pos", "online"] * 10_000})
    current = pd.DataFrame(
        {"amount": pd.Series(RNG.normal(150, 20, 4_000)), "channel": ["pos", "online"] * 2_000}
    )
    table = drift_table(reference, current, ["channel", "amount"])
    assert list(table["feature"]) == ["amount", "channel"]
    amount = table.set_index("feature").loc["amount"]
    assert amount["ks_statistic"] > 0.5 and amount["ks_pvalue"] < 1e-6
    assert np.isnan(table.set_index("feature").loc["channel", "ks_statistic"])


def test_labelled_performance_at_the_served_threshold():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.8, 0.3])
    figures = labelled_performance(labels, scores, (scores >= 0.5).astype(int))
    assert figures["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 fraud/legit pairs ranked right
    assert figures["precision_at_threshold"] == 0.5 and figures["recall_at_threshold"] == 0.5
    assert np.isnan(labelled_performance(np.array([0, 0]), np.array([0.1, 0.2]), np.array([0, 0]))["roc_auc"])
    assert labelled_performance(np.array([]), np.array([]), np.array([]))["labelled"] == 0


def test_a_graded_check_says_its_value_day_verdict_and_bounds():
    from dagster import AssetKey

    from mlplatform.monitoring.assets import graded_check

    key, day = AssetKey("feature_drift"), "2026-03-25"
    ok = graded_check(key, "prediction_psi", "psi", 0.031, 0.1, 0.25, day=day)
    assert ok.passed and ok.description == "psi 0.031 on 2026-03-25: OK (WARN above 0.1, ERROR above 0.25)"
    assert {"psi", "warn_bound", "error_bound", "partition"} <= set(ok.metadata)
    error = graded_check(key, "roc_auc", "roc_auc", 0.7, 0.85, 0.75, day=day, higher_is_worse=False)
    assert not error.passed and error.description.endswith(": ERROR (WARN below 0.85, ERROR below 0.75)")
    unjudged = graded_check(key, "roc_auc", "roc_auc", float("nan"), 0.85, 0.75, day=day)
    assert not unjudged.passed and unjudged.description.startswith("not judged: no roc_auc for 2026-03-25")

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

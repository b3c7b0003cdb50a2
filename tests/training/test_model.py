"""The estimator pipeline: fitted slice by slice it is the pipeline `Pipeline.fit` gives; the time split."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.training import model
from mlplatform.training.model import (
    all_seen,
    build_pipeline,
    early_stopping_split,
    feature_columns,
    fit,
    labels_of,
    prepare_inputs,
    time_split,
)
from mlplatform.training.spec import FRAUD_MODEL

SPEC = FRAUD_MODEL.updated({"estimator.max_iter": 20}, "test")
# enough rows for the classifier to stop early on its own validation rows, and iterations for it to stop
STOPPING = FRAUD_MODEL.updated({"estimator.max_iter": 300, "estimator.learning_rate": 0.3}, "test")


def labelled(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    text = pd.StringDtype("pyarrow", na_value=np.nan)  # as the warehouse's large reads give text
    category = pd.Series(rng.choice(["food", "travel", "games", None], n), dtype=text)
    amount = rng.gamma(2.0, 30.0, n)
    rows = pd.DataFrame(
        {
            "transaction_id": [f"T{i:06d}" for i in range(n)],
            "event_ts": pd.Timestamp("2026-03-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), "s"),
            "channel": rng.choice(["pos", "online"], n).astype(object),  # as a plain read gives text
            "merchant_stats__category": category,
            "merchant_stats__risk_tier": pd.Series(rng.choice(["low", "high"], n), dtype=text),
            "amount": amount,
            "customer_stats__amount_avg_30d": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2.0, 30.0, n)),
            "customer_stats__home_country": "FR",
        }
    )
    risk = (amount > 120) | (category == "games").to_numpy()
    rows["is_fraud"] = risk & (rng.random(n) < 0.6) | (rng.random(n) < 0.02)
    return rows


def fitted_both_ways(spec, rows):
    columns = feature_columns(spec, rows.columns)
    return fit(spec, rows), build_pipeline(spec, rows.columns).fit(rows[columns], labels_of(spec, rows))


def assert_same_predictions(spec, fitted, reference) -> None:
    columns = feature_columns(spec, labelled(1).columns)
    unseen = labelled(2_000, seed=1)
    np.testing.assert_array_equal(
        fitted.predict_proba(unseen[columns]), reference.predict_proba(unseen[columns])
    )


def test_fitted_a_slice_at_a_time_it_is_the_pipeline_fitted_at_once(monkeypatch):
    rows = labelled(3_000)
    monkeypatch.setattr(model, "PREPARE_ROWS", 337)  # slices that do not divide the rows
    sliced, at_once = fitted_both_ways(SPEC, rows)
    assert list(sliced.feature_names_in_) == feature_columns(SPEC, rows.columns)
    assert_same_predictions(SPEC, sliced, at_once)
    encoder = sliced.named_steps["prepare"].named_transformers_["categorical"]
    reference = at_once.named_steps["prepare"].named_transformers_["categorical"]
    for learned, expected in zip(encoder.categories_, reference.categories_, strict=True):
        pd.testing.assert_series_equal(pd.Series(learned), pd.Series(expected))  # NaN, a category too


def test_stopping_early_on_validation_rows_prepared_apart_it_is_the_pipeline_fitted_at_once(monkeypatch):
    monkeypatch.setattr(model, "PREPARE_ROWS", 4_099)
    sliced, at_once = fitted_both_ways(STOPPING, labelled(30_000))
    classifier = sliced.named_steps["classifier"]
    assert classifier.do_early_stopping_ and classifier.n_iter_ < 300  # it stopped on its validation rows
    assert classifier.n_iter_ == at_once.named_steps["classifier"].n_iter_
    assert_same_predictions(STOPPING, sliced, at_once)


@pytest.mark.parametrize("spec,n", [(SPEC, 3_000), (STOPPING, 30_000)], ids=["one array", "stopping early"])
def test_prepared_consuming_the_rows_gives_the_same_arrays_and_leaves_only_what_is_not_an_input(spec, n):
    """The retraining hands its frame over (`consume`): each numeric input column goes once prepared, so
    a year's rows and their arrays are never held in full together."""
    rows = labelled(n)
    kept = prepare_inputs(spec, rows)
    consumed = rows.copy()
    given = prepare_inputs(spec, consumed, consume=True)
    np.testing.assert_array_equal(given.inputs, kept.inputs)
    np.testing.assert_array_equal(given.labels, kept.labels)
    assert (given.validation is None) == (kept.validation is None) == (spec is SPEC)
    if given.validation is not None and kept.validation is not None:
        for consumed_part, kept_part in zip(given.validation, kept.validation, strict=True):
            np.testing.assert_array_equal(consumed_part, kept_part)
    numeric = set(feature_columns(spec, rows.columns)) - set(spec.inputs.categorical)
    assert set(consumed.columns) == set(rows.columns) - numeric and numeric


def test_a_category_only_in_the_validation_rows_lets_the_classifier_split_them_itself(monkeypatch):
    rows = labelled(30_000)
    _, validation = early_stopping_split(
        build_pipeline(STOPPING, rows.columns)[-1], labels_of(STOPPING, rows)
    )
    rows.loc[validation[0], "channel"] = "atm"  # nowhere among the training rows
    judged = []
    monkeypatch.setattr(model, "all_seen", lambda *a: judged.append(all_seen(*a)) or judged[-1])
    sliced, at_once = fitted_both_ways(STOPPING, rows)
    assert judged == [False]
    assert_same_predictions(STOPPING, sliced, at_once)


def test_too_few_rows_to_stop_early_are_not_split():
    pipeline = build_pipeline(STOPPING, labelled(1).columns)
    assert early_stopping_split(pipeline[-1], np.arange(11_000) % 2) is None  # 9,900 training rows


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_time_split_holds_out_the_latest_events_whatever_the_order(shuffled):
    rows = labelled(1_000)
    given = rows.sample(frac=1, random_state=3) if shuffled else rows
    train, holdout = time_split(SPEC, given)
    assert (len(train), len(holdout)) == (800, 200)
    assert train["event_ts"].max() <= holdout["event_ts"].min()
    assert holdout["transaction_id"].tolist() == rows["transaction_id"].iloc[800:].tolist()


def test_permutation_importances_are_those_of_the_whole_pipeline():
    """Shuffled on the prepared columns, each input's importance is the one scikit-learn gives for the
    pipeline on the raw frame, column for column, whatever order the frame's columns come in."""
    from sklearn.inspection import permutation_importance

    rows = labelled(3_000)
    fitted = fit(SPEC, rows)
    columns = feature_columns(SPEC, rows.columns)
    sample = labelled(800, seed=2)
    labels = labels_of(SPEC, sample)
    reference = permutation_importance(
        fitted, sample[columns], labels, scoring="roc_auc", n_repeats=2, random_state=0
    )
    importances = model.permutation_importances(fitted, sample[columns[::-1]], labels, repeats=2, seed=0)
    assert sorted(importances.index) == sorted(columns)
    expected = pd.Series(reference.importances_mean, index=columns)
    pd.testing.assert_series_equal(importances[columns], expected, check_exact=True)
    assert (importances > 0).any()  # the planted signals count

"""The estimator pipeline: fitted slice by slice it is the pipeline `Pipeline.fit` gives; the time split."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.training import model
from mlplatform.training.model import build_pipeline, feature_columns, fit, labels_of, time_split
from mlplatform.training.spec import FRAUD_MODEL

SPEC = FRAUD_MODEL.updated({"estimator.max_iter": 20}, "test")


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


def test_fitted_a_slice_at_a_time_it_is_the_pipeline_fitted_at_once(monkeypatch):
    rows = labelled(3_000)
    monkeypatch.setattr(model, "PREPARE_ROWS", 337)  # slices that do not divide the rows
    sliced = fit(SPEC, rows)
    columns = feature_columns(SPEC, rows.columns)
    at_once = build_pipeline(SPEC, rows.columns).fit(rows[columns], labels_of(SPEC, rows))
    unseen = labelled(500, seed=1)
    assert list(sliced.feature_names_in_) == columns
    np.testing.assert_array_equal(
        sliced.predict_proba(unseen[columns]), at_once.predict_proba(unseen[columns])
    )
    encoder = sliced.named_steps["prepare"].named_transformers_["categorical"]
    reference = at_once.named_steps["prepare"].named_transformers_["categorical"]
    for learned, expected in zip(encoder.categories_, reference.categories_, strict=True):
        pd.testing.assert_series_equal(pd.Series(learned), pd.Series(expected))  # NaN, a category too


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_time_split_holds_out_the_latest_events_whatever_the_order(shuffled):
    rows = labelled(1_000)
    given = rows.sample(frac=1, random_state=3) if shuffled else rows
    train, holdout = time_split(SPEC, given)
    assert (len(train), len(holdout)) == (800, 200)
    assert train["event_ts"].max() <= holdout["event_ts"].min()
    assert holdout["transaction_id"].tolist() == rows["transaction_id"].iloc[800:].tolist()

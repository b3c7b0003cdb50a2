"""A registered version is loaded once per process, never mistaken for another one of the same number."""

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlplatform.inference.scoring import load_model_version
from mlplatform.profiles import build_resources

MODEL = "scoring_cache_model"


def register(registry, tmp_path, rising: bool) -> str:
    """A fitted pipeline logged in a run of its own (threshold and feature service recorded) and
    registered as a new version of MODEL."""
    import mlflow.sklearn

    rows = pd.DataFrame({"amount": np.linspace(0.0, 1.0, 20)})
    labels = ((rows["amount"] > 0.5) == rising).astype(int)  # fraud at high amounts, or at low ones
    pipeline = Pipeline([("classifier", LogisticRegression())]).fit(rows, labels)
    client = registry.client()
    run_id = client.create_run(registry.experiment_id()).info.run_id
    client.log_metric(run_id, "threshold", 0.5)
    client.set_tag(run_id, "feature_service", "scoring_cache_service")
    saved = tmp_path / f"model-{run_id}"
    # no requirements inferred and no skops: 2 s instead of 9 for this test, which is about loading
    mlflow.sklearn.save_model(pipeline, saved, serialization_format="cloudpickle", pip_requirements=[])
    client.log_artifacts(run_id, str(saved), "model")
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    return str(client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version)


def test_a_version_is_loaded_once_and_a_remade_model_of_the_same_number_is_loaded_anew(tmp_path):
    registry = build_resources(state=tmp_path, with_dbt=False)["model_registry"]
    version = register(registry, tmp_path, rising=True)

    first = load_model_version(registry, MODEL, version)
    assert load_model_version(registry, MODEL, version) is first  # loaded and compiled once
    high = pd.DataFrame({"amount": [0.9]})
    assert first.score(high)["score"].iloc[0] > 0.5

    # the registered model deleted and made again: its version 1 is another model from another run
    registry.client().delete_registered_model(MODEL)
    assert register(registry, tmp_path, rising=False) == version
    again = load_model_version(registry, MODEL, version)
    assert again is not first
    assert again.score(high)["score"].iloc[0] < 0.5

"""The experimentation zone and model cards on a copy of the built registry (version 1 is champion): an
experiment is tracked and compared without touching the registry; proposed, it goes through the
retraining job's gates and promotion; every version's card tells its story from the evidence."""

import pytest

from mlplatform.definitions import build_definitions
from mlplatform.demo import quiet_run
from mlplatform.profiles import build_resources
from mlplatform.resources import GateBounds
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.experiment import EXPERIMENTS, propose_run_config, run_experiment
from mlplatform.training.model_card import read_model_card
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import LENIENT_GATES, built_instance, copy_state

pytestmark = pytest.mark.e2e


def registered_versions(registry) -> list[str]:
    return sorted(
        str(v.version) for v in registry.client().search_model_versions(f"name = '{FRAUD_MODEL.name}'")
    )


def test_experiment_then_proposal_then_cards(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    resources["fraud_model_gates"] = GateBounds(**LENIENT_GATES)  # the flow, not the bounds, is under test
    registry = resources["model_registry"]
    before = registered_versions(registry)
    quick = FRAUD_MODEL.with_settings({"estimator.max_iter": "30"})

    result = run_experiment(quick, FRAUD_MODEL, registry, resources["warehouse"], resources["feature_store"])
    assert result.experiment == EXPERIMENTS.format(model="fraud_model")
    assert result.differences == {"estimator.max_iter": (30, 200)}
    assert result.champion_version == "1" and result.champion_metrics is not None
    run = registry.client().get_run(result.run_id)
    assert run.data.params["max_iter"] == "30" and "champion_roc_auc" in run.data.metrics
    assert registered_versions(registry) == before and registry.version_for("fraud_model", CHAMPION) == "1"

    with pytest.raises(ValueError, match="cannot propose a change of feature_service"):
        propose_run_config(
            FRAUD_MODEL.with_settings({"feature_service": "fraud_model_velocity"}), FRAUD_MODEL
        )
    with built_instance(state) as instance:
        retrain = build_definitions(resources).resolve_job_def("retrain_fraud_model")
        proposed = quiet_run(retrain, instance, run_config=propose_run_config(quick, FRAUD_MODEL))
    assert proposed.success
    assert registry.version_for("fraud_model", CHAMPION) == "2"
    # the next experiment is compared with what the new champion was trained from
    again = run_experiment(
        FRAUD_MODEL, FRAUD_MODEL, registry, resources["warehouse"], resources["feature_store"]
    )
    assert again.champion_version == "2" and again.differences == {"estimator.max_iter": (200, 30)}

    card = read_model_card(registry, "fraud_model", "2")
    for expected in (
        "# Model card: fraud_model version 2",
        "**Stage:** champion",
        "**Owners:** team:ml",
        "**Feature service:** `fraud_model_v1`",
        "**Training data:** partitions 20",
        "## Intended use",
        FRAUD_MODEL.intended_use[:40],
        "| roc_auc",
        "segment=",
        "Expected calibration error",
        "| metric_floors | passed |",
        "| not_worse_than_champion | passed |",
        FRAUD_MODEL.known_limitations[0],
        "| promote | dagster run",
    ):
        assert expected in card, expected
    previous = read_model_card(registry, "fraud_model", "1")
    assert "**Stage:** previous" in previous and "| promote |" in previous  # the promotion that replaced it

"""fraud_model on a built graph: gates, promotion, rollback, reproducibility, idempotent registry."""

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from mlplatform.checks import check_verdicts
from mlplatform.definitions import all_assets, all_checks, build_definitions, models
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHALLENGER, CHAMPION, PREVIOUS
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import copy_applied_state, copy_state, run_assets

pytestmark = pytest.mark.e2e
TRAIN_AND_PROMOTE = AssetSelection.assets(models["fraud_model"].candidate, models["fraud_model"].champion)


@pytest.fixture
def resources(built_state, tmp_path):
    """A private copy of the built graph: its registry already holds version 1 as champion."""
    return build_resources(profile="local", state=copy_state(built_state[0], tmp_path / "state"))


def train(resources, instance, **config):
    run_config = {"ops": {"fraud_model": {"config": config}}} if config else None
    return materialize(
        [*all_assets, *all_checks],
        selection=TRAIN_AND_PROMOTE,
        resources=resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def failed_checks(result) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


def run_metrics(registry, version: str) -> dict[str, float]:
    client = registry.client()
    return client.get_run(client.get_model_version(FRAUD_MODEL.name, version).run_id).data.metrics


def test_the_demo_path_trains_a_good_model_and_promotes_it(built_state):
    registry = build_resources(profile="local", state=built_state[0])["model_registry"]
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
    metrics = run_metrics(registry, "1")
    assert 0.85 < metrics["roc_auc"] < 0.995
    run = registry.client().get_run(registry.client().get_model_version(FRAUD_MODEL.name, "1").run_id)
    assert {"data.partitions", "feature_service", "dbt.manifest_sha256", "git.commit"} <= set(run.data.tags)
    trail = registry.audit_trail(FRAUD_MODEL.name)
    assert [e["action"] for e in trail] == ["promote"]
    # the first model had no champion to compare with: said so, and the audit keeps every gate's verdict
    assert trail[0]["gates"]["not_worse_than_champion"]["verdict"] == "not_judged"
    assert {g for g, e in trail[0]["gates"].items() if e["verdict"] == "passed"} == {
        "metric_floors",
        "slice_gaps",
        "calibration",
        "one_row_latency",
    }


def test_a_worse_model_is_not_promoted_and_the_champion_stays(resources):
    registry = resources["model_registry"]
    with DagsterInstance.ephemeral() as instance:
        result = train(resources, instance, max_iter=2, max_leaf_nodes=2, learning_rate=0.01)
    assert "not_worse_than_champion" in failed_checks(result)
    assert "fraud_model_champion" not in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
    assert registry.version_for(FRAUD_MODEL.name, CHALLENGER) is None  # a failed candidate is never served
    tags = registry.client().get_model_version(FRAUD_MODEL.name, "2").tags
    assert tags["gate.not_worse_than_champion"] == "failed"
    assert tags["lifecycle"] == "candidate"


def test_a_planted_slice_gap_fails_the_bias_check(resources):
    warehouse = resources["warehouse"]
    rows = warehouse.read_sql("select * from training.training_set")
    # labels shuffled within a slice with enough frauds in the holdout to be measured (>= 10)
    west = rows["region"] == "west"
    rows.loc[west, "is_fraud"] = rows.loc[west, "is_fraud"].sample(frac=1, random_state=3).to_numpy()
    warehouse.write_table("training", "training_set", rows)
    with DagsterInstance.ephemeral() as instance:
        result = train(resources, instance)
    assert check_verdicts(result)["slice_gaps"] == "FAILED"  # measured and failed, not "not judged"
    assert resources["model_registry"].version_for(FRAUD_MODEL.name, CHAMPION) == "1"


def test_same_inputs_and_seed_give_identical_metrics_and_promotion_is_idempotent(resources):
    registry = resources["model_registry"]
    with DagsterInstance.ephemeral() as instance:
        assert train(resources, instance).success
        promotions = len(registry.audit_trail(FRAUD_MODEL.name))
        # re-running the promotion for the same candidate changes nothing and writes nothing
        again = run_assets([*all_assets], resources, instance, selection=[models["fraud_model"].champion])
        assert again.success
    first, second = run_metrics(registry, "1"), run_metrics(registry, "2")
    for metric in ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "expected_calibration_error", "slice_auc_gap"):
        assert second[metric] == first[metric], metric
    assert len(registry.audit_trail(FRAUD_MODEL.name)) == promotions
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "2"
    assert registry.version_for(FRAUD_MODEL.name, PREVIOUS) == "1"


def test_rollback_restores_the_exact_previous_version(resources):
    registry = resources["model_registry"]
    with DagsterInstance.ephemeral() as instance:
        assert train(resources, instance).success  # same data and seed: equal metrics, so it is promoted
    assert (
        registry.version_for(FRAUD_MODEL.name, CHAMPION),
        registry.version_for(FRAUD_MODEL.name, PREVIOUS),
    ) == (
        "2",
        "1",
    )
    result = (
        build_definitions(resources)
        .resolve_job_def("rollback_fraud_model")
        .execute_in_process(resources={"model_registry": registry})
    )
    assert result.success
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
    assert registry.version_for(FRAUD_MODEL.name, PREVIOUS) is None
    last = registry.audit_trail(FRAUD_MODEL.name)[-1]
    assert (last["action"], last["version"], last["replaced"]) == ("rollback", "1", "2")
    assert isinstance(pd.Timestamp(last["at"]), pd.Timestamp)


def test_the_rollback_command_explains_when_there_is_nothing_to_roll_back_to(
    built_state, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from mlplatform.cli import main

    state = copy_state(built_state[0], tmp_path / "state")  # one promotion only: no previous champion
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(state))
    result = CliRunner().invoke(main, ["rollback", "--reason", "test"])
    assert result.exit_code == 1
    assert "no previous champion to roll back to (champion: 1)" in result.output
    assert (
        build_resources(profile="local", state=state)["model_registry"].version_for(
            FRAUD_MODEL.name, CHAMPION
        )
        == "1"
    )


def test_a_training_set_built_in_chunks_is_the_one_built_at_once(built_state, tmp_path, monkeypatch):
    from mlplatform.training import factory

    _, resources = copy_applied_state(built_state[0], tmp_path / "state")
    warehouse, training_set = resources["warehouse"], models["fraud_model"].training_set
    at_once = warehouse.read_sql("select * from training.training_set")
    chunk = len(at_once) // 4 + 7  # four chunks, the last one short; each a Feast retrieval of its own
    monkeypatch.setattr(factory, "TRAINING_CHUNK_EVENTS", chunk)
    with DagsterInstance.ephemeral() as instance:
        result = run_assets([*all_assets], resources, instance, selection=[training_set])
    assert result.success
    in_chunks = warehouse.read_sql("select * from training.training_set")
    assert len(at_once) > 3 * chunk > 3_000
    pd.testing.assert_frame_equal(in_chunks, at_once)
    (materialization,) = result.asset_materializations_for_node(training_set.op.name)
    assert materialization.metadata["dagster/row_count"].value == len(at_once)
    assert not warehouse.table_exists("training", "training_set__building")

"""Promotion guarantees on real trained models (a copy of the built graph: version 1 is champion).

Every gate can refuse a real candidate, promotion run on its own (the bypass) refuses a candidate that
failed, manual approval works end to end and is audited, and the MLflow model answers the platform's
question with the platform's numbers."""

import os
import subprocess
import sys
from datetime import date

import mlflow.pyfunc
import numpy as np
import pytest
from click.testing import CliRunner
from dagster import AssetSelection, materialize

from mlplatform.cli import main
from mlplatform.definitions import all_assets, all_checks, models
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import TRANSACTION_FIELDS
from mlplatform.profiles import build_resources
from mlplatform.resources import GateBounds
from mlplatform.resources.model_registry import CHALLENGER, CHAMPION
from mlplatform.training.gates import GATES
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import LENIENT_GATES as LENIENT
from tests.conftest import built_instance, copy_state

pytestmark = pytest.mark.e2e
IMPOSSIBLE = {
    "metric_floors": {"min_roc_auc": 0.9999},
    "not_worse_than_champion": {"champion_tolerance": -1.0},
    "slice_gaps": {"max_slice_auc_gap": 0.0},
    "calibration": {"max_calibration_error": 0.0},
    "one_row_latency": {"max_one_row_latency_ms": 0.0},
}
QUICK = {"max_iter": 30}  # a real, smaller model: the gates judge it the same way


@pytest.fixture
def state(built_state, tmp_path):
    return copy_state(built_state[0], tmp_path / "state")


def train(
    resources, instance, selection=(models["fraud_model"].candidate, models["fraud_model"].champion), **config
):
    return materialize(
        [*all_assets, *all_checks],
        selection=AssetSelection.assets(*selection),
        resources=resources,
        instance=instance,
        run_config={"ops": {"fraud_model": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def gate_verdicts(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def promotions(registry) -> int:
    return sum(e["action"] == "promote" for e in registry.audit_trail(FRAUD_MODEL.name))


def run_alone(resources, instance, selection):
    """The candidate's gates only, or the promotion only: steps as a user can launch them by themselves."""
    return materialize(
        [*all_assets, *all_checks], selection=selection, resources=resources, instance=instance,
        raise_on_error=False,
    )  # fmt: skip


def test_each_gate_alone_refuses_a_real_candidate_and_the_champion_stays(state):
    """One real candidate (trained once), judged again with one bound at a time made impossible: exactly
    that gate fails, and promotion refuses naming it; with every bound met, it is promoted."""
    resources = build_resources(profile="local", state=state)
    registry = resources["model_registry"]
    gates_only = AssetSelection.checks_for_assets(models["fraud_model"].candidate)
    with built_instance(state) as instance:
        resources["fraud_model_gates"] = GateBounds(
            **{**LENIENT, **{k: v for bounds in IMPOSSIBLE.values() for k, v in bounds.items()}}
        )
        trained = train(resources, instance, **QUICK)
        assert not trained.success and not any(gate_verdicts(trained).values())  # every gate failed
        assert (
            registry.version_for(FRAUD_MODEL.name, CHALLENGER) is None
        )  # a failed candidate is never served
        assert registry.version_tags(FRAUD_MODEL.name, "2")["lifecycle"] == "candidate"
        for gate in GATES:
            resources["fraud_model_gates"] = GateBounds(**{**LENIENT, **IMPOSSIBLE[gate]})
            verdicts = gate_verdicts(run_alone(resources, instance, gates_only))
            assert verdicts[gate] is False and all(v for g, v in verdicts.items() if g != gate), verdicts
            refused = run_alone(resources, instance, AssetSelection.assets(models["fraud_model"].champion))
            assert not refused.success
            error = refused.get_step_failure_events()[0].event_specific_data.error
            message = error.cause.message if error.cause else error.message
            assert f"cannot be promoted: {gate}: failed" in message and message.count(": failed") == 1
            assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1" and promotions(registry) == 1
        resources["fraud_model_gates"] = GateBounds(**LENIENT)
        assert all(gate_verdicts(run_alone(resources, instance, gates_only)).values())
        assert run_alone(resources, instance, AssetSelection.assets(models["fraud_model"].champion)).success
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "2" and promotions(registry) == 2


def test_promoting_a_failed_candidate_on_its_own_is_refused_from_the_dagster_cli(state):
    """The attack: a candidate fails metric_floors, then `dagster asset materialize --select
    fraud_model_champion` is run by itself, as a user would from a shell."""
    resources = build_resources(profile="local", state=state)
    registry = resources["model_registry"]
    with built_instance(state) as instance:
        trained = train(resources, instance, max_iter=1)
    assert gate_verdicts(trained)["metric_floors"] is False
    env = {**os.environ, "MLPLATFORM_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster")}
    bypass = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "mlplatform.definitions",
            "--select",
            "fraud_model_champion",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bypass.returncode != 0
    assert "fraud_model version 2 cannot be promoted: metric_floors: failed" in bypass.stdout + bypass.stderr
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
    assert promotions(registry) == 1
    # and the same refusal from the platform's own command
    refused = CliRunner(env={"MLPLATFORM_STATE_DIR": str(state)}).invoke(
        main, ["approve", "2", "--reason", "looks fine to me"]
    )
    assert refused.exit_code == 1 and "metric_floors: failed" in refused.output
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
    # the last way around: the alias moved by hand in MLflow. The champion's own check says so
    with built_instance(state) as instance:
        checks = AssetSelection.checks_for_assets(models["fraud_model"].champion)
        [before] = run_alone(resources, instance, checks).get_asset_check_evaluations()
        registry.move_alias(FRAUD_MODEL.name, CHAMPION, "2")
        [after] = run_alone(resources, instance, checks).get_asset_check_evaluations()
    assert before.passed and before.metadata["gate_metric_floors"].value == "passed"
    assert not after.passed and after.severity.value == "ERROR"
    assert "champion version 2: metric_floors: failed" in (after.description or "")


def test_manual_policy_waits_for_an_approval_and_audits_who_and_why(state, monkeypatch):
    monkeypatch.setenv("MLPLATFORM_PROMOTION_POLICY", "manual")
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(state))
    resources = build_resources(profile="local", state=state)
    resources["fraud_model_gates"] = GateBounds(
        **LENIENT
    )  # the review workflow, not the gates, is under test
    registry = resources["model_registry"]
    assert registry.promotion_policy == "manual"
    with built_instance(state) as instance:
        assert train(resources, instance, **QUICK).success  # every (lenient) gate passes
        assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "1"
        assert registry.version_for(FRAUD_MODEL.name, CHALLENGER) == "2"
        assert registry.audit_trail(FRAUD_MODEL.name)[-1]["action"] == "propose"

        approved = CliRunner().invoke(
            main, ["approve", "2", "--reason", "reviewed the slices", "--actor", "ana"]
        )
        assert approved.exit_code == 0, approved.output
        assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "2"
        record = registry.audit_trail(FRAUD_MODEL.name)[-1]
        assert (record["action"], record["approved_by"], record["reason"]) == (
            "promote",
            "ana",
            "reviewed the slices",
        )
        assert set(record["gates"]) == set(GATES)
        assert all(g["verdict"] == "passed" for g in record["gates"].values())
        assert {"mlflow_run_id", "training_dagster_run_id", "data.partitions", "git.commit"} <= set(record)

        # a second good candidate is rejected by a reviewer: it loses challenger and can never serve
        assert train(resources, instance, **QUICK).success
        assert registry.version_for(FRAUD_MODEL.name, CHALLENGER) == "3"
        rejected = CliRunner().invoke(main, ["reject", "3", "--reason", "unexplained segment shift"])
        assert rejected.exit_code == 0, rejected.output
        assert registry.version_for(FRAUD_MODEL.name, CHALLENGER) is None
        again = CliRunner().invoke(main, ["approve", "3", "--reason", "changed my mind"])
        assert again.exit_code == 1 and "rejected by a reviewer" in again.output
        assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "2"


def test_the_mlflow_model_scores_like_batch_scoring(built_state):
    """`mlflow.pyfunc.load_model("models:/fraud_model@champion")` gives the fraud score and the decision
    at the version's threshold: the numbers batch_predictions stored, to 1e-9."""
    resources = build_resources(profile="local", state=built_state[0])
    warehouse = resources["warehouse"]
    newest = "select max(_partition_date) as d from inference.batch_predictions"
    last = warehouse.read_sql(newest)["d"].iloc[0]
    day = date.fromisoformat(str(last)[:10])
    stored = warehouse.read_sql(
        "select transaction_id, score, decision from inference.batch_predictions "
        f"where _partition_date = '{day}'"
    ).set_index("transaction_id")
    transactions = warehouse.read_sql(
        f"select {', '.join(TRANSACTION_FIELDS)} from raw.transactions where _partition_date = '{day}'"
    )
    features = features_as_of_events(resources["feature_store"].store(), transactions, "fraud_model_v1")
    mlflow.set_registry_uri(resources["model_registry"].uri)
    model = mlflow.pyfunc.load_model(f"models:/{FRAUD_MODEL.name}@{CHAMPION}")
    scored = model.predict(features).set_index(features["transaction_id"])
    assert len(scored) == len(stored) > 1_000
    np.testing.assert_allclose(scored.loc[stored.index, "score"], stored["score"], rtol=0, atol=1e-9)
    assert (scored.loc[stored.index, "decision"].to_numpy() == stored["decision"].to_numpy()).all()

"""The model factory: fraud_model's chain is what it was before specs, and a spec dropped in a folder brings
its whole chain (assets, blocking gates, champion, jobs, retrain sensor, gate resource) into the
definitions, with nothing else written."""

import shutil
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from mlplatform.checks import check_verdicts, was_judged
from mlplatform.definitions import build_definitions, models
from mlplatform.demo import quiet_run
from mlplatform.inference.scoring import load_scoring_model
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.streaming.pusher import backfill, landed_transactions
from mlplatform.training.candidate import load_candidate
from mlplatform.training.model import evaluate, labels_of
from mlplatform.training.spec import FRAUD_MODEL, SPECS_DIR, ModelSpecError, load_specs
from tests.conftest import BUILT_MONITORED_DAYS, built_instance, copy_applied_state

# what a model's monitoring is made of (fraud_model keeps the names it had before specs)
MONITORING = ["feature_drift", "slo", "serving_slo", "performance", "serving_health", "serving_skew",
              "monitoring_report", "delivery_metrics"]  # fmt: skip
FRAUD_MONITORING = ["feature_drift", "fraud_model_slo", "fraud_model_serving_slo", "model_performance",
                    "serving_health", "serving_skew", "monitoring_report", "delivery_metrics"]  # fmt: skip
GATES = ["metric_floors", "not_worse_than_champion", "slice_gaps", "calibration", "one_row_latency"]


def chain(defs, name: str, training_set: str) -> dict:
    """What the definitions hold for one model."""
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    own = {training_set, name, f"{name}_champion"}
    return {
        "assets": own & keys,
        "checks": {c for c in checks if c[0] in own},
        "jobs": {
            j.name for j in defs.resolve_all_job_defs() if name in j.name and not j.name.startswith("__")
        },
        "sensors": {s.name for s in defs.sensors if name in s.name},
        "retrain_selection": {
            k.to_user_string()
            for k in defs.resolve_job_def(f"retrain_{name}").asset_layer.executable_asset_keys
        },
        "upstream": {k.to_user_string() for k in graph.get(AssetKey(training_set)).parent_keys},
    }


def expected_chain(name: str, training_set: str, upstream: set[str]) -> dict:
    return {
        "assets": {training_set, name, f"{name}_champion"},
        "checks": {
            (training_set, "no_point_in_time_leakage"),
            *((name, gate) for gate in GATES),
            (f"{name}_champion", "champion_passed_its_gates"),
        },
        "jobs": {f"retrain_{name}", f"rollback_{name}", f"review_{name}"},
        "sensors": {f"retrain_{name}_sensor"},
        "retrain_selection": {training_set, name, f"{name}_champion"},
        "upstream": {"feast_registry", *upstream},
    }


def test_fraud_model_is_the_chain_it_was_before_specs():
    """Keys, checks and jobs of the hand-written fraud_model layer, now built from its spec."""
    defs = build_definitions(build_resources(profile="local"))
    assert chain(defs, "fraud_model", "training_set") == expected_chain(
        "fraud_model", "training_set", {"training_labels", "customer_features", "merchant_features"}
    )
    assert defs.resolve_job_def("retrain_fraud_model").tags["mlplatform/workload"] == "training"
    fraud_model = {a.key.to_user_string() for a in models["fraud_model"].assets}
    assert {"batch_predictions", *FRAUD_MONITORING} <= fraud_model
    assert "fraud_model_nightly" in {s.name for s in defs.schedules}


def test_every_declared_model_is_built(tmp_path):
    assert set(models) == set(load_specs()) >= {"fraud_model", "merchant_risk"}
    defs = build_definitions(build_resources(profile="local", state=tmp_path))
    assert chain(defs, "merchant_risk", "merchant_risk_training_set") == expected_chain(
        "merchant_risk", "merchant_risk_training_set", {"merchant_risk_labels", "merchant_features"}
    )
    merchant_risk = {a.key.to_user_string() for a in models["merchant_risk"].assets}
    assert {f"merchant_risk_{m}" for m in ("predictions", *MONITORING)} <= merchant_risk


def throwaway_spec(folder: Path) -> Path:
    """fraud_model's spec under another name, on the velocity feature service: a new model, no code."""
    folder.mkdir()
    shutil.copy(SPECS_DIR / "fraud_model.yaml", folder)
    data = yaml.safe_load((SPECS_DIR / "fraud_model.yaml").read_text())
    # the default asset names: <name>_training_set, <name>_predictions, <name>_feature_drift, ...
    del data["training_set"], data["batch"]["asset"], data["drift"]["asset"]
    data["monitoring"] = {}
    data.update(name="fraud_velocity", feature_service="fraud_model_velocity", owners=["team:experiments"])
    path = folder / "fraud_velocity.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_spec_in_a_folder_brings_its_whole_chain(tmp_path):
    folder = tmp_path / "models"
    throwaway_spec(folder)
    resources = build_resources(profile="local", state=tmp_path)
    defs = build_definitions(resources, models_dir=folder)
    assert chain(defs, "fraud_velocity", "fraud_velocity_training_set") == expected_chain(
        "fraud_velocity",
        "fraud_velocity_training_set",
        {"training_labels", "customer_features", "merchant_features"},
    )
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "merchant_risk" not in keys  # only what the folder declares
    # its batch scoring and monitoring: drift, quality and serving SLOs, performance, traffic, the day's
    # report and its delivery metrics, judged again nightly
    assert {f"fraud_velocity_{m}" for m in ("predictions", *MONITORING)} <= keys
    assert "fraud_velocity_nightly" in {s.name for s in defs.schedules}
    report = defs.resolve_asset_graph().get(AssetKey("fraud_velocity_monitoring_report"))
    assert {"fraud_velocity_feature_drift", "fraud_velocity_serving_skew"} <= {
        k.to_user_string() for k in report.parent_keys
    }
    # its gate bounds are a resource of its own, from its spec
    assert defs.resources["fraud_velocity_gates"].min_roc_auc == 0.85
    assert defs.resolve_asset_graph().get(AssetKey("fraud_velocity")).owners == ["team:experiments"]


def test_a_spec_whose_name_is_not_its_file_name_is_refused(tmp_path):
    folder = tmp_path / "models"
    spec = throwaway_spec(folder)
    spec.rename(folder / "other_name.yaml")
    with pytest.raises(ModelSpecError, match="must match the file name"):
        load_specs(folder)


def test_two_models_on_one_training_set_are_refused(tmp_path):
    folder = tmp_path / "models"
    spec = throwaway_spec(folder)
    data = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**data, "training_set": "training_set"}))
    with pytest.raises(ModelSpecError, match="same training_set"):
        load_specs(folder)
    # nor two on one monitoring table
    spec.write_text(yaml.safe_dump({**data, "drift": {"asset": "feature_drift"}}))
    with pytest.raises(ModelSpecError, match="same drift asset"):
        load_specs(folder)
    spec.write_text(yaml.safe_dump({**data, "monitoring": {"report": "monitoring_report"}}))
    with pytest.raises(ModelSpecError, match="same monitoring report asset"):
        load_specs(folder)


@pytest.mark.e2e
def test_a_model_on_the_velocity_features_passes_its_gates_and_beats_the_champion(built_state, tmp_path):
    """A spec alone, on the feature service with the pushed velocity features: trained on their
    point-in-time history, through the same blocking gates and promotion, then compared with fraud_model's
    champion on the same holdout."""
    folder = tmp_path / "models"
    throwaway_spec(folder)
    state, resources = copy_applied_state(built_state[0], tmp_path / "state")
    backfill(resources["feature_store"].store(), landed_transactions(resources["warehouse"]))
    defs = build_definitions(resources, models_dir=folder)
    with built_instance(state) as instance:
        result = quiet_run(defs.resolve_job_def("retrain_fraud_velocity"), instance)
    verdicts = check_verdicts(result)
    assert result.success, verdicts
    assert verdicts["not_worse_than_champion"] == "not judged"  # its first version: nothing to compare with
    assert {verdicts[check] for check in [*GATES[:1], *GATES[2:], "no_point_in_time_leakage"]} == {"passed"}
    registry = resources["model_registry"]
    assert registry.version_for("fraud_velocity", CHAMPION) == "1"

    velocity = load_candidate(registry, "fraud_velocity", "1")
    holdout = resources["warehouse"].read_sql(
        f"select * from training.fraud_velocity_training_set where event_ts >= '{velocity.holdout_from}'"
    )
    champion = load_scoring_model(registry, FRAUD_MODEL.name, CHAMPION)
    without = evaluate(labels_of(FRAUD_MODEL, holdout), champion.score(holdout)["score"].to_numpy()).metrics
    assert velocity.metrics["recall_at_1pct_fpr"] > without["recall_at_1pct_fpr"]
    assert velocity.metrics["roc_auc"] > without["roc_auc"]


@pytest.mark.e2e
def test_the_second_model_is_trained_gated_promoted_and_scored_from_its_spec(built_state):
    """merchant_risk, from its spec alone, through the same path as fraud_model in the built state."""
    resources = build_resources(profile="local", state=built_state[0])
    registry, warehouse = resources["model_registry"], resources["warehouse"]
    assert registry.version_for("merchant_risk", CHAMPION) == "1"
    tags = registry.version_tags("merchant_risk", "1")
    assert {tags[f"gate.{gate}"] for gate in GATES if gate != "not_worse_than_champion"} == {"passed"}
    assert registry.audit_trail("merchant_risk")[-1]["action"] == "promote"
    scored = warehouse.read_sql(
        "select count(distinct _partition_date) as days, count(*) as n, min(model_version) as v, "
        "max(model_version) as w from inference.merchant_risk_predictions"
    ).iloc[0]
    spine = warehouse.read_sql(
        "select count(distinct event_date) as days, count(*) as n from marts.merchant_days"
    ).iloc[0]
    assert (scored["days"], scored["n"], scored["v"], scored["w"]) == (spine["days"], spine["n"], "1", "1")
    # and monitored like fraud_model: each monitored day's drift against its champion's training week
    drift = warehouse.read_sql(
        "select partition_date, count(*) as inputs, max(psi) as max_psi "
        "from monitoring.merchant_risk_feature_drift group by 1 order by 1"
    )
    champion = load_scoring_model(registry, "merchant_risk", CHAMPION)
    assert len(drift) == BUILT_MONITORED_DAYS and set(drift["inputs"]) == {len(champion.inputs)}
    histogram = warehouse.read_sql("select * from monitoring.merchant_risk_feature_drift_scores")
    assert histogram["partition_date"].nunique() == BUILT_MONITORED_DAYS
    with built_instance(built_state[0]) as instance:
        drift_asset = models["merchant_risk"].drift
        assert drift_asset is not None
        checks = {
            key.name: instance.event_log_storage.get_asset_check_execution_history(key, limit=1)[0].evaluation
            for key in drift_asset.check_keys
        }
    assert set(checks) == {"feature_psi", "prediction_psi"}  # no inputs of its own: no third check
    assert all(c is not None and was_judged(dict(c.metadata)) for c in checks.values())

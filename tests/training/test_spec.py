"""Model specs: the committed file is the one source of fraud_model's settings, and every mistake in a
spec fails with the file and the dotted name of the field."""

from pathlib import Path

import pytest
import yaml

from mlplatform.profiles import build_resources
from mlplatform.training.factory import run_config_class
from mlplatform.training.model import Hyperparameters
from mlplatform.training.spec import FRAUD_MODEL, SPECS_DIR, ModelSpecError, load_spec, load_specs


def write_spec(folder: Path, change) -> Path:
    data = yaml.safe_load((SPECS_DIR / "fraud_model.yaml").read_text())
    change(data)
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "change,named",
    [
        (lambda d: d["estimator"].update(learnin_rate=0.1), "estimator.learnin_rate: Extra inputs"),
        (
            lambda d: d["gates"].update(min_roc_auc="high"),
            "gates.min_roc_auc: Input should be a valid number",
        ),
        (lambda d: d["gates"].update(min_roc_auc=1.5), "gates.min_roc_auc: Input should be less than"),
        (lambda d: d.pop("feature_service"), "feature_service: Field required"),
        (lambda d: d.update(promotion="sometimes"), "promotion: Input should be 'auto' or 'manual'"),
        (lambda d: d.update(name="Fraud Model"), "name: String should match pattern"),
        (lambda d: d.update(holdout_fraction=0.9), "holdout_fraction: Input should be less than 0.5"),
        (lambda d: d.update(owners=[]), "owners: List should have at least 1 item"),
        (
            lambda d: d["retrain"].update(on_failed_checks=["feature_drift"]),
            "retrain.on_failed_checks.0: String should match pattern",
        ),
        (lambda d: d.pop("batch"), "slo is judged on batch decisions: declare batch too"),
        (lambda d: d.pop("slo"), "monitoring waits slo.label_delay_days for labels: declare slo too"),
        (lambda d: d["monitoring"].update(report="Report"), "monitoring.report: String should match"),
    ],
)
def test_a_bad_field_fails_naming_the_file_and_the_field(tmp_path, change, named):
    path = write_spec(tmp_path, change)
    with pytest.raises(ModelSpecError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}: ") and named in str(error.value)


def test_a_file_that_is_not_yaml_fails_with_its_name(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ModelSpecError, match=r"broken\.yaml: cannot be read as YAML"):
        load_spec(path)


def test_settings_change_one_field_and_are_validated_like_the_file():
    varied = FRAUD_MODEL.with_settings({"estimator.learning_rate": "0.05", "seed": "7"})
    assert varied.differences(FRAUD_MODEL) == {"estimator.learning_rate": (0.05, 0.1), "seed": (7, 42)}
    with pytest.raises(ModelSpecError, match="no such field"):
        FRAUD_MODEL.with_settings({"estimator.depth": "3"})
    with pytest.raises(ModelSpecError, match=r"--set: estimator\.learning_rate: Input should be less than"):
        FRAUD_MODEL.with_settings({"estimator.learning_rate": "2"})


def test_the_spec_is_the_one_source_of_fraud_models_settings(tmp_path):
    """Change the file, and the model, its gates, its decision rule and its promotion policy follow."""
    config = run_config_class(FRAUD_MODEL)()
    assert config.spec_from(FRAUD_MODEL) == FRAUD_MODEL
    assert (
        Hyperparameters.of(config.spec_from(FRAUD_MODEL)).learning_rate == FRAUD_MODEL.estimator.learning_rate
    )
    resources = build_resources(profile="local", state=tmp_path)
    for spec in load_specs().values():
        assert resources[f"{spec.name}_gates"].min_roc_auc == spec.gates.min_roc_auc
    assert resources["model_registry"].promotion_policy == "spec"  # each spec's own, unless overridden

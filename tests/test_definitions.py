"""The code location loads and the asset graph is the intended catalogue; a change is a reviewed diff."""

import pytest
from dagster import AssetKey

from mlplatform.definitions import defs, models

GRAPH = defs.resolve_asset_graph()


def upstream_of(name: str) -> set[str]:
    return {k.to_user_string() for k in GRAPH.get(AssetKey(name)).parent_keys}


def test_definitions_load_with_every_resource():
    defs.resolve_all_job_defs()
    assert {"landing_zone", "warehouse", "dbt"} <= set(defs.resources)


def test_lineage_from_landing_to_feature_marts():
    assert upstream_of("raw_transactions") == {"landing_zone", "raw_customers", "raw_merchants"}
    assert upstream_of("raw_labels") == {"landing_zone"}
    assert upstream_of("stg_transactions") == {"raw_transactions"}
    assert "raw_labels" in _ancestors("stg_labels")
    assert "stg_transactions" in _ancestors("customer_features")
    # the label versions of its window's transactions, read from raw_labels by the macro that also
    # defines stg_superseded_labels (filtered before ranking: a day's build reads its window's labels)
    assert {"stg_transactions", "raw_labels"} <= _ancestors("merchant_features")
    assert {"stg_transactions", "stg_labels", "stg_customers", "stg_merchants"} <= _ancestors(
        "training_labels"
    )
    assert upstream_of("online_customer_stats") == {"feast_registry", "customer_features"}
    assert upstream_of("online_merchant_stats") == {"feast_registry", "merchant_features"}
    assert upstream_of("training_set") == {
        "feast_registry",
        "training_labels",
        "customer_features",
        "merchant_features",
    }
    assert upstream_of("batch_predictions") == {
        "raw_transactions",
        "feast_registry",
        "customer_features",
        "merchant_features",
        "fraud_model_champion",
    }


def _ancestors(name: str) -> set[str]:
    return {k.to_user_string() for k in GRAPH.upstream_key_iterator(AssetKey(name))}


def test_every_asset_reads_well_in_the_catalogue():
    for key in GRAPH.get_all_asset_keys():
        node = GRAPH.get(key)
        if not node.is_materializable:
            continue
        assert node.group_name in {
            "ingestion",
            "transform",
            "features",
            "training",
            "inference",
            "monitoring",
        }, key
        assert node.owners, key
        assert node.description, key
        assert node.kinds, key


def test_raw_assets_are_guarded_by_blocking_checks():
    checks = {c for c in GRAPH.asset_check_keys if c.asset_key == AssetKey("raw_transactions")}
    names = {c.name for c in checks}
    assert names == {"schema", "not_null", "unique_key", "value_ranges", "inside_partition", "known_entities"}
    assert all(GRAPH.get_check_spec(c).blocking for c in checks)


BLOCKING_FEATURE_CHECKS = {
    ("online_customer_stats", "no_online_offline_skew"),
    ("online_merchant_stats", "no_online_offline_skew"),
    ("training_set", "no_point_in_time_leakage"),
}


def test_feature_store_and_training_set_are_guarded():
    checks = {(c.asset_key.to_user_string(), c.name): c for c in GRAPH.asset_check_keys}
    assert ("online_customer_stats", "fresh") in checks
    for name in BLOCKING_FEATURE_CHECKS:
        assert GRAPH.get_check_spec(checks[name]).blocking, name


def test_dbt_tests_are_asset_checks_and_models_follow_ingestion():
    dbt_checks = {c for c in GRAPH.asset_check_keys if c.asset_key == AssetKey("customer_features")}
    assert dbt_checks, "dbt tests on customer_features should be asset checks"
    condition = GRAPH.get(AssetKey("customer_features")).automation_condition
    assert condition is not None and condition.get_label() == "follow_upstream"
    assert GRAPH.get(AssetKey("raw_transactions")).partitions_def is not None


def test_batch_scoring_follows_new_transaction_days_and_runs_nightly():
    node = GRAPH.get(AssetKey("batch_predictions"))
    assert node.partitions_def == GRAPH.get(AssetKey("raw_transactions")).partitions_def
    assert node.automation_condition.get_label() == "follow_new_transactions"
    assert defs.resolve_schedule_def("nightly_batch_scoring").cron_schedule == "0 2 * * *"


def test_the_landing_zone_sensor_runs_a_landed_day_through_to_its_monitoring_and_runs_by_default():
    sensor = defs.resolve_sensor_def("landing_zone_sensor")
    assert sensor.default_status.value == "RUNNING" and sensor.job_name == "landed_day"  # named runs
    targets = {
        k.to_user_string() for k in defs.resolve_job_def("landed_day").asset_layer.executable_asset_keys
    }
    assert {"raw_customers", "raw_merchants", "raw_transactions", "raw_labels"} <= targets
    assert {"customer_features", "online_customer_stats", "batch_predictions", "monitoring_report"} <= targets
    assert not targets & {"training_set", "fraud_model", "fraud_model_champion"}


def test_retraining_is_a_job_with_the_gates_and_a_sensor_that_starts_it():
    job = defs.resolve_job_def("retrain_fraud_model")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "training_set",
        "fraud_model",
        "fraud_model_champion",
    }
    assert defs.resolve_sensor_def("retrain_fraud_model_sensor").job_name == "retrain_fraud_model"


def test_the_executor_is_in_process_unless_another_is_asked_for(monkeypatch):
    from mlplatform.profiles import EXECUTOR_ENV_VAR, run_executor

    monkeypatch.delenv(EXECUTOR_ENV_VAR, raising=False)
    assert run_executor().name == "in_process"  # one code-location load per run, not one per step
    monkeypatch.setenv(EXECUTOR_ENV_VAR, "multiprocess")
    multiprocess = run_executor()
    assert multiprocess.name == "multiprocess"
    # each step forked from a process that imported the code location once; a run sets how many at once
    config = multiprocess.config_schema.resolve_config({"config": {"max_concurrent": 2}}).value["config"]
    assert config["start_method"] == {"forkserver": {}} and config["max_concurrent"] == 2
    monkeypatch.setenv(EXECUTOR_ENV_VAR, "k8s")
    assert run_executor().name == "k8s"  # one pod per step, sized by the dagster-k8s/config tags
    monkeypatch.setenv(EXECUTOR_ENV_VAR, "kubernetes")
    with pytest.raises(ValueError, match="choose in_process, multiprocess or k8s"):
        run_executor()


def test_both_workspaces_name_the_code_location_the_platform_launches_its_runs_in():
    """Runs, their retries and `mlplatform demo` find the code location by name: workspace.yaml (each
    process its own code server) and workspace.code_server.yaml (one shared server) must agree."""
    import yaml

    from mlplatform.settings import (
        CODE_LOCATION,
        CODE_SERVER_PORT_ENV_VAR,
        CODE_SERVER_WORKSPACE,
        DEFINITIONS_MODULE,
        PROJECT_ROOT,
    )

    [own] = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"]
    assert own["python_module"] == {"module_name": DEFINITIONS_MODULE, "location_name": CODE_LOCATION}
    [shared] = yaml.safe_load(CODE_SERVER_WORKSPACE.read_text())["load_from"]
    assert shared["grpc_server"]["location_name"] == CODE_LOCATION
    assert shared["grpc_server"]["port"] == {"env": CODE_SERVER_PORT_ENV_VAR}
    assert f"-m {DEFINITIONS_MODULE} --location-name {CODE_LOCATION}" in CODE_SERVER_WORKSPACE.read_text()


def test_the_lineage_runs_from_the_files_that_land_to_the_predictions_served():
    landing, served = GRAPH.get(AssetKey("landing_zone")), GRAPH.get(AssetKey("prediction_log"))
    assert not landing.is_materializable and not served.is_materializable  # written outside Dagster
    assert {"raw_customers", "raw_merchants", "raw_transactions", "raw_labels"} <= {
        k.to_user_string() for k in GRAPH.get(AssetKey("landing_zone")).child_keys
    }
    champions = {f"{name}_champion" for name in models}
    assert champions | {"online_customer_stats", "online_merchant_stats"} == {
        k.to_user_string() for k in served.parent_keys
    }
    for name in (
        "serving_health",
        "serving_skew",
        "merchant_risk_serving_health",
        "merchant_risk_serving_skew",
    ):
        assert AssetKey("prediction_log") in GRAPH.get(AssetKey(name)).parent_keys
    assert landing.description and served.description


def test_runs_have_names_that_say_what_they_do():
    """Named jobs for each stage, so no run of the loop or the demo is an anonymous asset job."""
    stages = {
        "landed_day": {
            "raw_transactions",
            "stg_transactions",
            "batch_predictions",
            "feature_drift",
            "merchant_risk_feature_drift",
            "monitoring_report",
            "merchant_risk_performance",
            "merchant_risk_monitoring_report",
        },
        "refresh_features_and_model": {"customer_features", "online_customer_stats", "fraud_model_champion"},
        "batch_scoring": {"batch_predictions"},
        "monitor_day": {
            "feature_drift",
            "merchant_risk_feature_drift",
            "model_performance",
            "serving_skew",
            "monitoring_report",
            "merchant_risk_serving_skew",
            "merchant_risk_monitoring_report",
        },
        "retrain_fraud_model": {"training_set", "fraud_model", "fraud_model_champion"},
    }
    for name, assets in stages.items():
        job = defs.resolve_job_def(name)
        assert job.description and assets <= {
            k.to_user_string() for k in job.asset_layer.executable_asset_keys
        }, name
    refresh = {
        k.to_user_string()
        for k in defs.resolve_job_def("refresh_features_and_model").asset_layer.executable_asset_keys
    }
    assert not refresh & {
        "raw_transactions",
        "batch_predictions",
        "feature_drift",
        "merchant_risk_serving_slo",
    }
    # nothing partitioned in the unpartitioned refresh (a partitioned asset there fails the run)
    partitioned = {k.to_user_string() for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).is_partitioned}
    assert not refresh & partitioned


# what the steps that need them import: a run, a daemon tick or a command must not pay for them to load
ENGINES = {
    "pandas",
    "numpy",
    "pyarrow",
    "duckdb",
    "psycopg",
    "sklearn",
    "mlflow",
    "feast",
    "great_expectations",
}
IMPORTED = "import sys; {statement}; print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"


def imported_by(statement: str, env: dict | None = None) -> set[str]:
    """The top-level modules a fresh interpreter holds after `statement`."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(statement=statement)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return set(done.stdout.split())


def test_loading_the_code_location_imports_none_of_the_engines_its_steps_drive():
    assert imported_by("import mlplatform.definitions") & ENGINES == set()


def test_a_command_that_runs_no_dbt_and_no_step_imports_neither(tmp_path):
    import os

    env = {**os.environ, "MLPLATFORM_STATE_DIR": str(tmp_path)}
    command = "from mlplatform.cli import main; main(['routing'], standalone_mode=False)"
    assert imported_by(command, env) & (ENGINES | {"dagster_dbt", "dbt"}) == set()


def test_dbt_runs_from_an_environment_of_its_own_and_the_platform_never_imports_it():
    """dbt-core is not installed beside the platform (so nothing can import it by accident, ~2 s per code
    location load); dagster-dbt runs the `dbt` of `<venv>/dbt`."""
    import importlib.util
    import sys
    from pathlib import Path

    from mlplatform.settings import DBT_EXECUTABLE

    assert imported_by("import mlplatform.definitions") & {"dbt", "dbt_common", "dbt_adapters"} == set()
    assert importlib.util.find_spec("dbt") is None, (
        "dbt-core is installed beside the platform (an environment made before requirements-dbt.lock): "
        "rm -rf .venv && make env"
    )
    assert Path(DBT_EXECUTABLE).is_file()
    assert Path(DBT_EXECUTABLE).parents[2] == Path(sys.executable).parents[1]  # <venv>/dbt/bin/dbt


# what every run worker, daemon tick, command and server imports, or imports when its step runs
LIBRARIES = ("dagster", "dagster_dbt", "pandas", "sklearn", "mlflow", "feast", "great_expectations")


def test_the_environment_holds_every_modules_bytecode():
    """Python reads .pyc files even where PYTHONDONTWRITEBYTECODE forbids writing them: without them (an
    install with --no-compile), every process compiles each module it imports again."""
    import importlib.util
    from pathlib import Path

    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, name
        assert Path(importlib.util.cache_from_source(spec.origin)).is_file(), (
            f"{name} was installed without its bytecode: rm -rf .venv && make env"
        )


INSTRUMENTED = """
import mlplatform, feast, checked_elsewhere
from typeguard import TypeCheckError

def instrumented(function):  # typeguard recompiles a function with calls to its checks
    return "TypeCheckMemo" in function.__code__.co_names

feast_methods = [
    member
    for cls in (feast.FeatureView, feast.OnDemandFeatureView, feast.FeatureService, feast.Entity, feast.Field)
    for member in vars(cls).values()
    if callable(member) and hasattr(member, "__code__")
]
print(len(feast_methods), sum(map(instrumented, feast_methods)), instrumented(checked_elsewhere.double))
try:
    checked_elsewhere.double("two")
except TypeCheckError:
    print("checked")
"""


def test_feast_loads_without_typeguards_instrumentation_and_other_packages_keep_it(tmp_path):
    """Feast's `@typechecked` recompiles ~950 functions on import (~3 s of CPU per process): the platform
    imports Feast without it, and leaves typeguard alone for everything else."""
    import os
    import subprocess
    import sys

    (tmp_path / "checked_elsewhere.py").write_text(
        "from typeguard import typechecked\n\n\n@typechecked\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", INSTRUMENTED], capture_output=True, text=True, check=True, env=env
    )
    counted, feast_instrumented, elsewhere_instrumented = done.stdout.split()[:3]
    assert int(counted) > 20 and feast_instrumented == "0"
    assert elsewhere_instrumented == "True" and done.stdout.split()[3] == "checked"

"""The Kubernetes Jobs dagster-k8s would launch for a step: the asset's real op tags on top of what the
Helm values give the run launcher and the code location. Built by dagster-k8s itself; no cluster."""

import json

import kubernetes_validate
import pytest
from dagster import AssetKey
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient
from kubernetes.utils.quantity import parse_quantity

from mlplatform import k8s
from mlplatform.definitions import defs
from mlplatform.k8s import k8s_config_tags
from tests.deploy.deploy_files import KUBERNETES_VERSION, code_location, helm_values


def step_job(asset: str, values: dict) -> dict:
    """The Job body (as sent to the API server) for one step of `asset` under `k8s_job_executor`: the
    same merge as its step handler, from the instance's run launcher, the code location and the op tags."""
    location = code_location(values)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    from_launcher = K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        labels=launcher.get("labels"),
        security_context=launcher["securityContext"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"pod_spec_config": launcher["runK8sConfig"]["podSpecConfig"]}
        ),
    )
    # what `includeConfigInLaunchedRuns` hands from the code location to its runs and steps
    from_location = K8sContainerContext(
        image_pull_policy=location["image"]["pullPolicy"],
        labels=location.get("labels"),
        env_config_maps=[source["name"] for source in location["envConfigMaps"]],
        env_secrets=[source["name"] for source in location["envSecrets"]],
        volumes=location["volumes"],
        volume_mounts=location["volumeMounts"],
        resources=location["resources"],
    )
    op_tags = defs.resolve_assets_def(AssetKey(asset)).op.tags
    context = from_launcher.merge(from_location).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags))
    )
    job_config = DagsterK8sJobConfig(
        job_image=f"{location['image']['repository']}:{location['image']['tag']}",
        dagster_home="/opt/dagster/dagster_home",
        postgres_password_secret=values["global"]["postgresqlSecretName"],
    )
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{asset.replace('_', '-')}",
        user_defined_k8s_config=context.run_k8s_config,
        component="step_worker",
    )
    return ApiClient().sanitize_for_serialization(job)


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def memory(job: dict, kind: str) -> int:
    return int(parse_quantity(container(job)["resources"][kind]["memory"]))


@pytest.fixture(scope="module")
def values() -> dict:
    return helm_values("prod")


@pytest.mark.parametrize("asset", ["raw_transactions", "stg_transactions", "training_set", "fraud_model"])
def test_step_job_is_a_valid_kubernetes_job(asset, values):
    job = step_job(asset, values)
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert container(job)["image"] == "registry.example.com/mlplatform:0.1.0"


def test_training_asks_for_more_memory_than_ingestion(values):
    training, fraud_model, ingestion = (
        step_job(asset, values) for asset in ("training_set", "fraud_model", "raw_transactions")
    )
    # Feast's point-in-time retrieval peaks at 5.7 GB on ~1M rows (README benchmarks)
    assert memory(training, "limits") >= 6 * 2**30
    assert memory(fraud_model, "limits") == memory(training, "limits")
    assert memory(training, "requests") > 2 * memory(ingestion, "requests")
    for job in (training, ingestion):
        assert memory(job, "requests") == memory(job, "limits"), "promised memory is never reclaimed"


def test_steps_without_a_size_get_the_code_location_default(values):
    job = step_job("fraud_model_champion", values)
    assert container(job)["resources"] == code_location(values)["resources"]


def test_step_pods_get_the_platform_settings_and_no_secret_values(values):
    job = step_job("training_set", values)
    spec = job["spec"]["template"]["spec"]
    main = container(job)
    assert {"configMapRef": {"name": "mlplatform-config"}} in main["envFrom"]
    assert {"secretRef": {"name": "mlplatform-secrets"}} in main["envFrom"]
    dagster_password = next(e for e in main["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
    assert dagster_password["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql"
    assert all("value" not in e for e in main["env"] if "PASSWORD" in e["name"])
    assert {"name": "state", "mountPath": "/var/lib/mlplatform"} in main["volumeMounts"]
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "mlplatform-state"
    assert main["securityContext"]["runAsNonRoot"] is True
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_dagster_pods_carry_the_label_the_mlflow_network_policy_admits(environment):
    """The MLflow NetworkPolicy (deploy/k8s) admits pods labelled mlplatform.io/mlflow-client: the code
    server, the run pods and the step pods (training, registration, promotion all reach MLflow)."""
    from tests.deploy.deploy_files import manifests

    (policy,) = [d for _, d in manifests() if d["metadata"]["name"] == "mlflow-clients-only"]
    ((admitted,),) = [
        [s["podSelector"]["matchLabels"] for s in rule["from"]] for rule in policy["spec"]["ingress"]
    ]
    values = helm_values(environment)
    assert admitted.items() <= code_location(values)["labels"].items()  # code server pod
    assert admitted.items() <= values["runLauncher"]["config"]["k8sRunLauncher"]["labels"].items()  # runs
    for asset in ("fraud_model", "fraud_model_champion", "batch_predictions"):
        pod_labels = step_job(asset, values)["spec"]["template"]["metadata"]["labels"]
        assert admitted.items() <= pod_labels.items(), asset


def test_size_tags_round_trip_through_dagster_k8s():
    tags = k8s_config_tags(cpu_request="1", memory_request="3Gi", cpu_limit="2", memory_limit="4Gi")
    assert k8s.USER_DEFINED_K8S_CONFIG_KEY == USER_DEFINED_K8S_CONFIG_KEY
    assert set(tags) == {USER_DEFINED_K8S_CONFIG_KEY}
    assert all(isinstance(value, str) for value in tags.values())  # op tags must be strings
    resources = get_user_defined_k8s_config(tags).container_config["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": "3Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert json.loads(tags[USER_DEFINED_K8S_CONFIG_KEY]) == {"container_config": {"resources": resources}}

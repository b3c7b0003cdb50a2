"""deploy/k8s: every object is valid for the Kubernetes API (offline schemas, strict: unknown fields
fail), kustomize applies all of them, and the prediction API and the feature server are wired as the app
expects."""

from pathlib import Path

import kubernetes_validate
import pytest

from mlplatform.resources.feature_store import FEAST_SERVE_PORT
from tests.deploy.deploy_files import (
    K8S,
    KUBERNETES_VERSION,
    code_location,
    helm_values,
    kustomization,
    manifests,
)

OBJECTS = manifests()


def by_kind(kind: str, name: str) -> dict:
    (found,) = [d for _, d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def containers(kind: str, name: str) -> list[dict]:
    return by_kind(kind, name)["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize(
    "document",
    [d for _, d in OBJECTS],
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in OBJECTS],
)
def test_manifest_is_valid_for_kubernetes(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomize_applies_every_manifest_in_the_folder():
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == files


def test_one_image_for_every_deployment_and_the_code_location():
    (image,) = kustomization()["images"]
    for kind, name in (
        ("Deployment", "prediction-api"),
        ("Deployment", "mlflow"),
        ("Deployment", "feature-server"),
        ("Deployment", "stream-consumer"),
        ("Deployment", "velocity-pusher"),
    ):
        assert [c["image"] for c in containers(kind, name)] == [image["name"]]
    location = code_location(helm_values())["image"]
    assert (image["newName"], image["newTag"]) == (location["repository"], location["tag"])


def test_prediction_api_probes_and_entrypoint():
    (api,) = containers("Deployment", "prediction-api")
    assert api["command"] == ["mlplatform", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {p["containerPort"] for p in api["ports"]} == {8000}
    assert set(api["resources"]) == {"requests", "limits"}


def test_feature_server_probes_entrypoint_and_service():
    """`mlplatform feature-server` (it writes the prod Feast config, then execs `feast serve`) on Feast's
    port; ready only while the registry answers, alive while it accepts connections."""
    from mlplatform.cli import main

    (feast,) = containers("Deployment", "feature-server")
    command = feast["command"]
    assert command[:2] == ["mlplatform", "feature-server"]
    options = main.commands["feature-server"].make_context("feature-server", command[2:]).params
    assert options["port"] == FEAST_SERVE_PORT and options["host"] == "0.0.0.0"
    assert Path(options["repo_dir"]).is_relative_to("/tmp")  # the one writable mount
    mounts = {m["mountPath"] for m in feast["volumeMounts"]}
    assert mounts == {"/tmp"}
    assert feast["securityContext"]["readOnlyRootFilesystem"] is True
    assert [p["containerPort"] for p in feast["ports"]] == [FEAST_SERVE_PORT]
    assert feast["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert feast["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert "startupProbe" in feast and set(feast["resources"]) == {"requests", "limits"}
    service = by_kind("Service", "feature-server")["spec"]
    assert service["selector"] == {"app.kubernetes.io/name": "feature-server"}
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


@pytest.mark.parametrize("name", ["prediction-api", "feature-server"])
def test_disruption_budget_keeps_one_replica(name):
    deployment = by_kind("Deployment", name)["spec"]
    budget = by_kind("PodDisruptionBudget", name)["spec"]
    assert budget["selector"] == deployment["selector"]
    assert budget["minAvailable"] < deployment["replicas"]


@pytest.mark.parametrize("name", ["prediction-api", "feature-server"])
def test_settings_come_from_the_shared_configmap_and_secret(name):
    (api,) = containers("Deployment", name)
    assert {"configMapRef": {"name": "mlplatform-config"}} in api["envFrom"]
    assert {"secretRef": {"name": "mlplatform-secrets"}} in api["envFrom"]
    config = by_kind("ConfigMap", "mlplatform-config")["data"]
    assert {"MLPLATFORM_PG_HOST", "MLPLATFORM_PG_USER", "MLFLOW_TRACKING_URI", "MLPLATFORM_STATE_DIR"} <= set(
        config
    )
    assert not any("PASSWORD" in key or "REDIS_URL" in key or "WEBHOOK" in key for key in config)


def test_prediction_api_mounts_the_state_volume():
    (api,) = containers("Deployment", "prediction-api")
    config = by_kind("ConfigMap", "mlplatform-config")["data"]
    mounts = {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    assert mounts[config["MLPLATFORM_STATE_DIR"]] == "state"


@pytest.mark.parametrize("name", ["prediction-api", "mlflow", "feature-server"])
def test_pods_run_as_non_root_without_privileges(name):
    pod = by_kind("Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_autoscaler_targets_the_api_deployment():
    hpa = by_kind("HorizontalPodAutoscaler", "prediction-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "prediction-api",
    }
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_mlflow_server_is_backed_by_postgres_from_a_secret():
    (mlflow,) = containers("Deployment", "mlflow")
    assert mlflow["command"][:2] == ["mlflow", "server"]
    backend = next(e for e in mlflow["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert set(backend) == {"name", "valueFrom"}
    service = by_kind("Service", "mlflow")["spec"]["ports"][0]["port"]
    tracking_uri = by_kind("ConfigMap", "mlplatform-config")["data"]["MLFLOW_TRACKING_URI"]
    assert tracking_uri == f"http://mlflow:{service}"
    allowed_hosts = next(e for e in mlflow["env"] if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS")["value"]
    assert tracking_uri.removeprefix("http://") in allowed_hosts.split(",")


def test_no_secret_objects_are_kept_in_the_repository():
    assert not [d for _, d in OBJECTS if d["kind"] == "Secret"]

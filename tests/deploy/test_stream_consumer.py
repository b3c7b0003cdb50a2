"""deploy/k8s/stream-consumer.yaml and velocity-pusher.yaml as the code expects them: the entrypoint and
metrics port (which the probes ask), graceful shutdown longer than a read timeout, settings from the
shared ConfigMap and Secret, unprivileged pods with a read-only root; for the scorers an autoscaler on
the very lag series the consumer exports, for its consumer group; for the pusher exactly one pod, never
two at once. (Schema validity of every object is checked with the other manifests, in test_manifests.py.)"""

import pytest

from mlplatform.cli import main
from mlplatform.streaming.metrics import LAG
from mlplatform.streaming.settings import STREAM_REDIS_URL_ENV_VAR, StreamSettings
from tests.deploy.deploy_files import kustomization, manifests

# manifest -> the `mlplatform` command its container runs
READERS = {"stream-consumer.yaml": "stream", "velocity-pusher.yaml": "velocity-push"}


def objects(manifest: str) -> list[dict]:
    return [d for path, d in manifests() if path.name == manifest]


def by_kind(kind: str, manifest: str = "stream-consumer.yaml") -> dict:
    (found,) = [d for d in objects(manifest) if d["kind"] == kind]
    return found


def pod(manifest: str = "stream-consumer.yaml") -> dict:
    return by_kind("Deployment", manifest)["spec"]["template"]


@pytest.mark.parametrize("manifest", READERS)
def test_entrypoint_metrics_port_probes_and_scrape_annotations(manifest):
    (container,) = pod(manifest)["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["mlplatform", READERS[manifest]]
    options = main.commands[command[1]].make_context(command[1], command[2:]).params  # the CLI takes them
    port = options["metrics_port"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert pod(manifest)["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert set(container["resources"]) == {"requests", "limits"}
    (image,) = kustomization()["images"]
    assert container["image"] == image["name"]


@pytest.mark.parametrize("manifest", READERS)
def test_graceful_shutdown_has_time_to_finish_a_batch(manifest):
    assert pod(manifest)["spec"]["terminationGracePeriodSeconds"] * 1000 >= 10 * StreamSettings().block_ms


@pytest.mark.parametrize("manifest", READERS)
def test_redis_url_comes_from_the_secret_and_state_from_the_shared_volume(manifest):
    (container,) = pod(manifest)["spec"]["containers"]
    assert {"secretRef": {"name": "mlplatform-secrets"}} in container["envFrom"]
    assert {"configMapRef": {"name": "mlplatform-config"}} in container["envFrom"]
    config = [d for _, d in manifests() if d["kind"] == "ConfigMap"]
    assert not any(STREAM_REDIS_URL_ENV_VAR in c["data"] for c in config)  # a URL may hold a password
    assert {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod(manifest)["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    } == {"state": "mlplatform-state"}


@pytest.mark.parametrize("manifest", READERS)
def test_runs_unprivileged_on_a_read_only_root(manifest):
    spec = pod(manifest)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}  # the one writable scratch


def test_autoscaler_follows_the_consumer_groups_lag():
    hpa = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "stream-consumer",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == LAG
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"group": StreamSettings().group}
    assert metric["external"]["target"]["type"] == "AverageValue"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_one_velocity_pusher_and_never_two_at_once():
    """Its state is per process: a second pod in the group would see half of each customer's transactions,
    so no autoscaler targets it and an update stops the old pod before starting the new one."""
    deployment = by_kind("Deployment", "velocity-pusher.yaml")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    scaled = [
        d["spec"]["scaleTargetRef"]["name"] for _, d in manifests() if d["kind"] == "HorizontalPodAutoscaler"
    ]
    assert deployment["metadata"]["name"] not in scaled

"""deploy/k8s/stream-consumer.yaml as the code expects it: the entrypoint and metrics port, graceful
shutdown longer than a read timeout, settings from the shared ConfigMap and Secret, unprivileged pods,
and an autoscaler on the very lag series the consumer exports, for its consumer group.
(Schema validity of every object is checked with the other manifests, in test_manifests.py.)"""

from mlplatform.streaming.metrics import LAG
from mlplatform.streaming.settings import STREAM_REDIS_URL_ENV_VAR, StreamSettings
from tests.deploy.deploy_files import kustomization, manifests

OBJECTS = [d for path, d in manifests() if path.name == "stream-consumer.yaml"]


def by_kind(kind: str) -> dict:
    (found,) = [d for d in OBJECTS if d["kind"] == kind]
    return found


def pod() -> dict:
    return by_kind("Deployment")["spec"]["template"]


def test_consumer_entrypoint_metrics_port_and_scrape_annotations():
    (consumer,) = pod()["spec"]["containers"]
    command = consumer["command"]
    assert command[:2] == ["mlplatform", "stream"]
    port = int(command[command.index("--metrics-port") + 1])
    assert [p["containerPort"] for p in consumer["ports"]] == [port]
    assert pod()["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert consumer["livenessProbe"]["httpGet"]["port"] == "metrics"
    (image,) = kustomization()["images"]
    assert consumer["image"] == image["name"]


def test_graceful_shutdown_has_time_to_finish_a_batch():
    assert pod()["spec"]["terminationGracePeriodSeconds"] * 1000 >= 10 * StreamSettings().block_ms


def test_redis_url_comes_from_the_secret_and_state_from_the_shared_volume():
    (consumer,) = pod()["spec"]["containers"]
    assert {"secretRef": {"name": "mlplatform-secrets"}} in consumer["envFrom"]
    assert {"configMapRef": {"name": "mlplatform-config"}} in consumer["envFrom"]
    config = [d for _, d in manifests() if d["kind"] == "ConfigMap"]
    assert not any(STREAM_REDIS_URL_ENV_VAR in c["data"] for c in config)  # a URL may hold a password
    assert {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod()["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    } == {"state": "mlplatform-state"}


def test_consumer_runs_unprivileged():
    spec = pod()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    (consumer,) = spec["containers"]
    assert consumer["securityContext"]["allowPrivilegeEscalation"] is False
    assert consumer["securityContext"]["readOnlyRootFilesystem"] is True


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

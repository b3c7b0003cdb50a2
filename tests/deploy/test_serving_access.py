"""deploy/k8s: who can reach MLflow, change what the prediction API serves, and read features.

MLflow (whose `champion` alias decides the served model) takes connections only from labelled client
pods and requires a user on every request; the prediction API's admin token comes from a Secret; Feast's
feature server (which also accepts writes: /push, /materialize) only from labelled pods of the namespace."""

from tests.deploy.deploy_files import manifests

OBJECTS = manifests()


def find(kind: str, name: str) -> dict:
    (found,) = [d for _, d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(name: str) -> dict:
    (only,) = find("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return only


def env(name: str) -> dict[str, dict]:
    return {e["name"]: e for e in container(name)["env"]}


def test_mlflow_accepts_connections_only_from_labelled_clients_on_its_port():
    policy = find("NetworkPolicy", "mlflow-clients-only")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlflow"}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"mlplatform.io/mlflow-client": "true"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    api_labels = find("Deployment", "prediction-api")["spec"]["template"]["metadata"]["labels"]
    assert api_labels["mlplatform.io/mlflow-client"] == "true"


def test_mlflow_requires_a_user_on_every_request():
    mlflow = container("mlflow")
    assert "--app-name=basic-auth" in mlflow["command"]
    config = env("mlflow")["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in mlflow["volumeMounts"]}
    volume_name = mounts[config.rsplit("/", 1)[0]]
    volumes = {v["name"]: v for v in find("Deployment", "mlflow")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[volume_name]["secret"]["secretName"] == "mlflow-auth"  # the admin password is a Secret


def test_the_prediction_api_authenticates_to_mlflow_and_takes_its_admin_token_from_a_secret():
    api = env("prediction-api")
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert api[variable]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-client"
    token = api["MLPLATFORM_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] == "prediction-api-admin" and "value" not in api["MLPLATFORM_ADMIN_TOKEN"]


def test_the_prediction_api_is_reachable_only_by_its_clients_and_monitoring():
    policy = find("NetworkPolicy", "prediction-api-clients-only")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prediction-api"}
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert {"podSelector": {"matchLabels": {"mlplatform.io/prediction-client": "true"}}} in rule["from"]


def test_the_feature_server_is_reachable_only_by_labelled_pods_of_the_namespace():
    policy = find("NetworkPolicy", "feature-server-clients-only")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "feature-server"}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    # a podSelector alone selects pods of the policy's own namespace: no namespaceSelector, no ipBlock
    assert rule["from"] == [{"podSelector": {"matchLabels": {"mlplatform.io/feature-client": "true"}}}]
    (port,) = container("feature-server")["ports"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]

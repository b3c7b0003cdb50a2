"""deploy/helm: the choices the Dagster chart values make, per environment, and no credentials anywhere
under deploy/."""

import re

import pytest
import yaml

from tests.deploy.deploy_files import DEPLOY, ENVIRONMENTS, code_location, helm_merge, helm_values


@pytest.fixture(params=ENVIRONMENTS)
def values(request) -> dict:
    return helm_values(request.param)


def test_runs_launch_as_kubernetes_jobs_with_the_code_location_settings(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    location = code_location(values)
    assert location["codeServerArgs"] == ["-m", "mlplatform.definitions"]
    assert location["includeConfigInLaunchedRuns"]["enabled"] is True
    assert values["dagster-user-deployments"]["enabled"] is True


def test_dagster_storage_is_an_external_postgres_with_its_password_in_a_secret(values):
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_runs_are_queued_with_at_most_one_training_run(values):
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] >= 1
    training = [limit for limit in queued["tagConcurrencyLimits"] if limit.get("value") == "training"]
    assert training == [{"key": "mlplatform/workload", "value": "training", "limit": 1}]


def test_telemetry_is_off(values):
    assert values["telemetry"]["enabled"] is False


def test_environments_differ_only_in_size_and_addresses():
    base = helm_values()
    for environment in ENVIRONMENTS:
        values = helm_values(environment)
        assert values["dagster-user-deployments"] == base["dagster-user-deployments"]
        assert values["runLauncher"] == base["runLauncher"]
    assert (
        helm_values("prod")["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
            "maxConcurrentRuns"
        ]
        > helm_values("staging")["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
            "maxConcurrentRuns"
        ]
    )


def test_helm_merge_replaces_lists_and_merges_maps():
    merged = helm_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}


def _password_values(node, path=()):
    """Every non-empty scalar under a key that names a password or a connection string."""
    if isinstance(node, dict):
        for key, value in node.items():
            if re.search(r"password|passwd|secret_?key|token|store_uri|redis_url", str(key), re.I) and (
                isinstance(value, str | int) and not isinstance(value, bool) and str(value)
            ):
                yield (*path, key)
            yield from _password_values(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _password_values(value, (*path, i))


def test_no_plaintext_credentials_under_deploy():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        assert not re.search(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", text), (
            f"credentials in a URL: {path}"
        )
        if path.suffix == ".yaml":
            for document in yaml.safe_load_all(text):
                assert not list(_password_values(document)), path

"""The deployment files as the tools would read them: Helm's layered values, kustomize's resources."""

from pathlib import Path

import yaml

from mlplatform.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
HELM = DEPLOY / "helm"
K8S = DEPLOY / "k8s"
ENVIRONMENTS = ("staging", "prod")
# the oldest minor version still supported by the major managed offerings when this was written
KUBERNETES_VERSION = "1.31"


def helm_merge(base: dict, override: dict) -> dict:
    """Helm's rule for `-f a.yaml -f b.yaml`: maps merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def helm_values(environment: str | None = None) -> dict:
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    if environment:
        values = helm_merge(values, yaml.safe_load((HELM / f"values-{environment}.yaml").read_text()))
    return values


def code_location(values: dict) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[tuple[Path, dict]]:
    """Every object kustomize would apply, with the file it comes from."""
    return [
        (K8S / name, document)
        for name in kustomization()["resources"]
        for document in yaml.safe_load_all((K8S / name).read_text())
        if document
    ]

"""The GitHub workflows: valid against GitHub's schema (check-jsonschema's vendored copy, offline) and
keeping their promises: what a pull request must pass, staging before production, pinned actions."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
ACTIONS = PROJECT_ROOT / ".github" / "actions"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
# a release tag (v1.2.3) or a full commit SHA; a moving ref (v4, main) is not a pin
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())  # YAML 1.2: `on` stays a string


def validate(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def runs(workflow: dict) -> str:
    """Every shell command of every job, one text."""
    return "\n".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job.get("steps", [])
    )


def uses_references(node) -> list[str]:
    """Every `uses:` value (steps and reusable-workflow jobs) anywhere in a parsed file."""
    if isinstance(node, dict):
        own = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return own + [ref for value in node.values() for ref in uses_references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in uses_references(item)]
    return []


def is_pinned(reference: str) -> bool:
    if reference.startswith("./"):  # this repository's own action or workflow, same commit
        return True
    if reference.startswith("docker://"):
        return re.search(r":[\w.-]*\d[\w.-]*$|@sha256:[0-9a-f]{64}$", reference) is not None
    return PINNED.match(reference) is not None


def test_every_workflow_and_action_is_valid():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "deploy.yml", "deploy-environment.yml"}
    for schema, paths in (
        ("vendor.github-workflows", workflows),
        ("vendor.github-actions", sorted(ACTIONS.glob("*/action.yml"))),
    ):
        result = validate(schema, *paths)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "broken",
    [
        "on: push\njobs:\n  a:\n    steps:\n      - run: echo\n",  # no runs-on
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    timeout-minutes: soon\n    steps:\n"
        "      - run: echo\n",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - name: does nothing\n",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    permissions:\n      contents: admin\n"
        "    steps:\n      - run: echo\n",
    ],
    ids=["no-runs-on", "timeout-not-a-number", "step-without-run-or-uses", "unknown-permission-level"],
)
def test_the_validator_rejects_a_broken_workflow(tmp_path, broken):
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    result = validate("vendor.github-workflows", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "broken.yml" in result.stdout


def test_pull_requests_run_every_check():
    ci = load(WORKFLOWS / "ci.yml")
    assert "pull_request" in ci["on"]
    commands = runs(ci)
    for command in (
        "make lint",  # ruff
        "make typecheck",  # mypy
        "make security",  # bandit
        "make check-defs",  # dagster definitions validate
        "make test",
        "dbt build",
        "feast plan",
        "actionlint",
    ):
        assert command in commands, f"ci.yml does not run {command!r}"
    services = ci["jobs"]["test"]["services"]
    assert {"postgres", "redis"} <= set(services)


def test_the_pull_request_workflow_runs_what_ci_run_runs():
    """`.ci/run` (one machine, clean clone) and ci.yml (parallel jobs) must not drift apart."""
    targets = re.findall(r"^make (\S+)$", (PROJECT_ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert "test" in targets
    setup = (ACTIONS / "setup" / "action.yml").read_text()
    commands = runs(load(WORKFLOWS / "ci.yml")) + setup
    assert [t for t in targets if f"make {t}" not in commands] == []


def test_main_deploys_staging_then_production_behind_its_environment():
    deploy = load(WORKFLOWS / "deploy.yml")
    jobs = deploy["jobs"]
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert jobs["image"]["needs"] == "ci" and jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    (build,) = [step for step in jobs["image"]["steps"] if "docker/build-push-action" in step.get("uses", "")]
    assert build["with"]["file"] == "deploy/Dockerfile" and build["with"]["push"] is True
    assert "ghcr.io/" in runs({"jobs": {"image": jobs["image"]}})
    staging, production = jobs["staging"], jobs["production"]
    assert staging["needs"] == "image" and "staging" in production["needs"]
    assert staging["with"]["environment"] == "staging"
    assert staging["with"]["values-file"] == "deploy/helm/values-staging.yaml"
    assert production["with"]["environment"] == "production"
    assert production["with"]["values-file"] == "deploy/helm/values-prod.yaml"
    assert staging["uses"] == production["uses"] == "./.github/workflows/deploy-environment.yml"

    called = load(WORKFLOWS / "deploy-environment.yml")
    (job,) = called["jobs"].values()
    assert job["environment"] == "${{ inputs.environment }}"  # the reviewers of `production` gate it
    commands = runs(called)
    assert "helm upgrade --install" in commands
    assert '-f deploy/helm/values.yaml -f "${{ inputs.values-file }}"' in commands
    assert commands.index("helm upgrade") < commands.index("/ready")  # smoke test after the deploy


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml", "deploy-environment.yml"])
def test_least_privilege_and_one_run_at_a_time(name):
    workflow = load(WORKFLOWS / name)
    assert "permissions" in workflow, f"{name}: no top-level permissions (the default token can write)"
    granted = [
        (job_name, scope)
        for job_name, job in {"<workflow>": workflow, **workflow["jobs"]}.items()
        for scope, level in (job.get("permissions") or {}).items()
        if level == "write"
    ]
    assert granted in ([], [("image", "packages")]), f"{name}: write access {granted}"
    has_concurrency = "concurrency" in workflow or all("concurrency" in j for j in workflow["jobs"].values())
    assert has_concurrency, f"{name}: no concurrency group"


def test_every_action_is_pinned_to_a_version():
    files = [*WORKFLOWS.glob("*.yml"), *ACTIONS.glob("*/action.yml")]
    references = [ref for path in files for ref in uses_references(load(path))]
    assert references
    assert [ref for ref in references if not is_pinned(ref)] == []


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("actions/checkout@v4.2.2", True),
        ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", True),
        ("./.github/actions/setup", True),
        ("docker://rhysd/actionlint:1.7.7", True),
        ("actions/checkout@v4", False),
        ("actions/checkout@main", False),
        ("actions/checkout", False),
        ("docker://rhysd/actionlint:latest", False),
        ("docker://rhysd/actionlint", False),
    ],
)
def test_the_pin_check_tells_a_version_from_a_moving_ref(reference, pinned):
    assert is_pinned(reference) is pinned

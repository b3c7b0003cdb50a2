"""deploy/Dockerfile: read instruction by instruction and checked for what the deployment relies on."""

import json
import shlex
import sys
from pathlib import Path

import pytest

from mlplatform.settings import PROJECT_ROOT
from tests.deploy.deploy_files import DEPLOY

TELEMETRY_OFF = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(item.split(maxsplit=1)[0].upper(), item.split(maxsplit=1)[1]) for item in logical]


def stages(parsed) -> list[list[tuple[str, str]]]:
    result = []
    for instruction, arguments in parsed:
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, arguments))
    return result


def env(stage) -> dict[str, str]:
    values = {}
    for instruction, arguments in stage:
        if instruction == "ENV":
            values.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return values


PARSED = instructions((DEPLOY / "Dockerfile").read_text())
BUILD, RUNTIME = stages(PARSED)


def test_multi_stage_with_a_slim_python_311_base():
    assert [args.split()[-1] for i, args in PARSED if i == "FROM"] == ["build", "runtime"]
    (base,) = [args for i, args in PARSED if i == "ARG" and args.startswith("PYTHON_IMAGE=")]
    assert base.startswith("PYTHON_IMAGE=python:3.11-slim")


def test_runs_as_a_non_root_user():
    (user,) = [args for i, args in RUNTIME if i == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can enforce runAsNonRoot"
    assert RUNTIME[-1][0] in {"CMD", "USER", "EXPOSE"} and [i for i, _ in RUNTIME].index("USER") > max(
        n for n, (i, _) in enumerate(RUNTIME) if i == "RUN"
    )


def test_installs_the_lock_file_then_the_project_without_dependencies():
    runs = [args for i, args in BUILD if i == "RUN"]
    lock = next(n for n, r in enumerate(runs) if "pip install -r requirements.lock" in r)
    project = next(n for n, r in enumerate(runs) if "pip install --no-deps" in r)
    assert lock < project
    copies = [args for i, args in BUILD if i == "COPY"]
    assert copies[0] == "requirements.lock ./", "the dependency layer depends on the lock file only"
    assert (PROJECT_ROOT / "requirements.lock").exists()


def test_dbt_manifest_is_prepared_at_build_time():
    runs = " ".join(args for i, args in BUILD if i == "RUN")
    assert "dagster-dbt project prepare-and-package --file mlplatform/transform/project.py" in runs
    assert any(i == "COPY" and args.startswith("--from=build /app") for i, args in RUNTIME)


def test_telemetry_off_and_prod_profile():
    runtime_env = env(RUNTIME)
    assert TELEMETRY_OFF.items() <= runtime_env.items()
    assert runtime_env["MLPLATFORM_PROFILE"] == "prod"


@pytest.mark.parametrize("forbidden", ["ENTRYPOINT"])
def test_no_entrypoint_so_the_chart_and_run_launcher_commands_run_as_given(forbidden):
    assert forbidden not in [i for i, _ in PARSED]


def test_default_command_is_the_code_server():
    (command,) = [json.loads(args) for i, args in RUNTIME if i == "CMD"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-m") + 1] == "mlplatform.definitions"


def test_dockerignore_keeps_local_state_and_the_host_manifest_out():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".venv", "state", ".git", "dbt_project/target"} <= ignored


def test_the_folders_the_package_reads_beside_it_are_in_the_image():
    """The code location reads the dbt project, the Feast repo and the model specs when it loads."""
    from mlplatform.settings import DBT_PROJECT_DIR, FEATURE_REPO_DIR
    from mlplatform.training.spec import SPECS_DIR

    copies = {args for i, args in BUILD if i == "COPY"}
    for folder in (DBT_PROJECT_DIR, FEATURE_REPO_DIR, SPECS_DIR):
        assert f"{folder.name} ./{folder.name}" in copies, folder.name


def test_dbt_is_installed_from_its_own_lock_where_runs_look_for_it():
    """dbt's environment is `<the image's venv>/dbt`, where `DBT_EXECUTABLE` looks beside any interpreter."""
    from mlplatform.settings import DBT_EXECUTABLE

    runs = " ".join(args for i, args in BUILD if i == "RUN")
    assert "python -m venv /opt/venv/dbt" in runs
    assert "/opt/venv/dbt/bin/pip install -r requirements-dbt.lock" in runs
    assert "requirements-dbt.lock ./" in [args for i, args in BUILD if i == "COPY"]
    assert Path(DBT_EXECUTABLE).relative_to(Path(sys.executable).parent.parent) == Path("dbt/bin/dbt")
    assert env(RUNTIME)["PATH"].startswith("/opt/venv/bin:")  # the image's venv: DBT_EXECUTABLE's base

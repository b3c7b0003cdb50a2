"""Shared fixtures: small generated data sets in temporary state folders, real DuckDB and real GX."""

import shutil
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from mlplatform.datagen import GeneratorConfig, generate
from mlplatform.profiles import build_resources

SMALL = GeneratorConfig(
    start_date=date(2026, 3, 1), days=12, customers=150, merchants=40, transactions_per_day=250, seed=7
)


@pytest.fixture(scope="session")
def generated_landing(tmp_path_factory) -> Path:
    """Generated once per session; tests copy it so each owns its landing zone."""
    landing = tmp_path_factory.mktemp("generated") / "landing"
    generate(SMALL, landing)
    return landing


@pytest.fixture
def state(tmp_path, generated_landing) -> Path:
    shutil.copytree(generated_landing, tmp_path / "landing")
    return tmp_path


@pytest.fixture
def resources(state):
    return build_resources(profile="local", state=state)


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def run_assets(assets, resources, instance, partition_key=None, selection=None):
    """Materialize in process, like a run launched from the UI, without raising on a failed step."""
    return materialize(
        assets,
        selection=selection,
        partition_key=partition_key,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )

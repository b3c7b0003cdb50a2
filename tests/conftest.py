"""Shared fixtures: small generated data sets in temporary state folders, real DuckDB and real GX."""

import fcntl
import os
import pickle
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import IO

# the tests' data sets start in 2026-03; the partitions must not depend on whatever `state/` holds
os.environ.setdefault("MLPLATFORM_PARTITIONS_START", "2025-01-01")

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mlplatform.datagen import GeneratorConfig, generate
from mlplatform.profiles import build_resources


@event.listens_for(Engine, "connect")
def _throwaway_sqlite_without_fsync(connection, _record) -> None:
    """The tests' SQLite databases (Dagster's run and event storage, MLflow's store) live in temporary
    folders: they need to survive the test's own processes ending, not the machine crashing. Dagster
    commits every event on a connection of its own, and each commit and close waited for the disk (~7 s of
    the ~70 s a built state takes here). Processes the tests start keep SQLite's default."""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("pragma synchronous = off")


SMALL = GeneratorConfig(
    start_date=date(2026, 3, 1), days=12, customers=150, merchants=40, transactions_per_day=250, seed=7
)
# The built state's data: the smallest on which the model passes every gate (metric floors, slice gaps with
# >= 10 frauds per slice, calibration), so that per-slice AUCs mean something. The prod end-to-end test
# builds the same data on the prod profile and compares it with the built state.
MEDIUM = GeneratorConfig(
    start_date=date(2026, 3, 1), days=16, customers=1_000, merchants=120, transactions_per_day=3_000, seed=11
)
# Days the built state monitors (the demo monitors a week): each is a run of its own, ~5 core-seconds here,
# and monitoring is the same code whatever the day.
BUILT_MONITORED_DAYS = 2


# gate bounds every reasonable model meets (tests that need a candidate through its gates, or that make
# one gate at a time impossible)
LENIENT_GATES = {
    "min_roc_auc": 0.0,
    "min_pr_auc": 0.0,
    "min_recall_at_1pct_fpr": 0.0,
    "champion_tolerance": 1.0,
    "max_slice_auc_gap": 1.0,
    "max_calibration_error": 1.0,
    "max_one_row_latency_ms": 1e6,
}


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


@pytest.fixture(scope="session")
def built_state(tmp_path_factory):
    """The whole graph materialized once on the medium data set, the way `make demo` does it (monitoring
    its last `BUILT_MONITORED_DAYS` days).

    Returns (state folder, demo summary); the build's wall time is in its folder (`BUILD_SECONDS`). Tests
    that change anything work on a copy (`copy_state`).
    With `MLPLATFORM_TEST_BUILT_STATE=<folder>` it is built there once and reused, also by other pytest
    processes at the same time (a file lock: the first builds, the others wait): `make test` sets it for
    the suite and the tests it runs beside; while iterating, set it yourself (delete the folder when the
    code that builds it changes). Each process then holds a shared lock on it until its session ends, for
    a test that must have it to itself (`sole_user_of`).
    """
    shared = os.environ.get("MLPLATFORM_TEST_BUILT_STATE")
    if not shared:
        yield build_state(tmp_path_factory.mktemp("built"))
        return
    state = Path(shared)
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{state}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        summary_file = state / "test-summary.pickle"
        if summary_file.exists():
            built = state, pickle.loads(summary_file.read_bytes())
        else:
            shutil.rmtree(state, ignore_errors=True)  # a build that was interrupted
            built = build_state(state)
    with open(f"{state}.in-use", "w") as in_use:
        fcntl.flock(in_use, fcntl.LOCK_SH)
        IN_USE[state] = in_use
        yield built
        del IN_USE[state]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules whose tests need the built state run after the others, each kept whole (its module fixtures
    set up once) and in its order: while the first process to need the shared state builds it, the
    processes beside it go on with their other tests instead of waiting on its lock."""
    needs_built = {item.module for item in items if "built_state" in item.fixturenames}
    items.sort(key=lambda item: item.module in needs_built)


IN_USE: dict[Path, IO] = {}  # the shared built states this process uses, by their in-use lock files


@contextmanager
def sole_user_of(state: Path) -> Iterator[None]:
    """`state` to this process alone: once every other pytest process using the shared built state has
    ended (a test that hides it would break their copies and reads). Any other folder: at once."""
    in_use = IN_USE.get(state)
    if in_use is None:
        yield
        return
    fcntl.flock(in_use, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(in_use, fcntl.LOCK_SH)


BUILD_SECONDS = "test-build-seconds"  # the built state's `materialize_all` wall time, in its folder


def build_state(state: Path):
    from mlplatform.demo import materialize_all

    generate(MEDIUM, state / "landing")
    started = time.perf_counter()
    with built_instance(state) as instance:
        summary = materialize_all(state, instance, BUILT_MONITORED_DAYS)
    (state / BUILD_SECONDS).write_text(f"{time.perf_counter() - started:.1f}")
    (state / "test-summary.pickle").write_bytes(pickle.dumps(summary))
    return state, summary


def built_instance(state: Path) -> DagsterInstance:
    """The Dagster instance a built state was materialized with (its runs, events and check results)."""
    (state / "dagster").mkdir(exist_ok=True)
    return DagsterInstance.local_temp(str(state / "dagster"), overrides={"telemetry": {"enabled": False}})


def land_transactions(warehouse, landing_dir: Path, day: date, n: int) -> pd.DataFrame:
    """Land `n` new transactions on `day`: customers and merchants of the last loaded day, new ids."""
    rows = warehouse.read_sql(
        "select transaction_id, customer_id, merchant_id, amount, currency, channel, country, event_ts "
        "from raw.transactions where _partition_date = (select max(_partition_date) from raw.transactions) "
        f"order by transaction_id limit {n}"
    )
    rows["transaction_id"] = [f"T-{day:%Y%m%d}-NEW-{i}" for i in range(n)]
    rows["event_ts"] = pd.Timestamp(day) + pd.to_timedelta(range(9 * 3600, 9 * 3600 + 60 * n, 60), unit="s")
    folder = landing_dir / "transactions" / f"date={day:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "new.parquet", index=False)
    return rows


def copy_state(built: Path, target: Path) -> Path:
    """A private copy of a built state folder; re-apply the Feast registry before using its sources."""
    shutil.copytree(built, target)
    return target


def copy_applied_state(built: Path, target: Path) -> tuple[Path, dict]:
    """A private copy of a built state and the local profile's resources on it, with the Feast registry
    applied again (the copied registry still points at the original's files)."""
    state = copy_state(built, target)
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    return state, resources


def run_assets(assets, resources, instance, partition_key=None, selection=None):
    """Materialize in process, like a run launched from the UI, without raising on a failed step."""
    from mlplatform.definitions import all_checks

    return materialize(
        [*assets, *all_checks],
        selection=selection,
        partition_key=partition_key,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )

"""Incremental dbt builds give the tables a build from scratch gives, and rebuild only the affected days.

Real components throughout: the generator, the ingestion assets (Great Expectations, the loader), dbt on
DuckDB. Each test ingests and builds incrementally in one state, then copies it and rebuilds the copy with
`dbt build --full-refresh`: every row of every incremental model and of the parquet files exported for
Feast must be the same. Doubles are compared to 12 significant digits: DuckDB's windowed sums of doubles
depend on the window partition's length (two builds from scratch of different history lengths differ in
the last bits on the same days), everything else exactly.
"""

import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance

from mlplatform.datagen import generate
from mlplatform.definitions import all_assets
from mlplatform.demo import ingestion_runs
from mlplatform.ingestion.assets import raw_customers
from mlplatform.profiles import build_resources
from mlplatform.resources.dbt_command import reuse_partial_parse
from mlplatform.settings import DBT_EXECUTABLE, DBT_PROJECT_DIR
from tests.conftest import SMALL, copy_state, run_assets

INCREMENTAL_MODELS = {"staging": ["stg_transactions"], "marts": ["customer_features", "merchant_features"]}
FEATURE_MARTS = INCREMENTAL_MODELS["marts"]
NEXT_DAY = SMALL.start_date + timedelta(days=SMALL.days)


def dbt_build(state: Path, *args: str, command: str = "build") -> str:
    """`dbt build` (or `command`) on the state's warehouse, as the dbt asset runs it; returns the compiled
    customer_features SQL of the run (what it rebuilt). dbt runs in the state's folder with the warehouse's
    paths relative to it: every state's profile is then the same, and each run reuses the last one's parse."""
    env = build_resources(profile="local", state=state)["warehouse"].dbt_env()
    relative = {key: os.path.relpath(env[key], state) for key in WAREHOUSE_PATHS}
    return run_dbt(env | relative, "local", state / "dbt-target", *args, command=command, cwd=state)


WAREHOUSE_PATHS = ("MLPLATFORM_DUCKDB_PATH", "MLPLATFORM_FEAST_DATA_DIR")
# where each profile target's last run left its parse: this process's own (another's could be mid-write)
PARSE_CACHE = Path(tempfile.gettempdir()) / f"mlplatform-test-dbt-parse-{os.getpid()}"


def run_dbt(
    env: dict[str, str],
    target: str,
    target_dir: Path,
    *args: str,
    command: str = "build",
    cwd: Path = DBT_PROJECT_DIR,
) -> str:
    """`dbt build` (or `command`) of the project for a profile target and the warehouse `env` points at,
    starting from the last run's parse, as the dbt asset does (dbt parses again what changed, the whole
    project if the profile did); returns the compiled customer_features SQL (what the run rebuilt)."""
    shutil.rmtree(target_dir / "compiled", ignore_errors=True)  # what is read back is this run's
    reuse_partial_parse(PARSE_CACHE, target_dir, target)
    options = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    options += ["--target", target, "--target-path", str(target_dir)]
    env = {"PATH": "/usr/bin:/bin", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", **env}
    done = subprocess.run(
        [DBT_EXECUTABLE, command, *options, *args], env=env, capture_output=True, text=True, cwd=cwd
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return (target_dir / "compiled" / "mlplatform" / "models" / "marts" / "customer_features.sql").read_text()


def ingest(state: Path, instance: DagsterInstance, only: set[str] | None = None) -> None:
    """The landed partitions through the ingestion assets and their blocking checks (the sensor's runs)."""
    resources = build_resources(profile="local", state=state)
    for _, selection, partition_key in ingestion_runs(resources["landing_zone"]):
        if only is None or partition_key in only:
            result = run_assets(all_assets, resources, instance, partition_key, selection)
            assert result.success, partition_key


def tables(state: Path) -> dict[str, pd.DataFrame]:
    """Every incremental model and every exported feature file, sorted, doubles to 12 significant digits."""
    warehouse = build_resources(profile="local", state=state)["warehouse"]
    frames = {
        f"{schema}.{model}": warehouse.read_sql(f"select * from {schema}.{model}")
        for schema, models in INCREMENTAL_MODELS.items()
        for model in models
    }
    for mart in FEATURE_MARTS:
        frames[f"export {mart}"] = pd.read_parquet(state / "feast" / "data" / mart)
    return {name: comparable(frame) for name, frame in frames.items()}


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({c: str for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})
    for column in frame.select_dtypes("float").columns:
        frame[column] = frame[column].map(lambda v: float(f"{v:.12g}"))
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def assert_same_as_full_refresh(state: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "full-refresh"
    shutil.copytree(state, scratch)
    shutil.rmtree(scratch / "feast" / "data")  # the build from scratch writes every file itself
    # the compared models and what they read, without the data tests (the incremental build ran them)
    dbt_build(scratch, "--full-refresh", "--select", *(f"+{m}" for m in FEATURE_MARTS), command="run")
    incremental, full = tables(state), tables(scratch)
    for name in full:
        assert len(incremental[name]) == len(full[name]) > 0, name
        pd.testing.assert_frame_equal(incremental[name], full[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def first_build(tmp_path_factory, generated_landing) -> Path:
    """The small data set ingested and built once by dbt (from scratch: the first build)."""
    state = tmp_path_factory.mktemp("incremental") / "state"
    shutil.copytree(generated_landing, state / "landing")
    with DagsterInstance.ephemeral() as instance:
        ingest(state, instance)
    dbt_build(state)
    return state


@pytest.fixture
def built(first_build, tmp_path):
    """A private copy of the first build, and an instance for the test's own ingestion runs."""
    with DagsterInstance.ephemeral() as instance:
        yield copy_state(first_build, tmp_path / "state"), instance


def test_a_landed_day_rebuilds_that_day_only_and_equals_a_full_refresh(built, tmp_path):
    state, instance = built
    generate(replace(SMALL, start_date=NEXT_DAY, days=1), state / "landing")
    ingest(state, instance, only={NEXT_DAY.isoformat()})

    compiled = dbt_build(state)

    assert f"feature_date >= cast('{NEXT_DAY}' as date)" in compiled
    assert "where event_date >= " in compiled  # the transactions of the day's windows, no older ones
    assert_same_as_full_refresh(state, tmp_path)


def test_a_replaced_file_of_an_older_day_rebuilds_from_that_day(built, tmp_path):
    """A corrected file for a day inside the window (some transactions gone, amounts changed, one moved to
    another customer) replaces its partition: the marts are rebuilt from that day, and equal a full
    refresh."""
    state, instance = built
    day = SMALL.start_date + timedelta(days=SMALL.days - 4)
    landed = build_resources(profile="local", state=state)["landing_zone"].files("transactions", day)[0]
    corrected = pd.read_parquet(landed)
    labelled = set(pd.read_parquet(state / "landing" / "labels").transaction_id)  # keep what labels refer to
    corrected = corrected[
        ~corrected.index.isin(corrected.index[::9]) | corrected.transaction_id.isin(labelled)
    ]
    corrected.loc[corrected.index[::5], "amount"] = corrected["amount"] * 3
    corrected.loc[corrected.index[0], "customer_id"] = corrected["customer_id"].iloc[-1]
    corrected.to_parquet(landed, index=False)
    ingest(state, instance, only={day.isoformat()})

    compiled = dbt_build(state)

    assert f"feature_date >= cast('{day}' as date)" in compiled
    assert_same_as_full_refresh(state, tmp_path)


def test_a_new_customer_snapshot_rebuilds_every_day(built, tmp_path):
    """home_country is on every row: a changed snapshot rebuilds the whole mart, as from scratch."""
    state, instance = built
    snapshot_day = SMALL.start_date + timedelta(days=SMALL.days)
    source = next((state / "landing" / "customers").glob("*/*.parquet"))
    customers = pd.read_parquet(source)
    moved = customers.index[::4]  # a quarter of the customers swap home countries among themselves
    customers.loc[moved, "home_country"] = customers.loc[moved, "home_country"].to_numpy()[::-1]
    folder = state / "landing" / "customers" / f"date={snapshot_day}"
    folder.mkdir(parents=True)
    customers.to_parquet(folder / "customers.parquet", index=False)
    resources = build_resources(profile="local", state=state)
    assert run_assets(all_assets, resources, instance, selection=[raw_customers]).success

    compiled = dbt_build(state)

    assert "feature_date >= cast(" not in compiled
    assert_same_as_full_refresh(state, tmp_path)

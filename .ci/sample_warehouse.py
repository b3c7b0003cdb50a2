"""CI: land a small seeded sample and ingest it, so `dbt build` runs on real raw tables.

Runs the demo's ingestion runs (snapshots, then one run per landed day, GX checks included) in one process
on an ephemeral Dagster instance, into $MLPLATFORM_STATE_DIR (default: state/). Nothing downstream of
ingestion is built: that is dbt's job in the next CI step.
"""

import os
import sys
from datetime import date
from typing import cast

from mlplatform.settings import PARTITIONS_START_ENV_VAR, state_dir

# Twelve days: labels (reported 1-20 days later) arrive in the window, so every dbt source has rows.
SAMPLE_START = date(2026, 3, 1)
# the partitions must reach back to the sample before any asset is defined (they are read at import)
os.environ.setdefault(PARTITIONS_START_ENV_VAR, SAMPLE_START.isoformat())

from dagster import DagsterInstance  # noqa: E402

from mlplatform.datagen import GeneratorConfig, generate  # noqa: E402
from mlplatform.definitions import build_definitions  # noqa: E402
from mlplatform.demo import ingestion_runs, quiet_run  # noqa: E402
from mlplatform.profiles import build_resources  # noqa: E402
from mlplatform.resources import LandingZone  # noqa: E402

SAMPLE = GeneratorConfig(
    start_date=SAMPLE_START, days=12, customers=150, merchants=40, transactions_per_day=250, seed=7
)


def main() -> int:
    state = state_dir()
    resources = build_resources(profile="local", state=state)
    landed_day = build_definitions(resources).resolve_job_def("landed_day")
    generate(SAMPLE, state / "landing")
    (state / "feast" / "data").mkdir(parents=True, exist_ok=True)  # dbt exports the marts here for Feast
    failed = []
    with DagsterInstance.ephemeral() as instance:
        for label, assets, partition in ingestion_runs(cast(LandingZone, resources["landing_zone"])):
            keys = [key for asset in assets for key in asset.keys]
            if not quiet_run(landed_day, instance, keys, partition).success:
                failed.append(label)
    print(f"ingested {SAMPLE.days} days into {state / 'warehouse.duckdb'}; failed runs: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

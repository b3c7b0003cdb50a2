"""CI: land a small seeded sample and ingest it, so `dbt build` runs on real raw tables.

Runs the demo's ingestion runs (snapshots, then one run per landed day, GX checks included) in one process
on an ephemeral Dagster instance, into $MLPLATFORM_STATE_DIR (default: state/). Nothing downstream of
ingestion is built: that is dbt's job in the next CI step.
"""

import sys
from datetime import date
from typing import cast

from dagster import DagsterInstance

from mlplatform.datagen import GeneratorConfig, generate
from mlplatform.demo import ingestion_runs, quiet_run
from mlplatform.profiles import build_resources
from mlplatform.resources import LandingZone
from mlplatform.settings import state_dir

# Twelve days: labels (reported 1-20 days later) arrive in the window, so every dbt source has rows.
SAMPLE = GeneratorConfig(
    start_date=date(2026, 3, 1), days=12, customers=150, merchants=40, transactions_per_day=250, seed=7
)


def main() -> int:
    state = state_dir()
    resources = build_resources(profile="local", state=state)
    generate(SAMPLE, state / "landing")
    (state / "feast" / "data").mkdir(parents=True, exist_ok=True)  # dbt exports the marts here for Feast
    failed = []
    with DagsterInstance.ephemeral() as instance:
        for label, assets, partition in ingestion_runs(cast(LandingZone, resources["landing_zone"])):
            result = quiet_run(assets, resources, instance, partition)
            if not result.success:
                failed.append(label)
    print(f"ingested {SAMPLE.days} days into {state / 'warehouse.duckdb'}; failed runs: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

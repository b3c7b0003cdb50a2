"""Ingestion + dbt at scale, with baselines measured in the same run.

    python benchmarks/ingestion_dbt.py [--transactions-per-day 30000 --days 34 --customers 50000]

Figures (JSON in benchmarks/results/ingestion_dbt.json):
- generate: the sample-data generator writing the landing zone;
- ingest: every partition through the Dagster assets (read, GX validation, load), vs. a baseline that
  loads the same parquet files straight into DuckDB with no validation and no Dagster;
- dbt: `dbt build` (models + tests) through the dbt asset;
- peak memory (max RSS) of this process and of its children (dbt runs as a subprocess);
- code-location load time (`import mlplatform.definitions`) vs. `import dagster` alone.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from dagster import AssetSelection, DagsterInstance, materialize
from harness import data_arguments, generator_config, timed

from mlplatform.datagen import generate
from mlplatform.definitions import all_assets
from mlplatform.demo import ingestion_runs
from mlplatform.profiles import build_resources

RESULTS = Path(__file__).parent / "results" / "ingestion_dbt.json"


def import_time(module: str, repeats: int = 3) -> float:
    """Best of `repeats` cold imports in a fresh interpreter."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def baseline_load(landing: Path, target: Path) -> float:
    """The floor: DuckDB reading the same parquet files, no validation, no orchestration."""
    started = time.perf_counter()
    con = duckdb.connect(str(target))
    for table in ("customers", "merchants", "transactions", "labels"):
        con.execute(f"create table {table} as select * from read_parquet('{landing}/{table}/*/*.parquet')")
    con.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    data_arguments(parser, days=34)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = Path(tmp)
        generate_s, generated = timed(lambda: generate(generator_config(args), state / "landing"))
        resources = build_resources(profile="local", state=state)
        landing = resources["landing_zone"]

        def run(selection, partition_key=None):
            result = materialize(
                all_assets,
                selection=selection,
                partition_key=partition_key,
                resources=resources,
                instance=instance,
            )
            assert result.success

        def ingest():
            for _, selection, partition_key in ingestion_runs(landing):
                run(selection, partition_key)

        ingest_s, _ = timed(ingest)
        dbt_s, _ = timed(lambda: run(AssetSelection.groups("transform")))
        baseline_s = baseline_load(state / "landing", state / "baseline.duckdb")
        marts = (
            resources["warehouse"]
            .read_sql(
                "select (select count(*) from marts.customer_features) as customer_features, "
                "(select count(*) from marts.merchant_features) as merchant_features, "
                "(select count(*) from marts.training_labels) as training_labels"
            )
            .iloc[0]
            .to_dict()
        )

    report = {
        "transactions": generated.rows["transactions"],
        "labels": generated.rows["labels"],
        "partitions": len(generated.days),
        "generate_s": round(generate_s, 2),
        "ingest_s": round(ingest_s, 2),
        "ingest_rows_per_s": round((generated.rows["transactions"] + generated.rows["labels"]) / ingest_s),
        "baseline_plain_duckdb_load_s": round(baseline_s, 2),
        "ingest_vs_baseline": round(ingest_s / baseline_s, 1),
        "dbt_build_s": round(dbt_s, 2),
        "ingest_plus_dbt_s": round(ingest_s + dbt_s, 2),
        "peak_rss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "mart_rows": {k: int(v) for k, v in marts.items()},
        "import_definitions_s": round(import_time("mlplatform.definitions"), 2),
        "import_dagster_only_s": round(import_time("dagster"), 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:<32} {value}")


if __name__ == "__main__":
    main()

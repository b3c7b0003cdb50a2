"""What loading the code location costs: fresh interpreters importing `mlplatform.definitions` (what every
run worker, daemon tick, step process and command pays), next to `import dagster` alone in the same run.

    python benchmarks/code_location.py [--repeats 7] [--label after]

Each import is timed in a new interpreter of the running environment (from the project's root, so the
code it loads is the one beside the script), interleaved, best of `--repeats`;
also `import dagster, dagster_dbt` (what the dbt assets need), whether the load imported dbt-core, Feast
alone and through the platform (`mlplatform/__init__.py` imports it without typeguard's instrumentation),
and all a run worker imports. ratio = code location / `import dagster`.
`PYTHONPYCACHEPREFIX=<an empty folder>` measures an environment without bytecode (an install with
--no-compile where PYTHONDONTWRITEBYTECODE is set: nothing is ever cached). The JSON
(benchmarks/results/code_location.json) keeps one run per `--label`: run it with another environment's
interpreter to measure that environment.
"""

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness import fresh_interpreter_seconds, keep_run

from mlplatform.settings import PROJECT_ROOT

RESULTS = Path(__file__).parent / "results" / "code_location.json"
IMPORTS = {
    "import_dagster_s": "import dagster",
    "import_dagster_and_dagster_dbt_s": "import dagster, dagster_dbt",
    "code_location_load_s": "import mlplatform.definitions",
    "import_feast_s": "import feast",
    "import_feast_through_the_platform_s": "import mlplatform, feast",
    # what a run worker that validates, reads features, tracks and trains imports, all told
    "run_worker_imports_s": (
        "import mlplatform.definitions, great_expectations, feast, mlflow, sklearn.ensemble"
    ),
}
DBT_MODULES = (
    "import json, sys, mlplatform.definitions; "
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'dbt', 'dbt_common'})))"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--label", default="latest", help="the key this run is stored under in the JSON")
    parser.add_argument("--note", default="", help="what was measured (e.g. a commit, an environment)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(args.repeats):  # interleaved: a busy moment touches every import alike
        for name, statement in IMPORTS.items():
            times[name].append(fresh_interpreter_seconds(statement))
    best = {name: round(min(values), 2) for name, values in times.items()}
    dbt = subprocess.run(
        [sys.executable, "-c", DBT_MODULES], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    run = {
        "note": args.note,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg(),
        **best,
        "median_s": {name: round(sorted(values)[len(values) // 2], 2) for name, values in times.items()},
        "ratio_code_location_to_import_dagster": round(
            best["code_location_load_s"] / best["import_dagster_s"], 2
        ),
        "ratio_feast_through_the_platform_to_feast": round(
            best["import_feast_through_the_platform_s"] / best["import_feast_s"], 2
        ),
        "pycache_prefix": os.environ.get("PYTHONPYCACHEPREFIX"),
        "dbt_modules_imported_by_the_load": json.loads(dbt.stdout),
        "python": sys.executable,
    }
    keep_run(RESULTS, args.label, run)
    print(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()

"""mlplatform: an asset-based data and ML platform on Dagster.

The machine this runs on may have no internet: every tool's telemetry is switched off before any of
them is imported (an explicit setting in the environment still wins).
"""

import os
import warnings

TELEMETRY_OFF = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
# loading a model from the registry draws a progress bar per load: noise in run logs and the demo
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# dagster-dbt requires sqlglot[rs], whose Rust tokenizer announces on import that it is deprecated (sqlglot
# uses the compiled sqlglotc beside it): that notice, from that module only, is not for our users
warnings.filterwarnings("ignore", category=DeprecationWarning, module="sqlglotrs")

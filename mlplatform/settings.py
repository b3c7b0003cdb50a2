"""Where things live, and where the daily partitions start. Paths only: which services to use is decided
in `profiles.py`."""

import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# dbt's own environment inside this interpreter's (`<venv>/dbt`, made by `make env` and the image's build
# from requirements-dbt.lock): dbt runs as this command, so runs do not depend on PATH and the platform's
# processes never import dbt-core
DBT_EXECUTABLE = str(Path(sys.executable).parent.parent / "dbt" / "bin" / "dbt")
FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"
# the code location `make dev` and the daemon load (workspace.yaml and workspace.code_server.yaml say the
# same; a test holds them equal)
DEFINITIONS_MODULE = "mlplatform.definitions"
CODE_LOCATION = "mlplatform"
# the workspace of processes that share one `dagster code-server start`, and the port it reads
CODE_SERVER_WORKSPACE = PROJECT_ROOT / "workspace.code_server.yaml"
CODE_SERVER_PORT_ENV_VAR = "MLPLATFORM_CODE_SERVER_PORT"

PARTITIONS_START_ENV_VAR = "MLPLATFORM_PARTITIONS_START"
# with nothing landed and nothing configured: a month back, the generator's default history
DEFAULT_HISTORY_DAYS = 30
LANDING_SCAN_ENV_VAR = "MLPLATFORM_LANDING_SCAN_SECONDS"
DEFAULT_LANDING_SCAN_SECONDS = 30


def state_dir() -> Path:
    """The folder holding all local state (landing zone, warehouse, Dagster storage)."""
    return Path(os.environ.get("MLPLATFORM_STATE_DIR", PROJECT_ROOT / "state")).resolve()


def partitions_start_date() -> str:
    """The first daily partition (`YYYY-MM-DD`): where the data starts.

    `MLPLATFORM_PARTITIONS_START` when set (a deployment pins it); otherwise the oldest day of landed
    transactions in the state folder (`make demo` and `generate-data` land them); otherwise 30 days ago.
    Read once, when the code location loads: restart (or reload) it after landing older days.
    """
    configured = os.environ.get(PARTITIONS_START_ENV_VAR, "").strip()
    if configured:
        try:
            return date.fromisoformat(configured).isoformat()
        except ValueError as error:
            raise ValueError(f"{PARTITIONS_START_ENV_VAR}={configured!r} is not a YYYY-MM-DD date") from error
    landed = first_landed_day(state_dir() / "landing" / "transactions")
    if landed is not None:
        return landed
    return (datetime.now(UTC).date() - timedelta(days=DEFAULT_HISTORY_DAYS)).isoformat()


def first_landed_day(folder: Path) -> str | None:
    """The oldest `date=YYYY-MM-DD` sub-folder (other names are ignored)."""
    if not folder.is_dir():
        return None
    days = []
    for child in folder.glob("date=*"):
        try:
            days.append(date.fromisoformat(child.name.removeprefix("date=")))
        except ValueError:
            continue
    return min(days).isoformat() if days else None


def landing_scan_seconds() -> int:
    """How often the landing-zone sensor looks at the landing zone: `MLPLATFORM_LANDING_SCAN_SECONDS`, else
    30. A burst of days lands in a few waves one tick apart (see `mlplatform/ingestion/sensors.py`), so a
    shorter interval lands it sooner. Read when the code location loads."""
    configured = os.environ.get(LANDING_SCAN_ENV_VAR, "").strip()
    if not configured:
        return DEFAULT_LANDING_SCAN_SECONDS
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(f"{LANDING_SCAN_ENV_VAR}={configured!r} is not a whole number of seconds >= 1")
    return int(configured)

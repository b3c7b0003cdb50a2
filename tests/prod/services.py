"""Real server processes for the prod-profile and daemon tests (and the loop benchmark): `mlflow server`,
`dagster-daemon run` on a code server, the prediction API, a webhook; and what they are asked about.

Each process starts in its own session, so stopping it kills its whole process group (the daemon's code
server and run workers, MLflow's workers).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlplatform.settings import (
    CODE_LOCATION,
    CODE_SERVER_PORT_ENV_VAR,
    CODE_SERVER_WORKSPACE,
    DEFINITIONS_MODULE,
    PROJECT_ROOT,
)

BIN = Path(sys.executable).parent
TELEMETRY_OFF = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if condition():
            return time.perf_counter() - started
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout} s")


@contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None, grace: float = 10.0
) -> Iterator:
    """A subprocess in a new session, its output in `log`; on exit its process group is asked to stop
    (SIGTERM), then killed after `grace` seconds."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc, grace)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # children that outlived their parent in the group
        os.killpg(proc.pid, signal.SIGKILL)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def daemon_on_a_code_server(env: dict[str, str], logs: Path) -> Iterator[dict[str, str]]:
    """`dagster-daemon run` on one long-lived `dagster code-server start`, as `make dev` (`dagster dev`) and
    Kubernetes run them, with workspace.code_server.yaml. Yields the environment in which `dagster` commands
    given that workspace reach the same server. (With workspace.yaml the daemon would start a code server of
    its own and replace it every minute, loading the code location again each time.)"""
    port = free_port()
    env = {**env, CODE_SERVER_PORT_ENV_VAR: str(port)}
    server = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
              "-m", DEFINITIONS_MODULE, "--location-name", CODE_LOCATION]  # fmt: skip
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(CODE_SERVER_WORKSPACE)]
    # the code server waits for its runs on SIGTERM: it is stopped after the daemon, with its run workers
    log = logs / "code-server.log"
    with process(server, env, log, cwd=PROJECT_ROOT, grace=0):
        # it listens once the code location is loaded
        wait_until(lambda: reachable("127.0.0.1", port), 180, f"the code server (see {log})")
        with process(daemon, env, logs / "daemon.log", cwd=PROJECT_ROOT):
            yield env


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`mlflow server` on a free port, Postgres backend, artifacts proxied: yields its tracking URI."""
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # no background job runner (GenAI evaluation jobs): a dozen idle processes otherwise
    with process(command, {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, log) as proc:
        uri = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: proc.poll() is None and http_ok(f"{uri}/health"), 120, f"mlflow server (see {log})"
        )
        yield uri


class WebhookReceiver:
    """An HTTP endpoint that records the JSON bodies posted to it (the prod alert sink's target)."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def served_champion(port: int) -> str | None:
    """The champion version the prediction API on `port` serves now."""
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/ready").json()["served_versions"].get("champion")


def materialized_at(instance, asset: str, partition: str | None = None) -> float | None:
    """When `asset` (`partition`) was last materialized in `instance` (epoch s), or None."""
    from dagster import AssetKey, DagsterEventType, EventRecordsFilter

    records = instance.get_event_records(
        EventRecordsFilter(
            DagsterEventType.ASSET_MATERIALIZATION,
            asset_key=AssetKey(asset),
            asset_partitions=[partition] if partition else None,
        ),
        limit=1,
        ascending=False,
    )
    return records[0].timestamp if records else None


@contextmanager
def local_loop(state: Path, logs: Path) -> Iterator[tuple]:
    """The local profile's loop on a built `state`, as `make dev` runs it: `dagster-daemon run` on a code
    server with the project's dagster.local.yaml, and the prediction API (`mlplatform serve`) as processes.
    Yields the state's Dagster instance, the API's port and the processes' environment; stops them on exit."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    home = state / "dagster"
    shutil.copy(PROJECT_ROOT / "dagster.local.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        **TELEMETRY_OFF,
        "DAGSTER_HOME": str(home),
        "MLPLATFORM_STATE_DIR": str(state),
        "MLPLATFORM_PROFILE": "local",
    }
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = [str(BIN / "mlplatform"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with process(api, env, logs / "api.log"), daemon_on_a_code_server(env, logs) as env:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), 180, "the prediction API")
        yield DagsterInstance.from_ref(InstanceRef.from_dir(str(home))), port, env

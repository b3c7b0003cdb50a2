"""Local HTTP servers for the demo, the tests and the benchmarks: a free port, a server subprocess stopped
with its whole process group, `feast serve` on a feature store, the prediction API in a thread."""

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from mlplatform.resources.feature_store import feast_serve_command

# longer than a client's idle expiry (httpx: 5 s, uvicorn's default too): with equal timeouts a request sent
# on a connection idle for ~5 s can meet the server closing it ("Server disconnected without a response")
KEEP_ALIVE_SECONDS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(command: list[str], port: int, log: Path, timeout: float = 120) -> Iterator[int]:
    """Start `command` (listening on `port`) in its own session; yield once it accepts connections."""
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            start_new_session=True,  # default signal handling, and a group to stop it with its children
            stdout=subprocess.DEVNULL,
            stderr=out,
            env={**os.environ, "FEAST_USAGE": "False", "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{command[0]} did not start (exit code {server.poll()}):\n{log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def feast_server(feature_store, repo: Path) -> Iterator[int]:
    """`feast serve` on this feature store's registry and online store; yields its port once it listens."""
    feature_store.write_serving_repo(repo)
    port = free_port()
    with http_server(feast_serve_command(repo, "127.0.0.1", port), port, repo / "serve.log"):
        yield port


@contextmanager
def api_in_thread(app, timeout: float = 60) -> Iterator[str]:
    """Serve an ASGI `app` on a free 127.0.0.1 port from a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the prediction API did not start")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

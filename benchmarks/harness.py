"""What the benchmarks share: the data-size arguments, timers, memory sampling, HTTP load clients and the
JSON their runs are kept in."""

import argparse
import contextlib
import http.client
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import psutil

from mlplatform.datagen import GeneratorConfig

FIRST_DAY = date(2026, 1, 1)  # of the generated data
# The daily partitions start where the data does; the benchmarks generate theirs after the assets load.
os.environ.setdefault("MLPLATFORM_PARTITIONS_START", FIRST_DAY.isoformat())


def data_arguments(parser: argparse.ArgumentParser, days: int = 42) -> argparse.ArgumentParser:
    """Defaults: about 1M transactions and 50k customers, the scale the figures are quoted at."""
    parser.add_argument("--days", type=int, default=days)
    parser.add_argument("--transactions-per-day", type=int, default=30_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    return parser


def built_state_arguments(parser: argparse.ArgumentParser, repeats: int = 3) -> argparse.ArgumentParser:
    """For a benchmark measured on a state built before it: the state, how many times, under which label."""
    parser.add_argument("--state", type=Path, required=True, help="a built local state (read only)")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--label", default="latest", help="the key this run is stored under in the JSON")
    return parser


def generator_config(args: argparse.Namespace) -> GeneratorConfig:
    return GeneratorConfig(
        start_date=FIRST_DAY,
        days=args.days,
        customers=args.customers,
        merchants=args.merchants,
        transactions_per_day=args.transactions_per_day,
    )


def keep_run(results: Path, label: str, run: dict, **shared: object) -> None:
    """`run` stored under `runs[label]` of the JSON at `results`, the other labels' runs kept; `shared`
    (what every run has in common, the data say) at the top level."""
    report = json.loads(results.read_text()) if results.exists() else {}
    report.update(shared)
    report.setdefault("runs", {})[label] = run
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def fresh_interpreter_seconds(statement: str) -> float:
    """How long a new interpreter of this environment takes to run `statement` (imports: start-up cost),
    from the project's root."""
    import subprocess
    import sys

    from mlplatform.settings import PROJECT_ROOT

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=PROJECT_ROOT)
    return time.perf_counter() - started


class PeakRSS:
    """Samples the RSS of this process and its children every 20 ms while active."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.before_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def _rss_mb(self) -> float:
        rss = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):  # a child that exited since the listing
                rss += process.memory_info().rss
        return rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> "PeakRSS":
        self.before_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def latency_stats(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "calls": len(ordered),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "per_s": round(len(ordered) / elapsed),
    }


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST {path} answered {response.status}: {answer[:500]!r}")
    return answer


def http_latency(
    port: int, path: str, bodies: list[bytes], clients: int, per_client: int
) -> dict[str, float]:
    """`clients` threads, each on its own keep-alive connection (opened before the clock starts)."""
    connections = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(clients)]
    for connection in connections:
        post(connection, path, bodies[0])
    start = threading.Barrier(clients + 1)

    def client(n: int) -> list[float]:
        start.wait()
        latencies = []
        for i in range(n * per_client, (n + 1) * per_client):
            began = time.perf_counter()
            post(connections[n], path, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - began)
        return latencies

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, n) for n in range(clients)]
        start.wait()
        started = time.perf_counter()
        latencies = [latency for future in futures for latency in future.result()]
        elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return {"clients": clients, **latency_stats(latencies, elapsed)}

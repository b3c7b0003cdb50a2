"""Streaming: `mlplatform stream` consumers on Redis Streams against a bare Redis loop (the limit) and
`/predict/batch` on the same transactions, all measured in the same run.

    python benchmarks/streaming.py [--messages 4000 --redis-url redis://127.0.0.1:6379/11]

The Redis database given is flushed before and after each measurement (default 11: keep it unused).
Figures (JSON in benchmarks/results/streaming.json):
- throughput: a backlog of `--messages` transactions sent at once (pipelined XADD) and drained by the
  consumers, from the first entry's enqueue to the last result (Redis server clock), messages/s with one
  and two `mlplatform stream` processes, and with one bare Python loop (XREADGROUP 100, XADD a fixed
  result per message, XACK: no validation, no scoring) in its own process;
- latency: enqueue-to-result p50/p99 with the transactions sent at a steady rate, half of what one
  consumer drained (so the figure is service time, not queueing);
- `/predict/batch` (one uvicorn worker, batches of 100, one client) on the same transactions: rows/s
  and p50/p99 per call.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance
from harness import data_arguments, generator_config, http_latency, timed

from mlplatform.datagen import generate
from mlplatform.demo import materialize_all
from mlplatform.localserver import free_port, http_server
from mlplatform.profiles import build_resources
from mlplatform.streaming.replay import send
from mlplatform.streaming.settings import StreamSettings

RESULTS = Path(__file__).parent / "results" / "streaming.json"
BATCH = 100


def transactions(resources, n: int, run: str) -> list[dict]:
    """`n` landed transactions as if they happened now (after the last feature build), ids unique per run."""
    rows = resources["warehouse"].read_sql(
        "select customer_id, merchant_id, amount, currency, channel, country from raw.transactions "
        f"order by transaction_id limit {n}"
    )
    now = datetime.now(UTC)
    return [
        {
            **row,
            "transaction_id": f"{run}-{i}",
            "amount": float(row["amount"]),
            "event_ts": now - timedelta(seconds=i),
        }
        for i, row in enumerate(rows.to_dict("records"))
    ]


def serve_a_champion(registry) -> str:
    """The champion's version: the build must have promoted one through its gates."""
    from mlplatform.resources.model_registry import CHAMPION
    from mlplatform.training.spec import FRAUD_MODEL

    version = registry.version_for(FRAUD_MODEL.name, CHAMPION)
    if version is None:
        raise SystemExit("the built state has no champion: its training did not pass the gates")
    return version


def bare_loop(url: str, settings: StreamSettings, expected: int) -> None:
    """The limit: the same streams and group, a constant result, no validation and no scoring."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    done = 0
    while done < expected:
        replies = client.xreadgroup(
            settings.group, "bare", {settings.input_stream: ">"}, count=BATCH, block=1000
        )
        entries = [entry for _, stream in replies or [] for entry in stream]
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=True)
        for entry_id, _ in entries:
            pipe.xadd(settings.output_stream, {"source_id": entry_id, "result": "{}", "result_ms": now_ms})
        if entries:
            pipe.xack(settings.input_stream, settings.group, *[e for e, _ in entries])
        pipe.execute()
        done += len(entries)


def outputs(client, settings: StreamSettings, ids: list[str]) -> list[tuple[int, int]]:
    """(enqueue ms, result ms) of the results of the entries `ids`."""
    wanted = set(ids)
    return [
        (int(fields["source_id"].split("-")[0]), int(fields["result_ms"]))
        for _, fields in client.xrange(settings.output_stream)
        if fields["source_id"] in wanted
    ]


def wait_for_results(client, settings: StreamSettings, expected: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while client.xlen(settings.output_stream) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.xlen(settings.output_stream)} of {expected} results")
        time.sleep(0.01)


def figures(pairs: list[tuple[int, int]]) -> dict:
    """Throughput from the first enqueue to the last result, and enqueue-to-result percentiles."""
    seconds = (max(r for _, r in pairs) - min(e for e, _ in pairs)) / 1000
    latencies = sorted(r - e for e, r in pairs)
    return {
        "messages": len(pairs),
        "seconds": round(seconds, 2),
        "msgs_per_s": round(len(pairs) / seconds),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


def measure(client, settings, rows: list[dict], rate: float = 0.0) -> dict:
    """Send `rows` (at once, or at `rate`/s) to the running consumers and wait for their results."""
    before = client.xlen(settings.output_stream) if client.exists(settings.output_stream) else 0
    ids = send(settings, rows, rate, client=client)
    wait_for_results(client, settings, before + len(rows))
    return figures(outputs(client, settings, ids))


def phases(client, settings, resources, messages: int, name: str, rate: float | None = None) -> dict:
    """A backlog drained, then a steady stream at `rate` (default: half the drain rate)."""
    drained = measure(client, settings, transactions(resources, messages, f"{name}-backlog"))
    rate = rate or drained["msgs_per_s"] / 2
    steady = measure(
        client, settings, transactions(resources, min(messages, int(rate * 10)), f"{name}-steady"), rate
    )
    return {"backlog": drained, "steady_rate": round(rate), "steady": steady}


def consumers(stack: ExitStack, count: int, logs: Path) -> None:
    """`count` `mlplatform stream` processes (state and Redis from the environment), returned once each
    answers on its metrics port."""
    for n in range(count):
        port = free_port()
        command = [sys.executable, "-m", "mlplatform.cli", "stream", "--metrics-port", str(port)]
        command += ["--batch-size", str(BATCH), "--name", f"bench-{n}"]
        stack.enter_context(http_server(command, port, logs / f"consumer-{n}.log"))


def main() -> None:
    parser = data_arguments(argparse.ArgumentParser(), days=14)
    parser.set_defaults(transactions_per_day=3_000, customers=1_500, merchants=120)
    parser.add_argument("--messages", type=int, default=4_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument(
        "--state", type=Path, help="A built state (e.g. after `make demo`) instead of a new one."
    )
    args = parser.parse_args()

    import redis

    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    settings = StreamSettings(redis_url=args.redis_url)
    report: dict = {"messages": args.messages, "batch_size": BATCH, "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = args.state.resolve() if args.state else Path(tmp) / "state"
        if not args.state:
            generate(generator_config(args), state / "landing")
            build_s, built = timed(lambda: materialize_all(state, instance))
            report["build_whole_graph_s"] = round(build_s, 1)
            report["build_failed_runs"] = built.runs_failed
        resources = build_resources(profile="local", state=state)
        report["champion"] = serve_a_champion(resources["model_registry"])
        os.environ.update(MLPLATFORM_STATE_DIR=str(state), MLPLATFORM_STREAM_REDIS_URL=args.redis_url)

        for count in (1, 2):
            with ExitStack() as stack:
                client.flushdb()
                consumers(stack, count, Path(tmp))
                rate = report["stream_1_consumer"]["steady_rate"] if count == 2 else None
                report[f"stream_{count}_consumer"] = phases(
                    client, settings, resources, args.messages, f"c{count}", rate
                )

        # the limit: a bare loop in its own process, the same two phases at the same steady rate
        client.flushdb()
        settings.client().xgroup_create(settings.input_stream, settings.group, id="0", mkstream=True)
        steady_n = min(args.messages, report["stream_1_consumer"]["steady_rate"] * 10)
        loop = multiprocessing.Process(
            target=bare_loop, args=(args.redis_url, settings, args.messages + steady_n)
        )
        loop.start()
        time.sleep(1)  # blocked in XREADGROUP when the backlog arrives
        report["bare_redis_loop"] = phases(
            client, settings, resources, args.messages, "bare", report["stream_1_consumer"]["steady_rate"]
        )
        loop.join()
        client.flushdb()

        # /predict/batch on the same transactions, batches of the stream's size
        rows = transactions(resources, args.messages, "api")
        bodies = [
            json.dumps({"transactions": rows[i : i + BATCH]}, default=str).encode()
            for i in range(0, len(rows), BATCH)
        ]
        port = free_port()
        with http_server(
            [sys.executable, "-m", "mlplatform.cli", "serve", "--port", str(port)],
            port,
            Path(tmp) / "api.log",
        ):
            stats = http_latency(port, "/predict/batch", bodies, clients=1, per_client=len(bodies))
        report["predict_batch_100"] = {
            "rows_per_s": round(stats["per_s"] * BATCH),
            "call_p50_ms": stats["p50_ms"],
            "call_p99_ms": stats["p99_ms"],
        }

    one, two, bare = (
        report[k]["backlog"]["msgs_per_s"]
        for k in ("stream_1_consumer", "stream_2_consumer", "bare_redis_loop")
    )
    report["ratios"] = {
        "stream_1_over_bare_loop": round(one / bare, 4),
        "stream_2_over_stream_1": round(two / one, 2),
        "stream_1_over_predict_batch": round(one / report["predict_batch_100"]["rows_per_s"], 2),
        "steady_p50_stream_1_over_bare_loop": round(
            report["stream_1_consumer"]["steady"]["p50_ms"]
            / max(1, report["bare_redis_loop"]["steady"]["p50_ms"]),
            1,
        ),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Fixtures of the streaming tests: the real Redis on 127.0.0.1 (database 11 only, flushed before and
after each test) and a copy of the session's built state with its champion, scored by the real
serving code path."""

import os
import socket
from pathlib import Path

import pytest

from mlplatform.profiles import build_resources
from mlplatform.streaming.settings import StreamSettings
from tests.conftest import copy_state

REDIS_HOST = os.environ.get("MLPLATFORM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("MLPLATFORM_TEST_REDIS_PORT", "6379"))
REDIS_DB = 11  # the streaming tests' own database: the only one they ever flush
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_db():
    """A client of the dedicated, empty database."""
    if not redis_reachable():
        pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT}")
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert client.connection_pool.connection_kwargs["db"] == REDIS_DB
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def stream_state(built_state, tmp_path_factory):
    """(state folder, resources) on a private copy of the built state, the streams on database 11."""
    state = copy_state(built_state[0], tmp_path_factory.mktemp("streaming") / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    resources["streaming"] = settings_for(state)
    ensure_champion(resources["model_registry"])
    return state, resources


def ensure_champion(registry) -> None:
    """These tests score with the champion the build promoted through its gates (never one set by hand)."""
    from mlplatform.resources.model_registry import CHAMPION
    from mlplatform.training.spec import FRAUD_MODEL

    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) is not None, (
        "the built state promoted no champion"
    )


def settings_for(state: Path, **overrides) -> StreamSettings:
    return StreamSettings(
        redis_url=REDIS_URL, health_log_dir=str(state / "streaming"), **({"batch_size": 100} | overrides)
    )


@pytest.fixture(scope="module")
def scorer(stream_state):
    from mlplatform.streaming.scoring import StreamScorer

    scoring = StreamScorer(stream_state[1], reload_seconds=0.5)
    yield scoring
    scoring.close()


def results(client, settings: StreamSettings) -> list[dict]:
    """The output stream: one dict per result (the prediction, plus its source id and latency fields)."""
    import json

    return [
        {**json.loads(fields["result"]), "source_id": fields["source_id"], "entry_id": entry}
        for entry, fields in client.xrange(settings.output_stream)
    ]


class Counted:
    """How much a consumer's counters grew while it ran. Deltas, not values: importing Feast puts
    prometheus_client in multiprocess mode (feast.metrics sets PROMETHEUS_MULTIPROCESS_DIR), where series
    of the same name share one value per process, across registries and so across consumers."""

    def __init__(self, consumer) -> None:
        self.registry = consumer.metrics.registry
        self.start = {
            outcome: self.value(outcome) for outcome in ("scored", "duplicate", "dead_letter", None)
        }

    def value(self, outcome: str | None) -> float:
        if outcome is None:
            return self.registry.get_sample_value("mlplatform_stream_reclaimed_total") or 0.0
        return self.registry.get_sample_value("mlplatform_stream_messages_total", {"outcome": outcome}) or 0.0

    def __getitem__(self, outcome: str | None) -> float:
        return self.value(outcome) - self.start[outcome]


def dead_letters(client, settings: StreamSettings) -> list[dict]:
    return [fields for _, fields in client.xrange(settings.dead_letter_stream)]


def drain(consumer, client, settings: StreamSettings, timeout: float = 60.0) -> None:
    """Step the consumer until the group has nothing undelivered and nothing pending."""
    import threading
    import time

    deadline = time.monotonic() + timeout
    watchdog = threading.Timer(timeout, consumer.stop)  # also ends a retry loop (scoring unavailable)
    watchdog.start()
    try:
        while True:
            consumer.step()
            lag, pending = consumer.broker.lag()
            if lag == 0 and pending == 0:
                return
            assert not consumer.stopping.is_set(), f"not drained in {timeout}s: lag {lag}, pending {pending}"
            assert time.monotonic() < deadline, f"not drained: lag {lag}, pending {pending}"
    finally:
        watchdog.cancel()

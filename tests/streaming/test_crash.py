"""`mlplatform stream` as a real process on the real Redis: stopped with SIGTERM it acknowledges only
what it wrote; killed with SIGKILL in the middle of a batch, another consumer reclaims its pending
messages and every transaction ends with exactly one result."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from mlplatform.localserver import free_port
from mlplatform.streaming.consumer import Consumer
from mlplatform.streaming.replay import send
from tests.prod.services import wait_until
from tests.streaming.conftest import REDIS_URL, Counted, dead_letters, drain, results, settings_for
from tests.streaming.test_consumer import last_day_rows

pytestmark = pytest.mark.e2e
TELEMETRY_OFF = {"FEAST_USAGE": "False", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def start_consumer(state, name: str, batch_size: int, log) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "mlplatform.cli", "stream", "--name", name]
    command += ["--batch-size", str(batch_size), "--metrics-port", str(port)]
    env = {
        **os.environ,
        **TELEMETRY_OFF,
        "MLPLATFORM_PROFILE": "local",
        "MLPLATFORM_STATE_DIR": str(state),
        "MLPLATFORM_STREAM_REDIS_URL": REDIS_URL,
    }
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port


def pending_of(client, settings, name: str) -> int:
    consumers = client.xinfo_consumers(settings.input_stream, settings.group)
    return next((c["pending"] for c in consumers if c["name"] == name), 0)


def test_sigterm_acknowledges_only_what_was_written(stream_state, scorer, redis_db, tmp_path):
    state, resources = stream_state
    settings = settings_for(state)
    rows = last_day_rows(resources, 2_000)
    with (tmp_path / "consumer.log").open("wb") as log:
        process, port = start_consumer(state, "graceful", 200, log)
        try:
            wait_until(lambda: redis_db.exists(settings.input_stream) == 1, 120, "the consumer group")
            send(settings, rows)
            wait_until(lambda: redis_db.xlen(settings.output_stream) > 0, 60, "first results", 0.01)
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(timeout=30) == 0, (tmp_path / "consumer.log").read_text()[-3000:]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert "mlplatform_stream_lag" in scraped and "mlplatform_predictions_total" in scraped

    (group,) = redis_db.xinfo_groups(settings.input_stream)
    written = len(results(redis_db, settings)) + len(dead_letters(redis_db, settings))
    assert group["pending"] == 0  # nothing left unacknowledged
    assert written == group["entries-read"]  # every message delivered to it has its result

    consumer = Consumer(settings, scorer, name="after")
    drain(consumer, redis_db, settings)
    ids = [r["transaction_id"] for r in results(redis_db, settings)]
    assert len(ids) == len(set(ids)) == len(rows)


def test_a_consumer_killed_mid_batch_is_taken_over_without_loss_or_duplicates(
    stream_state, scorer, redis_db, tmp_path
):
    state, resources = stream_state
    settings = settings_for(state, claim_idle_ms=300)
    rows = last_day_rows(resources, 2_000)
    send(settings, rows)
    with (tmp_path / "victim.log").open("wb") as log:
        process, _ = start_consumer(state, "victim", 500, log)
        try:
            wait_until(
                lambda: redis_db.xlen(settings.output_stream) > 0, 120, "the victim's first batch", 0.01
            )
            wait_until(lambda: pending_of(redis_db, settings, "victim") > 0, 30, "a batch in hand", 0.001)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    in_hand = pending_of(redis_db, settings, "victim")
    written_before = redis_db.xlen(settings.output_stream)
    assert in_hand > 0, "killed between batches: nothing was in hand"
    assert 0 < written_before < len(rows)

    time.sleep(settings.claim_idle_ms / 1000)
    rescuer = Consumer(settings, scorer, name="rescuer")
    counted = Counted(rescuer)
    drain(rescuer, redis_db, settings)

    ids = Counter(r["transaction_id"] for r in results(redis_db, settings))
    assert set(ids) == {r["transaction_id"] for r in rows}  # none lost
    assert max(ids.values()) == 1  # none scored twice in the output
    assert counted[None] >= in_hand
    assert pending_of(redis_db, settings, "victim") == 0

"""The consumer against the real Redis (database 11) and the real serving code path on the built state:
a replayed day equals batch_predictions, bad messages and unknown entities go to the dead-letter
stream without blocking the group, duplicates get one result, a message that keeps failing is
dead-lettered, and the lag metric follows the backlog."""

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance

from mlplatform.definitions import all_assets, models
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.streaming.consumer import Consumer
from mlplatform.streaming.messages import encode
from mlplatform.streaming.metrics import LAG
from mlplatform.streaming.replay import landed_transactions, send
from tests.conftest import land_transactions, run_assets
from tests.streaming.conftest import Counted, dead_letters, drain, results, settings_for

BATCH_PREDICTIONS = models["fraud_model"].batch

pytestmark = pytest.mark.e2e


def last_day_rows(resources, n: int) -> list[dict]:
    frame = resources["warehouse"].read_sql(
        "select transaction_id, customer_id, merchant_id, amount, currency, channel, country, event_ts "
        "from raw.transactions where _partition_date = (select max(_partition_date) from raw.transactions) "
        f"order by transaction_id limit {n}"
    )
    return frame.to_dict("records")


def consumer_on(stream_state, scorer, name="c1", **settings) -> Consumer:
    state, _ = stream_state
    return Consumer(settings_for(state, **settings), scorer, name=name)


def test_a_replayed_day_is_scored_like_batch_predictions(stream_state, scorer, redis_db):
    """A new day lands after the last feature build; batch_predictions scores it with point-in-time
    features; the same day replayed through the stream must give the same scores and versions, one
    result per transaction, all acknowledged."""
    _, resources = stream_state
    warehouse = resources["warehouse"]
    newest = warehouse.read_sql("select max(event_ts) as ts from raw.transactions")["ts"][0]
    day = (newest + timedelta(days=1)).date()
    land_transactions(warehouse, Path(resources["landing_zone"].landing_dir), day, 60)
    with DagsterInstance.ephemeral() as instance:
        for asset in (raw_transactions, BATCH_PREDICTIONS):
            run = run_assets(all_assets, resources, instance, f"{day:%Y-%m-%d}", AssetSelection.assets(asset))
            assert run.success
    batch = warehouse.read_sql(
        "select transaction_id, score, decision, model_version from inference.batch_predictions "
        f"where _partition_date = '{day:%Y-%m-%d}' order by transaction_id"
    )

    consumer = consumer_on(stream_state, scorer, batch_size=25)
    counted = Counted(consumer)
    sent = send(consumer.settings, landed_transactions(resources["landing_zone"], f"{day:%Y-%m-%d}"))
    assert len(sent) == len(batch) == 60
    drain(consumer, redis_db, consumer.settings)

    streamed = pd.DataFrame(results(redis_db, consumer.settings)).sort_values(
        "transaction_id", ignore_index=True
    )
    assert list(streamed["transaction_id"]) == list(batch["transaction_id"])
    assert list(streamed["model_version"]) == list(batch["model_version"])
    assert streamed["score"].to_numpy() == pytest.approx(batch["score"].to_numpy(), abs=1e-9)
    assert list(streamed["decision"] == "flag") == list(batch["decision"] == 1)
    assert set(streamed["source_id"]) == set(sent)
    assert dead_letters(redis_db, consumer.settings) == []
    assert counted["scored"] == 60


def test_bad_messages_go_to_the_dead_letter_stream_and_never_block_the_group(stream_state, scorer, redis_db):
    _, resources = stream_state
    consumer = consumer_on(stream_state, scorer, batch_size=10)
    good = last_day_rows(resources, 12)
    unknown = {**good[0], "transaction_id": "t-unknown-customer", "customer_id": "C999999"}
    bad = [
        {"transaction": "{broken json"},
        encode({**good[1], "transaction_id": "t-negative", "amount": -5.0}),
        encode({**good[2], "transaction_id": "t-currency", "currency": "XXX"}),
        encode({**good[3], "transaction_id": None}),
        {"something": "else"},
        encode(unknown),
    ]
    interleaved = [
        m for pair in zip([encode(r) for r in good], bad + [None] * 6, strict=True) for m in pair if m
    ]
    for fields in interleaved:
        redis_db.xadd(consumer.settings.input_stream, fields)
    drain(consumer, redis_db, consumer.settings)

    assert sorted(r["transaction_id"] for r in results(redis_db, consumer.settings)) == sorted(
        r["transaction_id"] for r in good
    )
    dead = dead_letters(redis_db, consumer.settings)
    reasons = " | ".join(d["reason"] for d in dead)
    assert len(dead) == len(bad)
    for expected in (
        "Invalid JSON",
        "amount",
        "currency",
        "transaction_id is required",
        "expected one field",
        "unknown_customer",
    ):
        assert expected in reasons
    (refused,) = [d for d in dead if "t-unknown-customer" in d["payload"]]
    assert refused["reason"].startswith("unknown_customer")
    assert json.loads(refused["payload"]) == encode(unknown)  # the message as it was received
    assert redis_db.xpending(consumer.settings.input_stream, consumer.settings.group)["pending"] == 0


def test_a_transaction_sent_again_or_delivered_twice_gets_one_result(stream_state, scorer, redis_db):
    _, resources = stream_state
    consumer = consumer_on(stream_state, scorer, batch_size=50)
    counted = Counted(consumer)
    rows = last_day_rows(resources, 5)
    send(consumer.settings, rows + rows[:2])  # duplicates inside one batch
    drain(consumer, redis_db, consumer.settings)
    send(consumer.settings, rows)  # and the whole lot again, later
    drain(consumer, redis_db, consumer.settings)

    ids = [r["transaction_id"] for r in results(redis_db, consumer.settings)]
    assert sorted(ids) == sorted(r["transaction_id"] for r in rows)
    assert (counted["scored"], counted["duplicate"]) == (5, 7)


def test_a_message_that_keeps_failing_is_dead_lettered_after_the_delivery_limit(
    stream_state, scorer, redis_db
):
    """A message taken by consumers that all died on it (its delivery count at the limit) is not handed
    out again: the next reclaim dead-letters it and the group moves on."""
    _, resources = stream_state
    consumer = consumer_on(stream_state, scorer, claim_idle_ms=50, max_deliveries=3)
    settings = consumer.settings
    poison, fine = last_day_rows(resources, 2)
    poison_id = redis_db.xadd(settings.input_stream, encode(poison))
    redis_db.xreadgroup(settings.group, "died-1", {settings.input_stream: ">"}, count=1)
    # two more consumers took it over and died too: delivered 3 times, the limit
    redis_db.xclaim(settings.input_stream, settings.group, "died-2", 0, [poison_id])
    redis_db.xclaim(settings.input_stream, settings.group, "died-3", 0, [poison_id])
    redis_db.xadd(settings.input_stream, encode(fine))
    import time

    time.sleep(0.1)
    drain(consumer, redis_db, settings)

    (dead,) = dead_letters(redis_db, settings)
    assert dead["source_id"] == poison_id and "delivered 4 times" in dead["reason"]
    assert [r["transaction_id"] for r in results(redis_db, settings)] == [fine["transaction_id"]]


def test_lag_metric_follows_the_backlog(stream_state, scorer, redis_db, tmp_path):
    state, resources = stream_state
    health = PredictionLogWriter(tmp_path / "health")
    consumer = Consumer(settings_for(state, batch_size=100), scorer, name="lagged", health_log=health)
    labels = {"stream": consumer.settings.input_stream, "group": consumer.settings.group}
    lag = lambda: consumer.metrics.registry.get_sample_value(LAG, labels)  # noqa: E731
    known = last_day_rows(resources, 50)  # real entities, new ids (the last day may be a small landed one)
    send(consumer.settings, [{**known[i % len(known)], "transaction_id": f"lag-{i}"} for i in range(250)])

    consumer.observe_lag(force=True)
    seen = [lag()]
    while consumer.step():
        consumer.observe_lag(force=True)
        seen.append(lag())
    assert seen == [250, 150, 50, 0]
    health.close()
    logged = pd.read_json(next((tmp_path / "health").glob("date=*/*.jsonl")), lines=True)
    assert logged["scored"].sum() == 250 and list(logged["lag"]) == [250, 150, 50]

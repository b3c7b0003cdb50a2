"""The pure parts: message parsing against the API's Transaction schema, the serving 422 -> reasons,
the redelivery limit, and the day's figures of streaming_health."""

import json

import pandas as pd
import pytest

from mlplatform.serving.schemas import Transaction
from mlplatform.streaming.consumer import over_delivered
from mlplatform.streaming.health import stream_figures
from mlplatform.streaming.messages import DeadLetter, Message, encode, parse
from mlplatform.streaming.scoring import rejected_rows

GOOD = {
    "transaction_id": "t-1",
    "customer_id": "C000001",
    "merchant_id": "M00001",
    "amount": 12.5,
    "currency": "EUR",
    "channel": "online",
    "country": "FR",
    "event_ts": pd.Timestamp("2026-03-10 09:30:00").to_pydatetime(),  # naive: UTC
}


def message(fields: dict, entry_id: str = "1764460800000-0") -> Message:
    return Message(entry_id, fields)


def test_a_transaction_round_trips_and_naive_times_are_utc():
    parsed = parse(message(encode(GOOD)))
    assert isinstance(parsed, Transaction)
    assert parsed.transaction_id == "t-1"
    assert parsed.event_ts.isoformat() == "2026-03-10T09:30:00+00:00"
    assert message({}).enqueued_ms == 1764460800000


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"transaction": "{not json"}, "payload: Invalid JSON"),
        ({"transaction": json.dumps({**GOOD, "event_ts": None, "amount": -3})}, "amount"),
        ({"transaction": json.dumps({**GOOD, "event_ts": None, "currency": "XXX"})}, "currency"),
        ({"transaction": json.dumps({**GOOD, "event_ts": None, "extra": 1})}, "extra"),
        ({"transaction": json.dumps({**GOOD, "event_ts": "yesterday-ish"})}, "event_ts"),
        ({"transaction": json.dumps({**GOOD, "event_ts": None, "transaction_id": None})}, "transaction_id"),
        ({"data": "{}"}, "expected one field 'transaction'"),
        ({"transaction": encode(GOOD)["transaction"], "more": "x"}, "expected one field"),
    ],
)
def test_a_bad_message_becomes_a_dead_letter_naming_the_problem(fields, reason):
    parsed = parse(message(fields))
    assert isinstance(parsed, DeadLetter)
    assert reason in parsed.reason


def test_rejected_rows_read_the_api_422_per_row_and_for_one_transaction():
    detail = [
        {"type": "unknown_customer", "loc": ["body", "transactions", 2, "customer_id"], "msg": "no features"},
        {"type": "unknown_merchant", "loc": ["body", "transactions", 2, "merchant_id"], "msg": "none"},
        {"type": "unknown_merchant", "loc": ["body", "transactions", 0, "merchant_id"], "msg": "none"},
    ]
    rejected = rejected_rows(detail, rows=3)
    assert set(rejected) == {0, 2}
    assert "unknown_customer" in rejected[2] and "unknown_merchant" in rejected[2]
    assert set(rejected_rows([{"type": "unknown_customer", "loc": ["body", "customer_id"]}], rows=1)) == {0}
    assert rejected_rows("not a list", rows=2) == {}


def test_a_message_delivered_too_often_is_dead_lettered_not_retried():
    first, second = message({}, "1-0"), message({}, "2-0")
    keep, dead = over_delivered([(first, 5), (second, 6)], limit=5)
    assert keep == [first]
    assert [d.message for d in dead] == [second] and "delivered 6 times" in dead[0].reason


def test_stream_figures_of_a_day():
    batches = pd.DataFrame(
        [
            {
                "consumer": "a",
                "scored": 3,
                "duplicates": 1,
                "dead_letters": 0,
                "reclaimed": 0,
                "latencies_ms": [10, 20, 30],
                "lag": 5,
            },
            {
                "consumer": "b",
                "scored": 1,
                "duplicates": 0,
                "dead_letters": 1,
                "reclaimed": 2,
                "latencies_ms": [40],
                "lag": 0,
            },
        ]
    )
    figures = stream_figures(batches)
    assert figures["messages"] == 6 and figures["scored"] == 4 and figures["dead_letter_rate"] == 1 / 6
    assert figures["latency_p50_ms"] == 25.0 and figures["consumers"] == 2 and figures["max_lag"] == 5
    assert figures["reclaimed"] == 2
    assert stream_figures(pd.DataFrame()) == {"messages": 0}

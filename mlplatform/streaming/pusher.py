"""The velocity pusher: the transaction stream in, velocity features pushed through Feast to the online and
the offline store (`mlplatform velocity-push`).

It reads the scoring consumers' input stream as its own consumer group (`velocity` by default), so it
sees every transaction whatever the scorers do and neither slows nor changes them. Per micro-batch: each
valid transaction goes through `mlplatform.velocity` (the customer's last hour in memory), the rows are
pushed with `FeatureStore.push(..., to=PushMode.ONLINE_AND_OFFLINE)`, then the messages are acknowledged.
A crash before the acknowledgement leaves them pending: the restarted pusher rebuilds its state from the
stream's last hour of handled messages (`warm_up`) and pushes them again (the offline stores keep one row
per customer and instant, so the same batch is not stored twice: mlplatform/pushed_history.py).

One pusher per group: the state is per process, and two pushers would each see half of a customer's
transactions. Messages that fail the API's schema are skipped here (the scorers dead-letter them).

Per batch it writes one health line (`StreamSettings.velocity_log_dir`) for `velocity_freshness`: the
push lag of every row (from the entry's enqueue to the push returning, both on the Redis server's clock)
and a read-back probe of up to `PROBES` customers (a read that does not return what was just pushed is
stale: a lost or skipped online write, or an older row written over it).
"""

import logging
import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlplatform.streaming.consumer import GroupMember
from mlplatform.streaming.messages import DeadLetter, Message, parse
from mlplatform.streaming.metrics import VelocityMetrics
from mlplatform.streaming.settings import StreamSettings
from mlplatform.velocity import (
    ENTITY,
    FEATURES,
    HORIZON_SECONDS,
    PUSH_SOURCE,
    VIEW,
    Seen,
    VelocityState,
    latest_per_instant,
    push_frame,
    push_row,
    velocity_frame,
)

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from mlplatform.serving.schemas import Transaction

log = logging.getLogger(__name__)
PROBES = 5  # customers read back after each push
WARM_UP_PAGE = 1_000


def remembered(message: Message, transaction: "Transaction") -> Seen:
    """What the velocity state keeps of a transaction; one without a time happened when it was enqueued."""
    at = transaction.event_ts.timestamp() if transaction.event_ts else message.enqueued_ms / 1000
    return Seen(at, float(transaction.amount), str(transaction.transaction_id))


def prepare_history(store: "FeatureStore") -> None:
    """The velocity view's offline history readable before the first push (an empty parquet file locally,
    the table in Postgres), or an error on an offline store that cannot take pushes."""
    from mlplatform.pushed_history import prepare_history as prepare_view_history

    prepare_view_history(store, VIEW)


class VelocityPusher(GroupMember):
    def __init__(
        self,
        settings: StreamSettings,
        store: "FeatureStore",
        health_log=None,
        name: str | None = None,
        metrics: VelocityMetrics | None = None,
    ) -> None:
        self.store = store
        self.health_log = health_log  # a PredictionLogWriter-like `record(dict)`; None: no health log
        self.metrics = metrics  # None: no /metrics endpoint (tests, benchmarks)
        self.state = VelocityState()
        self.refs = [f"{VIEW}:{feature}" for feature in FEATURES]
        prepare_history(store)
        super().__init__(settings.model_copy(update={"group": settings.velocity_group}), name)
        self.warmed_up = self.warm_up()

    def step(self) -> int:
        """One micro-batch (own leftovers first): returns the number of messages handled."""
        messages = self.own_backlog() or self.broker.read_new()
        if messages:
            self.handle(messages)
        if self.metrics is not None:  # also when idle: the lag a stalled pusher leaves grows on the graph
            lag, _ = self.broker.lag()
            self.metrics.lag.labels(self.settings.input_stream, self.settings.group).set(lag)
        return len(messages)

    def handle(self, messages: list[Message]) -> None:
        """Push the batch's rows, acknowledge, probe, log. A late transaction (older than the customer's
        newest one already pushed) goes to the offline store only: its row is history, and online it would
        replace a newer one (Feast's SQLite store writes whatever comes last)."""
        rows: list[dict] = []
        late: list[dict] = []
        enqueued_ms: list[int] = []
        invalid = duplicates = 0
        for message in messages:
            parsed = parse(message)
            if isinstance(parsed, DeadLetter):
                invalid += 1
                continue
            customer, seen = str(parsed.customer_id), remembered(message, parsed)
            is_late = seen.at < self.state.newest_for(customer)
            values = self.state.update(customer, seen)
            if values is None:
                duplicates += 1
                continue
            (late if is_late else rows).append(push_row(customer, seen, values))
            enqueued_ms.append(message.enqueued_ms)
        current, history = latest_per_instant(rows), latest_per_instant(late)
        if current or history:
            from feast.data_source import PushMode

            if current:
                self.store.push(PUSH_SOURCE, push_frame(current), to=PushMode.ONLINE_AND_OFFLINE)
            if history:
                self.store.push(PUSH_SOURCE, push_frame(history), to=PushMode.OFFLINE)
        readable_ms = self.server_ms()
        self.broker.redis.xack(self.settings.input_stream, self.settings.group, *(m.id for m in messages))
        probes, stale = self.probe(current)
        if self.metrics is not None:
            counts = {"pushed": len(rows), "late": len(late), "duplicate": duplicates, "invalid": invalid}
            for outcome, count in counts.items():
                self.metrics.messages.labels(outcome).inc(count)
            self.metrics.batches.inc()
        if self.health_log is not None:
            self.health_log.record(
                {
                    "logged_at": datetime.now(UTC).isoformat(),
                    "pusher": self.name,
                    "messages": len(messages),
                    "pushed": len(rows) + len(late),
                    "late": len(late),
                    "duplicates": duplicates,
                    "invalid": invalid,
                    "lag_ms": [readable_ms - ms for ms in enqueued_ms],
                    "probes": probes,
                    "stale_reads": stale,
                    "customers_in_state": len(self.state),
                }
            )

    def server_ms(self) -> int:
        seconds, micros = self.broker.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def probe(self, pushed: list[dict]) -> tuple[int, int]:
        """(reads, stale reads): the online values of the last `PROBES` customers pushed, against the rows
        just pushed for them."""
        latest = list({row[ENTITY]: row for row in pushed}.values())[-PROBES:]
        if not latest:
            return 0, 0
        online = self.store.get_online_features(
            features=self.refs, entity_rows=[{ENTITY: row[ENTITY]} for row in latest]
        ).to_dict()
        stale = sum(
            any(online[feature][i] != row[feature] for feature in FEATURES) for i, row in enumerate(latest)
        )
        return len(latest), stale

    def warm_up(self) -> int:
        """The state from the last hour of messages this group already acknowledged (a restart would
        otherwise count every customer from zero for an hour). Pending messages are left out: they were
        never pushed and come next. Returns the number of transactions replayed into the state."""
        redis, stream, group = self.broker.redis, self.settings.input_stream, self.settings.group
        info = next((g for g in redis.xinfo_groups(stream) if g["name"] == group), None)
        if info is None or info["last-delivered-id"] == "0-0":
            return 0
        last = info["last-delivered-id"]
        pending = {
            entry["message_id"]
            for entry in (
                redis.xpending_range(stream, group, min="-", max="+", count=info["pending"])
                if info["pending"]
                else []
            )
        }
        start = f"{max(int(last.split('-')[0]) - HORIZON_SECONDS * 1000, 0)}-0"
        replayed = 0
        while True:
            entries = redis.xrange(stream, min=start, max=last, count=WARM_UP_PAGE)
            for message in (Message(entry_id, fields) for entry_id, fields in entries):
                parsed = parse(message) if message.id not in pending else None
                if parsed is None or isinstance(parsed, DeadLetter):
                    continue
                self.state.update(str(parsed.customer_id), remembered(message, parsed))
                replayed += 1
            if len(entries) < WARM_UP_PAGE:
                return replayed
            start = f"({entries[-1][0]}"


def landed_transactions(warehouse) -> "pd.DataFrame":
    """Every loaded transaction, as the backfill needs it."""
    return warehouse.read_sql("select transaction_id, customer_id, event_ts, amount from raw.transactions")


def backfill(store: "FeatureStore", transactions: "pd.DataFrame") -> int:
    """The velocity history of landed transactions, pushed to the offline store: the rows the pusher would
    have pushed had they come through the stream in event order (`velocity_frame`, the same function).
    Only offline: the online store holds what the pusher wrote last, and an older row must not replace
    it. Run again over the same transactions, it stores the same rows again (one per customer and instant).
    Returns the number of rows."""
    from feast.data_source import PushMode

    prepare_history(store)
    frame = velocity_frame(transactions)
    if len(frame):
        store.push(PUSH_SOURCE, frame, to=PushMode.OFFLINE)
    return len(frame)


def run_pusher(resources: dict, name: str | None = None, metrics_port: int | None = None) -> VelocityPusher:
    """Push until SIGTERM or SIGINT; the batch in hand is pushed and acknowledged before exit. The metrics
    endpoint opens once the history is ready, the group joined and the state warmed up: a probe asking
    it says the pusher is pushing, not merely started."""
    from pathlib import Path

    from prometheus_client import start_http_server

    from mlplatform.resources.prediction_log import PredictionLogWriter

    settings = resources["streaming"]
    health_log = PredictionLogWriter(Path(settings.velocity_log_dir))
    metrics = VelocityMetrics() if metrics_port is not None else None
    store = resources["feature_store"].store()
    pusher = VelocityPusher(settings, store, health_log, name=name, metrics=metrics)
    signal.signal(signal.SIGTERM, pusher.stop)
    signal.signal(signal.SIGINT, pusher.stop)
    if metrics is not None and metrics_port is not None:
        start_http_server(metrics_port, registry=metrics.registry)
    log.warning(
        "velocity pusher %s reading %s as group %s (state warmed up with %d transactions)",
        pusher.name,
        pusher.settings.input_stream,
        pusher.settings.group,
        pusher.warmed_up,
    )
    try:
        pusher.run()
    finally:
        health_log.close()
    return pusher

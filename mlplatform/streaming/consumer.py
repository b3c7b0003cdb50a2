"""The scoring consumer: read a micro-batch from the input stream's consumer group, validate, score it
with the serving code path, write one result per transaction and acknowledge, atomically.

Delivery is at least once: a message is acknowledged only in the same step that writes its result or
dead letter; a consumer that dies leaves its messages pending, and another takes them over once they
have been idle `claim_idle_ms` (XAUTOCLAIM). Results are idempotent: a transaction id gets one result
however often it is delivered or sent.
"""

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Protocol

from mlplatform.serving.schemas import Prediction, Transaction
from mlplatform.streaming.broker import Broker
from mlplatform.streaming.messages import DeadLetter, Message, Result, parse
from mlplatform.streaming.metrics import StreamMetrics
from mlplatform.streaming.scoring import TransientScoringError
from mlplatform.streaming.settings import StreamSettings

log = logging.getLogger(__name__)
LAG_EVERY_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 5.0


class Scorer(Protocol):
    def score(self, transactions: list[Transaction]) -> list[Prediction | str]: ...


def consumer_name() -> str:
    """Unique per process: the pod name in Kubernetes (the hostname), and the pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def split(messages: list[Message]) -> tuple[list[tuple[Message, Transaction]], list[DeadLetter]]:
    """Valid transactions with their messages, and dead letters for the rest."""
    valid, dead = [], []
    for message in messages:
        parsed = parse(message)
        if isinstance(parsed, DeadLetter):
            dead.append(parsed)
        else:
            valid.append((message, parsed))
    return valid, dead


def over_delivered(claimed: list[tuple[Message, int]], limit: int) -> tuple[list[Message], list[DeadLetter]]:
    """Reclaimed messages still worth scoring, and dead letters for those delivered more than `limit`
    times (each delivery ended without a result: the message probably kills or stalls consumers)."""
    keep = [message for message, deliveries in claimed if deliveries <= limit]
    dead = [
        DeadLetter(message, f"delivered {deliveries} times without a result (limit {limit})")
        for message, deliveries in claimed
        if deliveries > limit
    ]
    return keep, dead


def answers(valid: list[tuple[Message, Transaction]], scored: list[Prediction | str]):
    """Results for the predictions, dead letters for the transactions the scorer refused."""
    results, dead = [], []
    for (message, transaction), answer in zip(valid, scored, strict=True):
        if isinstance(answer, Prediction):
            results.append(Result(message, str(transaction.transaction_id), answer))
        else:
            dead.append(DeadLetter(message, answer))
    return results, dead


class GroupMember:
    """A member of a consumer group on the input stream (the scoring consumer, the velocity pusher): it
    takes back its own unacknowledged messages first, then works one micro-batch per `step()` until
    `stop()` (a signal handler), finishing the batch in hand."""

    def __init__(self, settings: StreamSettings, name: str | None) -> None:
        self.settings = settings
        self.name = name or consumer_name()
        self.broker = Broker(settings, self.name)
        self.stopping = threading.Event()
        self.broker.ensure_group()
        self._backlog = self.broker.read_own_pending()

    def run(self) -> None:
        """Until `stop()`: the batch in hand is finished (written and acknowledged) before returning."""
        while not self.stopping.is_set():
            self.step()

    def stop(self, *_signal) -> None:
        self.stopping.set()

    def own_backlog(self) -> list[Message]:
        """What this member read before it restarted and never acknowledged: given out once."""
        backlog, self._backlog = self._backlog, []
        return backlog

    def step(self) -> int:
        """One micro-batch; returns the number of messages handled."""
        raise NotImplementedError


class Consumer(GroupMember):
    def __init__(
        self,
        settings: StreamSettings,
        scorer: Scorer,
        metrics: StreamMetrics | None = None,
        name: str | None = None,
        health_log=None,
    ) -> None:
        self.scorer = scorer
        self.metrics = metrics or StreamMetrics()
        self.health_log = health_log  # a PredictionLogWriter-like `record(dict)`; None: no health log
        self._lag_at = 0.0
        self._lag = 0
        super().__init__(settings, name)

    def step(self) -> int:
        """One micro-batch: own leftovers first, then messages idle elsewhere, then new ones. Returns the
        number of messages handled."""
        self.observe_lag()
        exhausted: list[DeadLetter] = []
        claimed: list[tuple[Message, int]] = []
        messages = self.own_backlog()
        if not messages:
            claimed = self.broker.reclaim()
            messages, exhausted = over_delivered(claimed, self.settings.max_deliveries)
            if not claimed:
                messages = self.broker.read_new()
        if messages or exhausted:
            self.metrics.reclaimed.inc(len(claimed))
            self.handle(messages, exhausted, reclaimed=len(claimed))
        return len(messages) + len(exhausted)

    def handle(self, messages: list[Message], exhausted: list[DeadLetter], reclaimed: int = 0) -> None:
        """Score `messages` and write everything; `exhausted` are dead letters decided before scoring."""
        valid, invalid = split(messages)
        scored = self.score(valid, messages)
        if scored is None:  # stopping while scoring could not happen: leave them pending for others
            return
        results, refused = answers(valid, scored)
        dead = [*exhausted, *invalid, *refused]
        latencies = self.broker.write(results, dead, [*messages, *(d.message for d in exhausted)])
        self.account(latencies, dead, reclaimed)

    def score(self, valid: list[tuple[Message, Transaction]], messages: list[Message]):
        """The scorer's answers; retried with backoff while scoring is impossible (never dead-lettered),
        keeping the messages claimed meanwhile. None if asked to stop before it succeeded."""
        if not valid:
            return []
        delay = 0.1
        while True:
            try:
                return self.scorer.score([transaction for _, transaction in valid])
            except TransientScoringError as error:
                log.warning("scoring unavailable, retrying in %.1fs: %s", delay, error)
                self.broker.keep_alive(messages)
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def account(self, latencies: list[int], dead: list[DeadLetter], reclaimed: int) -> None:
        written = [ms for ms in latencies if ms >= 0]
        duplicates = len(latencies) - len(written)
        self.metrics.messages.labels("scored").inc(len(written))
        self.metrics.messages.labels("duplicate").inc(duplicates)
        self.metrics.messages.labels("dead_letter").inc(len(dead))
        self.metrics.batches.inc()
        for ms in written:
            self.metrics.latency.observe(ms / 1000)
        if self.health_log is not None:
            self.health_log.record(
                {
                    "logged_at": datetime.now(UTC).isoformat(),
                    "consumer": self.name,
                    "scored": len(written),
                    "duplicates": duplicates,
                    "dead_letters": len(dead),
                    "reclaimed": reclaimed,
                    "latencies_ms": written,
                    "lag": self._lag,
                }
            )

    def observe_lag(self, force: bool = False) -> tuple[int, int]:
        now = time.monotonic()
        if not force and now - self._lag_at < LAG_EVERY_SECONDS:
            return -1, -1
        self._lag_at = now
        lag, pending = self.broker.lag()
        self._lag = lag
        labels = (self.settings.input_stream, self.settings.group)
        self.metrics.lag.labels(*labels).set(lag)
        self.metrics.pending.labels(*labels).set(pending)
        return lag, pending

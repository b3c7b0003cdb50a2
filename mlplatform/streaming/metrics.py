"""Prometheus series of a stream consumer (its own registry; the serving layer's series are added)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG = "mlplatform_stream_lag"  # the series the autoscaler follows (deploy/k8s/stream-consumer.yaml)
OUTCOMES = ("scored", "duplicate", "dead_letter")


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "mlplatform_stream_messages",
            "Input messages handled, by outcome: scored (result written), duplicate (the transaction "
            "already had a result), dead_letter.",
            ["outcome"],
            registry=self.registry,
        )
        self.reclaimed = Counter(
            "mlplatform_stream_reclaimed",
            "Messages taken over from a consumer that held them too long (crashed or stuck).",
            registry=self.registry,
        )
        self.batches = Counter("mlplatform_stream_batches", "Micro-batches written.", registry=self.registry)
        self.latency = Histogram(
            "mlplatform_stream_latency_seconds",
            "From enqueue (the input entry's id) to the result written, on the Redis server's clock.",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.lag = Gauge(
            LAG,
            "Entries of the input stream not yet delivered to the consumer group.",
            ["stream", "group"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "mlplatform_stream_pending",
            "Entries delivered to the group and not yet acknowledged (being scored, or held by a dead "
            "consumer until reclaimed).",
            ["stream", "group"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome)


class VelocityMetrics:
    """Series of the velocity pusher (`mlplatform velocity-push --metrics-port`): what it did with the
    messages, and its group's lag on the same series as the scorers' (told apart by the `group` label).
    The endpoint is also what the pusher's Kubernetes probes ask (deploy/k8s/velocity-pusher.yaml)."""

    OUTCOMES = ("pushed", "late", "duplicate", "invalid")

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "mlplatform_velocity_messages",
            "Input messages handled by the velocity pusher, by outcome: pushed (online and offline), late "
            "(older than the customer's newest pushed row: offline only), duplicate (already counted), "
            "invalid (skipped).",
            ["outcome"],
            registry=self.registry,
        )
        self.batches = Counter("mlplatform_velocity_batches", "Micro-batches pushed.", registry=self.registry)
        self.lag = Gauge(
            LAG,
            "Entries of the input stream not yet delivered to the consumer group.",
            ["stream", "group"],
            registry=self.registry,
        )
        for outcome in self.OUTCOMES:
            self.messages.labels(outcome)

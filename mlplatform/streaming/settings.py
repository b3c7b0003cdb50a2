"""Where the scoring stream lives and how the consumer behaves: one resource, chosen per profile."""

from dagster import ConfigurableResource

STREAM_REDIS_URL_ENV_VAR = "MLPLATFORM_STREAM_REDIS_URL"  # redis://host:port/db (rediss:// for TLS)


class StreamSettings(ConfigurableResource):
    """Redis Streams names and consumer settings. All keys share the `{prefix}` hash tag, so the write
    script (results, dead letters, acknowledgements and the dedup set in one step) also runs on a
    Redis Cluster."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "mlplatform:fraud"
    group: str = "scorers"
    batch_size: int = 100  # read N, score them as one batch
    block_ms: int = 1_000  # how long a read waits for new messages (also the shutdown delay)
    claim_idle_ms: int = 30_000  # a message pending this long on a consumer is taken over (XAUTOCLAIM)
    max_deliveries: int = 5  # delivered this often without a result: dead-lettered, never retried again
    dedup_window_seconds: int = 3_600  # a transaction id seen within 1-2 windows is not scored again
    max_stream_length: int = 1_000_000  # results and dead letters are trimmed (approximately) to this
    health_log_dir: str = "state/streaming"  # one JSON line per batch, for `streaming_health`
    latency_p99_warn_ms: float = 1_000.0
    latency_p99_error_ms: float = 5_000.0
    dead_letter_rate_warn: float = 0.001
    dead_letter_rate_error: float = 0.01
    # the velocity pusher (streaming/pusher.py): its own group on the input stream, and `velocity_freshness`
    velocity_group: str = "velocity"
    push_lag_p99_warn_ms: float = 1_000.0  # enqueue to readable online
    push_lag_p99_error_ms: float = 5_000.0
    stale_read_share_warn: float = 0.001  # probe reads not returning what was just pushed
    stale_read_share_error: float = 0.01

    def key(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def input_stream(self) -> str:
        return self.key("transactions")

    @property
    def output_stream(self) -> str:
        return self.key("results")

    @property
    def dead_letter_stream(self) -> str:
        return self.key("dead-letters")

    @property
    def dedup_prefix(self) -> str:
        return self.key("scored:")

    @property
    def velocity_log_dir(self) -> str:
        """The pusher's health log (one JSON line per batch), beside the consumers' own."""
        return f"{self.health_log_dir.rstrip('/')}/velocity"

    def client(self):
        """A Redis client for these streams (replies decoded to str). The prod profile's URL is an
        `EnvVar`, resolved by Dagster only inside runs: the CLI's consumer and pusher resolve it here."""
        import redis

        from mlplatform.resources.env import resolved

        return redis.Redis.from_url(resolved(self.redis_url), decode_responses=True)

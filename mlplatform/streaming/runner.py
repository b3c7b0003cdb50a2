"""The consumer process behind `mlplatform stream`: scorer, metrics endpoint, health log, signals."""

import logging
import signal
from pathlib import Path

from mlplatform.streaming.consumer import Consumer
from mlplatform.streaming.metrics import StreamMetrics

log = logging.getLogger(__name__)


def run_consumer(resources: dict, metrics_port: int | None, name: str | None = None) -> Consumer:
    """Consume until SIGTERM or SIGINT; the batch in hand is written and acknowledged before exit."""
    from prometheus_client import start_http_server

    from mlplatform.resources.prediction_log import PredictionLogWriter
    from mlplatform.streaming.scoring import StreamScorer

    settings = resources["streaming"]
    scorer = StreamScorer(resources)
    metrics = StreamMetrics()
    metrics.registry.register(scorer.metrics_registry)
    health_log = PredictionLogWriter(Path(settings.health_log_dir))
    consumer = Consumer(settings, scorer, metrics, name=name, health_log=health_log)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    if metrics_port is not None:
        start_http_server(metrics_port, registry=metrics.registry)
    log.warning("consumer %s reading %s as group %s", consumer.name, settings.input_stream, settings.group)
    try:
        consumer.run()
    finally:
        health_log.close()
        scorer.close()
    return consumer

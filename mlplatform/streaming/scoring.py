"""The adapter between the stream consumer and the serving layer: the ONLY module of the streaming
package that knows how `/predict` scores.

Today it drives `mlplatform.serving.app.predict` (routing, model versions, online and request-time
features, scoring, prediction log) with a service built the way the API builds it. When the serving
layer exposes its framework-free engine (a `Predictor` taking validated `Transaction`s and returning
`Prediction`s), `StreamScorer` becomes a thin wrapper around it and nothing else here changes.
"""

import threading
from pathlib import Path

from mlplatform.serving.schemas import Prediction, Transaction

ENDPOINT = "stream"  # the `endpoint` label of the serving latency metric for stream batches


class TransientScoringError(RuntimeError):
    """Scoring cannot happen right now (no champion, online store down): retry, never dead-letter."""


class StreamScorer:
    """Scores a micro-batch with the API's code path. `score` returns, per transaction, its prediction or
    the reason it cannot be scored (unknown customer or merchant): a reason is permanent."""

    def __init__(self, resources: dict, reload_seconds: float | None = None) -> None:
        from mlplatform.resources.prediction_log import PredictionLogWriter
        from mlplatform.serving.app import Metrics, Service
        from mlplatform.serving.models import ServedModels
        from mlplatform.serving.routing import RoutingFile
        from mlplatform.training.fraud_model import MODEL_NAME

        settings = resources["serving"]
        self._stop = threading.Event()
        self.log: PredictionLogWriter = resources["prediction_log"].writer()
        models = ServedModels(resources["model_registry"], MODEL_NAME)
        self.service = Service(
            store=resources["feature_store"].store(),
            models=models,
            routing=RoutingFile(Path(settings.routing_file)),
            log=self.log,
            metrics=Metrics(self.log),
        )
        models.refresh()
        models.follow(settings.reload_seconds if reload_seconds is None else reload_seconds, self._stop)

    @property
    def metrics_registry(self):
        """The serving layer's Prometheus series (predictions by arm and version, scoring latency)."""
        return self.service.metrics.registry

    def score(self, transactions: list[Transaction]) -> list[Prediction | str]:
        from fastapi import BackgroundTasks, HTTPException

        from mlplatform.serving.app import predict

        tasks = BackgroundTasks()
        try:
            predictions, _, _ = predict(self.service, transactions, ENDPOINT, tasks)
        except HTTPException as error:
            if error.status_code != 422:
                raise TransientScoringError(str(error.detail)) from error
            rejected = rejected_rows(error.detail, len(transactions))
            if not rejected:  # a 422 that names no row: the whole batch is refused for this reason
                return [str(error.detail)] * len(transactions)
            return self._score_without(transactions, rejected)
        for task in tasks.tasks:  # shadow scoring: the API runs it after the response, here right away
            task.func(*task.args, **task.kwargs)
        return list(predictions)

    def _score_without(self, transactions: list[Transaction], rejected: dict[int, str]):
        kept = [i for i in range(len(transactions)) if i not in rejected]
        answers: list[Prediction | str] = [rejected.get(i, "") for i in range(len(transactions))]
        if kept:
            for i, answer in zip(kept, self.score([transactions[i] for i in kept]), strict=True):
                answers[i] = answer
        return answers

    def close(self) -> None:
        self._stop.set()
        self.log.close()


def rejected_rows(detail, rows: int) -> dict[int, str]:
    """Row index -> reason, from the API's 422 detail (`loc` ends with the row index and the field;
    a one-transaction request names no index)."""
    rejected: dict[int, str] = {}
    for error in detail if isinstance(detail, list) else []:
        loc = error.get("loc", [])
        index = next((part for part in loc if isinstance(part, int)), 0 if rows == 1 else None)
        if index is not None:
            reason = f"{error.get('type', 'rejected')}: {error.get('msg', '')}"
            rejected[index] = f"{rejected[index]}; {reason}" if index in rejected else reason
    return rejected

"""The adapter between the stream consumer and the serving layer: the ONLY module of the streaming
package that knows how scoring is done. It drives the serving engine (`mlplatform.serving.engine.
Predictor`), the very object behind `/predict`: same routing, model versions, online and request-time
features, scoring and prediction log."""

import threading

from mlplatform.serving.schemas import Prediction, Transaction

ENDPOINT = "stream"  # the `endpoint` label of the serving latency metric for stream batches


class TransientScoringError(RuntimeError):
    """Scoring cannot happen right now (no champion, online store down): retry, never dead-letter."""


class StreamScorer:
    """Scores a micro-batch with the API's engine. `score` returns, per transaction, its prediction or
    the reason it cannot be scored (unknown customer or merchant): a reason is permanent."""

    def __init__(self, resources: dict, reload_seconds: float | None = None) -> None:
        from mlplatform.serving.engine import Predictor

        settings = resources["serving"]
        self._stop = threading.Event()
        self.predictor = Predictor.from_resources(resources)
        self.predictor.refresh()
        self.predictor.models.follow(
            settings.reload_seconds if reload_seconds is None else reload_seconds,
            self._stop,
            lambda _: self.predictor.refresh(),
        )

    @property
    def metrics_registry(self):
        """The serving layer's Prometheus series (predictions by arm and version, scoring latency)."""
        return self.predictor.metrics.registry

    def score(self, transactions: list[Transaction]) -> list[Prediction | str]:
        from mlplatform.serving.errors import PredictionError

        try:
            return list(self.predictor.predict(transactions, ENDPOINT))
        except PredictionError as error:
            if error.status != 422:
                raise TransientScoringError(str(error)) from error
            rejected = rejected_rows(error.errors, len(transactions))
            if not rejected:  # a 422 that names no row: the whole batch is refused for this reason
                return [str(error.errors)] * len(transactions)
            return self._score_without(transactions, rejected)

    def _score_without(self, transactions: list[Transaction], rejected: dict[int, str]):
        kept = [i for i in range(len(transactions)) if i not in rejected]
        answers: list[Prediction | str] = [rejected.get(i, "") for i in range(len(transactions))]
        if kept:
            for i, answer in zip(kept, self.score([transactions[i] for i in kept]), strict=True):
                answers[i] = answer
        return answers

    def close(self) -> None:
        self._stop.set()
        self.predictor.close()


def rejected_rows(detail, rows: int) -> dict[int, str]:
    """Row index -> reason, from the engine's 422 errors (`loc` ends with the row index and the field;
    a one-transaction request names no index)."""
    rejected: dict[int, str] = {}
    for error in detail if isinstance(detail, list) else []:
        loc = error.get("loc", [])
        index = next((part for part in loc if isinstance(part, int)), 0 if rows == 1 else None)
        if index is not None:
            reason = f"{error.get('type', 'rejected')}: {error.get('msg', '')}"
            rejected[index] = f"{rejected[index]}; {reason}" if index in rejected else reason
    return rejected

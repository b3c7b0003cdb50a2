"""The serving engine without a web framework: routing, online features, scoring and the prediction log.

`Predictor.predict` is what `/predict`, `/predict/batch` and the stream consumer all call.
"""

import collections
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlplatform.inference.scoring import ScoringModel
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.serving.errors import PredictionError
from mlplatform.serving.features import Columns, OnlineFeatures
from mlplatform.serving.models import ServedModels
from mlplatform.serving.routing import Arm, Mode, RoutingFile, RoutingPolicy, choose_arm
from mlplatform.serving.schemas import Prediction, Transaction
from mlplatform.training.fraud_model import MODEL_NAME


class Metrics:
    """Prometheus series of one engine (its own registry, so several in one process do not clash)."""

    def __init__(self, writer: PredictionLogWriter) -> None:
        self.registry = CollectorRegistry()
        self.predictions = Counter(
            "mlplatform_predictions",
            "Predictions returned or shadowed, by arm, model version and decision.",
            ["arm", "model_version", "decision", "shadow"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlplatform_request_latency_seconds",
            "Time to answer a prediction request, features and scoring included.",
            ["endpoint"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=self.registry,
        )
        self.rejected = Counter(
            "mlplatform_rejected_requests",
            "Requests answered with an error, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.served_version = Gauge(
            "mlplatform_served_model_version",
            "Registry version served per arm.",
            ["arm"],
            registry=self.registry,
        )
        Gauge(
            "mlplatform_prediction_log_lost",
            "Predictions not logged (queue full or write failed).",
            registry=self.registry,
        ).set_function(lambda: writer.dropped + writer.failed)
        self._latency: dict[str, object] = {}
        self._predicted: dict[tuple, object] = {}

    def observe(self, endpoint: str, seconds: float) -> None:
        """The latency histogram of `endpoint` (its labelled child looked up once, not per request)."""
        child = self._latency.get(endpoint)
        if child is None:
            child = self._latency[endpoint] = self.latency.labels(endpoint)
        child.observe(seconds)  # type: ignore[attr-defined]

    def count(self, arm: str, version: str, decision: str, shadow: bool, n: int) -> None:
        key = (arm, version, decision, shadow)
        child = self._predicted.get(key)
        if child is None:
            child = self._predicted[key] = self.predictions.labels(
                arm, version, decision, "true" if shadow else "false"
            )
        child.inc(n)  # type: ignore[attr-defined]


Defer = Callable[..., None]  # runs a function later (after the response); default: right away


def run_now(function: Callable, *args) -> None:
    function(*args)


class Predictor:
    """Scores validated transactions: the one code path of the API and the stream consumer."""

    def __init__(
        self, store, models: ServedModels, routing: RoutingFile, log: PredictionLogWriter, metrics: Metrics
    ) -> None:
        self.store = store
        self.models = models
        self.routing = routing
        self.log = log
        self.metrics = metrics
        self._features: dict[str, OnlineFeatures] = {}

    @classmethod
    def from_resources(cls, resources: dict) -> "Predictor":
        """From the profile's resources (`mlplatform.profiles.build_resources()`); call `start` next."""
        writer = resources["prediction_log"].writer()
        return cls(
            store=resources["feature_store"].store(),
            models=ServedModels(resources["model_registry"], MODEL_NAME),
            routing=RoutingFile(Path(resources["serving"].routing_file)),
            log=writer,
            metrics=Metrics(writer),
        )

    def refresh(self) -> bool:
        """Follow the registry aliases now; True if a served version changed."""
        changed = self.models.refresh()
        self.served(self.models.versions())
        return changed

    def served(self, versions: dict[str, str | None]) -> None:
        """After the served versions changed: their gauges, and their feature services' readers built
        before the first request needs them."""
        for arm, version in versions.items():
            self.metrics.served_version.labels(arm).set(float(version or 0))
        for model in filter(None, (self.models.get(arm) for arm in Arm)):
            self.features(model.feature_service)

    def close(self) -> None:
        self.log.close()

    def features(self, service: str) -> OnlineFeatures:
        if service not in self._features:
            self._features[service] = OnlineFeatures(self.store, service)
        return self._features[service]

    def predict(
        self, transactions: list[Transaction], endpoint: str = "predict", defer: Defer = run_now
    ) -> list[Prediction]:
        """The shared entry point of the prediction API and streaming: score validated transactions.

        Routes each to an arm (the routing file), reads its features (online store plus request-time
        features), scores it with the version behind the arm's alias, logs it and counts it; in shadow
        mode the challenger's scoring is handed to `defer` (a web response's background task; run at
        once by default). Raises `PredictionError` (422 unknown entity, 503 no champion or no store)."""
        try:
            return self._predict(transactions, endpoint, defer)
        except PredictionError as error:
            self.metrics.rejected.labels(error.reason).inc()
            raise

    def _predict(self, transactions: list[Transaction], endpoint: str, defer: Defer) -> list[Prediction]:
        started = time.perf_counter()
        policy = self.routing.current()
        champion, challenger = self.models.get(Arm.CHAMPION), self.models.get(Arm.CHALLENGER)
        if champion is None:
            raise PredictionError(
                503, "no_model", [{"type": "no_model", "msg": f"no {MODEL_NAME} version is champion"}]
            )
        now = datetime.now(UTC)
        times = [t.event_ts or now for t in transactions]
        models = {Arm.CHAMPION: champion, **({Arm.CHALLENGER: challenger} if challenger else {})}
        split = policy.mode in (Mode.CANARY, Mode.AB) and challenger is not None
        arms = (
            [choose_arm(policy, t.customer_id, True) for t in transactions]
            if split
            else [Arm.CHAMPION] * len(transactions)
        )
        inputs: dict[str, Columns] = {}
        scores: list[float] = [0.0] * len(transactions)
        for arm in dict.fromkeys(arms):
            model = models[arm]
            columns = self._inputs(inputs, model, transactions, times)
            chosen = None if not split else [i for i, a in enumerate(arms) if a is arm]
            scored = model.score_columns(columns, chosen)
            for i, score in zip(chosen or range(len(transactions)), scored, strict=True):
                scores[i] = score
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.observe(endpoint, latency_ms / 1000)
        request_id = str(uuid.uuid4())
        predictions = [
            answer(models[arm], policy, score, arm, request_id, transaction, latency_ms)
            for transaction, arm, score in zip(transactions, arms, scores, strict=True)
        ]
        self._record(predictions, policy, transactions, times, inputs, models, arms, shadow=False)
        self._count(predictions, shadow=False)
        if policy.mode is Mode.SHADOW and challenger is not None:
            defer(self._shadow, challenger, inputs, transactions, times, predictions, policy)
        return predictions

    def _inputs(self, inputs: dict, model: ScoringModel, transactions, times) -> Columns:
        """The feature service's inputs for every transaction, read once per request and service."""
        if model.feature_service not in inputs:
            inputs[model.feature_service] = self.features(model.feature_service).lookup(transactions, times)
        return inputs[model.feature_service]

    def _shadow(self, challenger: ScoringModel, inputs, transactions, times, predictions, policy) -> None:
        """What the challenger would have answered, for the log only."""
        columns = self._inputs(inputs, challenger, transactions, times)
        shadowed = [
            answer(challenger, policy, score, Arm.CHALLENGER, served.request_id, t, served.latency_ms)
            for score, served, t in zip(
                challenger.score_columns(columns), predictions, transactions, strict=True
            )
        ]
        arms = [Arm.CHALLENGER] * len(transactions)
        self._record(shadowed, policy, transactions, times, inputs, {Arm.CHALLENGER: challenger}, arms, True)
        self._count(shadowed, shadow=True)

    def _count(self, predictions: list[Prediction], shadow: bool) -> None:
        """The predictions counter, one increment per (arm, version, decision) of the request."""
        if len(predictions) == 1:
            p = predictions[0]
            self.metrics.count(p.arm.value, p.model_version, p.decision, shadow, 1)
            return
        groups = collections.Counter((p.arm.value, p.model_version, p.decision) for p in predictions)
        for (arm, version, decision), n in groups.items():
            self.metrics.count(arm, version, decision, shadow, n)

    def _record(self, predictions, policy, transactions, times, inputs, models, arms, shadow: bool) -> None:
        """Hand the request's log records to the writer (a batch's encoded here: see `record_lines`)."""
        logged_at = datetime.now(UTC).isoformat()
        services = {models[arm].feature_service: inputs[models[arm].feature_service] for arm in set(arms)}

        def build() -> list[dict]:
            features = {}  # per arm: each row's model inputs, as the prediction log records them
            for arm in set(arms):
                names, columns = models[arm].inputs, services[models[arm].feature_service]
                missing = [None] * len(predictions)
                values = zip(*(columns.get(name, missing) for name in names), strict=True)
                features[arm] = [dict(zip(names, row, strict=True)) for row in values]
            return [
                log_entry(prediction, policy, transaction, at, features[arm][i], shadow, logged_at)
                for i, (prediction, transaction, at, arm) in enumerate(
                    zip(predictions, transactions, times, arms, strict=True)
                )
            ]

        if len(predictions) == 1:
            self.log.record(build()[0])  # encoded by the writer thread: ~4 us, off the request's path
        else:
            self.log.record_lines(build())


def answer(
    model: ScoringModel,
    policy: RoutingPolicy,
    score: float,
    arm: Arm,
    request_id: str,
    transaction: Transaction,
    latency_ms: float,
) -> Prediction:
    threshold = model.threshold if policy.threshold is None else policy.threshold
    return Prediction.model_construct(
        request_id=request_id,
        transaction_id=transaction.transaction_id,
        score=score,
        decision="flag" if score >= threshold else "approve",
        threshold=threshold,
        model_name=model.name,
        model_version=model.version,
        arm=arm,
        latency_ms=latency_ms,
    )


def log_entry(
    prediction: Prediction,
    policy: RoutingPolicy,
    transaction: Transaction,
    at: datetime,
    features: dict,
    shadow: bool,
    logged_at: str | None = None,
) -> dict:
    """One prediction log record (the fields monitoring reads): the answer, the request as sent with its
    event time resolved, and the exact model inputs it was scored with."""
    return {
        "logged_at": logged_at or datetime.now(UTC).isoformat(),
        "request_id": prediction.request_id,
        "transaction_id": prediction.transaction_id,
        "score": prediction.score,
        "decision": prediction.decision,
        "threshold": prediction.threshold,
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "arm": prediction.arm.value,
        "latency_ms": prediction.latency_ms,
        "mode": policy.mode.value,
        "shadow": shadow,
        "customer_id": transaction.customer_id,
        "merchant_id": transaction.merchant_id,
        "amount": transaction.amount,
        "currency": transaction.currency,
        "channel": transaction.channel,
        "country": transaction.country,
        "event_ts": at.isoformat(),
        "features": features,
    }

"""The serving engine without a web framework: routing, online features, scoring and the prediction log.

`Predictor.predict` is what `/predict`, `/predict/batch` and the stream consumer all call.
"""

import collections
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlplatform.inference.scoring import ScoringModel
from mlplatform.resources.prediction_log import PredictionLogWriter, Same
from mlplatform.serving.errors import PredictionError
from mlplatform.serving.features import Columns, OnlineFeatures
from mlplatform.serving.models import ServedModels
from mlplatform.serving.routing import Arm, Mode, RoutingFile, RoutingPolicy, choose_arm
from mlplatform.serving.schemas import Prediction, Transaction
from mlplatform.training.spec import FRAUD_MODEL


class Metrics:
    """Prometheus series of one engine (its own registry, so several in one process do not clash)."""

    def __init__(self, writer: PredictionLogWriter) -> None:
        self.registry = CollectorRegistry()
        self.predictions = Counter(
            "mlplatform_predictions",
            "Predictions returned or shadowed, by arm, model version, decision and model.",
            ["arm", "model_version", "decision", "shadow", "model"],
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
            "Registry version served per arm and model.",
            ["arm", "model"],
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

    def count(
        self, arm: str, version: str, decision: str, shadow: bool, n: int, model: str = FRAUD_MODEL.name
    ) -> None:
        key = (arm, version, decision, shadow, model)
        child = self._predicted.get(key)
        if child is None:
            child = self._predicted[key] = self.predictions.labels(
                arm, version, decision, "true" if shadow else "false", model
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
            models=ServedModels(resources["model_registry"], FRAUD_MODEL.name),
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
            self.metrics.served_version.labels(arm, self.models.model_name).set(float(version or 0))
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
        return self.score(transactions, endpoint, defer).predictions()

    def score(
        self, transactions: list[Transaction], endpoint: str = "predict", defer: Defer = run_now
    ) -> "Scored":
        """`predict`, answering columns (`Scored`) instead of one `Prediction` object per transaction: what
        `/predict/batch` encodes straight to JSON."""
        try:
            return self._predict(transactions, endpoint, defer)
        except PredictionError as error:
            self.metrics.rejected.labels(error.reason).inc()
            raise

    def _predict(self, transactions: list[Transaction], endpoint: str, defer: Defer) -> "Scored":
        started = time.perf_counter()
        policy = self.routing.current()
        champion, challenger = self.models.get(Arm.CHAMPION), self.models.get(Arm.CHALLENGER)
        if champion is None:
            raise PredictionError(
                503, "no_model", [{"type": "no_model", "msg": f"no {FRAUD_MODEL.name} version is champion"}]
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
            if not split:
                scores = model.score_columns(columns)
                continue
            chosen = [i for i, a in enumerate(arms) if a is arm]
            for i, score in zip(chosen, model.score_columns(columns, chosen), strict=True):
                scores[i] = score
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.observe(endpoint, latency_ms / 1000)
        scored = Scored(
            str(uuid.uuid4()),
            latency_ms,
            policy,
            models,
            arms,
            [t.transaction_id for t in transactions],
            scores,
        )
        self._record(scored, transactions, times, inputs, shadow=False)
        self._count(scored, shadow=False)
        if policy.mode is Mode.SHADOW and challenger is not None:
            defer(self._shadow, challenger, inputs, transactions, times, scored)
        return scored

    def _inputs(self, inputs: dict, model: ScoringModel, transactions, times) -> Columns:
        """The feature service's inputs for every transaction, read once per request and service."""
        if model.feature_service not in inputs:
            inputs[model.feature_service] = self.features(model.feature_service).lookup(transactions, times)
        return inputs[model.feature_service]

    def _shadow(self, challenger: ScoringModel, inputs, transactions, times, served: "Scored") -> None:
        """What the challenger would have answered, for the log only."""
        columns = self._inputs(inputs, challenger, transactions, times)
        shadowed = Scored(
            served.request_id,
            served.latency_ms,
            served.policy,
            {Arm.CHALLENGER: challenger},
            [Arm.CHALLENGER] * len(transactions),
            served.transaction_ids,
            challenger.score_columns(columns),
        )
        self._record(shadowed, transactions, times, inputs, shadow=True)
        self._count(shadowed, shadow=True)

    def _count(self, scored: "Scored", shadow: bool) -> None:
        """The predictions counter, one increment per (arm, version, decision) of the request."""
        models = scored.models
        if len(scored.scores) == 1:
            arm = scored.arms[0]
            model = models[arm]
            self.metrics.count(arm.value, model.version, scored.decisions[0], shadow, 1, model.name)
            return
        groups = collections.Counter(zip(scored.arms, scored.decisions, strict=True))
        for (arm, decision), n in groups.items():
            self.metrics.count(arm.value, models[arm].version, decision, shadow, n, models[arm].name)

    def _record(self, scored: "Scored", transactions, times, inputs, shadow: bool) -> None:
        """Hand the request's log records to the writer (a batch's encoded here: see `record_lines`)."""
        logged_at = datetime.now(UTC).isoformat()
        if len(transactions) == 1:  # encoded by the writer thread: ~4 us, off the request's path
            arm = scored.arms[0]
            model = scored.models[arm]
            columns = inputs[model.feature_service]
            features = {name: columns[name][0] if name in columns else None for name in model.inputs}
            self.log.record(
                log_entry(
                    scored.predictions()[0],
                    scored.policy,
                    transactions[0],
                    times[0],
                    features,
                    shadow,
                    logged_at,
                )
            )
            return
        if len(set(scored.arms)) == 1 and self.log.record_columns(
            logged_at[:10], *self._columns(scored, transactions, times, inputs, shadow, logged_at)
        ):
            return
        self.log.record_lines(self._entries(scored, transactions, times, inputs, shadow, logged_at))

    @staticmethod
    def _columns(scored: "Scored", transactions, times, inputs, shadow: bool, logged_at: str) -> tuple:
        """The log records of a one-arm batch as columns: the fields of `log_entry` in its order, and the
        model inputs (for `PredictionLogWriter.record_columns`)."""
        arm = scored.arms[0]
        model = scored.models[arm]
        columns = inputs[model.feature_service]
        missing = [None] * len(transactions)
        fields = {
            "logged_at": Same(logged_at),
            "request_id": Same(scored.request_id),
            "transaction_id": scored.transaction_ids,
            "score": scored.scores,
            "decision": scored.decisions,
            "threshold": Same(scored.thresholds[arm]),
            "model_name": Same(model.name),
            "model_version": Same(model.version),
            "arm": Same(arm.value),
            "latency_ms": Same(scored.latency_ms),
            "mode": Same(scored.policy.mode.value),
            "shadow": Same(shadow),
            "customer_id": [t.customer_id for t in transactions],
            "merchant_id": [t.merchant_id for t in transactions],
            "amount": [t.amount for t in transactions],
            "currency": [t.currency for t in transactions],
            "channel": [t.channel for t in transactions],
            "country": [t.country for t in transactions],
            "event_ts": times,
        }
        return fields, {name: columns.get(name, missing) for name in model.inputs}

    @staticmethod
    def _entries(scored: "Scored", transactions, times, inputs, shadow: bool, logged_at: str) -> list[dict]:
        """The log records of a batch, built from its columns (the fields and order of `log_entry`;
        `event_ts` stays a datetime: orjson writes it as `isoformat` does)."""
        count = len(transactions)
        by_arm = {}  # per arm: each row's model inputs, as the prediction log records them
        for arm in set(scored.arms):
            model = scored.models[arm]
            names, columns = model.inputs, inputs[model.feature_service]
            missing = [None] * count
            values = zip(*(columns.get(name, missing) for name in names), strict=True)
            by_arm[arm] = [dict(zip(names, row, strict=True)) for row in values]
        features = [by_arm[arm][i] for i, arm in enumerate(scored.arms)]
        mode = scored.policy.mode.value
        entries = []
        for t, at, prediction, row in zip(
            transactions, times, scored.prediction_dicts(), features, strict=True
        ):
            entries.append(
                {
                    "logged_at": logged_at,
                    **prediction,
                    "mode": mode,
                    "shadow": shadow,
                    "customer_id": t.customer_id,
                    "merchant_id": t.merchant_id,
                    "amount": t.amount,
                    "currency": t.currency,
                    "channel": t.channel,
                    "country": t.country,
                    "event_ts": at,
                    "features": row,
                }
            )
        return entries


Decision = Literal["flag", "approve"]


class Scored:
    """A request's answers as columns: one score, arm and decision per transaction, and what the
    request's answers share (request id, latency, each arm's model and threshold)."""

    def __init__(
        self,
        request_id: str,
        latency_ms: float,
        policy: RoutingPolicy,
        models: dict[Arm, ScoringModel],
        arms: list[Arm],
        transaction_ids: list[str | None],
        scores: list[float],
    ) -> None:
        self.request_id, self.latency_ms, self.policy, self.models = request_id, latency_ms, policy, models
        self.arms, self.transaction_ids, self.scores = arms, transaction_ids, scores
        self._predictions: list[Prediction] | None = None
        self.thresholds = {
            arm: model.threshold if policy.threshold is None else policy.threshold
            for arm, model in models.items()
        }
        if len(models) == 1:
            (threshold,) = self.thresholds.values()
            self.decisions: list[Decision] = ["flag" if s >= threshold else "approve" for s in scores]
        else:
            self.decisions = [
                "flag" if s >= self.thresholds[a] else "approve" for s, a in zip(scores, arms, strict=True)
            ]

    def predictions(self) -> list[Prediction]:
        if self._predictions is None:
            self._predictions = self._build_predictions()
        return self._predictions

    def _build_predictions(self) -> list[Prediction]:
        return [
            Prediction.model_construct(
                request_id=self.request_id,
                transaction_id=transaction_id,
                score=score,
                decision=decision,
                threshold=self.thresholds[arm],
                model_name=self.models[arm].name,
                model_version=self.models[arm].version,
                arm=arm,
                latency_ms=self.latency_ms,
            )
            for transaction_id, score, decision, arm in zip(
                self.transaction_ids, self.scores, self.decisions, self.arms, strict=True
            )
        ]

    def prediction_dicts(self) -> list[dict]:
        """Each row's `Prediction` fields, in pydantic's order, built from the columns (the answer's and
        the prediction log's common part)."""
        shared = {
            arm: (self.thresholds[arm], model.name, model.version, arm.value)
            for arm, model in self.models.items()
        }
        request_id, latency_ms = self.request_id, self.latency_ms
        predictions = []
        for transaction_id, score, decision, arm in zip(
            self.transaction_ids, self.scores, self.decisions, self.arms, strict=True
        ):
            threshold, name, version, arm_name = shared[arm]
            predictions.append(
                {
                    "request_id": request_id,
                    "transaction_id": transaction_id,
                    "score": score,
                    "decision": decision,
                    "threshold": threshold,
                    "model_name": name,
                    "model_version": version,
                    "arm": arm_name,
                    "latency_ms": latency_ms,
                }
            )
        return predictions

    def batch_json(self) -> bytes:
        """The `BatchPrediction` answer as JSON bytes (the fields and order pydantic writes), encoded at
        once by orjson from the columns: no model object per prediction."""
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "predictions": self.prediction_dicts(),
                "latency_ms": self.latency_ms,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


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

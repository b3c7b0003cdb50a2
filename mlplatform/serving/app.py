"""The prediction API: online features from Feast plus the request, scored by the model the routing picks.

    mlplatform serve            # http://127.0.0.1:8000/docs

Every prediction is logged for monitoring (in the background: logging never slows or fails a request);
the served versions follow the registry aliases and the routing follows its file, both without a restart.
"""

import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from mlplatform.inference.scoring import ScoringModel
from mlplatform.profiles import build_resources
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.serving.models import ServedModels
from mlplatform.serving.routing import Arm, Mode, RoutingFile, RoutingPolicy, choose_arm
from mlplatform.serving.schemas import BatchPrediction, BatchRequest, Prediction, Routing, Transaction
from mlplatform.training.fraud_model import MODEL_NAME

# a feature every known entity has in the online store: its absence means the entity is unknown there
ENTITY_PRESENCE = {"customer_id": "customer_stats__home_country", "merchant_id": "merchant_stats__category"}
READINESS_PROBE = "customer_stats:home_country"


class Metrics:
    """Prometheus series of one app (its own registry, so several apps in one process do not clash)."""

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
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
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


@dataclass
class Service:
    """Everything a request needs, built once at start-up."""

    store: object  # feast.FeatureStore
    models: ServedModels
    routing: RoutingFile
    log: PredictionLogWriter
    metrics: Metrics
    services: dict[str, object] = field(default_factory=dict)  # feature service name -> FeatureService

    def feature_service(self, name: str):
        if name not in self.services:
            self.services[name] = self.store.get_feature_service(name)
        return self.services[name]


def reject(status: int, reason: str, errors: list[dict], metrics: Metrics) -> HTTPException:
    metrics.rejected.labels(reason).inc()
    return HTTPException(status_code=status, detail=errors)


def request_times(rows: list[Transaction]) -> list[datetime]:
    """Each transaction's time, UTC (a time without offset is taken as UTC; none at all means now)."""
    now = datetime.now(UTC)
    times = [row.event_ts or now for row in rows]
    return [t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC) for t in times]


def online_features(service: Service, feature_service: str, rows: list[Transaction], times) -> pd.DataFrame:
    """One row of model inputs per transaction: stored features from the online store, request-time ones
    computed by Feast's on-demand view, and the transaction's own fields."""
    entity_rows = [
        {
            "customer_id": row.customer_id,
            "merchant_id": row.merchant_id,
            "amount": row.amount,
            "country": row.country,
            "event_ts": at,
        }
        for row, at in zip(rows, times, strict=True)
    ]
    try:
        found = service.store.get_online_features(
            features=service.feature_service(feature_service),
            entity_rows=entity_rows,
            full_feature_names=True,
        ).to_dict()
    except Exception as error:
        raise reject(
            503, "online_store", [{"type": "online_store_unavailable", "msg": repr(error)}], service.metrics
        ) from error
    unknown = [
        {
            "type": f"unknown_{key.removesuffix('_id')}",
            "loc": ["body", *([] if len(rows) == 1 else ["transactions", i]), key],
            "msg": f"{key} {getattr(row, key)!r} has no features in the online store (unknown or never seen)",
            "input": getattr(row, key),
        }
        for key, presence in ENTITY_PRESENCE.items()
        for i, row in enumerate(rows)
        if found[presence][i] is None
    ]
    if unknown:
        raise reject(422, "unknown_entity", unknown, service.metrics)
    return pd.DataFrame(found).assign(amount=[r.amount for r in rows], channel=[r.channel for r in rows])


def scored(model: ScoringModel, frame: pd.DataFrame, policy: RoutingPolicy) -> list[dict]:
    """What `model` answers for each row, and the exact inputs it saw (for the log)."""
    answers = model.score(frame, policy.threshold)
    threshold = model.threshold if policy.threshold is None else policy.threshold
    inputs = frame[list(model.pipeline.feature_names_in_)].to_dict("records")
    return [
        {
            "score": float(score),
            "decision": "flag" if decision else "approve",
            "threshold": threshold,
            "model_name": model.name,
            "model_version": model.version,
            "features": features,
        }
        for score, decision, features in zip(answers["score"], answers["decision"], inputs, strict=True)
    ]


def predict(service: Service, rows: list[Transaction], endpoint: str, tasks: BackgroundTasks):
    started = time.perf_counter()
    request_id = str(uuid.uuid4())
    policy = service.routing.current()
    models = {arm: service.models.get(arm) for arm in Arm}
    if models[Arm.CHAMPION] is None:
        raise reject(
            503,
            "no_model",
            [{"type": "no_model", "msg": f"no {MODEL_NAME} version is champion"}],
            service.metrics,
        )
    times = request_times(rows)
    arms = [choose_arm(policy, row.customer_id, models[Arm.CHALLENGER] is not None) for row in rows]
    frames: dict[str, pd.DataFrame] = {}
    answers: list[dict] = [{}] * len(rows)
    for arm in set(arms):
        model = models[arm]
        if model.feature_service not in frames:
            frames[model.feature_service] = online_features(service, model.feature_service, rows, times)
        chosen = [i for i, a in enumerate(arms) if a is arm]
        answered = scored(model, frames[model.feature_service].iloc[chosen], policy)
        for i, answer in zip(chosen, answered, strict=True):
            answers[i] = {**answer, "arm": arm}
    latency_ms = (time.perf_counter() - started) * 1000
    service.metrics.latency.labels(endpoint).observe(latency_ms / 1000)
    predictions = []
    for row, at, answer in zip(rows, times, answers, strict=True):
        features = answer.pop("features")
        prediction = Prediction(
            request_id=request_id,
            transaction_id=row.transaction_id,
            latency_ms=round(latency_ms, 3),
            **answer,
        )
        record(service, prediction, policy, row, at, features, shadow=False)
        predictions.append(prediction)
    if policy.mode is Mode.SHADOW and models[Arm.CHALLENGER] is not None:
        tasks.add_task(shadow, service, models[Arm.CHALLENGER], frames, rows, times, predictions, policy)
    return predictions, request_id, latency_ms


def shadow(service: Service, challenger: ScoringModel, frames, rows, times, predictions, policy) -> None:
    """After the response is sent: what the challenger would have answered, for the log only."""
    frame = frames.get(challenger.feature_service)
    if frame is None:
        frame = online_features(service, challenger.feature_service, rows, times)
    for row, at, served, answer in zip(
        rows, times, predictions, scored(challenger, frame, policy), strict=True
    ):
        features = answer.pop("features")
        shadowed = served.model_copy(update={**answer, "arm": Arm.CHALLENGER})
        record(service, shadowed, policy, row, at, features, shadow=True)


def record(service: Service, prediction: Prediction, policy, row: Transaction, at, features, shadow: bool):
    service.metrics.predictions.labels(
        prediction.arm.value, prediction.model_version, prediction.decision, str(shadow).lower()
    ).inc()
    service.log.record(
        {
            "logged_at": datetime.now(UTC).isoformat(),
            **prediction.model_dump(mode="json"),
            "mode": policy.mode.value,
            "shadow": shadow,
            # the request as sent (event time resolved): enough to recompute its features offline
            **row.model_dump(mode="json", exclude={"transaction_id", "event_ts"}),
            "event_ts": at.isoformat(),
            "features": features,
        }
    )


def create_app(resources: dict | None = None, reload_seconds: float | None = None) -> FastAPI:
    """The app for the active profile (or the given resources); `uvicorn --factory` calls it bare."""
    resources = resources or build_resources()
    settings = resources["serving"]
    every = settings.reload_seconds if reload_seconds is None else reload_seconds
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        writer = resources["prediction_log"].writer()
        models = ServedModels(resources["model_registry"], MODEL_NAME)
        service = Service(
            store=resources["feature_store"].store(),
            models=models,
            routing=RoutingFile(Path(settings.routing_file)),
            log=writer,
            metrics=Metrics(writer),
        )

        def on_change(versions: dict[str, str | None]) -> None:
            for arm, version in versions.items():
                service.metrics.served_version.labels(arm).set(float(version or 0))

        models.refresh()
        on_change(models.versions())
        models.follow(every, stop, on_change)
        app.state.service = service
        yield
        stop.set()
        writer.close()

    app = FastAPI(
        title="mlplatform prediction API",
        version="1.0",
        description="Fraud scores for card transactions: the champion model, or the challenger by routing.",
        lifespan=lifespan,
    )

    def service() -> Service:
        return app.state.service

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        service().metrics.rejected.labels("invalid_request").inc()
        return await request_validation_exception_handler(request, error)

    @app.post("/predict", response_model=Prediction, summary="Score one transaction")
    def predict_one(transaction: Transaction, tasks: BackgroundTasks) -> Prediction:
        predictions, _, _ = predict(service(), [transaction], "predict", tasks)
        return predictions[0]

    @app.post("/predict/batch", response_model=BatchPrediction, summary="Score up to 1000 transactions")
    def predict_batch(batch: BatchRequest, tasks: BackgroundTasks) -> BatchPrediction:
        predictions, request_id, latency_ms = predict(service(), batch.transactions, "predict_batch", tasks)
        return BatchPrediction(
            request_id=request_id, predictions=predictions, latency_ms=round(latency_ms, 3)
        )

    @app.get("/health", summary="Liveness: the process answers")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a champion is loaded and the online store answers")
    def ready() -> JSONResponse:
        current = service()
        checks = {"champion_loaded": current.models.get(Arm.CHAMPION) is not None}
        try:
            current.store.get_online_features(
                features=[READINESS_PROBE],
                entity_rows=[{"customer_id": "readiness-probe"}],
            )
            checks["online_store"] = True
        except Exception:  # reported, not raised
            checks["online_store"] = False
        body = {
            "ready": all(checks.values()),
            "checks": checks,
            "served_versions": current.models.versions(),
            "registry_error": current.models.last_error,
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/routing", response_model=Routing, summary="The deployment strategy in force")
    def routing() -> Routing:
        current = service()
        policy: RoutingPolicy = current.routing.current()
        return Routing(
            mode=policy.mode,
            challenger_percent=policy.challenger_percent,
            threshold=policy.threshold,
            served_versions=current.models.versions(),
            routing_file=str(current.routing.path),
            routing_error=current.routing.error,
        )

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(generate_latest(service().metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

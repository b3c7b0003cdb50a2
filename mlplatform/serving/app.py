"""The prediction API: a thin HTTP layer over `mlplatform.serving.engine.Predictor`.

    mlplatform serve            # http://127.0.0.1:8000/docs (Swagger UI served by the app, offline)

Two surfaces. Prediction (`/predict`, `/predict/batch` for the transaction model; `/models/<name>/predict`
for every other declared model, by entity key) and probes (`/health`, `/ready`, `/metrics`) are
open to whoever reaches the service. Admin (`GET`/`PUT /routing`) needs `Authorization: Bearer <token>`
with the token in `MLPLATFORM_ADMIN_TOKEN` (a Kubernetes Secret); without that variable the admin
surface is off (403). Error bodies name the field and never carry hosts, URIs or exception text.
"""

import gc
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from mlplatform.profiles import build_resources
from mlplatform.resources.prediction_log import failure_entry
from mlplatform.serving.admin_client import ADMIN_TOKEN_VARIABLE
from mlplatform.serving.engine import Predictor
from mlplatform.serving.entity_models import EntityModels, entity_specs, route_for
from mlplatform.serving.errors import PredictionError, validation_errors
from mlplatform.serving.routing import Arm, RoutingPolicy
from mlplatform.serving.schemas import (
    MAX_BATCH,
    BatchPrediction,
    BatchRequest,
    Prediction,
    Routing,
    Transaction,
    entity_schemas,
)
from mlplatform.training.spec import FRAUD_MODEL, ModelSpec, load_specs

READINESS_PROBE = "customer_stats:home_country"
DOCS_ASSETS = "/docs-assets"
SWITCH_INTERVAL_SECONDS = 0.001
log = logging.getLogger("mlplatform.serving")


class ErrorDetail(BaseModel):
    type: str
    loc: list[str | int] | None = None
    msg: str
    input: object | None = None


class ErrorBody(BaseModel):
    detail: list[ErrorDetail]


def errors_documented(*statuses: int) -> dict:
    described = {
        400: "The body could not be read as JSON.",
        401: "No or a wrong admin token.",
        403: "The admin surface is off (no token configured).",
        422: "The request is invalid: `loc` names the field, `msg` says why.",
        503: "No champion model is loaded, or the online feature store does not answer.",
    }
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}


class FastJSONRequest(Request):
    """A request whose JSON body is parsed by orjson (~4x faster on a 1,000-transaction batch). What orjson
    refuses (NaN, Infinity, a lone surrogate, huge integers, invalid JSON) goes to the standard library
    parser, so such bodies get exactly the answers they always got (a 422 naming the field, or invalid
    JSON)."""

    async def json(self) -> object:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class FastJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handle(FastJSONRequest(request.scope, request.receive))

        return route


def error_response(status: int, errors: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=status)


def json_response(model: BaseModel) -> Response:
    """The answer serialized once by pydantic-core (no re-validation through the response model)."""
    return Response(model.model_dump_json(), media_type="application/json")


def admin_check(expected: str | None, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Refuse unless admin is configured and the bearer token matches (compared in constant time)."""
    if not expected:
        raise PredictionError(
            403, "admin_disabled", [{"type": "admin_disabled", "msg": f"set {ADMIN_TOKEN_VARIABLE}"}]
        )
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise PredictionError(401, "unauthorized", [{"type": "unauthorized", "msg": "admin token required"}])


def create_app(
    resources: dict | None = None,
    reload_seconds: float | None = None,
    admin_token: str | None = None,
    specs: dict[str, ModelSpec] | None = None,
) -> FastAPI:
    """The app for the active profile (or the given resources); `uvicorn --factory` calls it bare.
    The admin token defaults to `$MLPLATFORM_ADMIN_TOKEN`; the models served by entity key are those
    declared in `models/` (or `specs`) other than the transaction model."""
    resources = resources or build_resources(with_dbt=False)
    keyed = entity_specs(load_specs() if specs is None else specs)
    served_names = [spec.name for spec in keyed]
    settings = resources["serving"]
    every = settings.reload_seconds if reload_seconds is None else reload_seconds
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor = Predictor.from_resources(resources)
        predictor.refresh()
        predictor.models.follow(every, stop, predictor.served)
        entities = EntityModels(predictor, keyed)
        entities.refresh()
        entities.follow(every, stop)
        app.state.predictor = predictor
        app.state.entities = entities
        gc.collect()
        gc.freeze()  # start-up objects (models, Feast registry) leave the collector's generations
        # Background threads (the prediction log's writer, the alias follower: ~5 ms of registry calls
        # every few seconds) give the GIL back to the event loop within 1 ms instead of Python's 5 ms.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        yield
        stop.set()
        predictor.close()

    app = FastAPI(
        title="mlplatform prediction API",
        version="1.1",
        description=(
            "Fraud scores for card transactions: the champion model, or the challenger by routing; and under "
            "`/models/<name>/predict` every other declared model's champion, by entity key."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = FastJSONRoute
    bearer = HTTPBearer(auto_error=False, description=f"The token in {ADMIN_TOKEN_VARIABLE}.")

    def predictor() -> Predictor:
        return app.state.predictor

    def entities() -> EntityModels:
        return app.state.entities

    def admin(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        admin_check(token, credentials)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        predictor().metrics.rejected.labels("invalid_request").inc()
        return error_response(422, validation_errors(error.errors()))

    def log_failure(request: Request, status: int, reason: str) -> None:
        """A prediction request answered with a server error, in the prediction log under its model: the
        numerator of that model's error rate (its serving SLO)."""
        model = model_of_route(request.url.path, served_names)
        if model is not None and status >= 500:
            predictor().log.record(failure_entry(model, status, reason))

    @app.exception_handler(PredictionError)
    async def refused(request: Request, error: PredictionError) -> JSONResponse:
        if error.__cause__ is not None:
            log.warning("%s: %r", error.reason, error.__cause__)
        if error.reason in ("admin_disabled", "unauthorized", "unknown_model"):  # the engine counts the rest
            predictor().metrics.rejected.labels(error.reason).inc()
        log_failure(request, error.status, error.reason)
        return error_response(error.status, validation_errors(error.errors))

    @app.exception_handler(Exception)
    async def server_fault(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        log_failure(request, 500, "internal_error")
        return error_response(500, [{"type": "internal_error", "msg": "internal server error"}])

    @app.post(
        "/predict",
        response_model=Prediction,
        summary="Score one transaction",
        responses=errors_documented(400, 422, 503),
    )
    async def predict_one(transaction: Transaction, tasks: BackgroundTasks) -> Response:
        (prediction,) = predictor().predict([transaction], "predict", tasks.add_task)
        return json_response(prediction)

    @app.post(
        "/predict/batch",
        response_model=BatchPrediction,
        summary="Score up to 1000 transactions",
        responses=errors_documented(400, 422, 503),
    )
    def predict_batch(batch: BatchRequest, tasks: BackgroundTasks) -> Response:
        # the answer encoded by orjson from the engine's columns, no Prediction object per row: the
        # fields and bytes `BatchPrediction` would give (documented by response_model above)
        scored = predictor().score(batch.transactions, "predict_batch", tasks.add_task)
        return Response(scored.batch_json(), media_type="application/json")

    for spec in keyed:
        add_entity_route(app, spec, entities)

    @app.post(
        "/models/{model}/predict",
        status_code=404,
        response_model=ErrorBody,
        summary="Any other model name: 404 naming the models served by entity key",
        response_description="No model of that name is served by entity key.",
    )
    async def unknown_model(model: str) -> Response:
        """Registered after the routes of the served models, so it answers only for other names."""
        where = (
            f"{FRAUD_MODEL.name} is served by /predict and /predict/batch"
            if model == FRAUD_MODEL.name
            else f"served here: {', '.join(map(route_for, served_names)) or 'none'}"
        )
        raise PredictionError(
            404,
            "unknown_model",
            [
                {
                    "type": "unknown_model",
                    "loc": ["path", "model"],
                    "msg": f"no model {model!r} is served by entity key; {where}",
                    "input": model,
                }
            ],
        )

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="Readiness: a champion is loaded and the online store answers",
        responses={503: {"description": "Not ready: see `checks`."}},
    )
    def ready() -> JSONResponse:
        current = predictor()
        checks = {
            "champion_loaded": current.models.get(Arm.CHAMPION) is not None,
            "registry_reachable": current.models.last_error is None,
        }
        try:
            current.store.get_online_features(
                features=[READINESS_PROBE], entity_rows=[{"customer_id": "readiness-probe"}]
            )
            checks["online_store"] = True
        except Exception as error:  # reported as a flag; the reason goes to the server log only
            log.warning("readiness: online store: %r", error)
            checks["online_store"] = False
        ready = checks["champion_loaded"] and checks["online_store"]
        body = {"ready": ready, "checks": checks, "served_versions": current.models.versions()}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/routing",
        response_model=Routing,
        summary="The deployment strategy in force (admin)",
        dependencies=[Depends(admin)],
        responses=errors_documented(401, 403),
    )
    def routing() -> Routing:
        return routing_state(predictor())

    @app.put(
        "/routing",
        response_model=Routing,
        summary="Change the deployment strategy (admin); every worker follows at its next request",
        dependencies=[Depends(admin)],
        responses=errors_documented(400, 401, 403, 422),
    )
    def change_routing(policy: RoutingPolicy) -> Routing:
        current = predictor()
        current.routing.write(policy)
        return routing_state(current)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(generate_latest(predictor().metrics.registry), media_type=CONTENT_TYPE_LATEST)

    mount_docs(app)
    return app


def model_of_route(path: str, entity_models: list[str]) -> str | None:
    """The model a prediction route serves (None: not a prediction route)."""
    if path in ("/predict", "/predict/batch"):
        return FRAUD_MODEL.name
    name = path.removeprefix("/models/").removesuffix("/predict")
    return name if name in entity_models and path == route_for(name) else None


def add_entity_route(app: FastAPI, spec: ModelSpec, entities: Callable[[], EntityModels]) -> None:
    """`POST /models/<name>/predict` for one entity-keyed model: its own request and response schemas."""
    request_model, response_model = entity_schemas(spec.name, spec.label.keys)
    name, keys = spec.name, spec.label.keys

    def predict(body: request_model) -> Response:  # type: ignore[valid-type]
        rows = body.rows
        columns = {key: [getattr(row, key) for row in rows] for key in keys}
        return Response(entities().predict(name, columns), media_type="application/json")

    app.add_api_route(
        route_for(name),
        predict,
        methods=["POST"],
        response_model=response_model,
        summary=f"Score up to {MAX_BATCH} {name} entities by {', '.join(keys)}",
        description=(
            f"{spec.description}\n\nFeatures from the online store (the champion's feature service), scored "
            f"by the version behind `{name}`'s `champion` alias. An entity without features in the online "
            "store is scored from missing features and answered with `known_entity: false`."
        ),
        responses=errors_documented(400, 422, 503),
        name=f"predict_{name}",
    )


def routing_state(predictor: Predictor) -> Routing:
    policy = predictor.routing.current()
    return Routing(
        mode=policy.mode,
        challenger_percent=policy.challenger_percent,
        threshold=policy.threshold,
        served_versions=predictor.models.versions(),
        routing_file=str(predictor.routing.path),
        routing_error=predictor.routing.error,
    )


def mount_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package's files, served by the app itself: no CDN."""
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

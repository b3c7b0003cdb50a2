"""Models scored by entity key: every declared model other than the transaction model.

The transaction model (`FRAUD_MODEL`) has `/predict` and `/predict/batch`. Every other spec in `models/`
gets `POST /models/<name>/predict`: a body of the entity keys its rows are identified by (its spec's
`label.keys`), features read from the online store for its champion's feature service (the stored views,
through `OnlineFeatures`, the reader `/predict` uses), scored by the version behind its `champion` alias,
followed without a restart like the transaction model's. Nothing here knows a model by name.

An entity the online store has no row for is scored from missing features (the trees send missing values
down their learnt branch) and answered with `known_entity: false`. These predictions are counted in the
serving metrics and written to the prediction log under their model's name, with the entity keys and the
inputs they were scored with: the model's serving SLO, and retirement's check that its route is in use,
read them there.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from mlplatform.inference.scoring import ScoringModel
from mlplatform.serving.engine import Predictor
from mlplatform.serving.errors import PredictionError
from mlplatform.serving.features import OnlineFeatures
from mlplatform.serving.models import ServedModels
from mlplatform.serving.routing import Arm
from mlplatform.training.spec import FRAUD_MODEL, ModelSpec

log = logging.getLogger("mlplatform.serving")


def entity_specs(specs: dict[str, ModelSpec]) -> list[ModelSpec]:
    """The declared models served by entity key: all but the transaction model, in name order."""
    return [spec for name, spec in sorted(specs.items()) if name != FRAUD_MODEL.name]


def route_for(name: str) -> str:
    return f"/models/{name}/predict"


class EntityModels:
    """The champions of the entity-keyed models, kept in step with the registry, and their scoring."""

    def __init__(self, predictor: Predictor, specs: Iterable[ModelSpec]) -> None:
        self.predictor = predictor
        self.metrics = predictor.metrics
        self.specs = {spec.name: spec for spec in specs}
        registry = predictor.models.registry
        self.served = {name: ServedModels(registry, name, arms=(Arm.CHAMPION,)) for name in self.specs}
        self._unservable: dict[tuple[str, str], str | None] = {}  # (model, version) -> why not, or None

    def refresh(self) -> None:
        """Follow every model's `champion` alias now."""
        for models in self.served.values():
            models.refresh()
            self._loaded(models)

    def follow(self, every_seconds: float, stop: threading.Event) -> list[threading.Thread]:
        """Poll each model's alias in a daemon thread until `stop` is set (as `/predict`'s models are)."""
        return [
            models.follow(every_seconds, stop, lambda _versions, m=models: self._loaded(m))
            for models in self.served.values()
        ]

    def _loaded(self, models: ServedModels) -> None:
        """After a refresh: the served version's gauge, and its feature service's reader built before the
        first request needs it (a service that cannot be built is answered at request time)."""
        champion = models.get(Arm.CHAMPION)
        self.metrics.served_version.labels(Arm.CHAMPION.value, models.model_name).set(
            float(champion.version) if champion else 0.0
        )
        if champion is not None:
            try:
                self.predictor.features(champion.feature_service)
            except Exception as error:  # requests get a clear 503 (`_features`); the reason is logged
                log.warning("%s: feature service %s: %r", models.model_name, champion.feature_service, error)

    def versions(self) -> dict[str, str | None]:
        return {name: models.versions()[Arm.CHAMPION.value] for name, models in self.served.items()}

    def predict(self, name: str, keys: dict[str, list[str]]) -> bytes:
        """The JSON answer for the entities given by `keys` (join key -> one value per row), scored by
        `name`'s champion. Raises `PredictionError`: 503 no champion, a feature service this route cannot
        serve, or an online store that does not answer."""
        try:
            return self._predict(name, keys)
        except PredictionError as error:
            self.metrics.rejected.labels(error.reason).inc()
            raise

    def _predict(self, name: str, keys: dict[str, list[str]]) -> bytes:
        started = time.perf_counter()
        model = self.served[name].get(Arm.CHAMPION)
        if model is None:
            raise PredictionError(
                503, "no_model", [{"type": "no_model", "msg": f"no {name} version is champion"}]
            )
        features = self._features(model)
        columns, known = features.lookup_keys(keys)
        scores = model.score_columns({input_name: columns[input_name] for input_name in model.inputs})
        threshold = model.threshold
        decisions = ["flag" if score >= threshold else "pass" for score in scores]
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.observe(route_for(name), latency_ms / 1000)
        for decision in ("flag", "pass"):
            if n := decisions.count(decision):
                self.metrics.count(Arm.CHAMPION.value, model.version, decision, False, n, name)
        key_names = list(keys)
        request_id = str(uuid.uuid4())
        predictions = [
            {
                **dict(zip(key_names, row_keys, strict=True)),
                "score": score,
                "decision": decision,
                "threshold": threshold,
                "model_name": name,
                "model_version": model.version,
                "known_entity": is_known,
            }
            for row_keys, score, decision, is_known in zip(
                zip(*keys.values(), strict=True), scores, decisions, known, strict=True
            )
        ]
        self.predictor.log.record_lines(
            log_entries(request_id, predictions, latency_ms, {name: columns[name] for name in model.inputs})
        )
        return orjson.dumps(
            {"request_id": request_id, "predictions": predictions, "latency_ms": latency_ms},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def _features(self, model: ScoringModel) -> OnlineFeatures:
        """The online reader of the model's feature service, once it is known to serve this model from
        entity keys alone (every input a stored feature of a view keyed by the spec's keys)."""
        try:
            features = self.predictor.features(model.feature_service)
        except Exception as error:  # a service missing from the Feast registry: the log has the reason
            raise unservable(model, "its feature service is not in the feature registry") from error
        identity = (model.name, model.version)
        if identity not in self._unservable:
            self._unservable[identity] = self._why_unservable(model, features)
        why = self._unservable[identity]
        if why is not None:
            raise unservable(model, why)
        return features

    def _why_unservable(self, model: ScoringModel, features: OnlineFeatures) -> str | None:
        keys = set(self.specs[model.name].label.keys)
        keyed_by = {stored.join_key for stored in features.stored}
        if not keyed_by <= keys:
            return f"its feature service is keyed by {sorted(keyed_by - keys)}, not by the spec's label keys"
        absent = sorted(set(model.inputs) - set(features.stored_names))
        if absent:
            return f"it reads inputs that are not stored features: {', '.join(absent)}"
        return None


def log_entries(
    request_id: str, predictions: list[dict], latency_ms: float, inputs: dict[str, list]
) -> list[dict]:
    """The prediction log records of one request: each answer, when, the request's latency and the inputs
    each row was scored with."""
    logged_at = datetime.now(UTC).isoformat()
    rows = [{name: column[i] for name, column in inputs.items()} for i in range(len(predictions))]
    return [
        {
            "logged_at": logged_at,
            "request_id": request_id,
            **prediction,
            "arm": Arm.CHAMPION.value,
            "latency_ms": latency_ms,
            "shadow": False,
            "features": row,
        }
        for prediction, row in zip(predictions, rows, strict=True)
    ]


def unservable(model: ScoringModel, why: str) -> PredictionError:
    return PredictionError(
        503,
        "model_not_servable",
        [
            {
                "type": "model_not_servable",
                "msg": f"{model.name} version {model.version} cannot be served from entity keys: {why}",
            }
        ],
    )

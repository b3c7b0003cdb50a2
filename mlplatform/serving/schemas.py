"""The prediction API's contract: what a client sends and what it gets back (published as OpenAPI)."""

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from mlplatform.schemas import CHANNELS, COUNTRIES, CURRENCIES, MAX_AMOUNT
from mlplatform.serving.routing import Arm, Mode

MAX_BATCH = 1_000

EXAMPLE = {
    "transaction_id": "t-000123",
    "customer_id": "c000042",
    "merchant_id": "m00007",
    "amount": 129.90,
    "currency": "EUR",
    "channel": "online",
    "country": "DE",
    "event_ts": "2026-11-23T14:03:00Z",
}


# A transaction time outside this window is a client bug (a zero timestamp, a year 9999), not a payment.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clocks drift; a day ahead is still a real transaction
EARLIEST_SECONDS, SLACK_SECONDS = EARLIEST_EVENT.timestamp(), FUTURE_SLACK.total_seconds()


CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def unicode_text(value: str) -> str:
    """Text that can be logged and echoed as UTF-8: no lone surrogates, no control characters."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    if CONTROL_CHARACTER.search(value):
        raise ValueError("must not contain control characters")
    return value


def not_a_boolean(value: object) -> object:
    """JSON `true` would otherwise pass as the amount 1.0."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def utc_and_plausible(value: datetime | None) -> datetime | None:
    """UTC (a time without offset is taken as UTC), and between 2000 and tomorrow."""
    if value is None:
        return None
    at = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST_SECONDS <= at.timestamp() <= time.time() + SLACK_SECONDS:  # floats: ~10x cheaper
        raise ValueError(f"must be between {EARLIEST_EVENT:%Y-%m-%d} and tomorrow (UTC)")
    return at


Id = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(unicode_text)]
Amount = Annotated[float, BeforeValidator(not_a_boolean), Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)]
EventTime = Annotated[datetime | None, BeforeValidator(not_a_boolean), AfterValidator(utc_and_plausible)]


class Transaction(BaseModel):
    """One card transaction to score, as the payment system sees it at authorisation time."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    transaction_id: Id | None = Field(None, description="Echoed back.")
    customer_id: Id
    merchant_id: Id
    amount: Amount = Field(description="In the transaction's currency; finite, above 0.")
    currency: Literal[CURRENCIES]
    channel: Literal[CHANNELS]
    country: Literal[COUNTRIES]
    event_ts: EventTime = Field(
        None, description="When it happened (UTC if no offset; 2000 to tomorrow); default: now."
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[Transaction] = Field(min_length=1, max_length=MAX_BATCH)


class Prediction(BaseModel):
    request_id: str
    transaction_id: str | None
    score: float = Field(description="Estimated probability that the transaction is fraud.")
    decision: Literal["flag", "approve"]
    threshold: float
    model_name: str
    model_version: str
    arm: Arm
    latency_ms: float


class BatchPrediction(BaseModel):
    request_id: str
    predictions: list[Prediction]
    latency_ms: float


class Routing(BaseModel):
    mode: Mode
    challenger_percent: float
    threshold: float | None
    served_versions: dict[str, str | None]
    routing_file: str
    routing_error: str | None


def camel_case(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def entity_schemas(name: str, keys: list[str]) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request and response of `POST /models/<name>/predict` for a model whose rows are identified by
    `keys` (its spec's `label.keys`): named after the model, so each route documents its own body."""
    stem = camel_case(name)
    key_fields: dict[str, Any] = {key: (Id, Field(description=f"The {key} to score.")) for key in keys}
    row = create_model(f"{stem}Entity", __config__=ConfigDict(extra="forbid"), **key_fields)
    request = create_model(
        f"{stem}Request",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(min_length=1, max_length=MAX_BATCH, description="Entities to score.")),
    )
    answer_fields: dict[str, Any] = {
        **{key: (str, ...) for key in keys},
        "score": (float, Field(description=f"{name}'s estimated probability of the positive label.")),
        "decision": (Literal["flag", "pass"], Field(description="`flag` when score >= threshold.")),
        "threshold": (float, Field(description="The served version's own decision threshold.")),
        "model_name": (str, ...),
        "model_version": (str, ...),
        "known_entity": (
            bool,
            Field(
                description="False when the online store has no features for the entity: it was scored "
                "from missing features (as the trees take them), so treat the score with care."
            ),
        ),
    }
    prediction = create_model(f"{stem}Prediction", **answer_fields)
    response = create_model(
        f"{stem}Predictions",
        request_id=(str, ...),
        predictions=(list[prediction], ...),
        latency_ms=(float, ...),
    )
    return request, response

"""The prediction API's contract: what a client sends and what it gets back (published as OpenAPI)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class Transaction(BaseModel):
    """One card transaction to score, as the payment system sees it at authorisation time."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    transaction_id: str | None = Field(None, min_length=1, max_length=64, description="Echoed back.")
    customer_id: str = Field(min_length=1, max_length=64)
    merchant_id: str = Field(min_length=1, max_length=64)
    amount: float = Field(gt=0, le=MAX_AMOUNT)
    currency: Literal[CURRENCIES]
    channel: Literal[CHANNELS]
    country: Literal[COUNTRIES]
    event_ts: datetime | None = Field(None, description="When it happened (UTC if no offset); default: now.")


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

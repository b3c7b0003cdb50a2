"""What travels on the streams, as pure functions: a transaction in, a result or a dead letter out."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from mlplatform.serving.schemas import Prediction, Transaction

PAYLOAD = "transaction"  # the one field of an input message: the transaction as JSON


@dataclass(frozen=True)
class Message:
    """One entry of the input stream."""

    id: str
    fields: dict[str, str]

    @property
    def enqueued_ms(self) -> int:
        """When Redis added it (the first part of an entry id is the server's clock in ms)."""
        return int(self.id.split("-", 1)[0])


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    reason: str


@dataclass(frozen=True)
class Result:
    message: Message
    transaction_id: str
    prediction: Prediction


def encode(transaction: dict) -> dict[str, str]:
    """An input message for one transaction (a mapping with the `Transaction` fields)."""
    return {PAYLOAD: json.dumps(transaction, default=_isoformat)}


def _isoformat(value) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse(message: Message) -> Transaction | DeadLetter:
    """The validated transaction, or a dead letter saying why not (the API's own schema decides)."""
    if set(message.fields) != {PAYLOAD}:
        return DeadLetter(message, f"expected one field {PAYLOAD!r}, got {sorted(message.fields)}")
    try:
        transaction = Transaction.model_validate_json(message.fields[PAYLOAD])
    except ValidationError as invalid:
        return DeadLetter(message, _reason(invalid))
    if transaction.transaction_id is None:
        return DeadLetter(message, "transaction_id is required on the stream: results are keyed by it")
    return transaction


def _reason(invalid: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'payload'}: {error['msg']}"
        for error in invalid.errors()
    )


def result_fields(result: Result) -> list[str]:
    """The write script's arguments for one result: source id, key, body."""
    return [result.message.id, result.transaction_id, result.prediction.model_dump_json()]


def dead_letter_fields(dead: DeadLetter) -> list[str]:
    """The write script's arguments for one dead letter: source id, the message as received, reason."""
    return [dead.message.id, json.dumps(dead.message.fields), dead.reason]

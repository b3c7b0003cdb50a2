"""Errors the serving engine answers with, and error bodies that can always be sent as JSON.

A 422 body echoes what the client sent wrong; JSON `NaN`, `Infinity`, `1e309` (parsed as floats) and a
lone surrogate in a string cannot be encoded back, so every echoed value goes through `json_safe`.
"""

import math

MAX_ECHO = 100  # characters of an offending value echoed back


class PredictionError(Exception):
    """A request the engine cannot answer: `status` (HTTP semantics), a metric `reason`, and `errors`
    in the shape of a validation error list (`type`, `loc`, `msg`, optionally `input`)."""

    def __init__(self, status: int, reason: str, errors: list[dict]) -> None:
        super().__init__(f"{status} {reason}: {errors}")
        self.status = status
        self.reason = reason
        self.errors = errors


def json_safe(value: object) -> object:
    """`value` as something JSON can carry: non-finite floats and text that is not valid Unicode become
    readable strings, anything else that JSON has no type for becomes its `str`, long text is cut."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."
    if isinstance(value, dict):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return json_safe(str(value))


def validation_errors(errors) -> list[dict]:
    """Pydantic's error list reduced to what a client needs: which field, what is wrong, the value
    (scalars only: a whole object or batch is not echoed)."""
    safe = []
    for error in errors:
        entry: dict[str, object] = {"type": str(error.get("type", "invalid"))}
        if "loc" in error:
            entry["loc"] = json_safe(list(error["loc"]))
        entry["msg"] = json_safe(error.get("msg", "invalid value"))
        if "input" in error and not isinstance(error["input"], dict | list | tuple):
            entry["input"] = json_safe(error["input"])
        safe.append(entry)
    return safe

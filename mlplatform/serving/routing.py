"""Which model answers a request: the deployment strategy, changed at run time through a small JSON file."""

import hashlib
import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from mlplatform.files import replace_text


class Mode(StrEnum):
    CHAMPION_ONLY = "champion_only"  # every request to the champion
    CANARY = "canary"  # a few customers' traffic to the challenger, to catch a bad model early
    SHADOW = "shadow"  # the challenger also scores every request, logged but never returned
    AB = "ab"  # a split experiment; the arm is recorded with every prediction for comparison


class Arm(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


class RoutingPolicy(BaseModel):
    """The deployment strategy. `challenger_percent` is the share of customers canary/A-B send over."""

    mode: Mode = Mode.CHAMPION_ONLY
    challenger_percent: float = Field(0.0, ge=0.0, le=100.0)
    threshold: float | None = Field(
        None, gt=0.0, lt=1.0, description="Decision threshold for every model; default: each version's own."
    )
    salt: str = Field("fraud_model", description="Change it to reshuffle which customers go to which arm.")

    @model_validator(mode="after")
    def _split_needs_a_share(self) -> "RoutingPolicy":
        if self.mode in (Mode.CANARY, Mode.AB) and self.challenger_percent == 0:
            raise ValueError(f"mode '{self.mode}' needs a challenger_percent above 0")
        return self


def customer_bucket(customer_id: str, salt: str) -> float:
    """A stable position in [0, 100) per customer: the same customer always lands in the same arm."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def choose_arm(policy: RoutingPolicy, customer_id: str, challenger_available: bool) -> Arm:
    """The arm whose answer is returned (shadow scoring happens besides, never instead)."""
    if policy.mode not in (Mode.CANARY, Mode.AB) or not challenger_available:
        return Arm.CHAMPION
    in_challenger_share = customer_bucket(customer_id, policy.salt) < policy.challenger_percent
    return Arm.CHALLENGER if in_challenger_share else Arm.CHAMPION


class RoutingFile:
    """The policy as JSON on disk: written atomically, re-read when it changes, so every worker and
    every replica (a mounted ConfigMap in Kubernetes) follows a change without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None  # why the file on disk is not in force, if it is broken
        self._seen: tuple[int, int] | None = None
        self._policy = RoutingPolicy()

    def current(self) -> RoutingPolicy:
        """The policy in force; a broken file keeps the last good policy and reports why in `error`."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._policy, self.error = None, RoutingPolicy(), None
            return self._policy
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            self._seen = (stat.st_mtime_ns, stat.st_size)
            try:
                self._policy, self.error = RoutingPolicy.model_validate_json(self.path.read_text()), None
            except ValueError as invalid:
                self.error = (
                    f"{self.path} is not a valid routing policy, keeping the last good one: {invalid}"
                )
        return self._policy

    def write(self, policy: RoutingPolicy) -> RoutingPolicy:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(self.path, json.dumps(policy.model_dump(mode="json"), indent=2) + "\n")
        return self.current()

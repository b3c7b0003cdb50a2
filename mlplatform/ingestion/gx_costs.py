"""Two costs of Great Expectations' pandas validation that GX has no setting for, removed once, when the
suite runner first imports GX (`remove_validation_costs`). Neither changes a result.

- **Fingerprints.** GX fingerprints every pandas batch under `HASH_THRESHOLD` bytes (an md5 over
  `hash_pandas_object` of the whole frame, a batch marker), twice per `Batch.validate`: a day's two
  validations (~29k rows each) took 552 ms with it, 447 without. Nothing reads the marker: frames of any
  size skip it.
- **Configurations.** `Expectation.configuration` is a property that builds a new
  `ExpectationConfiguration` (a pydantic `dict()` of the expectation and a regex on its class name)
  every time it is read, and the validator reads it for each kwarg it looks up: ~60 builds per
  expectation per validation (benchmarks/ingestion.py: 3.4x -> 3.1x the bare engine, median of 6
  runs each). Inside `one_validation()`, each expectation's configuration is built on its first read
  and kept until the expectation changes (any attribute set) or the validation ends: ~8 builds, one for
  each copy GX makes of the expectation. Outside, GX's own property runs unchanged.

Written against the pinned GX 1.x (uv.lock); tests/ingestion/test_gx_costs.py fails if either stops
applying.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

# {id(expectation): (expectation, configuration)} of the validation running in this thread, else None.
# Each expectation is kept with its configuration, so its id names no other object until the end.
_built = threading.local()


@cache
def remove_validation_costs() -> None:
    """Both changes, made once per process (GX's classes and module are shared by every runner)."""
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.expectations.expectation import Expectation

    pandas_execution_engine.HASH_THRESHOLD = 0
    _memoize_configuration(Expectation)


def _memoize_configuration(expectation: Any) -> None:
    build = expectation.configuration.fget
    assign = expectation.__setattr__

    def configuration(self: Any) -> Any:
        built = getattr(_built, "configurations", None)
        if built is None:
            return build(self)
        if id(self) not in built:
            built[id(self)] = (self, build(self))
        return built[id(self)][1]

    def set_and_forget(self: Any, name: str, value: Any) -> None:
        assign(self, name, value)
        built = getattr(_built, "configurations", None)
        if built:
            built.pop(id(self), None)

    expectation.configuration = property(configuration, doc=build.__doc__)
    expectation.__setattr__ = set_and_forget


@contextmanager
def one_validation() -> Iterator[None]:
    """The span in which each expectation's configuration, once built, is reused: a GX validation, in
    this thread. A change is noticed when an attribute is set; one made in place (a list appended to)
    or from another thread is not, and GX makes neither while it validates. Nested, the outer span goes
    on (the inner one would hide changes from it)."""
    if getattr(_built, "configurations", None) is not None:
        yield
        return
    _built.configurations = {}
    try:
        yield
    finally:
        _built.configurations = None

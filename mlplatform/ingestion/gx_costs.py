"""Three costs of Great Expectations that GX has no setting for, removed once, when the suite runner
first imports GX (`import_gx`). None changes a result.

- **Import.** GX's `__init__` imports every core expectation, and its KL-divergence expectation imports
  `scipy.stats` (with the KS-test metrics, its only users): ~0.8 s of GX's ~3.5 s import, paid by every
  process that validates. The platform runs neither expectation, so `scipy.stats` is left to load on
  its first use (Python's `importlib.util.LazyLoader`); `mlplatform.monitoring.drift` still gets it whole.

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

Written against the pinned GX 1.x (uv.lock); tests/ingestion/test_gx_costs.py fails if one stops
applying.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

# {id(expectation): (expectation, configuration)} of the validation running in this thread, else None.
# Each expectation is kept with its configuration, so its id names no other object until the end.
_built = threading.local()


# modules GX imports only for expectations the platform never runs
DEFERRED_MODULES = ("scipy.stats",)


@cache
def import_gx() -> Any:
    """`great_expectations`, imported with the three changes (once per process: GX's classes and modules
    are shared by every runner)."""
    for name in DEFERRED_MODULES:
        _defer(name)
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.expectations.expectation import Expectation

    pandas_execution_engine.HASH_THRESHOLD = 0
    _memoize_configuration(Expectation)
    return gx


def _defer(name: str) -> None:
    """Make the submodule `name` load on its first attribute read instead of when it is imported; nothing
    changes if it is already imported. On Python 3.11, `LazyLoader` does not lock that first load
    (CPython gh-114763): two threads reading the module for the first time at once could see it half
    loaded. Its users here (drift, scikit-learn) first read it in a run's one thread."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # also an attribute of its package: `from scipy import stats` then takes it as it is (through the
    # import system, Python 3.11 reads its `__spec__`, which would load it)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


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

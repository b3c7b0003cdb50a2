"""mlplatform: an asset-based data and ML platform on Dagster.

The machine this runs on may have no internet: every tool's telemetry is switched off before any of
them is imported (an explicit setting in the environment still wins). Feast's classes are imported
without typeguard's instrumentation (`_feast_uninstrumented`).
"""

import functools
import os
import warnings

TELEMETRY_OFF = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
# loading a model from the registry draws a progress bar per load: noise in run logs and the demo
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# dagster-dbt requires sqlglot[rs], whose Rust tokenizer announces on import that it is deprecated (sqlglot
# uses the compiled sqlglotc beside it): that notice, from that module only, is not for our users
warnings.filterwarnings("ignore", category=DeprecationWarning, module="sqlglotrs")


def _feast_uninstrumented() -> None:
    """Feast decorates its API classes with typeguard's `@typechecked`, which re-parses and recompiles the
    source of ~950 functions when Feast is imported: ~3 s of CPU in every process that imports Feast (each
    run worker, the prediction API, each command), and a type check on every call after. The platform
    builds Feast's objects from its own declarations, which mypy and the tests check; other packages that
    use typeguard keep it. Installed before Feast is imported (every platform process imports this package
    first)."""
    import typeguard

    instrument = typeguard.typechecked

    def typechecked(target=None, **options):
        if target is None:  # used as `@typechecked(...)`
            return functools.partial(typechecked, **options)
        if getattr(target, "__module__", "").partition(".")[0] == "feast":
            return target
        return instrument(target, **options)

    typeguard.typechecked = typechecked


_feast_uninstrumented()

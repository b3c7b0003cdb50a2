"""Model specs: a model is declared in a small YAML file (models/<name>.yaml) and validated into a typed,
frozen `ModelSpec` here. A mistake fails with the file and the dotted name of each bad field. Plain
pydantic and YAML (and Dagster's asset keys): no scikit-learn, so the code location pays nothing to read a
spec."""

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]  # no stubs in the lock file
from dagster import AssetCheckKey, AssetKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from mlplatform.settings import PROJECT_ROOT

SPECS_DIR = PROJECT_ROOT / "models"
SPEC_ARTIFACT = "spec.json"  # the spec a training run used, with its overrides, beside its model
# the spec fields a training run takes as configuration, and the config field of each
RUN_CONFIG_FIELDS = {
    "estimator.learning_rate": "learning_rate",
    "estimator.max_iter": "max_iter",
    "estimator.max_leaf_nodes": "max_leaf_nodes",
    "estimator.l2_regularization": "l2_regularization",
    "seed": "seed",
    "holdout_fraction": "holdout_fraction",
}


class ModelSpecError(ValueError):
    """A spec file that cannot be read or does not validate; the message names the file and each field."""


def table_asset(table: str) -> AssetKey:
    """The asset that writes `schema.table`: a landed table `raw.x` is `raw_x`, a dbt model its own name."""
    schema, name = table.split(".", 1)
    return AssetKey(f"raw_{name}" if schema == "raw" else name)


class Part(BaseModel):
    """Every part of a spec: unknown fields are errors (a typo must not silently keep a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(Part):
    """Where a model's labelled events come from: a warehouse table with an `event_ts` (the moment of the
    decision, when features are looked up) and the label column."""

    table: str = Field(pattern=r"^[a-z_]+\.[a-z_][a-z0-9_]*$")  # schema.table, the dbt model of that name
    column: str
    keys: list[str] = Field(min_length=1)  # with event_ts, what identifies a row (and orders ties)
    # columns of the table the feature service also provides, as of the event: left out of the spine
    exclude: list[str] = Field(default_factory=list)

    @property
    def asset(self) -> AssetKey:
        return table_asset(self.table)


class Batch(Part):
    """What the champion scores in batch each day: a table with a row per decision to take."""

    spine: str = Field(pattern=r"^[a-z_]+\.[a-z_][a-z0-9_]*$")  # schema.table, with event_ts
    day_column: str  # the spine's day, the daily partition a row belongs to
    columns: list[str] = Field(min_length=1)  # what a prediction row keeps of the spine (keys, inputs)
    asset: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")  # default: <name>_predictions


class Retrain(Part):
    """When the model retrains by itself (its `retrain_<model>_sensor`)."""

    min_new_labels: int = Field(ge=1)  # labels landed since the champion's promotion
    # "asset:check" whose judged ERROR since the promotion means the champion no longer fits the data
    on_failed_checks: list[
        Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*:[a-z_][a-z0-9_]*$")]
    ] = Field(default_factory=list)

    @property
    def check_keys(self) -> tuple[AssetCheckKey, ...]:
        pairs = (named.split(":") for named in self.on_failed_checks)
        return tuple(AssetCheckKey(AssetKey(asset_name), check) for asset_name, check in pairs)


class ServingSlo(Part):
    """What the model's route promises, judged on each day of its online traffic (the prediction log)."""

    max_p99_latency_ms: float = Field(gt=0)  # p99 of the day's request latencies
    max_error_rate: float = Field(gt=0, lt=1)  # share of the day's requests answered with a server error
    min_requests: int = Field(100, ge=1)  # fewer requests in a day: the day is not judged


class Slo(Part):
    """What the champion promises once it serves: its decisions' quality, judged on each labelled day of
    its batch decisions, and (`serving`) its route's latency and errors on each day of traffic."""

    min_roc_auc: float = Field(ge=0, le=1)
    min_labelled_positives: int = Field(10, ge=1)  # fewer labelled positives: the day is not judged
    label_delay_days: int = Field(ge=0)  # a day's labels are (mostly) in this long after it
    probation_days: int = Field(ge=0)  # a new champion breaking its SLO this soon is rolled back
    window_days: int = Field(28, ge=1)  # the burn is measured over this many days
    budget: float = Field(0.1, gt=0, le=1)  # share of judged days that may break it (burn 1.0: spent)
    serving: ServingSlo | None = None


class Drift(Part):
    """Drift of each scored day against the champion's training window: PSI of every input and of the
    scores, and of the inputs the scored record carries itself (no rolling window smooths them)."""

    asset: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")  # default: <name>_feature_drift
    own_inputs: list[str] = Field(default_factory=list)
    own_inputs_check: str = Field("own_input_psi", pattern=r"^[a-z][a-z0-9_]*$")


class Monitoring(Part):
    """A model's daily monitoring beside its drift and SLOs: its batch decisions' performance once labelled,
    its route's traffic and online/offline skew, the day's report, and the DORA metrics of its delivery.
    Each asset is `<name>_<field>` (`<name>_monitoring_report`, `<name>_delivery_metrics` for the last two)
    unless named here."""

    performance: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    serving_health: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    serving_skew: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    report: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    delivery: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")


MONITORING_SUFFIXES = {
    "performance": "performance",
    "serving_health": "serving_health",
    "serving_skew": "serving_skew",
    "report": "monitoring_report",
    "delivery": "delivery_metrics",
}


class Inputs(Part):
    """What the estimator reads: every numeric feature of the feature service, plus these."""

    categorical: list[str] = Field(default_factory=list)  # ordinal-encoded, unknown and missing as -1
    numeric: list[str] = Field(default_factory=list)  # label-table columns known at decision time
    ignored: list[str] = Field(default_factory=list)  # features of the service the estimator does not read


class Estimator(Part):
    kind: Literal["hist_gradient_boosting"]
    learning_rate: float = Field(gt=0, le=1)
    max_iter: int = Field(gt=0)
    max_leaf_nodes: int = Field(ge=2)
    l2_regularization: float = Field(ge=0)


class Decision(Part):
    rule: Literal["max_recall_at_fpr"]
    target_fpr: float = Field(gt=0, lt=1)


class Gates(Part):
    """Floors on the holdout, the tolerated loss against the champion, fairness across slices,
    calibration and one-row scoring time."""

    min_roc_auc: float = Field(ge=0, le=1)
    min_pr_auc: float = Field(ge=0, le=1)
    min_recall_at_1pct_fpr: float = Field(ge=0, le=1)
    champion_tolerance: float = Field(ge=0, le=1)
    max_slice_auc_gap: float = Field(ge=0, le=1)
    max_calibration_error: float = Field(ge=0, le=1)
    max_one_row_latency_ms: float = Field(gt=0)


class Retention(Part):
    """What happens to versions no alias points to (refused, orphaned, rolled back, replaced twice over):
    their training runs, model cards and audit records always stay."""

    archive_after: int = Field(ge=1)  # tagged archived once this many newer versions are registered
    delete_archived_after: int = Field(ge=0)  # archived versions beyond the newest this many are deleted


class ModelSpec(Part):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    intended_use: str
    owners: list[str] = Field(min_length=1)
    label: Label
    training_set: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")  # default: <name>_training_set
    inputs: Inputs = Inputs()
    feature_service: str
    feature_marts: list[str] = Field(default_factory=list)  # the dbt marts its views read (lineage)
    retrain: Retrain
    batch: Batch | None = None  # None: not scored in batch
    slo: Slo | None = None  # needs batch: judged on its batch decisions
    drift: Drift | None = None  # needs batch: measured on each scored day
    monitoring: Monitoring | None = None  # needs slo: re-judged nightly once the labels are in
    estimator: Estimator
    seed: int
    holdout_fraction: float = Field(gt=0, lt=0.5)
    slices: list[str]
    decision: Decision
    gates: Gates
    promotion: Literal["auto", "manual"]
    retention: Retention
    known_limitations: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def slo_needs_batch(self) -> "ModelSpec":
        if self.slo is not None and self.batch is None:
            raise ValueError("slo is judged on batch decisions: declare batch too")
        if self.drift is not None and self.batch is None:
            raise ValueError("drift is measured on the scored days: declare batch too")
        if self.monitoring is not None and self.slo is None:
            raise ValueError("monitoring waits slo.label_delay_days for labels: declare slo too")
        return self

    @property
    def training_set_asset(self) -> str:
        """The training set's asset key, also its table in the `training` schema."""
        return self.training_set or f"{self.name}_training_set"

    @property
    def champion_asset(self) -> str:
        return f"{self.name}_champion"

    @property
    def batch_asset(self) -> str:
        """The batch predictions' asset key, also its table in the `inference` schema."""
        if self.batch is None:
            raise ModelSpecError(f"{self.name} declares no batch scoring")
        return self.batch.asset or f"{self.name}_predictions"

    @property
    def drift_asset(self) -> str:
        """The drift asset's key, also its table in the `monitoring` schema."""
        if self.drift is None:
            raise ModelSpecError(f"{self.name} declares no drift monitoring")
        return self.drift.asset or f"{self.name}_feature_drift"

    def monitoring_asset(self, part: str) -> str:
        """The key of one of the monitoring assets (`MONITORING_SUFFIXES`), also its `monitoring` table."""
        if self.monitoring is None:
            raise ModelSpecError(f"{self.name} declares no monitoring")
        return getattr(self.monitoring, part) or f"{self.name}_{MONITORING_SUFFIXES[part]}"

    def with_settings(self, settings: dict[str, str]) -> "ModelSpec":
        """This spec with dotted fields set from text (`--set estimator.learning_rate=0.05`), each value
        read as YAML: a wrong name or value fails like a wrong file."""
        return self.updated({dotted: yaml.safe_load(text) for dotted, text in settings.items()}, "--set")

    def updated(self, changes: dict[str, Any], origin: str = "spec") -> "ModelSpec":
        """This spec with dotted fields replaced, validated again."""
        data = self.model_dump()
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            part = data
            for parent in parents:
                if not isinstance(part.get(parent), dict):
                    raise ModelSpecError(f"{origin} {dotted}: {parent!r} is not a section of the spec")
                part = part[parent]
            if leaf not in part:
                raise ModelSpecError(f"{origin} {dotted}: no such field (known: {', '.join(part)})")
            part[leaf] = value
        return validated(data, origin)

    def differences(self, other: "ModelSpec") -> dict[str, tuple[Any, Any]]:
        """Dotted field -> (this value, the other's) for every field that differs."""
        mine, theirs = flatten(self.model_dump()), flatten(other.model_dump())
        return {
            key: (mine.get(key), theirs.get(key))
            for key in sorted(mine | theirs)
            if mine.get(key) != theirs.get(key)
        }


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def validated(data: Any, origin: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
        ]
        raise ModelSpecError(f"{origin}: " + "; ".join(problems)) from None


def load_spec(path: Path) -> ModelSpec:
    try:
        # libyaml's safe loader (in PyYAML's wheels): ~1 ms a spec, the Python one ~13 ms, and every process
        # that builds the resources reads every spec
        data = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    except (OSError, yaml.YAMLError) as error:
        raise ModelSpecError(f"{path}: cannot be read as YAML: {error}") from None
    return validated(data, str(path))


def spec_for(model: str) -> ModelSpec:
    """The spec of a registered model, by its name."""
    return load_spec(SPECS_DIR / f"{model}.yaml")


def recorded_spec(recorded: dict, committed: ModelSpec | None, origin: str) -> ModelSpec:
    """The spec a training run recorded, read against the committed one: a field added to specs since
    that run takes the committed value (an old run never fails to read)."""
    return validated(deep_merged(committed.model_dump(), recorded) if committed else recorded, origin)


def deep_merged(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = deep_merged(base[key], value) if nested else value
    return merged


def load_specs(directory: Path = SPECS_DIR) -> dict[str, ModelSpec]:
    """Every model declared in `directory`, by name; a file must be named after its model."""
    specs = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = load_spec(path)
        if spec.name != path.stem:
            raise ModelSpecError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
        specs[spec.name] = spec
    if len({s.training_set_asset for s in specs.values()}) < len(specs):
        raise ModelSpecError(f"{directory}: two models declare the same training_set")
    for what, assets in (
        ("batch asset", [s.batch_asset for s in specs.values() if s.batch]),
        ("drift asset", [s.drift_asset for s in specs.values() if s.drift]),
        *(
            (f"monitoring {part} asset", [s.monitoring_asset(part) for s in specs.values() if s.monitoring])
            for part in MONITORING_SUFFIXES
        ),
    ):
        if len(set(assets)) < len(assets):
            raise ModelSpecError(f"{directory}: two models declare the same {what}")
    return specs


FRAUD_MODEL = spec_for("fraud_model")

"""The model factory: every model declared in models/<name>.yaml becomes the same chain of assets, checks,
jobs and sensors. Nothing in the Dagster layer knows a model by name; the spec says what differs.

For a spec named M (fraud_model keeps the keys it had before specs: `training_set`, `batch_predictions`):
- `M_training_set`: its labelled events joined point-in-time with its feature service by Feast, with a
  blocking point-in-time leakage check;
- `M`: a candidate trained, tracked and registered in MLflow, with five blocking gates (metric floors, not
  worse than the champion, slice gaps, calibration, one-row latency), their bounds the `M_gates` resource;
- `M_champion`: promotion under the spec's policy, retention, and a check that the serving version passed
  its gates;
- `M_predictions` (when the spec declares `batch`): each landed day scored by the champion;
- `M_feature_drift` (when it declares `drift`; fraud_model keeps `feature_drift`): each scored day's inputs
  and scores against the champion's newest training week, PSI checks that alert (and retrain when the
  spec's `retrain` names them);
- `M_slo` (when it declares `slo`): the quality SLO on each labelled day, its burn, and the rollback of a
  champion on probation that breaks it; judged nightly once the day's labels are in;
- `M_serving_slo` (when it declares `slo.serving`): its route's p99 latency and server-error rate on each
  day of traffic in the prediction log, burn and probation rollback alike; judged nightly for yesterday;
- when it declares `monitoring` (fraud_model keeps `model_performance`, `serving_health`, `serving_skew`,
  `monitoring_report`, `delivery_metrics`): `M_performance` (the scored day once labelled),
  `M_serving_health` and `M_serving_skew` (its online traffic, nightly), `M_monitoring_report` (the day's
  HTML page) and `M_delivery_metrics` (DORA);
- the schedule `M_nightly` (with `slo`): the labelled day's performance and quality SLO, yesterday's traffic;
- jobs `retrain_M`, `rollback_M`, `review_M`, and the sensor `retrain_M_sensor`.
"""

from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    JobDefinition,
    ScheduleDefinition,
    SensorDefinition,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlplatform.inference.assets import build_batch_predictions
from mlplatform.monitoring.assets import build_feature_drift
from mlplatform.monitoring.model_monitoring import (
    MonitoringDefinitions,
    build_model_monitoring,
    build_nightly,
)
from mlplatform.monitoring.retraining import build_retrain_sensor
from mlplatform.monitoring.slo import SloDefinitions, build_slo
from mlplatform.training.factory import TrainingChain, build_training_chain
from mlplatform.training.spec import SPECS_DIR, ModelSpec, load_specs


@dataclass(frozen=True)
class ModelDefinitions:
    """Everything the factory built for one spec."""

    training: TrainingChain
    batch: AssetsDefinition | None
    drift: AssetsDefinition | None
    slo: SloDefinitions | None
    monitoring: MonitoringDefinitions | None
    nightly: ScheduleDefinition | None
    retrain_sensor: SensorDefinition

    @property
    def spec(self) -> ModelSpec:
        return self.training.spec

    @property
    def training_set(self) -> AssetsDefinition:
        return self.training.training_set

    @property
    def candidate(self) -> AssetsDefinition:
        return self.training.candidate

    @property
    def champion(self) -> AssetsDefinition:
        return self.training.champion

    @property
    def gate_checks(self) -> list[AssetChecksDefinition]:
        return self.training.gate_checks

    @property
    def checks(self) -> list[AssetChecksDefinition]:
        return self.training.checks

    @property
    def jobs(self) -> list[JobDefinition | UnresolvedAssetJobDefinition]:
        return self.training.jobs

    @property
    def daily(self) -> list[AssetsDefinition]:
        """What a landed day sets off for this model: its batch decisions, their drift, quality SLO,
        performance and the day's report (last: it reports on the others)."""
        return [
            *([self.batch] if self.batch else []),
            *([self.drift] if self.drift else []),
            *([self.slo.quality] if self.slo else []),
            *(self.monitoring.daily if self.monitoring else []),
        ]

    @property
    def schedules(self) -> list[ScheduleDefinition]:
        return [self.nightly] if self.nightly else []

    @property
    def assets(self) -> list[AssetsDefinition]:
        serving = [self.slo.serving] if self.slo and self.slo.serving else []
        rest = [*self.monitoring.traffic, self.monitoring.delivery] if self.monitoring else []
        return [*self.training.assets, *self.daily, *serving, *rest]


def build_model(spec: ModelSpec) -> ModelDefinitions:
    training = build_training_chain(spec)
    drift = build_feature_drift(spec) if spec.drift else None
    slo = build_slo(spec) if spec.slo else None
    monitoring = build_model_monitoring(spec, drift) if spec.monitoring else None
    return ModelDefinitions(
        training=training,
        batch=build_batch_predictions(spec) if spec.batch else None,
        drift=drift,
        slo=slo,
        monitoring=monitoring,
        nightly=build_nightly(spec, slo, monitoring),
        retrain_sensor=build_retrain_sensor(training),
    )


def build_models(models_dir: Path = SPECS_DIR) -> dict[str, ModelDefinitions]:
    """Every model declared in `models_dir`, by name."""
    return {name: build_model(spec) for name, spec in load_specs(models_dir).items()}

"""Monitoring, per day: what every monitoring asset shares (graded checks that alert, per-day tables) and
each model's feature and prediction drift against its champion's training set. Failing checks go to the
alert sink."""

import warnings
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster._utils.warnings import PreviewWarning

from mlplatform.automation import follow_updates_of
from mlplatform.checks import judged, not_judged, was_judged
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import (
    load_scoring_model,
)
from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.monitoring.drift import drift_table, psi
from mlplatform.monitoring.plots import (
    image_metadata,
    psi_chart,
    score_chart,
    score_histogram,
)
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import (
    AlertSink,
    FeastFeatureStore,
    ModelRegistry,
    MonitoringSettings,
    Warehouse,
)
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

BOUNDS = MonitoringSettings()  # the defaults, quoted in the checks' descriptions; runs use the resource
# The checks below are partitioned like their assets: each evaluation belongs to its day (the UI's per-day
# check history, the report's verdicts). Dagster marks partitioned checks "preview"; with dagster pinned,
# its notice about that exact feature is silenced here, nothing else.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning
)


# a day is monitored once it is scored (its performance is judged again once its labels are in)
def follow_new_scores(spec: ModelSpec) -> AutomationCondition:
    """A day of a model's monitoring runs again once that day of its batch decisions was (re)scored."""
    return follow_updates_of(AssetKey(spec.batch_asset), label="follow_new_scores")


def graded(
    value: float, warn: float, error: float, higher_is_worse: bool = True
) -> tuple[bool, AssetCheckSeverity]:
    """passed, and how bad it is when not: WARN between the bounds, ERROR beyond the error bound."""
    worse = (lambda x, bound: x > bound) if higher_is_worse else (lambda x, bound: x < bound)
    if not worse(value, warn):
        return True, AssetCheckSeverity.WARN
    return False, AssetCheckSeverity.ERROR if worse(value, error) else AssetCheckSeverity.WARN


def graded_check(
    key: AssetKey,
    name: str,
    figure: str,
    value: float,
    warn: float,
    error: float,
    *,
    day: str,
    higher_is_worse: bool = True,
    unjudged_reason: str | None = None,
    **metadata,
) -> AssetCheckResult:
    """The check result for `figure` = `value` against its WARN and ERROR bounds, with the value, the
    bounds and the day in its metadata. No value (NaN) or a stated reason: not judged, never passed."""
    import numpy as np

    figures: dict[str, Any] = {"partition": day, "warn_bound": warn, "error_bound": error, **metadata}
    if unjudged_reason is not None or np.isnan(value):
        return not_judged(
            unjudged_reason or f"no {figure} for {day}", asset_key=key, check_name=name, **figures
        )
    passed, severity = graded(value, warn, error, higher_is_worse)
    figures[figure] = round(value, 5)
    side = "above" if higher_is_worse else "below"
    verdict = "OK" if passed else severity.value
    description = f"{figure} {value:.4g} on {day}: {verdict} (WARN {side} {warn:g}, ERROR {side} {error:g})"
    return judged(
        passed, severity=severity, asset_key=key, check_name=name, description=description, **figures
    )


def alert_on(result: AssetCheckResult, alerts: AlertSink, partition: str, figure: str) -> AssetCheckResult:
    """Send a judged failure to the alert sink (a check that could not judge is not an alarm)."""
    if not result.passed and was_judged(result.metadata):
        alerts.send(
            "check_failed",
            f"{result.asset_key.to_user_string()}:{result.check_name} {result.severity.value} on {partition}",
            asset=result.asset_key.to_user_string(),
            check=result.check_name,
            severity=result.severity.value,
            partition=partition,
            figure=result.metadata[figure].value,
        )
    return result


def store_day(warehouse: Warehouse, table: str, rows: "pd.DataFrame", day: str) -> None:
    """Replace the day's rows of monitoring.`table`: a re-run of a day never duplicates it. The table is
    created by the first rows (an empty frame carries no column types)."""
    import pandas as pd

    if rows.empty and not warehouse.table_exists("monitoring", table):
        return
    date = pd.Timestamp(day).date()
    warehouse.replace_partitions(
        "monitoring", table, rows.assign(partition_date=date), "partition_date", [date]
    )


def labelled_decisions(warehouse: Warehouse, spec: ModelSpec, day: str) -> "pd.DataFrame | None":
    """A model's batch decisions of `day` (score, decision, model version) with their label where it has
    arrived (`label`, else null), joined on the spec's label keys and event time; None before the model
    has scored anything (its predictions table does not exist yet)."""
    if not warehouse.table_exists("inference", spec.batch_asset):
        return None
    keys = " and ".join(f"l.{column} = p.{column}" for column in [*spec.label.keys, "event_ts"])
    return warehouse.read_sql(
        f"select p.score, p.decision, p.model_version, l.{spec.label.column} as label "
        f"from inference.{spec.batch_asset} as p left join {spec.label.table} as l on {keys} "
        f"where p._partition_date = '{day}'"
    )


def drift_checks(spec: ModelSpec) -> list[str]:
    """The checks of a spec's drift asset, in the order they are reported."""
    drift = spec.drift
    own = [drift.own_inputs_check] if drift and drift.own_inputs else []
    return ["feature_psi", *own, "prediction_psi"]


def build_feature_drift(spec: ModelSpec) -> AssetsDefinition:
    """A spec's drift per scored day: its batch spine's rows of the day and of the champion's newest training
    week, with the feature service's values as of each row (through Feast), compared input by input and by
    score. Stored in monitoring.<asset> and its score histograms in monitoring.<asset>_scores."""
    drift, batch = spec.drift, spec.batch
    if drift is None or batch is None:
        raise ValueError(f"{spec.name} declares no drift monitoring")
    key = AssetKey(spec.drift_asset)
    table = spec.drift_asset
    own = drift.own_inputs
    bounds = f"WARN above {BOUNDS.psi_warn}, ERROR above {BOUNDS.psi_error}"

    def retraining(check: str) -> str:
        retrains = f"{table}:{check}" in spec.retrain.on_failed_checks
        return "retrains" if retrains else "alerts, does not retrain"

    descriptions = {
        "feature_psi": f"Largest PSI of any model input against the reference: {bounds} "
        f"({retraining('feature_psi')}; rolling windows still filling up also move it).",
        drift.own_inputs_check: f"Largest PSI of the inputs the record carries itself ({', '.join(own)}), "
        f"which no rolling window smooths: {bounds} ({retraining(drift.own_inputs_check)}).",
        "prediction_psi": f"PSI of the day's scores against the reference: {bounds} "
        f"({retraining('prediction_psi')}).",
    }
    predictions = AssetKey(spec.batch_asset)
    fields = ", ".join(batch.columns)

    @asset(
        key=key,
        group_name="monitoring",
        kinds={"feast", warehouse_kind()},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[predictions, AssetKey(spec.training_set_asset)],
        automation_condition=follow_new_scores(spec),
        check_specs=[
            AssetCheckSpec(check, asset=key, partitions_def=DAILY_PARTITIONS, description=descriptions[check])
            for check in drift_checks(spec)
        ],
        description=(
            f"{spec.name}: the day's model inputs and scores against its champion's training set (the "
            f"newest week it trained on): PSI per feature (KS test for numeric ones) and PSI of the scores; "
            f"stored in monitoring.{table}."
        ),
    )
    def feature_drift(
        context: AssetExecutionContext,
        feature_store: FeastFeatureStore,
        warehouse: Warehouse,
        model_registry: ModelRegistry,
        monitoring: MonitoringSettings,
        alerts: AlertSink,
    ) -> MaterializeResult:
        day = context.partition_key
        if model_registry.version_for(spec.name, CHAMPION) is None:
            reason = f"{spec.name} has no champion: nothing scored to compare"
            return MaterializeResult(
                metadata={"note": reason},
                check_results=[not_judged(reason, asset_key=key, check_name=c) for c in drift_checks(spec)],
            )
        model = load_scoring_model(model_registry, spec.name, CHAMPION)
        store = feature_store.store()
        current = features_as_of_events(
            store,
            warehouse.read_sql(f"select {fields} from {batch.spine} where {batch.day_column} = '{day}'"),
            model.feature_service,
        )
        # the reference: every row (not only the labelled ones, which over-represent positives while the
        # negatives' confirmations are still on their way) of the newest week the champion trained on
        trained_until = f"(select max(event_ts) from training.{spec.training_set_asset})"
        reference_rows = warehouse.read_sql(
            f"select {fields} from {batch.spine} where event_ts between "
            f"{trained_until} - interval '{monitoring.reference_days} days' and {trained_until}"
        )
        reference = features_as_of_events(
            store,
            reference_rows.sample(min(len(reference_rows), monitoring.reference_rows), random_state=7),
            model.feature_service,
        )
        columns = list(model.pipeline.feature_names_in_)
        psi_table = drift_table(reference, current, columns)
        reference_scores, current_scores = model.score(reference)["score"], model.score(current)["score"]
        score_psi = psi(reference_scores, current_scores)
        histogram = score_histogram(reference_scores, current_scores)
        store_day(warehouse, table, psi_table, day)
        store_day(warehouse, f"{table}_scores", histogram, day)

        max_psi = float(psi_table["psi"].max())
        drifted = psi_table.loc[psi_table["psi"] > monitoring.psi_warn, "feature"].tolist()
        no_rows = None if len(current) else f"no rows scored on {day}"
        figures = {"feature_psi": ("max_psi", max_psi), "prediction_psi": ("score_psi", score_psi)}
        if own:
            own_psi = float(psi_table.loc[psi_table["feature"].isin(own), "psi"].max())
            figures[drift.own_inputs_check] = (f"max_{drift.own_inputs_check}", own_psi)
        details: dict[str, dict[str, Any]] = {
            "feature_psi": {"drifted_features": MetadataValue.json(drifted)},
            drift.own_inputs_check: {"inputs": MetadataValue.json(own)},
        }
        checks = [
            alert_on(
                graded_check(
                    key,
                    check,
                    figures[check][0],
                    figures[check][1],
                    monitoring.psi_warn,
                    monitoring.psi_error,
                    day=day,
                    unjudged_reason=no_rows,
                    **details.get(check, {}),
                ),
                alerts,
                day,
                figures[check][0],
            )
            for check in drift_checks(spec)
        ]
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(current),
                "model_version": model.version,
                **{name: round(value, 4) for name, value in figures.values()},
                "drifted_features": len(drifted),
                "psi_chart": image_metadata(
                    psi_chart(psi_table, monitoring.psi_warn, monitoring.psi_error), "PSI"
                ),
                "score_distribution": image_metadata(score_chart(histogram), "scores"),
                "psi_per_feature": MetadataValue.md(psi_table.round(4).to_markdown(index=False)),
            },
            check_results=checks,
        )

    return feature_drift

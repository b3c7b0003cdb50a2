"""Monitoring, per day: feature and prediction drift against the training set, and the champion's
performance once the (delayed) labels of the day have arrived. Failing checks go to the alert sink."""

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AutomationCondition,
    DagsterInstance,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._core.event_api import PartitionKeyFilter  # the check history of one day
from dagster._utils.warnings import PreviewWarning

from mlplatform.automation import FOLLOW_UPSTREAM, follow_updates_of
from mlplatform.checks import judged, not_judged, was_judged
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.features.skew import MISMATCH_DTYPES, mismatch_rates
from mlplatform.inference.assets import prediction_log
from mlplatform.inference.scoring import (
    TRANSACTION_FIELDS,
    ScoringModel,
    load_model_version,
    load_scoring_model,
)
from mlplatform.ingestion.assets import DAILY_PARTITIONS, raw_transactions
from mlplatform.monitoring.dora import dora_metrics
from mlplatform.monitoring.drift import drift_table, labelled_performance, psi, serving_figures
from mlplatform.monitoring.plots import (
    Verdict,
    day_verdict,
    html_index,
    html_report,
    image_metadata,
    performance_chart,
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
    PredictionLog,
    Warehouse,
)
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.resources.prediction_log import of_model
from mlplatform.training.spec import FRAUD_MODEL, ModelSpec

# the transaction model's monitoring beyond its spec's: its report, `/predict`'s serving health and skew
FEATURE_DRIFT = AssetKey(FRAUD_MODEL.drift_asset)
MODEL_PERFORMANCE = AssetKey("model_performance")
SERVING_HEALTH = AssetKey("serving_health")
SERVING_SKEW = AssetKey("serving_skew")
MONITORING_REPORT = AssetKey("monitoring_report")
TRAINING_LABELS = AssetKey("training_labels")
# monitoring watches the transaction model's decisions: its batch scores, its serving, its labels
BATCH_PREDICTIONS = AssetKey(FRAUD_MODEL.batch_asset)
BOUNDS = MonitoringSettings()  # the defaults, quoted in the checks' descriptions; runs use the resource
# The checks below are partitioned like their assets: each evaluation belongs to its day (the UI's per-day
# check history, the report's verdicts). Dagster marks partitioned checks "preview"; with dagster pinned,
# its notice about that exact feature is silenced here, nothing else.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning
)
LABEL_DELAY = timedelta(days=7)  # most chargebacks of a day have arrived a week later


# a day is monitored once it is scored (its performance is judged again once its labels are in)
def follow_new_scores(spec: ModelSpec) -> AutomationCondition:
    """A day of a model's monitoring runs again once that day of its batch decisions was (re)scored."""
    return follow_updates_of(AssetKey(spec.batch_asset), label="follow_new_scores")


FOLLOW_NEW_SCORES = follow_new_scores(FRAUD_MODEL)
FOLLOW_MONITORING = follow_updates_of(
    FEATURE_DRIFT, MODEL_PERFORMANCE, SERVING_HEALTH, SERVING_SKEW, label="follow_monitoring"
)


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


def store_day(warehouse: Warehouse, table: str, rows: pd.DataFrame, day: str) -> None:
    """Replace the day's rows of monitoring.`table`: a re-run of a day never duplicates it. The table is
    created by the first rows (an empty frame carries no column types)."""
    if rows.empty and not warehouse.table_exists("monitoring", table):
        return
    date = pd.Timestamp(day).date()
    warehouse.replace_partitions(
        "monitoring", table, rows.assign(partition_date=date), "partition_date", [date]
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


@asset(
    key=MODEL_PERFORMANCE,
    group_name="monitoring",
    kinds={"scikitlearn", warehouse_kind()},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[BATCH_PREDICTIONS, TRAINING_LABELS],
    automation_condition=FOLLOW_NEW_SCORES,
    check_specs=[
        AssetCheckSpec(
            "roc_auc",
            asset=MODEL_PERFORMANCE,
            partitions_def=DAILY_PARTITIONS,
            description=f"Champion ROC AUC on the day's labelled transactions: WARN below "
            f"{BOUNDS.min_roc_auc_warn}, ERROR below {BOUNDS.min_roc_auc_error} (retrains); not judged "
            f"before {BOUNDS.min_labelled_frauds} of the day's frauds are labelled.",
        ),
    ],
    description=(
        "How the day's batch decisions did once labels arrived (chargebacks come days later): ROC AUC, "
        "precision and recall at the served threshold, and how much of the day is labelled yet."
    ),
)
def model_performance(
    context: AssetExecutionContext, warehouse: Warehouse, monitoring: MonitoringSettings, alerts: AlertSink
) -> MaterializeResult:
    day = context.partition_key
    scored = warehouse.read_sql(
        "select p.score, p.decision, p.model_version, l.is_fraud "
        f"from inference.{FRAUD_MODEL.batch_asset} as p "
        "left join marts.training_labels as l using (transaction_id) "
        f"where p._partition_date = '{day}'"
    )
    labelled = scored.dropna(subset=["is_fraud"])
    figures = labelled_performance(
        labelled["is_fraud"].astype(int), labelled["score"], labelled["decision"].astype(int)
    )
    figures["label_coverage"] = len(labelled) / len(scored) if len(scored) else 0.0
    store_day(warehouse, "model_performance", pd.DataFrame([figures]), day)
    history = warehouse.read_sql(
        "select * from monitoring.model_performance "
        f"where partition_date > date '{day}' - interval '{monitoring.history_days} days'"
    )
    enough = figures["frauds"] >= monitoring.min_labelled_frauds
    check = alert_on(
        graded_check(
            MODEL_PERFORMANCE,
            "roc_auc",
            "roc_auc",
            figures["roc_auc"],
            monitoring.min_roc_auc_warn,
            monitoring.min_roc_auc_error,
            day=day,
            higher_is_worse=False,
            unjudged_reason=None
            if enough
            else (
                f"not enough labels yet: {int(figures['frauds'])} frauds labelled, "
                f"{monitoring.min_labelled_frauds} needed"
            ),
            frauds_labelled=int(figures["frauds"]),
        ),
        alerts,
        day,
        "roc_auc",
    )
    return MaterializeResult(
        metadata={
            **{k: round(float(v), 4) for k, v in figures.items()},
            "model_versions": MetadataValue.json(sorted(scored["model_version"].unique().tolist())),
            "performance_over_time": image_metadata(
                performance_chart(history, monitoring.min_roc_auc_warn, monitoring.min_roc_auc_error),
                "performance",
            ),
        },
        check_results=[check],
    )


@asset(
    key=SERVING_HEALTH,
    group_name="monitoring",
    kinds={"fastapi"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[prediction_log],
    check_specs=[
        AssetCheckSpec(
            "latency_p99",
            asset=SERVING_HEALTH,
            partitions_def=DAILY_PARTITIONS,
            description=f"p99 of the day's /predict latency: WARN above {BOUNDS.latency_p99_warn_ms:g} ms, "
            f"ERROR above {BOUNDS.latency_p99_error_ms:g} ms; not judged on a day without traffic.",
        ),
        AssetCheckSpec(
            "log_lines_readable",
            asset=SERVING_HEALTH,
            partitions_def=DAILY_PARTITIONS,
            description="Every prediction log line parses; corrupt ones are skipped and counted (WARN).",
        ),
    ],
    description=(
        f"The day's `/predict` traffic ({FRAUD_MODEL.name}) from the prediction log: requests, latency "
        "p50/p99, flag rate, and how often a shadowed challenger agreed with the served decision. Every "
        "model's serving SLO is judged by its own `<model>_serving_slo`."
    ),
)
def serving_health(
    context: AssetExecutionContext,
    prediction_log: PredictionLog,
    monitoring: MonitoringSettings,
    alerts: AlertSink,
) -> MaterializeResult:
    day = context.partition_key
    log = prediction_log.read_counted(day)  # corrupt lines (a crash mid-write) are skipped, never fatal
    figures = serving_figures(of_model(log.frame, FRAUD_MODEL.name)[0])
    check = alert_on(
        graded_check(
            SERVING_HEALTH,
            "latency_p99",
            "latency_p99_ms",
            figures.get("latency_p99_ms", float("nan")),
            monitoring.latency_p99_warn_ms,
            monitoring.latency_p99_error_ms,
            day=day,
            unjudged_reason=None if figures.get("requests") else f"no online traffic on {day}",
        ),
        alerts,
        day,
        "latency_p99_ms",
    )
    return MaterializeResult(
        metadata={
            **{k: round(float(v), 4) for k, v in figures.items()},
            "corrupt_log_lines": log.corrupt_lines,
            "corrupt_log_files": MetadataValue.json(log.corrupt_files),
        },
        check_results=[check, log_lines_check(log.corrupt_lines, log.corrupt_files)],
    )


def log_lines_check(corrupt_lines: int, corrupt_files: list[str]) -> AssetCheckResult:
    """A WARN naming the files when prediction log lines had to be skipped; they never fail the day."""
    return judged(
        corrupt_lines == 0,
        severity=AssetCheckSeverity.WARN,
        asset_key=SERVING_HEALTH,
        check_name="log_lines_readable",
        description=None
        if corrupt_lines == 0
        else f"skipped {corrupt_lines} corrupt prediction log line(s) in {', '.join(corrupt_files)}",
        corrupt_log_lines=corrupt_lines,
    )


@asset(
    key=SERVING_SKEW,
    group_name="monitoring",
    kinds={"feast", "fastapi"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[
        prediction_log,
        AssetKey("online_customer_stats"),
        AssetKey("online_merchant_stats"),
        AssetKey(FRAUD_MODEL.champion_asset),
    ],
    check_specs=[
        AssetCheckSpec(
            "feature_skew",
            asset=SERVING_SKEW,
            partitions_def=DAILY_PARTITIONS,
            description="Share of served predictions whose inputs differ from their offline point-in-time "
            f"recomputation: WARN above {BOUNDS.skew_warn_rate:.0%}, ERROR above "
            f"{BOUNDS.skew_error_rate:.0%}; not judged on a day without traffic.",
        )
    ],
    description=(
        "Online/offline skew: every input the API served a model with (prediction log) against the same "
        "features recomputed offline by Feast as of the request's time: a stale online store, a broken "
        "materialization or a diverging request-time transformation shows here (monitoring.serving_skew)."
    ),
)
def serving_skew(
    context: AssetExecutionContext,
    prediction_log: PredictionLog,
    feature_store: FeastFeatureStore,
    model_registry: ModelRegistry,
    warehouse: Warehouse,
    monitoring: MonitoringSettings,
    alerts: AlertSink,
) -> MaterializeResult:
    day = context.partition_key
    log, _ = of_model(prediction_log.read(day), FRAUD_MODEL.name)
    tables = [
        recomputed_skew(
            feature_store, load_model_version(model_registry, FRAUD_MODEL.name, str(version)), requests
        )
        for version, requests in (log.groupby("model_version") if len(log) else [])
    ]
    table = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in {**MISMATCH_DTYPES, "model_version": "string"}.items()}
        )
    )
    store_day(warehouse, "serving_skew", table, day)
    worst = float(table["mismatch_rate"].max()) if len(table) else float("nan")
    skewed = sorted(set(table.loc[table["mismatches"] > 0, "feature"]))
    check = alert_on(
        graded_check(
            SERVING_SKEW,
            "feature_skew",
            "max_mismatch_rate",
            worst,
            monitoring.skew_warn_rate,
            monitoring.skew_error_rate,
            day=day,
            unjudged_reason=None if len(log) else f"no online predictions logged on {day}",
            predictions_compared=len(log),
            skewed_features=MetadataValue.json(skewed),
        ),
        alerts,
        day,
        "max_mismatch_rate",
    )
    return MaterializeResult(
        metadata={
            "predictions_compared": len(log),
            "max_mismatch_rate": round(worst, 5),
            "skewed_features": len(skewed),
            "mismatches_per_feature": MetadataValue.md(table.round(5).to_markdown(index=False)),
        },
        check_results=[check],
    )


def recomputed_skew(
    feature_store: FeastFeatureStore, model: ScoringModel, requests: pd.DataFrame
) -> pd.DataFrame:
    """Mismatch rates of the inputs `model` was served (logged) against Feast's offline recomputation."""
    fields = list(model.pipeline.feature_names_in_)
    served = pd.json_normalize(requests["features"].tolist())
    events = requests[[c for c in TRANSACTION_FIELDS if c not in ("transaction_id", "event_ts")]].assign(
        event_ts=pd.to_datetime(requests["event_ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    )
    recomputed = features_as_of_events(
        feature_store.store(), events.reset_index(drop=True), model.feature_service
    )
    return mismatch_rates(served, recomputed, fields).assign(model_version=model.version)


# what the day's report judges the day by
REPORTED_CHECKS = [
    *(AssetCheckKey(FEATURE_DRIFT, check) for check in drift_checks(FRAUD_MODEL)),
    *(key for asset in (model_performance, serving_health, serving_skew) for key in asset.check_keys),
]


@asset(
    key=MONITORING_REPORT,
    group_name="monitoring",
    kinds={"html"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[FEATURE_DRIFT, MODEL_PERFORMANCE, SERVING_HEALTH, SERVING_SKEW],
    automation_condition=FOLLOW_MONITORING,
    description=(
        "The day's monitoring as one static HTML page (PSI per feature, score distributions, performance "
        "over time, serving skew), written to the report folder with an index of every day."
    ),
)
def monitoring_report(
    context: AssetExecutionContext, warehouse: Warehouse, monitoring: MonitoringSettings
) -> MaterializeResult:
    day = context.partition_key

    def rows(table: str, days: int = 1) -> pd.DataFrame:
        if not warehouse.table_exists("monitoring", table):
            return pd.DataFrame(columns=["partition_date"])
        return warehouse.read_sql(
            f"select * from monitoring.{table} where partition_date between "
            f"date '{day}' - interval '{days - 1} days' and date '{day}'"
        )

    drift_table_name = FEATURE_DRIFT.to_user_string()
    drift, histogram = rows(drift_table_name), rows(f"{drift_table_name}_scores")
    skew_table = rows("serving_skew")
    history = rows("model_performance", monitoring.history_days)
    charts = {}
    if len(drift):
        charts["PSI per feature"] = psi_chart(drift, monitoring.psi_warn, monitoring.psi_error)
    if len(histogram):
        charts["Score distribution"] = score_chart(histogram)
    if len(history):
        charts["Performance over time"] = performance_chart(
            history, monitoring.min_roc_auc_warn, monitoring.min_roc_auc_error
        )
    figures = latest_figures(context, day)
    verdicts = day_verdicts(context.instance, day)
    folder = Path(monitoring.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / f"monitoring-{day}.html"
    tables = {
        "Feature drift": (drift.drop(columns="partition_date"), "feature_drift has not run for this day."),
        "Serving skew": (
            skew_table.drop(columns="partition_date"),
            "No online traffic logged for this day: nothing served to compare with its offline features.",
        ),
    }
    page.write_text(html_report(day, verdicts, figures, charts, tables))
    verdict = day_verdict(verdicts)
    (folder / f"monitoring-{day}.json").write_text(json.dumps({"day": day, "verdict": verdict}))
    index = {
        summary["day"]: summary["verdict"]
        for summary in (json.loads(p.read_text()) for p in folder.glob("monitoring-*.json"))
    }
    (folder / "index.html").write_text(html_index(index))
    return MaterializeResult(
        metadata={
            "verdict": verdict,
            "report": MetadataValue.path(str(page)),
            "open": MetadataValue.url(page.resolve().as_uri()),
            "charts": len(charts),
            "checks": MetadataValue.md(
                "\n".join(f"- **{v.verdict}** `{v.check}`: {v.detail}" for v in verdicts)
            ),
            **figures,
        }
    )


def day_verdicts(instance: DagsterInstance, day: str) -> list[Verdict]:
    """Each monitoring check's latest evaluation of `day` (checks not run for it are left out)."""
    verdicts = []
    for key in REPORTED_CHECKS:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, partition_filter=PartitionKeyFilter(key=day)
        )
        evaluation = records[0].evaluation if records else None
        if evaluation is None:  # never run, or still running
            continue
        if evaluation.passed:
            verdict = "OK"
        elif not was_judged(dict(evaluation.metadata)):
            verdict = "NOT JUDGED"
        else:
            verdict = evaluation.severity.value
        check = f"{key.asset_key.to_user_string()}:{key.name}"
        verdicts.append(Verdict(check, verdict, evaluation.description or ""))
    return verdicts


def latest_figures(context: AssetExecutionContext, day: str) -> dict[str, float | str]:
    """The headline numbers the monitoring assets recorded for `day` (their latest materialization)."""
    wanted = {
        FEATURE_DRIFT: ("max_psi", "max_transaction_psi", "score_psi", "drifted_features"),
        MODEL_PERFORMANCE: ("roc_auc", "precision_at_threshold", "recall_at_threshold", "label_coverage"),
        SERVING_HEALTH: ("requests", "latency_p99_ms"),
        SERVING_SKEW: ("max_mismatch_rate",),
    }
    figures: dict[str, float | str] = {}
    for key, names in wanted.items():
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
        ).records
        metadata = records[0].asset_materialization.metadata if records else {}
        figures |= {f"{key.to_user_string()}.{n}": metadata[n].value for n in names if n in metadata}
    return figures


@asset(
    group_name="monitoring",
    kinds={"mlflow"},
    owners=["team:ml"],
    deps=[AssetKey(FRAUD_MODEL.champion_asset)],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "DORA metrics of model delivery over the last 30 days, from the registry's audit trail and the "
        "ingestion history: deployments per week, lead time from data landing to a new champion, change "
        "failure rate (promotions rolled back) and time to restore."
    ),
)
def delivery_metrics(context: AssetExecutionContext, model_registry: ModelRegistry) -> MaterializeResult:
    loads = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=raw_transactions.key), limit=10_000
    ).records
    landed = [datetime.fromtimestamp(record.timestamp, UTC) for record in loads]
    figures = dora_metrics(model_registry.audit_trail(FRAUD_MODEL.name), landed, timedelta(days=30))
    return MaterializeResult(metadata={k: round(float(v), 3) for k, v in figures.items()})


nightly_monitoring_job = define_asset_job(
    "nightly_monitoring",
    selection=[serving_health, serving_skew, model_performance],
    description="Online traffic of a day, or the champion's performance on a day whose labels are in.",
)


@schedule(
    job=nightly_monitoring_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,  # the loop needs it: on by default
)
def nightly_monitoring(context: ScheduleEvaluationContext) -> list[RunRequest]:
    """At 02:30 UTC: the online traffic of the day that just ended (its log is complete), and the
    champion's performance on the day a week back, now that most of its labels have arrived."""
    yesterday = context.scheduled_execution_time - timedelta(days=1)
    labelled = yesterday - LABEL_DELAY
    return [
        RunRequest(
            run_key=f"{yesterday:%Y-%m-%d}-serving",
            partition_key=f"{yesterday:%Y-%m-%d}",
            asset_selection=[SERVING_HEALTH, SERVING_SKEW],
        ),
        RunRequest(
            run_key=f"{labelled:%Y-%m-%d}-performance",
            partition_key=f"{labelled:%Y-%m-%d}",
            asset_selection=[MODEL_PERFORMANCE],
        ),
    ]


# what a landed day of transactions sets off once it is scored (serving health and skew wait for the night)
daily_monitoring_assets = [model_performance, monitoring_report]
monitoring_assets = [model_performance, serving_health, serving_skew, monitoring_report]

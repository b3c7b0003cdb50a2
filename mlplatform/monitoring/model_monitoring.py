"""A model's daily monitoring beside its drift and SLOs, built from its spec's `monitoring`: its batch
decisions' performance once labelled, its route's traffic and online/offline skew, the day's HTML report,
the DORA metrics of its delivery, and the nightly schedule that judges a day again once its labels or its
whole traffic are in. Failing checks go to the alert sink."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterInstance,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    schedule,
)
from dagster._core.event_api import PartitionKeyFilter  # the check history of one day

from mlplatform.automation import FOLLOW_UPSTREAM, follow_updates_of
from mlplatform.checks import judged, not_judged, was_judged
from mlplatform.features import online_feature_assets
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.features.skew import MISMATCH_DTYPES, mismatch_rates
from mlplatform.files import replace_text
from mlplatform.inference.assets import PREDICTION_LOG
from mlplatform.inference.scoring import ScoringModel, load_model_version
from mlplatform.ingestion.assets import DAILY_PARTITIONS, raw_transactions
from mlplatform.monitoring.assets import (
    BOUNDS,
    alert_on,
    drift_checks,
    follow_new_scores,
    graded_check,
    labelled_decisions,
    store_day,
)
from mlplatform.monitoring.dora import dora_metrics
from mlplatform.monitoring.drift import LABELLED_FIGURES, labelled_performance, serving_figures
from mlplatform.monitoring.plots import (
    Verdict,
    day_verdict,
    html_index,
    html_report,
    image_metadata,
    performance_chart,
    psi_chart,
    score_chart,
)
from mlplatform.monitoring.retraining import RESOLVED
from mlplatform.monitoring.slo import SloDefinitions
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import (
    AlertSink,
    FeastFeatureStore,
    ModelRegistry,
    MonitoringSettings,
    PredictionLog,
    Warehouse,
)
from mlplatform.resources.prediction_log import of_model
from mlplatform.training.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

# what a prediction log record holds besides the request's own fields (keys and request-time inputs)
LOG_BOOKKEEPING = {
    "logged_at", "request_id", "score", "decision", "threshold", "model_name", "model_version", "arm",
    "latency_ms", "mode", "shadow", "features", "known_entity", "status", "error",
}  # fmt: skip


@dataclass(frozen=True)
class MonitoringDefinitions:
    """What the factory builds from a spec's `monitoring`."""

    performance: AssetsDefinition  # follows the batch decisions, judged again once labelled
    serving_health: AssetsDefinition  # judged nightly, once the day's traffic is complete
    serving_skew: AssetsDefinition
    report: AssetsDefinition  # follows every monitoring asset of the day
    delivery: AssetsDefinition  # follows the champion

    @property
    def daily(self) -> list[AssetsDefinition]:
        """What a scored day sets off."""
        return [self.performance, self.report]

    @property
    def traffic(self) -> list[AssetsDefinition]:
        """What a day of online traffic is judged by, once it is over."""
        return [self.serving_health, self.serving_skew]

    @property
    def assets(self) -> list[AssetsDefinition]:
        return [*self.daily, *self.traffic, self.delivery]


def build_model_monitoring(spec: ModelSpec, drift: AssetsDefinition | None) -> MonitoringDefinitions:
    performance = build_performance(spec)
    serving_health = build_serving_health(spec)
    serving_skew = build_serving_skew(spec)
    report = build_report(spec, drift, performance, serving_health, serving_skew)
    return MonitoringDefinitions(performance, serving_health, serving_skew, report, build_delivery(spec))


def build_performance(spec: ModelSpec) -> AssetsDefinition:
    """How a model's batch decisions of a day did once their labels arrived, with a graded ROC AUC check."""
    key, table = AssetKey(spec.monitoring_asset("performance")), spec.monitoring_asset("performance")

    @asset(
        key=key,
        group_name="monitoring",
        kinds={"scikitlearn", warehouse_kind()},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[AssetKey(spec.batch_asset), spec.label.asset],
        automation_condition=follow_new_scores(spec),
        check_specs=[
            AssetCheckSpec(
                "roc_auc",
                asset=key,
                partitions_def=DAILY_PARTITIONS,
                description=f"{spec.name} champion's ROC AUC on the day's labelled decisions: WARN below "
                f"{BOUNDS.min_roc_auc_warn}, ERROR below {BOUNDS.min_roc_auc_error}; not judged before "
                f"{BOUNDS.min_labelled_frauds} of the day's positives are labelled.",
            ),
        ],
        description=(
            f"How {spec.name}'s batch decisions of the day did once labels arrived (they come days later): "
            f"ROC AUC, precision and recall at the served threshold, and how much of the day is labelled "
            f"yet (monitoring.{table})."
        ),
    )
    def performance(
        context: AssetExecutionContext,
        warehouse: Warehouse,
        monitoring: MonitoringSettings,
        alerts: AlertSink,
    ) -> MaterializeResult:
        import pandas as pd

        day = context.partition_key
        scored = labelled_decisions(warehouse, spec, day)
        if scored is None:
            reason = f"inference.{spec.batch_asset} holds no decision yet: {spec.name} has scored nothing"
            return MaterializeResult(
                metadata={"note": reason},
                check_results=[not_judged(reason, asset_key=key, check_name="roc_auc")],
            )
        labelled = scored.dropna(subset=["label"])
        figures = labelled_performance(
            labelled["label"].astype(int), labelled["score"], labelled["decision"].astype(int)
        )
        figures["label_coverage"] = len(labelled) / len(scored) if len(scored) else 0.0
        store_day(warehouse, table, pd.DataFrame([figures]), day)
        history = warehouse.read_sql(
            f"select * from monitoring.{table} "
            f"where partition_date > date '{day}' - interval '{monitoring.history_days} days'"
        )
        positives = int(figures["frauds"])
        check = alert_on(
            graded_check(
                key,
                "roc_auc",
                "roc_auc",
                figures["roc_auc"],
                monitoring.min_roc_auc_warn,
                monitoring.min_roc_auc_error,
                day=day,
                higher_is_worse=False,
                unjudged_reason=None
                if positives >= monitoring.min_labelled_frauds
                else (
                    f"not enough labels yet: {positives} positives labelled, "
                    f"{monitoring.min_labelled_frauds} needed"
                ),
                frauds_labelled=positives,
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

    return performance


def build_serving_health(spec: ModelSpec) -> AssetsDefinition:
    """A model's day of online traffic from the prediction log, with a graded p99 latency check."""
    key = AssetKey(spec.monitoring_asset("serving_health"))

    @asset(
        key=key,
        group_name="monitoring",
        kinds={"fastapi"},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[PREDICTION_LOG],
        check_specs=[
            AssetCheckSpec(
                "latency_p99",
                asset=key,
                partitions_def=DAILY_PARTITIONS,
                description=f"p99 of the day's {spec.name} request latency: WARN above "
                f"{BOUNDS.latency_p99_warn_ms:g} ms, ERROR above {BOUNDS.latency_p99_error_ms:g} ms; not "
                "judged on a day without traffic.",
            ),
            AssetCheckSpec(
                "log_lines_readable",
                asset=key,
                partitions_def=DAILY_PARTITIONS,
                description="Every prediction log line parses; corrupt ones are skipped and counted (WARN).",
            ),
        ],
        description=(
            f"The day's online {spec.name} traffic from the prediction log: requests, latency p50/p99, "
            "flag rate, and how often a shadowed challenger agreed with the served decision."
            + (
                f" Its serving SLO is judged by `{spec.name}_serving_slo`."
                if spec.slo and spec.slo.serving
                else ""
            )
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
        figures = serving_figures(of_model(log.frame, spec.name)[0])
        check = alert_on(
            graded_check(
                key,
                "latency_p99",
                "latency_p99_ms",
                figures.get("latency_p99_ms", float("nan")),
                monitoring.latency_p99_warn_ms,
                monitoring.latency_p99_error_ms,
                day=day,
                unjudged_reason=None
                if figures.get("requests")
                else f"no online {spec.name} traffic on {day}",
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
            check_results=[check, log_lines_check(key, log.corrupt_lines, log.corrupt_files)],
        )

    return serving_health


def log_lines_check(key: AssetKey, corrupt_lines: int, corrupt_files: list[str]) -> AssetCheckResult:
    """A WARN naming the files when prediction log lines had to be skipped; they never fail the day."""
    return judged(
        corrupt_lines == 0,
        severity=AssetCheckSeverity.WARN,
        asset_key=key,
        check_name="log_lines_readable",
        description=None
        if corrupt_lines == 0
        else f"skipped {corrupt_lines} corrupt prediction log line(s) in {', '.join(corrupt_files)}",
        corrupt_log_lines=corrupt_lines,
    )


def build_serving_skew(spec: ModelSpec) -> AssetsDefinition:
    """The inputs a model was served with online against Feast's offline recomputation of the same features
    as of each request, with a graded mismatch check."""
    key, table = AssetKey(spec.monitoring_asset("serving_skew")), spec.monitoring_asset("serving_skew")

    @asset(
        key=key,
        group_name="monitoring",
        kinds={"feast", "fastapi"},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[PREDICTION_LOG, *(a.key for a in online_feature_assets), AssetKey(spec.champion_asset)],
        check_specs=[
            AssetCheckSpec(
                "feature_skew",
                asset=key,
                partitions_def=DAILY_PARTITIONS,
                description="Share of served predictions whose inputs differ from their offline point-in-"
                f"time recomputation: WARN above {BOUNDS.skew_warn_rate:.0%}, ERROR above "
                f"{BOUNDS.skew_error_rate:.0%}; not judged on a day without traffic.",
            )
        ],
        description=(
            f"Online/offline skew of {spec.name}: every input the API served it with (prediction log) "
            "against the same features recomputed offline by Feast as of the request's time: a stale online "
            "store, a broken materialization or a diverging request-time transformation shows here "
            f"(monitoring.{table})."
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
        import pandas as pd

        day = context.partition_key
        log, _ = of_model(prediction_log.read(day), spec.name)
        tables = [
            recomputed_skew(
                feature_store, load_model_version(model_registry, spec.name, str(version)), requests
            )
            for version, requests in (log.groupby("model_version") if len(log) else [])
        ]
        skew = (
            pd.concat(tables, ignore_index=True)
            if tables
            else pd.DataFrame(
                {c: pd.Series(dtype=t) for c, t in {**MISMATCH_DTYPES, "model_version": "string"}.items()}
            )
        )
        store_day(warehouse, table, skew, day)
        worst = float(skew["mismatch_rate"].max()) if len(skew) else float("nan")
        skewed = sorted(set(skew.loc[skew["mismatches"] > 0, "feature"]))
        check = alert_on(
            graded_check(
                key,
                "feature_skew",
                "max_mismatch_rate",
                worst,
                monitoring.skew_warn_rate,
                monitoring.skew_error_rate,
                day=day,
                unjudged_reason=None if len(log) else f"no online {spec.name} predictions logged on {day}",
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
                "mismatches_per_feature": MetadataValue.md(skew.round(5).to_markdown(index=False)),
            },
            check_results=[check],
        )

    return serving_skew


def request_events(requests: "pd.DataFrame") -> "pd.DataFrame":
    """The logged requests as events to look features up for: each request's own fields (entity keys,
    request-time inputs), at its event time when it sent one, else when it was served."""
    import pandas as pd

    fields = [c for c in requests.columns if c not in LOG_BOOKKEEPING and requests[c].notna().any()]
    at = requests["event_ts"] if "event_ts" in fields else requests["logged_at"]
    return (
        requests[[c for c in fields if c != "event_ts"]]
        .assign(event_ts=pd.to_datetime(at, utc=True, format="ISO8601").dt.tz_localize(None))
        .reset_index(drop=True)
    )


def recomputed_skew(
    feature_store: FeastFeatureStore, model: ScoringModel, requests: "pd.DataFrame"
) -> "pd.DataFrame":
    """Mismatch rates of the inputs `model` was served (logged) against Feast's offline recomputation."""
    import pandas as pd

    served = pd.json_normalize(requests["features"].tolist())
    recomputed = features_as_of_events(feature_store.store(), request_events(requests), model.feature_service)
    fields = list(model.pipeline.feature_names_in_)
    return mismatch_rates(served, recomputed, fields).assign(model_version=model.version)


def build_report(
    spec: ModelSpec,
    drift: AssetsDefinition | None,
    performance: AssetsDefinition,
    serving_health: AssetsDefinition,
    serving_skew: AssetsDefinition,
) -> AssetsDefinition:
    """A model's day as one static HTML page in the report folder's `<model>/`, with an index of its days."""
    key = AssetKey(spec.monitoring_asset("report"))
    judged_by = [performance, serving_health, serving_skew]
    drift_keys = [AssetCheckKey(drift.key, check) for check in drift_checks(spec)] if drift else []
    reported = [*drift_keys, *(check for a in judged_by for check in a.check_keys)]
    sources = [*([drift] if drift else []), *judged_by]
    # the headline numbers each asset records, at the top of the page
    headlines = {
        performance.key: (*LABELLED_FIGURES, "label_coverage"),
        serving_health.key: ("requests", "latency_p99_ms"),
        serving_skew.key: ("max_mismatch_rate",),
    }
    if drift and spec.drift:
        own = [f"max_{spec.drift.own_inputs_check}"] if spec.drift.own_inputs else []
        headlines[drift.key] = ("max_psi", *own, "score_psi", "drifted_features")
    performance_table, skew_table = performance.key.to_user_string(), serving_skew.key.to_user_string()

    @asset(
        key=key,
        group_name="monitoring",
        kinds={"html"},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[a.key for a in sources],
        automation_condition=follow_updates_of(*(a.key for a in sources), label="follow_monitoring"),
        description=(
            f"{spec.name}'s monitoring of the day as one static HTML page (its checks' verdicts, PSI per "
            "feature, score distributions, performance over time, serving skew), written to the report "
            f"folder's `{spec.name}/` with an index of every day."
        ),
    )
    def report(
        context: AssetExecutionContext, warehouse: Warehouse, monitoring: MonitoringSettings
    ) -> MaterializeResult:
        import pandas as pd

        day = context.partition_key

        def rows(table: str, days: int = 1) -> "pd.DataFrame":
            if not warehouse.table_exists("monitoring", table):
                return pd.DataFrame(columns=["partition_date"])
            return warehouse.read_sql(
                f"select * from monitoring.{table} where partition_date between "
                f"date '{day}' - interval '{days - 1} days' and date '{day}'"
            )

        empty = pd.DataFrame(columns=["partition_date"])
        drift_rows = rows(spec.drift_asset) if drift else empty
        histogram = rows(f"{spec.drift_asset}_scores") if drift else empty
        history = rows(performance_table, monitoring.history_days)
        charts = {}
        if len(drift_rows):
            charts["PSI per feature"] = psi_chart(drift_rows, monitoring.psi_warn, monitoring.psi_error)
        if len(histogram):
            charts["Score distribution"] = score_chart(histogram)
        if len(history):
            charts["Performance over time"] = performance_chart(
                history, monitoring.min_roc_auc_warn, monitoring.min_roc_auc_error
            )
        figures = latest_figures(context.instance, headlines, day)
        verdicts = day_verdicts(context.instance, reported, day)
        folder = Path(monitoring.report_dir) / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        page = folder / f"monitoring-{day}.html"
        tables = {
            "Feature drift": (drift_rows.drop(columns="partition_date"), "no drift measured for this day."),
            "Serving skew": (
                rows(skew_table).drop(columns="partition_date"),
                "No online traffic logged for this day: nothing served to compare with its offline features.",
            ),
        }
        replace_text(page, html_report(f"{spec.name} {day}", verdicts, figures, charts, tables))
        verdict = day_verdict(verdicts)
        replace_text(folder / f"monitoring-{day}.json", json.dumps({"day": day, "verdict": verdict}))
        index = {
            summary["day"]: summary["verdict"]
            for summary in (json.loads(p.read_text()) for p in folder.glob("monitoring-*.json"))
        }
        replace_text(folder / "index.html", html_index(spec.name, index))
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

    return report


def day_verdicts(instance: DagsterInstance, checks: list[AssetCheckKey], day: str) -> list[Verdict]:
    """Each check's latest completed evaluation of `day`; checks never completed for it are left out. A
    planned evaluation (a run in flight, or one killed before it evaluated) is not an evaluation: Dagster
    stores it as the check's newest record, with no verdict in it."""
    verdicts = []
    for key in checks:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, status=RESOLVED, partition_filter=PartitionKeyFilter(key=day)
        )
        evaluation = records[0].evaluation if records else None
        if evaluation is None:
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


def latest_figures(
    instance: DagsterInstance, wanted: dict[AssetKey, tuple[str, ...]], day: str
) -> dict[str, float | str]:
    """The headline numbers the monitoring assets recorded for `day` (their latest materialization)."""
    figures: dict[str, float | str] = {}
    for key, names in wanted.items():
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        metadata = materialization.metadata if materialization else {}
        name = key.to_user_string()
        figures |= {f"{name}.{n}": cast(float | str, metadata[n].value) for n in names if n in metadata}
    return figures


def build_delivery(spec: ModelSpec) -> AssetsDefinition:
    """DORA metrics of a model's delivery, from its audit trail and the ingestion history."""

    @asset(
        key=AssetKey(spec.monitoring_asset("delivery")),
        group_name="monitoring",
        kinds={"mlflow"},
        owners=spec.owners,
        deps=[AssetKey(spec.champion_asset)],
        automation_condition=FOLLOW_UPSTREAM,
        description=(
            f"DORA metrics of {spec.name}'s delivery over the last 30 days, from the registry's audit trail "
            "and the ingestion history: deployments per week, lead time from data landing to a new "
            "champion, change failure rate (promotions rolled back) and time to restore."
        ),
    )
    def delivery(context: AssetExecutionContext, model_registry: ModelRegistry) -> MaterializeResult:
        loads = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=raw_transactions.key), limit=10_000
        ).records
        landed = [datetime.fromtimestamp(record.timestamp, UTC) for record in loads]
        figures = dora_metrics(model_registry.audit_trail(spec.name), landed, timedelta(days=30))
        return MaterializeResult(metadata={k: round(float(v), 3) for k, v in figures.items()})

    return delivery


def build_nightly(
    spec: ModelSpec, slo: SloDefinitions | None, monitoring: MonitoringDefinitions | None
) -> ScheduleDefinition | None:
    """At 02:45 UTC, a model's two nightly runs: the day whose labels have just come in (the slo's label
    delay back: its performance and quality SLO), and yesterday's online traffic, now complete (serving
    health, skew and serving SLO)."""
    if slo is None or spec.slo is None:
        return None
    labelled_assets = [slo.quality, *([monitoring.performance] if monitoring else [])]
    traffic_assets = [*([slo.serving] if slo.serving else []), *(monitoring.traffic if monitoring else [])]
    label_delay = spec.slo.label_delay_days

    @schedule(
        name=f"{spec.name}_nightly",
        target=[*labelled_assets, *traffic_assets],
        cron_schedule="45 2 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,  # the loop needs it: on by default
    )
    def nightly(context: ScheduleEvaluationContext) -> list[RunRequest]:
        now = context.scheduled_execution_time
        labelled = f"{now - timedelta(days=1 + label_delay):%Y-%m-%d}"
        requests = [
            RunRequest(
                run_key=f"{labelled}-labelled",
                partition_key=labelled,
                asset_selection=[a.key for a in labelled_assets],
            )
        ]
        if traffic_assets:
            yesterday = f"{now - timedelta(days=1):%Y-%m-%d}"
            requests.append(
                RunRequest(
                    run_key=f"{yesterday}-traffic",
                    partition_key=yesterday,
                    asset_selection=[a.key for a in traffic_assets],
                )
            )
        return requests

    return nightly

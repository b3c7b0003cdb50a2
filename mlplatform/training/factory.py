"""The training half of the model factory (mlplatform/model_factory.py): a spec's training set, candidate,
blocking gates, champion and registry jobs. Nothing here knows a model by name; the spec says what differs."""

import hashlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    JobDefinition,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    asset_check,
    define_asset_job,
    job,
    op,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import create_model

from mlplatform.checks import judged, not_judged
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.k8s import TRAINING
from mlplatform.resources import FeastFeatureStore, GateBounds, ModelRegistry, Warehouse
from mlplatform.resources.gates import gates_resource_key
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.resources.warehouse import detached, release_unused_memory, sql_literals
from mlplatform.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from mlplatform.training.candidate import (
    EVALUATION_ARTIFACT,
    VERSION_METADATA,
    ModelCandidate,
    candidate_version,
    load_candidate,
)
from mlplatform.training.gates import (
    LIFECYCLE_TAG,
    GateResult,
    Lifecycle,
    Verdict,
    gate_results,
    promotion_blockers,
)
from mlplatform.training.leakage import FAMILIES, leaked_values
from mlplatform.training.model import (
    evaluate,
    feature_columns,
    fit_prepared,
    labels_of,
    permutation_importances,
    predict_scores,
    prepare_inputs,
    time_split,
)
from mlplatform.training.model_card import write_model_card
from mlplatform.training.registry import (
    apply_retention,
    approve,
    promote,
    propose,
    reconcile_orphans,
    reject,
    rollback,
)
from mlplatform.training.spec import RUN_CONFIG_FIELDS, SPEC_ARTIFACT, ModelSpec, flatten

if TYPE_CHECKING:  # feast takes seconds to import
    import pandas as pd
    from feast import FeatureStore

LEAKAGE_SAMPLE = 400
TRAINING_CHUNK_EVENTS = 1_000_000  # labelled events retrieved and written at a time
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6"]
TRAINING_WORKLOAD = {"mlplatform/workload": "training"}  # the run queue admits one training run at a time
IN_PROGRESS = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
}


def labelled_rows(
    store: "FeatureStore", warehouse: Warehouse, spec: ModelSpec, lookback_days: int | None = None
) -> "pd.DataFrame":
    """The spec's labelled events joined point-in-time with its feature service by Feast, in event order:
    what an experiment on another feature service trains on."""
    import pandas as pd

    return pd.concat(labelled_chunks(store, warehouse, spec, lookback_days), ignore_index=True)


def labelled_chunks(
    store: "FeatureStore", warehouse: Warehouse, spec: ModelSpec, lookback_days: int | None = None
) -> "Iterator[pd.DataFrame]":
    """`labelled_rows` in event order, `TRAINING_CHUNK_EVENTS` events at a time (at least one chunk, maybe
    empty): Feast retrieves a chunk while the previous one is written, so memory stays flat however long
    the history (a year's 9.8M labels at once took 13 GB)."""
    table = spec.label.table
    recent = (
        f" where event_ts >= (select max(event_ts) from {table}) - interval '{int(lookback_days)} days'"
        if lookback_days
        else ""
    )
    # in event order from the warehouse: the offline stores answer in the order given (no copy to sort)
    order = ", ".join(["event_ts", *spec.label.keys])
    labels = warehouse.read_large(f"select * from {table}{recent} order by {order}")
    for column in set(spec.label.exclude) & set(labels.columns):
        del labels[column]  # in place: read_large gives each column its own block, nothing is copied
    for start in range(0, len(labels), TRAINING_CHUNK_EVENTS) or [0]:
        yield features_as_of_events(
            store, labels.iloc[start : start + TRAINING_CHUNK_EVENTS], spec.feature_service
        )


@dataclass
class TrainingSetSummary:
    """What a training set's materialization reports, gathered chunk by chunk as the set is written."""

    label: str
    rows: int = 0
    positives: float = 0.0
    nulls: "pd.Series | None" = None
    first: "pd.Timestamp | None" = None
    last: "pd.Timestamp | None" = None
    days: set[str] = field(default_factory=set)

    def add(self, chunk: "pd.DataFrame") -> "pd.DataFrame":
        nulls = chunk[[c for c in chunk.columns if "__" in c]].isna().sum()
        self.nulls = nulls if self.nulls is None else self.nulls + nulls
        self.rows += len(chunk)
        self.positives += float(chunk[self.label].sum())
        if len(chunk):
            first, last = chunk["event_ts"].min(), chunk["event_ts"].max()
            self.first = first if self.first is None else min(self.first, first)
            self.last = last if self.last is None else max(self.last, last)
            self.days |= {f"{day:%Y-%m-%d}" for day in chunk["event_ts"].dt.normalize().unique()}
        return chunk

    def metadata(self, feature_service: str) -> dict[str, Any]:
        import pandas as pd

        null_rates = (self.nulls if self.nulls is not None else pd.Series(dtype=float)) / max(self.rows, 1)
        return {
            "dagster/row_count": self.rows,
            "label_rate": round(self.positives / self.rows, 5) if self.rows else 0.0,
            "features": len(null_rates),
            "feature_service": feature_service,
            "time_range": f"{self.first or pd.NaT} .. {self.last or pd.NaT}",
            "data_partitions": MetadataValue.json(sorted(self.days)),
            "feature_null_rates": MetadataValue.md(
                null_rates.sort_values(ascending=False).to_frame("null_rate").to_markdown()
            ),
        }


def training_rows(warehouse: Warehouse, spec: ModelSpec, since: str | None = None) -> "pd.DataFrame":
    """The spec's stored training set (from `since`, an event time), with only the columns training reads:
    its inputs, label, slices, event time and keys (a year's set is gigabytes). Not sorted here: the set is
    written in event order, which DuckDB keeps (sorting would hold a second copy), and `time_split` sorts
    rows that come otherwise."""
    table = f"training.{spec.training_set_asset}"
    stored = list(warehouse.read_sql(f"select * from {table} limit 0").columns)
    wanted = [*feature_columns(spec, stored), spec.label.column, *spec.slices, "event_ts", *spec.label.keys]
    columns = ", ".join(f'"{c}"' for c in dict.fromkeys(wanted) if c in stored)
    where = f" where event_ts >= '{since}'" if since else ""
    return warehouse.read_large(f"select {columns} from {table}{where}")


def run_in_progress(instance: DagsterInstance, run_id: str | None) -> bool:
    """Whether a Dagster run is still going (a killed run counts as going until run monitoring, or the
    loss of its instance, says otherwise)."""
    run = instance.get_run_by_id(run_id) if run_id else None
    return run is not None and run.status in IN_PROGRESS


def lineage_tags(spec: ModelSpec, rows: "pd.DataFrame") -> dict[str, str]:
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "data.partitions": f"{rows['event_ts'].min():%Y-%m-%d}..{rows['event_ts'].max():%Y-%m-%d}",
        "data.rows": str(len(rows)),
        "feature_service": spec.feature_service,
        "dbt.manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
        if manifest.exists()
        else "none",
        "git.commit": commit,
    }


def markdown_table(frame: "pd.DataFrame") -> MetadataValue:
    return MetadataValue.md(frame.to_markdown())


def card_metadata(uri: str, card: str) -> dict[str, Any]:
    """A version's model card on its asset's page, and where it lives in MLflow."""
    return {"model_card_uri": uri, "model_card": MetadataValue.md(card)}


class TrainingSetConfig(Config):
    lookback_days: int | None = None  # only labelled events of the last N days; None = all


class TrainingRunConfig(Config):
    """A training run's settings: the spec's estimator settings (which a run may override, see
    RUN_CONFIG_FIELDS) and the threads it may use."""

    threads: int = 1  # OpenMP threads for fitting; more only helps on an otherwise idle machine

    def spec_from(self, spec: ModelSpec) -> ModelSpec:
        """`spec` with this run's settings: what the run trains, recorded beside the model."""
        settings = {dotted: getattr(self, option) for dotted, option in RUN_CONFIG_FIELDS.items()}
        return spec.updated(settings, "run config")


def run_config_class(spec: ModelSpec) -> type[TrainingRunConfig]:
    """The run config of `spec`'s training, each overridable field defaulting to the spec's value (as the
    launchpad shows it)."""
    values = flatten(spec.model_dump())
    fields: dict[str, Any] = {
        option: (type(values[dotted]), values[dotted]) for dotted, option in RUN_CONFIG_FIELDS.items()
    }
    name = "".join(part.title() for part in spec.name.split("_")) + "Config"
    return create_model(name, __base__=TrainingRunConfig, **fields)


@dataclass(frozen=True)
class TrainingChain:
    """From a spec's labelled events to its champion."""

    spec: ModelSpec
    training_set: AssetsDefinition
    candidate: AssetsDefinition
    champion: AssetsDefinition
    gate_checks: list[AssetChecksDefinition]
    checks: list[AssetChecksDefinition]
    retrain_job: UnresolvedAssetJobDefinition
    jobs: list[JobDefinition | UnresolvedAssetJobDefinition]

    @property
    def assets(self) -> list[AssetsDefinition]:
        return [self.training_set, self.candidate, self.champion]


def build_training_set(spec: ModelSpec) -> tuple[AssetsDefinition, AssetChecksDefinition]:
    @asset(
        name=spec.training_set_asset,
        group_name="training",
        kinds={"feast", "pandas"},
        owners=spec.owners,
        deps=[AssetKey("feast_registry"), spec.label.asset, *map(AssetKey, spec.feature_marts)],
        op_tags=TRAINING,
        description=(
            f"{spec.name}'s labelled events ({spec.label.table}) joined point-in-time with the "
            f"`{spec.feature_service}` features by Feast (historical retrieval); stored as "
            f"training.{spec.training_set_asset}."
        ),
    )
    def training_set(
        config: TrainingSetConfig, feature_store: FeastFeatureStore, warehouse: Warehouse
    ) -> MaterializeResult:
        chunks = labelled_chunks(feature_store.store(), warehouse, spec, config.lookback_days)
        summary = TrainingSetSummary(spec.label.column)
        warehouse.write_chunks("training", spec.training_set_asset, map(summary.add, chunks))
        return MaterializeResult(metadata=summary.metadata(spec.feature_service))

    @asset_check(
        asset=training_set,
        blocking=True,
        description=(
            f"No feature value of {LEAKAGE_SAMPLE} sampled rows was computed from data at or after its "
            f"validity time: every stored feature family ({', '.join(FAMILIES)}) the set holds, recomputed "
            "from staging."
        ),
    )
    def no_point_in_time_leakage(warehouse: Warehouse) -> AssetCheckResult:
        sample = warehouse.sample_rows(f"training.{spec.training_set_asset}", LEAKAGE_SAMPLE)
        if sample.empty:
            return not_judged("the training set is empty")
        entities = [key for key in ("customer_id", "merchant_id") if key in sample]
        if not entities:
            return not_judged("the set holds neither customer nor merchant features to recompute")
        of_entities = " or ".join(f"{key} in ({sql_literals(sample[key].unique())})" for key in entities)
        transactions = warehouse.read_sql(
            "select transaction_id, customer_id, merchant_id, event_ts, amount from staging.stg_transactions "
            f"where {of_entities}"
        )
        of_merchants = "select transaction_id from staging.stg_transactions where " + (
            f"merchant_id in ({sql_literals(sample['merchant_id'].unique())})"
            if "merchant_id" in sample
            else "false"
        )
        labels = warehouse.read_sql(
            "select transaction_id, is_fraud, reported_at, cast(null as timestamp) as superseded_at "
            f"from staging.stg_labels where transaction_id in ({of_merchants}) "
            "union all select transaction_id, is_fraud, reported_at, superseded_at "
            f"from staging.stg_superseded_labels where transaction_id in ({of_merchants})"
        )
        problems = leaked_values(sample, transactions, labels, spec.label.keys[0])
        per_family = {family: sum(p["family"] == family for p in problems) for family in FAMILIES}
        return judged(
            not problems,
            rows_checked=len(sample),
            values_differing=len(problems),
            differing_per_family=MetadataValue.json(per_family),
            examples=MetadataValue.json([{k: str(v) for k, v in p.items()} for p in problems[:10]]),
        )

    return training_set, no_point_in_time_leakage


def build_candidate(spec: ModelSpec, training_set: AssetsDefinition) -> AssetsDefinition:
    run_config = run_config_class(spec)

    @asset(
        name=spec.name,
        group_name="training",
        kinds={"scikitlearn", "mlflow"},
        owners=spec.owners,
        deps=[training_set],
        op_tags=TRAINING,
        description=(
            f"{spec.description} Trained on the past of {spec.training_set_asset} and validated on its most "
            f"recent {spec.holdout_fraction:.0%} (spec: models/{spec.name}.yaml); every run is tracked in "
            f"MLflow and registered as a new `{spec.name}` version (tag `lifecycle: candidate`, no alias "
            "until its gates pass) with its model card. The version id is what later steps judge."
        ),
    )
    def candidate(
        context: AssetExecutionContext,
        config: run_config,  # type: ignore[valid-type]  # a class built from the spec
        warehouse: Warehouse,
        model_registry: ModelRegistry,
    ) -> MaterializeResult:
        import mlflow
        import pandas as pd

        from mlplatform.training.pyfunc import FraudScorer, signature_for

        settings = cast(TrainingRunConfig, config)
        repaired = reconcile_orphans(
            model_registry,
            spec.name,
            lambda run_id: run_id != context.run.run_id and run_in_progress(context.instance, run_id),
            actor=f"dagster run {context.run.run_id}",
        )
        for repair in repaired:
            context.log.warning(f"reconciled after an interrupted training: {repair}")
        trained = settings.spec_from(spec)
        rows = training_rows(warehouse, trained)
        lineage = lineage_tags(trained, rows)
        train, holdout = time_split(trained, rows)
        holdout = detached(holdout)  # so that every row read is freed before the classifier fits
        del rows  # `train` alone holds the training rows: each column goes once prepared
        started = time.perf_counter()
        prepared = prepare_inputs(trained, train, consume=True)
        train_rows, holdout_rows = len(train), len(holdout)
        del train
        release_unused_memory()
        model = fit_prepared(prepared, settings.threads)
        del prepared
        train_seconds = time.perf_counter() - started
        scores = predict_scores(model, holdout)
        slices = holdout[trained.slices].reset_index(drop=True)
        evaluation = evaluate(labels_of(trained, holdout), scores, slices, trained.decision.target_fpr)

        features = holdout[feature_columns(trained, holdout.columns)]
        mlflow.set_tracking_uri(model_registry.tracking_uri)
        mlflow.set_registry_uri(model_registry.tracking_uri)
        with mlflow.start_run(
            experiment_id=model_registry.experiment_id(spec.name),
            run_name=f"dagster-{context.run.run_id[:8]}",
        ) as run:
            mlflow.log_params(
                {**settings.model_dump(), "train_rows": train_rows, "holdout_rows": holdout_rows}
            )
            mlflow.log_metrics(
                {**evaluation.metrics, "train_seconds": train_seconds, "threshold": evaluation.threshold}
            )
            mlflow.set_tags({**lineage, "dagster.run_id": context.run.run_id})
            mlflow.log_dict(
                {"slices": evaluation.slices, "holdout_from": str(holdout["event_ts"].min())},
                EVALUATION_ARTIFACT,
            )
            mlflow.log_dict(trained.model_dump(), SPEC_ARTIFACT)
            scorer = FraudScorer(model, evaluation.threshold)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=scorer,
                signature=signature_for(features, scorer.predict(None, features.head(3))),
                input_example=features.head(3),
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=spec.name,
            )
        version = str(info.registered_model_version)
        model_registry.tag_version(
            spec.name, version, {LIFECYCLE_TAG: Lifecycle.CANDIDATE, "dagster.run_id": context.run.run_id}
        )
        card = card_metadata(*write_model_card(model_registry, trained, version))

        sample = holdout.sample(min(2_000, len(holdout)), random_state=0)
        importance = permutation_importances(model, sample, labels_of(trained, sample), repeats=2, seed=0)
        top = importance.nlargest(10)
        return MaterializeResult(
            metadata={
                VERSION_METADATA: version,
                "mlflow_run_id": run.info.run_id,
                "mlflow_model_uri": f"models:/{spec.name}/{version}",
                **card,
                "mlflow_ui": f"mlflow ui --backend-store-uri {model_registry.tracking_uri}",
                **{k: round(v, 4) for k, v in evaluation.metrics.items()},
                "metrics": markdown_table(pd.Series(evaluation.metrics).to_frame("value")),
                "confusion_matrix": markdown_table(
                    pd.DataFrame(
                        evaluation.confusion, index=["negative", "positive"], columns=["passed", "flagged"]
                    )
                ),
                "top_features": markdown_table(top.to_frame("roc_auc_drop_when_shuffled")),
                "slices": markdown_table(pd.DataFrame(evaluation.slices).T),
                "train_seconds": round(train_seconds, 2),
                "reconciled": MetadataValue.json(repaired),
            },
        )

    return candidate


def build_gates(spec: ModelSpec, candidate: AssetsDefinition) -> list[AssetChecksDefinition]:
    """The blocking checks a candidate must pass; each writes its verdict on the version in MLflow."""
    bounds_key, table = gates_resource_key(spec.name), f"training.{spec.training_set_asset}"
    defaults = spec.gates

    def under_judgement(context: AssetCheckExecutionContext, registry: ModelRegistry) -> ModelCandidate:
        """The version trained in this run (or its latest one when a gate runs alone)."""
        version = candidate_version(context.instance, context.run.run_id, candidate.key)
        return load_candidate(registry, spec.name, version)

    def bounds(context: AssetCheckExecutionContext) -> GateBounds:
        return getattr(context.resources, bounds_key)

    def registry_of(context: AssetCheckExecutionContext) -> ModelRegistry:
        return context.resources.model_registry

    def warehouse_of(context: AssetCheckExecutionContext) -> Warehouse:
        return context.resources.warehouse

    def record(
        context: AssetCheckExecutionContext,
        registry: ModelRegistry,
        judged_version: ModelCandidate,
        gate: str,
        passed: bool | None,
        *,
        reason: str | None = None,
        **figures: Any,
    ) -> AssetCheckResult:
        """Write the gate's verdict and figures on the model version (the evidence promotion reads), and
        report it as the check result. `passed=None`: the gate could not judge, and says why."""
        verdict = Verdict.NOT_JUDGED if passed is None else Verdict.PASSED if passed else Verdict.FAILED
        shown = {k: v for k, v in figures.items() if not isinstance(v, MetadataValue)}
        recorded = {**shown, **({"reason": reason} if reason else {})}
        registry.tag_version(
            spec.name, judged_version.version, GateResult(gate, verdict, recorded, context.run.run_id).tags()
        )
        write_model_card(registry, spec, judged_version.version)  # a failed gate shows on the card too
        if passed is None:
            return not_judged(reason or "no evidence", model_version=judged_version.version, **figures)
        return judged(passed, model_version=judged_version.version, **figures)

    # the bounds' resource key is the model's: every resource is named in the decorator, none as an argument
    gate: dict[str, Any] = {
        "asset": candidate,
        "blocking": True,
        "required_resource_keys": {bounds_key, "model_registry", "warehouse"},
    }

    @asset_check(
        **gate,
        description=(
            f"Holdout ROC AUC >= {defaults.min_roc_auc}, PR AUC >= {defaults.min_pr_auc} and recall at 1% "
            f"false positives >= {defaults.min_recall_at_1pct_fpr} (the spec's bounds)."
        ),
    )
    def metric_floors(context: AssetCheckExecutionContext) -> AssetCheckResult:
        model_registry = registry_of(context)
        judged_version = under_judgement(context, model_registry)
        floors = bounds(context).floors()
        metrics = judged_version.metrics
        below = {k: round(metrics[k], 4) for k, floor in floors.items() if metrics[k] < floor}
        figures: dict[str, Any] = {k: round(metrics[k], 4) for k in floors}
        return record(
            context,
            model_registry,
            judged_version,
            "metric_floors",
            not below,
            **figures,
            floors=MetadataValue.json(floors),
            below_floor=MetadataValue.json(below),
        )

    @asset_check(
        **gate,
        description=(
            f"ROC AUC at most {defaults.champion_tolerance} below the current champion's, both scored on the "
            "candidate's holdout; not judged when there is no champion yet."
        ),
    )
    def not_worse_than_champion(context: AssetCheckExecutionContext) -> AssetCheckResult:
        model_registry, warehouse = registry_of(context), warehouse_of(context)
        judged_version = under_judgement(context, model_registry)
        champion = model_registry.version_for(spec.name, CHAMPION)
        if champion is None:
            return record(
                context,
                model_registry,
                judged_version,
                "not_worse_than_champion",
                None,
                reason="no champion to compare with (the first model)",
            )
        candidate_auc = judged_version.metrics["roc_auc"]
        if champion == judged_version.version:
            champion_auc = candidate_auc
        else:
            holdout = training_rows(warehouse, spec, since=judged_version.holdout_from)
            champion_model = model_registry.load_sklearn_model(spec.name, champion)
            scores = predict_scores(champion_model, holdout)
            champion_auc = evaluate(labels_of(spec, holdout), scores).metrics["roc_auc"]
        tolerance = bounds(context).champion_tolerance
        return record(
            context,
            model_registry,
            judged_version,
            "not_worse_than_champion",
            candidate_auc >= champion_auc - tolerance,
            champion=champion,
            champion_roc_auc=round(champion_auc, 4),
            candidate_roc_auc=round(candidate_auc, 4),
            tolerance=tolerance,
        )

    @asset_check(
        **gate,
        description=(
            f"ROC AUC gap between the groups of each slice ({', '.join(spec.slices) or 'none declared'}) <= "
            f"{defaults.max_slice_auc_gap} (groups with at least 10 positives); not judged when fewer than "
            "two groups qualify."
        ),
    )
    def slice_gaps(context: AssetCheckExecutionContext) -> AssetCheckResult:
        import pandas as pd

        model_registry = registry_of(context)
        judged_version = under_judgement(context, model_registry)
        gap = judged_version.metrics["slice_auc_gap"]
        table_md = MetadataValue.md(pd.DataFrame(judged_version.slices).T.to_markdown())
        if pd.isna(gap):
            return record(
                context,
                model_registry,
                judged_version,
                "slice_gaps",
                None,
                reason="fewer than two groups of a slice have enough positives to compare",
                slices=table_md,
            )
        bound = bounds(context).max_slice_auc_gap
        return record(
            context,
            model_registry,
            judged_version,
            "slice_gaps",
            gap <= bound,
            slice_auc_gap=round(gap, 4),
            bound=bound,
            slices=table_md,
        )

    @asset_check(
        **gate, description=f"Expected calibration error on the holdout <= {defaults.max_calibration_error}."
    )
    def calibration(context: AssetCheckExecutionContext) -> AssetCheckResult:
        model_registry = registry_of(context)
        judged_version = under_judgement(context, model_registry)
        error = judged_version.metrics["expected_calibration_error"]
        bound = bounds(context).max_calibration_error
        return record(
            context,
            model_registry,
            judged_version,
            "calibration",
            error <= bound,
            ece=round(error, 5),
            bound=bound,
        )

    @asset_check(
        **gate,
        description=f"Median CPU time to score one row <= {defaults.max_one_row_latency_ms} ms (50 calls).",
    )
    def one_row_latency(context: AssetCheckExecutionContext) -> AssetCheckResult:
        model_registry, warehouse = registry_of(context), warehouse_of(context)
        judged_version = under_judgement(context, model_registry)
        model = model_registry.load_sklearn_model(spec.name, judged_version.version)
        row = warehouse.sample_rows(table, 1)
        predict_scores(model, row)  # warm-up
        timings = []
        for _ in range(50):  # CPU time of this thread: what the model costs, not how busy the machine is
            started = time.thread_time()
            predict_scores(model, row)
            timings.append((time.thread_time() - started) * 1000)
        median = sorted(timings)[len(timings) // 2]
        bound = bounds(context).max_one_row_latency_ms
        return record(
            context,
            model_registry,
            judged_version,
            "one_row_latency",
            median <= bound,
            median_ms=round(median, 2),
            bound_ms=bound,
        )

    return [metric_floors, not_worse_than_champion, slice_gaps, calibration, one_row_latency]


def build_champion(
    spec: ModelSpec, candidate: AssetsDefinition
) -> tuple[AssetsDefinition, AssetChecksDefinition]:
    @asset(
        name=spec.champion_asset,
        group_name="training",
        kinds={"mlflow"},
        owners=spec.owners,
        deps=[candidate],
        description=(
            f"The serving {spec.name}. Promotion reads the candidate's gate evidence from the registry "
            "itself and refuses a version that did not pass every gate. Policy auto: the version becomes "
            "`champion` (the old one is kept as `previous`); manual: it waits as `challenger` for "
            "`mlplatform approve`. Every decision goes to the audit trail with its evidence (the spec's "
            f"policy: {spec.promotion})."
        ),
    )
    def champion(context: AssetExecutionContext, model_registry: ModelRegistry) -> MaterializeResult:
        version = candidate_version(context.instance, context.run.run_id, candidate.key)
        actor = f"dagster run {context.run.run_id}"
        policy = (
            spec.promotion if model_registry.promotion_policy == "spec" else model_registry.promotion_policy
        )
        if policy == "manual":
            record = propose(model_registry, spec.name, version, actor=actor)
            outcome = "awaiting approval" if record else "unchanged"
        else:
            record = promote(
                model_registry, spec.name, version, actor=actor, reason="passed every validation gate"
            )
            outcome = "promoted" if record else "unchanged"
        retention = apply_retention(model_registry, spec.name, spec.retention, actor=actor)
        serving = model_registry.version_for(spec.name, CHAMPION)
        gates = (record or {}).get("gates") or {}
        return MaterializeResult(
            metadata={
                "champion_version": str(serving),
                "candidate_version": version,
                "outcome": outcome,
                "promotion_policy": policy,
                "previous_version": str((record or {}).get("replaced") or "-"),
                "gate_results": MetadataValue.md(
                    "| gate | verdict | figures |\n|---|---|---|\n"
                    + "\n".join(f"| {g} | {e['verdict']} | {e['figures']} |" for g, e in gates.items())
                ),
                "audit_record": MetadataValue.json(record or {"note": "nothing changed"}),
                "retention": MetadataValue.json(retention),
                **(card_metadata(*write_model_card(model_registry, spec, serving)) if serving else {}),
            }
        )

    @asset_check(
        asset=champion,
        description=(
            "The version behind the `champion` alias passed every validation gate, read back from its own "
            "registry tags: the gates' results shown on the champion's page, and a champion set by hand in "
            "MLflow, around the platform, fails here (ERROR)."
        ),
    )
    def champion_passed_its_gates(model_registry: ModelRegistry) -> AssetCheckResult:
        serving = model_registry.version_for(spec.name, CHAMPION)
        if serving is None:
            return not_judged("no version carries the champion alias yet")
        tags = model_registry.version_tags(spec.name, serving)
        # the champion comparison may have had nothing to compare with when this version was promoted
        blockers = promotion_blockers(tags, has_champion=False)
        verdicts: dict[str, Any] = {f"gate_{g}": r.verdict.value for g, r in gate_results(tags).items()}
        return judged(
            not blockers,
            description=f"champion version {serving}: "
            + ("every gate passed" if not blockers else "; ".join(blockers)),
            champion_version=serving,
            **verdicts,
        )

    return champion, champion_passed_its_gates


class RollbackConfig(Config):
    reason: str = "manual rollback from Dagster"


class ReviewConfig(Config):
    version: str
    decision: Literal["approve", "reject"]
    reason: str
    reviewer: str


def build_registry_jobs(spec: ModelSpec, champion: AssetsDefinition) -> list[JobDefinition]:
    """Operations on the registry a person starts from the UI: rollback, and an approval or rejection."""

    @op(
        name=f"rollback_{spec.name}_champion",
        description="Move `champion` back to the previous champion and record it in the audit trail.",
    )
    def rollback_champion(
        context: OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistry
    ) -> None:
        record = rollback(
            model_registry, spec.name, actor=f"dagster run {context.run.run_id}", reason=config.reason
        )
        context.log.info(f"{spec.name}: champion {record['replaced']} -> {record['version']}")

    @op(
        name=f"review_{spec.name}_candidate",
        description=f"Approve (promote) or reject a {spec.name} version that waits for review; audited.",
    )
    def review_candidate(context: OpExecutionContext, config: ReviewConfig, model_registry: ModelRegistry):
        if config.decision == "approve":
            record = approve(
                model_registry, spec.name, config.version, actor=config.reviewer, reason=config.reason
            )
            if record is not None:
                yield AssetMaterialization(
                    champion.key,
                    metadata={
                        "champion_version": config.version,
                        "outcome": "approved",
                        "approved_by": config.reviewer,
                    },
                )
        else:
            reject(model_registry, spec.name, config.version, actor=config.reviewer, reason=config.reason)
        context.log.info(f"{spec.name} version {config.version}: {config.decision} by {config.reviewer}")

    @job(name=f"rollback_{spec.name}", description=f"Restore the previous {spec.name} champion in one step.")
    def rollback_job():
        rollback_champion()

    @job(
        name=f"review_{spec.name}",
        description=f"A reviewer approves or rejects a {spec.name} challenger (manual promotion policy).",
    )
    def review_job():
        review_candidate()

    return [rollback_job, review_job]


def build_training_chain(spec: ModelSpec) -> TrainingChain:
    training_set, leakage = build_training_set(spec)
    candidate = build_candidate(spec, training_set)
    gate_checks = build_gates(spec, candidate)
    champion, champion_check = build_champion(spec, candidate)
    retrain_job = define_asset_job(
        f"retrain_{spec.name}",
        selection=AssetSelection.assets(training_set, candidate, champion),
        description="Training set, candidate model and its gates, promotion when every gate passes.",
        tags=TRAINING_WORKLOAD,
    )
    return TrainingChain(
        spec=spec,
        training_set=training_set,
        candidate=candidate,
        champion=champion,
        gate_checks=gate_checks,
        checks=[leakage, *gate_checks, champion_check],
        retrain_job=retrain_job,
        jobs=[retrain_job, *build_registry_jobs(spec, champion)],
    )

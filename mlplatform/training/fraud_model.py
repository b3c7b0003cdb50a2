"""fraud_model: train and register a candidate, gate it with blocking checks, promote it to champion."""

import hashlib
import subprocess
import time
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from mlplatform.checks import judged, not_judged
from mlplatform.k8s import TRAINING
from mlplatform.resources import GateBounds, ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from mlplatform.training.assets import FEATURE_SERVICE, training_set
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
from mlplatform.training.model import (
    LABEL,
    Hyperparameters,
    evaluate,
    feature_columns,
    fit,
    predict_scores,
    time_split,
)
from mlplatform.training.model_card import write_model_card
from mlplatform.training.registry import apply_retention, promote, propose, reconcile_orphans
from mlplatform.training.spec import FRAUD_MODEL, RUN_CONFIG_FIELDS, SPEC_ARTIFACT, ModelSpec

MODEL_NAME = FRAUD_MODEL.name
DEFAULT_BOUNDS = FRAUD_MODEL.gates  # shown in the gates' descriptions; runs use the `gate_bounds` resource
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6"]


class FraudModelConfig(Config):
    """The spec's estimator settings (models/fraud_model.yaml), which a run may override."""

    learning_rate: float = FRAUD_MODEL.estimator.learning_rate
    max_iter: int = FRAUD_MODEL.estimator.max_iter
    max_leaf_nodes: int = FRAUD_MODEL.estimator.max_leaf_nodes
    l2_regularization: float = FRAUD_MODEL.estimator.l2_regularization
    seed: int = FRAUD_MODEL.seed
    holdout_fraction: float = FRAUD_MODEL.holdout_fraction
    threads: int = 1  # OpenMP threads for fitting; more only helps on an otherwise idle machine

    def spec(self) -> ModelSpec:
        """The model's spec with this run's settings: what the run trains, recorded beside the model."""
        settings = {dotted: getattr(self, option) for dotted, option in RUN_CONFIG_FIELDS.items()}
        return FRAUD_MODEL.updated(settings, "run config")


IN_PROGRESS = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
}


def run_in_progress(instance: DagsterInstance, run_id: str | None) -> bool:
    """Whether a Dagster run is still going (a killed run counts as going until run monitoring, or the
    loss of its instance, says otherwise)."""
    run = instance.get_run_by_id(run_id) if run_id else None
    return run is not None and run.status in IN_PROGRESS


def _lineage_tags(rows: pd.DataFrame) -> dict[str, str]:
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
        "feature_service": FEATURE_SERVICE,
        "dbt.manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
        if manifest.exists()
        else "none",
        "git.commit": commit,
    }


def _markdown_table(frame: pd.DataFrame) -> MetadataValue:
    return MetadataValue.md(frame.to_markdown())


@asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=FRAUD_MODEL.owners,
    deps=[training_set],
    op_tags=TRAINING,
    description=(
        f"{FRAUD_MODEL.description} Trained on the past of training_set and validated on its most "
        f"recent {FRAUD_MODEL.holdout_fraction:.0%} (spec: models/{MODEL_NAME}.yaml); every run is tracked "
        f"in MLflow and registered as a new `{MODEL_NAME}` version (tag `lifecycle: candidate`, no alias "
        "until its gates pass) with its model card. The version id is what later steps judge."
    ),
)
def fraud_model(
    context: AssetExecutionContext,
    config: FraudModelConfig,
    warehouse: Warehouse,
    model_registry: ModelRegistry,
) -> MaterializeResult:
    import mlflow
    from sklearn.inspection import permutation_importance

    from mlplatform.training.pyfunc import FraudScorer, signature_for

    repaired = reconcile_orphans(
        model_registry,
        MODEL_NAME,
        lambda run_id: run_id != context.run.run_id and run_in_progress(context.instance, run_id),
        actor=f"dagster run {context.run.run_id}",
    )
    for repair in repaired:
        context.log.warning(f"reconciled after an interrupted training: {repair}")
    rows = warehouse.read_sql("select * from training.training_set")
    spec = config.spec()
    train, holdout = time_split(rows, spec.holdout_fraction)
    params = Hyperparameters.of(spec)
    started = time.perf_counter()
    model = fit(train, params, config.threads)
    train_seconds = time.perf_counter() - started
    scores = predict_scores(model, holdout)
    slices = holdout[spec.slices].reset_index(drop=True)
    evaluation = evaluate(holdout[LABEL].to_numpy(), scores, slices, spec.decision.target_fpr)

    features = holdout[feature_columns(holdout.columns)]
    mlflow.set_tracking_uri(model_registry.tracking_uri)
    mlflow.set_registry_uri(model_registry.tracking_uri)
    with mlflow.start_run(
        experiment_id=model_registry.experiment_id(), run_name=f"dagster-{context.run.run_id[:8]}"
    ) as run:
        mlflow.log_params({**config.model_dump(), "train_rows": len(train), "holdout_rows": len(holdout)})
        mlflow.log_metrics(
            {**evaluation.metrics, "train_seconds": train_seconds, "threshold": evaluation.threshold}
        )
        mlflow.set_tags({**_lineage_tags(rows), "dagster.run_id": context.run.run_id})
        mlflow.log_dict(
            {"slices": evaluation.slices, "holdout_from": str(holdout["event_ts"].min())}, EVALUATION_ARTIFACT
        )
        mlflow.log_dict(spec.model_dump(), SPEC_ARTIFACT)
        scorer = FraudScorer(model, evaluation.threshold)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=scorer,
            signature=signature_for(features, scorer.predict(None, features.head(3))),
            input_example=features.head(3),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=MODEL_NAME,
        )
    version = str(info.registered_model_version)
    model_registry.tag_version(
        MODEL_NAME, version, {LIFECYCLE_TAG: Lifecycle.CANDIDATE, "dagster.run_id": context.run.run_id}
    )
    card = card_metadata(*write_model_card(model_registry, FRAUD_MODEL, version))

    sample = holdout.sample(min(2_000, len(holdout)), random_state=0)
    importance = permutation_importance(
        model,
        sample[feature_columns(sample.columns)],
        sample[LABEL].astype(int),
        scoring="roc_auc",
        n_repeats=2,
        random_state=0,
    )
    top = pd.Series(importance.importances_mean, index=feature_columns(sample.columns)).nlargest(10)
    return MaterializeResult(
        metadata={
            VERSION_METADATA: version,
            "mlflow_run_id": run.info.run_id,
            "mlflow_model_uri": f"models:/{MODEL_NAME}/{version}",
            **card,
            "mlflow_ui": f"mlflow ui --backend-store-uri {model_registry.tracking_uri}",
            **{k: round(v, 4) for k, v in evaluation.metrics.items()},
            "metrics": _markdown_table(pd.Series(evaluation.metrics).to_frame("value")),
            "confusion_matrix": _markdown_table(
                pd.DataFrame(evaluation.confusion, index=["legit", "fraud"], columns=["passed", "flagged"])
            ),
            "top_features": _markdown_table(top.to_frame("roc_auc_drop_when_shuffled")),
            "slices": _markdown_table(pd.DataFrame(evaluation.slices).T),
            "train_seconds": round(train_seconds, 2),
            "reconciled": MetadataValue.json(repaired),
        },
    )


def card_metadata(uri: str, card: str) -> dict[str, Any]:
    """A version's model card on its asset's page, and where it lives in MLflow."""
    return {"model_card_uri": uri, "model_card": MetadataValue.md(card)}


def candidate_under_judgement(context: AssetCheckExecutionContext, registry: ModelRegistry) -> ModelCandidate:
    """The version fraud_model registered in this run (or its latest one when a gate runs alone)."""
    version = candidate_version(context.instance, context.run.run_id, fraud_model.key)
    return load_candidate(registry, MODEL_NAME, version)


def record_gate(
    context: AssetCheckExecutionContext,
    registry: ModelRegistry,
    candidate: ModelCandidate,
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
        candidate.name, candidate.version, GateResult(gate, verdict, recorded, context.run.run_id).tags()
    )
    write_model_card(registry, FRAUD_MODEL, candidate.version)  # a failed gate shows on the card too
    if passed is None:
        return not_judged(reason or "no evidence", model_version=candidate.version, **figures)
    return judged(passed, model_version=candidate.version, **figures)


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=(
        f"Holdout ROC AUC >= {DEFAULT_BOUNDS.min_roc_auc}, PR AUC >= {DEFAULT_BOUNDS.min_pr_auc} and "
        f"recall at 1% false positives >= {DEFAULT_BOUNDS.min_recall_at_1pct_fpr} (defaults)."
    ),
)
def metric_floors(
    context: AssetCheckExecutionContext, model_registry: ModelRegistry, gate_bounds: GateBounds
) -> AssetCheckResult:
    candidate = candidate_under_judgement(context, model_registry)
    floors = gate_bounds.floors()
    below = {k: round(candidate.metrics[k], 4) for k, floor in floors.items() if candidate.metrics[k] < floor}
    figures: dict[str, Any] = {k: round(candidate.metrics[k], 4) for k in floors}
    return record_gate(
        context,
        model_registry,
        candidate,
        "metric_floors",
        not below,
        **figures,
        floors=MetadataValue.json(floors),
        below_floor=MetadataValue.json(below),
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=(
        f"ROC AUC at most {DEFAULT_BOUNDS.champion_tolerance} below the current champion's, both scored on "
        "the candidate's holdout; not judged when there is no champion yet."
    ),
)
def not_worse_than_champion(
    context: AssetCheckExecutionContext,
    model_registry: ModelRegistry,
    warehouse: Warehouse,
    gate_bounds: GateBounds,
) -> AssetCheckResult:
    candidate = candidate_under_judgement(context, model_registry)
    champion = model_registry.version_for(candidate.name, CHAMPION)
    if champion is None:
        return record_gate(
            context,
            model_registry,
            candidate,
            "not_worse_than_champion",
            None,
            reason="no champion to compare with (the first model)",
        )
    candidate_auc = candidate.metrics["roc_auc"]
    if champion == candidate.version:
        champion_auc = candidate_auc
    else:
        holdout = warehouse.read_sql(
            f"select * from training.training_set where event_ts >= '{candidate.holdout_from}'"
        )
        champion_model = model_registry.load_sklearn_model(candidate.name, champion)
        champion_auc = evaluate(holdout[LABEL].to_numpy(), predict_scores(champion_model, holdout)).metrics[
            "roc_auc"
        ]
    return record_gate(
        context,
        model_registry,
        candidate,
        "not_worse_than_champion",
        candidate_auc >= champion_auc - gate_bounds.champion_tolerance,
        champion=champion,
        champion_roc_auc=round(champion_auc, 4),
        candidate_roc_auc=round(candidate_auc, 4),
        tolerance=gate_bounds.champion_tolerance,
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=(
        f"ROC AUC gap between customer segments and regions <= {DEFAULT_BOUNDS.max_slice_auc_gap} (slices "
        "with at least 10 frauds); not judged when fewer than two slices qualify."
    ),
)
def slice_gaps(
    context: AssetCheckExecutionContext, model_registry: ModelRegistry, gate_bounds: GateBounds
) -> AssetCheckResult:
    candidate = candidate_under_judgement(context, model_registry)
    gap = candidate.metrics["slice_auc_gap"]
    table = MetadataValue.md(pd.DataFrame(candidate.slices).T.to_markdown())
    if pd.isna(gap):
        return record_gate(
            context,
            model_registry,
            candidate,
            "slice_gaps",
            None,
            reason="fewer than two slices have enough frauds to compare",
            slices=table,
        )
    return record_gate(
        context,
        model_registry,
        candidate,
        "slice_gaps",
        gap <= gate_bounds.max_slice_auc_gap,
        slice_auc_gap=round(gap, 4),
        bound=gate_bounds.max_slice_auc_gap,
        slices=table,
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=f"Expected calibration error on the holdout <= {DEFAULT_BOUNDS.max_calibration_error}.",
)
def calibration(
    context: AssetCheckExecutionContext, model_registry: ModelRegistry, gate_bounds: GateBounds
) -> AssetCheckResult:
    candidate = candidate_under_judgement(context, model_registry)
    error = candidate.metrics["expected_calibration_error"]
    return record_gate(
        context,
        model_registry,
        candidate,
        "calibration",
        error <= gate_bounds.max_calibration_error,
        ece=round(error, 5),
        bound=gate_bounds.max_calibration_error,
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=f"Median CPU time to score one row <= {DEFAULT_BOUNDS.max_one_row_latency_ms} ms (50 calls).",
)
def one_row_latency(
    context: AssetCheckExecutionContext,
    model_registry: ModelRegistry,
    warehouse: Warehouse,
    gate_bounds: GateBounds,
) -> AssetCheckResult:
    candidate = candidate_under_judgement(context, model_registry)
    model = model_registry.load_sklearn_model(candidate.name, candidate.version)
    row = warehouse.sample_rows("training.training_set", 1)
    predict_scores(model, row)  # warm-up
    timings = []
    for _ in range(50):  # CPU time of this thread: what the model costs, not how busy the machine is
        started = time.thread_time()
        predict_scores(model, row)
        timings.append((time.thread_time() - started) * 1000)
    median = sorted(timings)[len(timings) // 2]
    return record_gate(
        context,
        model_registry,
        candidate,
        "one_row_latency",
        median <= gate_bounds.max_one_row_latency_ms,
        median_ms=round(median, 2),
        bound_ms=gate_bounds.max_one_row_latency_ms,
    )


@asset(
    group_name="training",
    kinds={"mlflow"},
    owners=["team:ml"],
    deps=[fraud_model],
    description=(
        "The serving model. Promotion reads the candidate's gate evidence from the registry itself and "
        "refuses a version that did not pass every gate. Policy auto: the version becomes `champion` (the "
        "old one is kept as `previous`); manual: it waits as `challenger` for `mlplatform approve`. Every "
        "decision goes to the audit trail with its evidence."
    ),
)
def fraud_model_champion(context: AssetExecutionContext, model_registry: ModelRegistry) -> MaterializeResult:
    version = candidate_version(context.instance, context.run.run_id, fraud_model.key)
    actor = f"dagster run {context.run.run_id}"
    if model_registry.promotion_policy == "manual":
        record = propose(model_registry, MODEL_NAME, version, actor=actor)
        outcome = "awaiting approval" if record else "unchanged"
    else:
        record = promote(
            model_registry, MODEL_NAME, version, actor=actor, reason="passed every validation gate"
        )
        outcome = "promoted" if record else "unchanged"
    retention = apply_retention(model_registry, MODEL_NAME, FRAUD_MODEL.retention, actor=actor)
    champion = model_registry.version_for(MODEL_NAME, CHAMPION)
    gates = (record or {}).get("gates") or {}
    return MaterializeResult(
        metadata={
            "champion_version": str(champion),
            "candidate_version": version,
            "outcome": outcome,
            "promotion_policy": model_registry.promotion_policy,
            "previous_version": str((record or {}).get("replaced") or "-"),
            "gate_results": MetadataValue.md(
                "| gate | verdict | figures |\n|---|---|---|\n"
                + "\n".join(f"| {g} | {e['verdict']} | {e['figures']} |" for g, e in gates.items())
            ),
            "audit_record": MetadataValue.json(record or {"note": "nothing changed"}),
            "retention": MetadataValue.json(retention),
            **(card_metadata(*write_model_card(model_registry, FRAUD_MODEL, champion)) if champion else {}),
        }
    )


@asset_check(
    asset=fraud_model_champion,
    description=(
        "The version behind the `champion` alias passed every validation gate, read back from its own "
        "registry tags: the gates' results shown on the champion's page, and a champion set by hand in "
        "MLflow, around the platform, fails here (ERROR)."
    ),
)
def champion_passed_its_gates(model_registry: ModelRegistry) -> AssetCheckResult:
    champion = model_registry.version_for(MODEL_NAME, CHAMPION)
    if champion is None:
        return not_judged("no version carries the champion alias yet")
    tags = model_registry.version_tags(MODEL_NAME, champion)
    # the champion comparison may have had nothing to compare with when this version was promoted
    blockers = promotion_blockers(tags, has_champion=False)
    verdicts: dict[str, Any] = {f"gate_{g}": r.verdict.value for g, r in gate_results(tags).items()}
    return judged(
        not blockers,
        description=f"champion version {champion}: "
        + ("every gate passed" if not blockers else "; ".join(blockers)),
        champion_version=champion,
        **verdicts,
    )


model_assets = [fraud_model, fraud_model_champion]
gate_checks = [metric_floors, not_worse_than_champion, slice_gaps, calibration, one_row_latency]
model_checks = [*gate_checks, champion_passed_its_gates]

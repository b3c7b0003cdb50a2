"""Model cards: every registered version carries `model_card.md` in MLflow, written from its spec and from
what the registry knows of it (training run, gate results, audit trail), so the card never says more than
the evidence. Written at registration and again at each decision (gates, promotion, approval,
rejection, rollback)."""

from mlplatform.resources import ModelRegistry
from mlplatform.training.candidate import LINEAGE_TAGS, load_candidate
from mlplatform.training.gates import LIFECYCLE_TAG, gate_results
from mlplatform.training.spec import ModelSpec

MODEL_CARD_ARTIFACT = "model_card.md"
CARD_METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "expected_calibration_error", "slice_auc_gap")


def render_card(
    spec: ModelSpec,
    version: str,
    *,
    stage: str,
    metrics: dict[str, float],
    threshold: float,
    slices: dict[str, dict[str, float]],
    lineage: dict[str, str],
    gates: dict[str, tuple[str, dict]],
    decisions: list[dict],
) -> str:
    """The card as Markdown. `gates`: gate -> (verdict, figures); `decisions`: audit records of this
    version, oldest first. Sections without evidence say so instead of staying empty."""
    import pandas as pd

    lines = [
        f"# Model card: {spec.name} version {version}",
        "",
        f"**Stage:** {stage}  ",
        f"**Owners:** {', '.join(spec.owners)}  ",
        f"**Feature service:** `{lineage.get('feature_service', spec.feature_service)}`  ",
        f"**Training data:** partitions {lineage.get('data.partitions', 'unknown')}, "
        f"{lineage.get('data.rows', '?')} labelled rows ({spec.label.table}.{spec.label.column})  ",
        f"**Code:** git {lineage.get('git.commit', 'unknown')}, dbt manifest "
        f"{lineage.get('dbt.manifest_sha256', 'unknown')}",
        "",
        "## Intended use",
        "",
        spec.intended_use,
        "",
        spec.description,
        "",
        "## Metrics on the holdout",
        "",
        f"The most recent {spec.holdout_fraction:.0%} of labelled transactions (a time split). Decision "
        f"threshold {threshold:.4f}: {spec.decision.rule} at a false-positive rate of "
        f"{spec.decision.target_fpr:.0%}.",
        "",
        pd.Series({k: round(metrics[k], 4) for k in CARD_METRICS if k in metrics}, name="value")
        .to_frame()
        .to_markdown(),
        "",
        "## Slices",
        "",
        pd.DataFrame(slices).T.to_markdown() if slices else "No slice had enough labelled frauds to judge.",
        "",
        "## Calibration",
        "",
        f"Expected calibration error {metrics.get('expected_calibration_error', float('nan')):.4f} "
        f"(bound {spec.gates.max_calibration_error}): mean |predicted - observed| fraud rate over ten "
        "score bins.",
        "",
        "## Validation gates",
        "",
    ]
    if gates:
        lines += ["| gate | verdict | figures |", "|---|---|---|"]
        lines += [f"| {gate} | {verdict} | {figures} |" for gate, (verdict, figures) in gates.items()]
    else:
        lines.append("Not judged yet: the gates run after registration.")
    lines += ["", "## Known limitations", ""]
    lines += [f"- {limit}" for limit in spec.known_limitations] or ["None declared in the spec."]
    lines += ["", "## Approval history", ""]
    if decisions:
        lines += ["| when | action | by | why |", "|---|---|---|---|"]
        lines += [
            f"| {d['at'][:19]} | {d['action']} | {d.get('actor', '-')} | {d.get('reason', '-')} |"
            for d in decisions
        ]
    else:
        lines.append(f"No decision yet (promotion policy: {spec.promotion}).")
    return "\n".join(lines) + "\n"


def write_model_card(registry: ModelRegistry, spec: ModelSpec, version: str) -> tuple[str, str]:
    """Render the card of `version` from the registry's evidence and store it with its training run;
    returns the artifact's URI and the card."""
    client = registry.client()
    candidate = load_candidate(registry, spec.name, version)
    run = client.get_run(candidate.run_id)
    tags = registry.version_tags(spec.name, version)
    decisions = [
        d
        for d in registry.audit_trail(spec.name)
        if str(d.get("version")) == version or str(d.get("replaced")) == version or d["action"] == "retire"
    ]
    card = render_card(
        spec,
        version,
        stage=tags.get(LIFECYCLE_TAG, "candidate"),
        metrics=candidate.metrics,
        threshold=candidate.threshold,
        slices=candidate.slices,
        lineage={tag: run.data.tags[tag] for tag in LINEAGE_TAGS if tag in run.data.tags},
        gates={g: (r.verdict.value, r.figures) for g, r in gate_results(tags).items()},
        decisions=decisions,
    )
    registry.write_run_artifact_text(candidate.run_id, MODEL_CARD_ARTIFACT, card)
    return f"runs:/{candidate.run_id}/{MODEL_CARD_ARTIFACT}", card


def read_model_card(registry: ModelRegistry, model: str, version: str) -> str:
    run_id = str(registry.client().get_model_version(model, version).run_id)
    return registry.run_artifact_text(run_id, MODEL_CARD_ARTIFACT)

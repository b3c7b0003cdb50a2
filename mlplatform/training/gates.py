"""Gate evidence on a model version: what each validation gate found, written as MLflow version tags by
the gate itself, and the rule promotion applies to it. Pure functions, no Dagster, no MLflow calls."""

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# every gate a candidate must pass before it may serve, in the order they are shown
GATES = ("metric_floors", "not_worse_than_champion", "slice_gaps", "calibration", "one_row_latency")
# a gate that may be unjudgeable for a legitimate reason: the very first model has no champion to beat
WAIVABLE_WITHOUT_CHAMPION = "not_worse_than_champion"
GATE_TAG_PREFIX = "gate."
EVIDENCE_SUFFIX = ".evidence"
LIFECYCLE_TAG = "lifecycle"
APPROVAL_TAG = "approval"


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_JUDGED = "not_judged"


class Lifecycle(StrEnum):
    """Where a version stands; written as the `lifecycle` tag, visible in MLflow."""

    CANDIDATE = "candidate"  # registered, gates pending or failed
    CHALLENGER = "challenger"  # passed every gate, awaits approval (manual policy)
    CHAMPION = "champion"
    PREVIOUS = "previous"
    REJECTED = "rejected"  # refused by a person
    ORPHANED = "orphaned"  # its training died before the gates judged it
    ARCHIVED = "archived"  # no alias, older than the spec's retention keeps in play
    RETIRED = "retired"  # the whole model was retired: nothing of it serves or is scored any more


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    figures: dict[str, Any]  # the measured value(s) and the bound
    dagster_run_id: str

    def tags(self) -> dict[str, str]:
        evidence = {"figures": self.figures, "dagster_run_id": self.dagster_run_id}
        return {
            GATE_TAG_PREFIX + self.gate: self.verdict.value,
            GATE_TAG_PREFIX + self.gate + EVIDENCE_SUFFIX: json.dumps(evidence, default=str)[:4_000],
        }


def gate_results(tags: dict[str, str]) -> dict[str, GateResult]:
    """The gate results recorded on a version (gates that never ran are absent)."""
    results = {}
    for gate in GATES:
        verdict = tags.get(GATE_TAG_PREFIX + gate)
        if verdict is None:
            continue
        evidence = json.loads(tags.get(GATE_TAG_PREFIX + gate + EVIDENCE_SUFFIX, "{}"))
        try:
            parsed = Verdict(verdict)
        except ValueError:  # an unknown word is not a pass
            parsed = Verdict.NOT_JUDGED
        results[gate] = GateResult(
            gate, parsed, evidence.get("figures", {}), evidence.get("dagster_run_id", "unknown")
        )
    return results


def promotion_blockers(tags: dict[str, str], *, has_champion: bool) -> list[str]:
    """Why this version may not be promoted (empty: it may). Each gate must have passed; a gate that
    did not run, failed or could not judge blocks, except the champion comparison when there is no
    champion to compare with. A rejected or orphaned version never serves."""
    blockers = []
    if tags.get(APPROVAL_TAG) == "rejected":
        blockers.append("rejected by a reviewer")
    if tags.get(LIFECYCLE_TAG) == Lifecycle.ORPHANED:
        blockers.append("orphaned: its training run died before the gates completed")
    results = gate_results(tags)
    for gate in GATES:
        result = results.get(gate)
        if result is None:
            blockers.append(f"{gate}: no evaluation recorded")
        elif result.verdict is Verdict.FAILED:
            blockers.append(f"{gate}: failed {result.figures}")
        elif result.verdict is Verdict.NOT_JUDGED and not (
            gate == WAIVABLE_WITHOUT_CHAMPION and not has_champion
        ):
            blockers.append(f"{gate}: not judged ({result.figures.get('reason', 'no reason recorded')})")
    return blockers


def evidence_summary(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each gate's verdict, figures and Dagster run, for the audit record."""
    return {
        gate: {"verdict": r.verdict.value, "figures": r.figures, "dagster_run_id": r.dagster_run_id}
        for gate, r in gate_results(tags).items()
    }

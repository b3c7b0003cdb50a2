"""The promotion rule on gate evidence (pure): only a version that passed every gate may serve."""

import pytest

from mlplatform.training.gates import GATES, GateResult, Verdict, promotion_blockers


def tags_for(**verdicts: Verdict) -> dict[str, str]:
    tags: dict[str, str] = {}
    for gate in GATES:
        verdict = verdicts.get(gate, Verdict.PASSED)
        tags.update(GateResult(gate, verdict, {"value": 1.0}, "run-1").tags())
    return tags


def test_a_version_that_passed_every_gate_may_be_promoted():
    assert promotion_blockers(tags_for(), has_champion=True) == []


@pytest.mark.parametrize("gate", GATES)
def test_a_failed_gate_blocks_and_is_named(gate):
    blockers = promotion_blockers(tags_for(**{gate: Verdict.FAILED}), has_champion=True)
    assert len(blockers) == 1 and blockers[0].startswith(f"{gate}: failed")


@pytest.mark.parametrize("gate", GATES)
def test_a_missing_gate_blocks(gate):
    tags = {k: v for k, v in tags_for().items() if not k.startswith(f"gate.{gate}")}
    assert promotion_blockers(tags, has_champion=True) == [f"{gate}: no evaluation recorded"]


def test_a_gate_that_could_not_judge_blocks_except_the_champion_comparison_for_the_first_model():
    unjudged_slices = tags_for(slice_gaps=Verdict.NOT_JUDGED)
    assert promotion_blockers(unjudged_slices, has_champion=False)[0].startswith("slice_gaps: not judged")
    first_model = tags_for(not_worse_than_champion=Verdict.NOT_JUDGED)
    assert promotion_blockers(first_model, has_champion=False) == []
    assert promotion_blockers(first_model, has_champion=True)[0].startswith("not_worse_than_champion")


def test_an_unknown_verdict_word_is_not_a_pass():
    tags = {**tags_for(), "gate.calibration": "ok"}
    assert promotion_blockers(tags, has_champion=True)[0].startswith("calibration: not judged")


def test_rejected_and_orphaned_versions_never_serve():
    assert promotion_blockers({**tags_for(), "approval": "rejected"}, has_champion=True) == [
        "rejected by a reviewer"
    ]
    assert promotion_blockers({**tags_for(), "lifecycle": "orphaned"}, has_champion=True)[0].startswith(
        "orphaned"
    )


def test_a_slice_gap_is_not_measured_when_fewer_than_two_slices_qualify():
    import numpy as np
    import pandas as pd

    from mlplatform.training.model import evaluate

    labels = np.array([0, 1] * 50)
    scores = np.linspace(0, 1, 100)
    slices = pd.DataFrame({"segment": ["mass"] * 100, "region": ["north"] * 50 + ["south"] * 50})
    assert evaluate(labels, scores, slices).metrics["slice_auc_gap"] >= 0  # two regions: measured
    one_slice = evaluate(labels, scores, slices.assign(region="north"))  # one segment, one region
    assert np.isnan(one_slice.metrics["slice_auc_gap"])  # never a gap of 0.0 from nothing


def test_the_gate_checks_are_the_gates_promotion_requires():
    from mlplatform.definitions import models

    assert [next(iter(c.check_keys)).name for c in models["fraud_model"].gate_checks] == list(GATES)

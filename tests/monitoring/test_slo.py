"""Quality SLOs and probation rollback: a day is judged only once labelled, and a freshly promoted champion
whose own decisions break its SLO is rolled back to the previous one, audited and alerted, once."""

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from dagster import AssetSelection, materialize

from mlplatform.definitions import all_assets, all_checks, build_definitions, models
from mlplatform.demo import quiet_run
from mlplatform.monitoring.slo import SLO_CHECK, build_slo, burn, judge_day, on_probation
from mlplatform.profiles import build_resources
from mlplatform.resources import GateBounds
from mlplatform.resources.model_registry import CHAMPION, PREVIOUS
from tests.conftest import LENIENT_GATES, built_instance, copy_state

MODEL = models["merchant_risk"]


def test_a_day_is_judged_only_with_enough_labelled_positives():
    scores = pd.DataFrame({"score": [0.9, 0.8, 0.2, 0.1], "model_version": "3", "label": [1, 1, 0, 0]})
    assert judge_day(scores, "label", min_positives=2).roc_auc == 1.0
    too_few = judge_day(scores, "label", min_positives=3)
    assert too_few.roc_auc is None and "2 positives labelled, 3 needed" in (too_few.reason or "")
    unlabelled = judge_day(scores.assign(label=None), "label", min_positives=1)
    assert unlabelled.roc_auc is None and unlabelled.served_by == "3"
    only_positives = judge_day(scores.assign(label=1), "label", min_positives=1)
    assert only_positives.roc_auc is None  # AUC needs a negative too


def test_burn_is_the_breaching_share_of_judged_days_over_the_budget():
    breached = pd.Series([False, True, None, False, True])
    assert burn(breached, 0.25) == {"judged_days": 4, "breaching_days": 2, "burn": 2.0}
    assert burn(breached.iloc[2:3], 0.25)["judged_days"] == 0  # nothing judged: no burn, not zero


def test_probation_starts_at_a_promotion_not_at_a_rollback():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    audit = [
        {"action": "promote", "version": "1", "at": "2026-11-01T00:00:00+00:00"},
        {"action": "promote", "version": "2", "at": "2026-11-28T00:00:00+00:00"},
        {"action": "rollback", "version": "1", "at": "2026-11-29T00:00:00+00:00"},
    ]
    assert on_probation(audit, "2", days=7, now=now)
    assert not on_probation(audit, "2", days=1, now=now)
    assert not on_probation(audit, "1", days=7, now=now)  # restored, not promoted: no second probation
    assert not on_probation(audit, "3", days=7, now=now)


def run_slo(spec, resources, instance, day: str):
    quality = build_slo(spec).quality
    result = materialize(
        [quality], partition_key=day, resources=resources, instance=instance, raise_on_error=False
    )
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == SLO_CHECK
    return result, check


@pytest.mark.e2e
def test_a_champion_on_probation_that_breaks_its_slo_is_rolled_back_once(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    resources["merchant_risk_gates"] = GateBounds(**LENIENT_GATES)  # the probation, not the gates, is tested
    registry, warehouse = resources["model_registry"], resources["warehouse"]
    days = warehouse.read_sql(
        "select cast(event_ts as date) - 1 as day, sum(cast(has_fraud_report_7d as int)) as positives "
        "from marts.merchant_risk_labels group by 1 order by positives desc, day desc"
    )
    labelled_day = f"{days['day'].iloc[0]:%Y-%m-%d}"
    unlabelled_day = (
        f"{warehouse.read_sql('select max(event_date) as d from marts.merchant_days')['d'].iloc[0]:%Y-%m-%d}"
    )
    defs = build_definitions(resources)
    with built_instance(state) as instance:
        # a new champion, promoted now (on probation), takes the labelled day's decisions again
        assert quiet_run(defs.resolve_job_def("retrain_merchant_risk"), instance).success
        assert (
            registry.version_for("merchant_risk", CHAMPION),
            registry.version_for("merchant_risk", PREVIOUS),
        ) == (
            "2",
            "1",
        )
        rescored = materialize(
            [*all_assets, *all_checks],
            selection=AssetSelection.assets(MODEL.batch),
            partition_key=labelled_day,
            resources=resources,
            instance=instance,
        )
        assert rescored.success
        strict = MODEL.spec.updated({"slo.min_roc_auc": 0.999})  # a promise no model keeps

        # a day without labels is not judged, whatever the SLO: no rollback
        _, unjudged = run_slo(strict, resources, instance, unlabelled_day)
        assert unjudged.metadata["judged"].value is False
        assert registry.version_for("merchant_risk", CHAMPION) == "2"

        _, breach = run_slo(strict, resources, instance, labelled_day)
        assert not breach.passed and breach.metadata["judged"].value is not False
        assert breach.metadata["probation"].value == "rolled back version 2 to 1"
        assert registry.version_for("merchant_risk", CHAMPION) == "1"
        record = registry.audit_trail("merchant_risk")[-1]
        assert (record["action"], record["actor"], record["version"], record["replaced"]) == (
            "rollback",
            "slo probation",
            "1",
            "2",
        )
        assert "quality SLO broken on probation" in record["reason"]
        alerts = [json.loads(line) for line in (state / "alerts" / "alerts.jsonl").read_text().splitlines()]
        assert any(a["kind"] == "slo_rollback" and a["rolled_back"] == "2" for a in alerts)

        # the same evidence again: the breach was version 2's, which no longer serves; nothing more happens
        _, again = run_slo(strict, resources, instance, labelled_day)
        assert again.metadata["probation"].value == "none: the breach is version 2's, champion is 1"
        assert registry.audit_trail("merchant_risk")[-1] == record  # no second rollback

        # the committed SLO holds for version 1's own decisions on that day
        _, kept = run_slo(MODEL.spec, resources, instance, labelled_day)
        assert kept.metadata["judged"].value is not False

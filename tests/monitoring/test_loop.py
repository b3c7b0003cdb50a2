"""The closed loop end to end, on a copy of the built medium state and its Dagster instance: files land,
and the sensors and declarative automation (ticked from the test, as the daemon would) do the rest."""

from dataclasses import replace
from datetime import timedelta

import pytest

from mlplatform.datagen import DriftConfig, generate
from mlplatform.definitions import build_definitions
from mlplatform.loop_driver import LoopDriver
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import MEDIUM, built_instance, copy_applied_state

pytestmark = pytest.mark.e2e
# what `mlplatform generate-data --next-day --drift-amount-shift 2 --drift-new-fraud-pattern
# --drift-new-merchant-category` lands (the README's drift scenario)
DRIFT = DriftConfig(amount_shift=2.0, new_fraud_pattern=True, new_merchant_category=True)


def by_trigger(driver: LoopDriver, trigger: str) -> list:
    return [run for run in driver.runs if run.trigger == trigger]


def test_a_normal_day_flows_through_without_retraining_and_a_drifted_day_retrains_and_promotes(
    built_state, tmp_path
):
    state, resources = copy_applied_state(built_state[0], tmp_path / "state")
    registry = resources["model_registry"]
    champion_before = registry.version_for(FRAUD_MODEL.name, CHAMPION)
    next_day = MEDIUM.start_date + timedelta(days=MEDIUM.days)
    with built_instance(state) as instance:
        driver = LoopDriver(build_definitions(resources), instance)
        assert driver.tick() == 0  # what make demo built is up to date: nothing to do

        generate(replace(MEDIUM, start_date=next_day, days=1), state / "landing")
        driver.run_until_quiet()
        normal_runs = list(driver.runs)
        assert all(run.success for run in normal_runs), [r.label for r in normal_runs if not r.success]
        # the landed day in one run: its files, the marts and online store, its scoring and monitoring
        [landed] = by_trigger(driver, "landing_zone_sensor")
        for asset in ("raw_transactions", "raw_labels", "customer_features", "online_customer_stats"):
            assert asset in landed.label, landed.label
        for asset in ("batch_predictions", "feature_drift", "model_performance", "monitoring_report"):
            assert asset in landed.label, landed.label
        assert landed.label.endswith(f"[{next_day}]")
        # and nothing left for declarative automation to do after it
        assert not by_trigger(driver, "automation"), [r.label for r in by_trigger(driver, "automation")]
        assert not by_trigger(driver, "retrain_fraud_model_sensor")
        assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == champion_before

        drifted_day = next_day + timedelta(days=1)
        generate(replace(MEDIUM, start_date=drifted_day, days=1, drift=DRIFT), state / "landing")
        driver.run_until_quiet()

    retrains = by_trigger(driver, "retrain_fraud_model_sensor")
    assert len(retrains) == 1 and retrains[0].success
    reason = retrains[0].tags["mlplatform/reason"]
    assert reason.startswith("champion degraded") and "feature_drift:transaction_psi" in reason, reason
    champion_after = registry.version_for(FRAUD_MODEL.name, CHAMPION)
    assert champion_after != champion_before
    promotion = registry.audit_trail(FRAUD_MODEL.name)[-1]
    assert promotion["action"] == "promote" and str(promotion["version"]) == champion_after
    alerts = resources["alerts"].read()
    # amounts x3: the transaction's own inputs drift with ERROR by construction, whatever the day
    assert any(
        a["check"] == "transaction_psi" and a["severity"] == "ERROR" and a["partition"] == str(drifted_day)
        for a in alerts
    )

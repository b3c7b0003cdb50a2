"""Training survives the way production runs it and the way it dies.

- Each step of `retrain_fraud_model` in its own process, with no local disk to share: the candidate
  travels as an MLflow version id, never as a file (Kubernetes runs every step in its own pod).
- A training killed with SIGKILL mid-way leaves a registered version without its gate evidence and an
  MLflow run stuck in RUNNING; once the dead run is marked failed (run monitoring does that), the next
  training reconciles both, and the orphan can never be promoted."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

from mlplatform.definitions import models
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.registry import PromotionRefusedError, promote
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import built_instance, copy_state
from tests.training.test_promotion import train

pytestmark = pytest.mark.e2e
NO_SHARED_DISK = "/proc/mlplatform-steps-share-no-disk"  # nothing can be written or read there


def dagster_cli(state, *args):
    env = {**os.environ, "MLPLATFORM_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster")}
    return [sys.executable, "-m", "dagster", *args], env


def test_training_with_every_step_in_its_own_process_and_no_shared_disk(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "execution": {"config": {"max_concurrent": 2}},
                "resources": {"io_manager": {"config": {"base_dir": NO_SHARED_DISK}}},
            }
        )
    )
    # the candidate and what judges and promotes it (training_set, unchanged, is not the point here)
    argv, env = dagster_cli(
        state,
        "asset",
        "materialize",
        "-m",
        "mlplatform.definitions",
        "--select",
        "fraud_model,fraud_model_champion",
        "-c",
        str(config),
    )
    env["MLPLATFORM_EXECUTOR"] = "multiprocess"  # one process per step, as one pod per step in Kubernetes
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with built_instance(state) as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.status is DagsterRunStatus.SUCCESS
        starts = [
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)
            if e.dagster_event
        ]
        pids = {e.step_key: e.pid for e in starts}
    assert len(pids) >= 7  # fraud_model, its five gates, the promotion
    assert os.getpid() not in pids.values() and len(set(pids.values())) == len(pids)  # one process each
    registry = build_resources(profile="local", state=state)["model_registry"]
    # the same data and seed as the champion: every gate passes, and it is promoted by version id only
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "2"


def test_a_killed_training_is_reconciled_by_the_next_one(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    registry = build_resources(profile="local", state=state)["model_registry"]
    client = registry.client()
    argv, env = dagster_cli(
        state, "asset", "materialize", "-m", "mlplatform.definitions", "--select", "fraud_model"
    )
    training = subprocess.Popen(
        argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while not client.search_model_versions(f"name = '{FRAUD_MODEL.name}' and version_number = 2"):
        assert training.poll() is None and time.monotonic() < deadline, "training ended before registering"
        time.sleep(0.05)
    os.killpg(training.pid, signal.SIGKILL)  # kill -9, mid-way: registered, gates never ran
    training.wait()

    tags = registry.version_tags(FRAUD_MODEL.name, "2")
    assert not any(k.startswith("gate.") for k in tags)
    with pytest.raises(PromotionRefusedError, match="no evaluation recorded"):
        promote(registry, FRAUD_MODEL.name, "2", actor="test", reason="bypass")

    with built_instance(state) as instance:
        dead = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        trained_by = client.get_run(client.get_model_version(FRAUD_MODEL.name, "2").run_id).data.tags
        assert [r.run_id for r in dead] == [trained_by["dagster.run_id"]]  # nothing told Dagster it died
        instance.report_run_failed(dead[0])  # what run monitoring does for a dead run worker
        clean = train(
            build_resources(profile="local", state=state),
            instance,
            [models["fraud_model"].candidate, models["fraud_model"].champion],
        )
    assert clean.success
    assert registry.version_tags(FRAUD_MODEL.name, "2")["lifecycle"] == "orphaned"
    stuck = client.search_runs([registry.experiment_id()], filter_string="attributes.status = 'RUNNING'")
    assert stuck == []
    assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == "3"
    with pytest.raises(PromotionRefusedError, match="orphaned"):
        promote(registry, FRAUD_MODEL.name, "2", actor="test", reason="bypass")
    actions = [e["action"] for e in registry.audit_trail(FRAUD_MODEL.name)]
    assert actions[-2:] == ["orphan", "promote"]

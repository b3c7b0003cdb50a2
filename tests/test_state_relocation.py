"""A state folder copied (or restored) elsewhere reads its own warehouse, MLflow artifacts and Feast data,
writes new artifacts into itself, and leaves the original untouched. The original is hidden while the copy
is used, so any read of it fails instead of passing silently."""

import hashlib
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlplatform.cli import main
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import TRANSACTION_FIELDS, load_model_version
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import sole_user_of


def fingerprint(state: Path) -> dict[str, str]:
    return {
        str(p.relative_to(state)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state.rglob("*"))
        if p.is_file()
    }


@contextmanager
def hidden(state: Path):
    """The original state folder is gone while the block runs (renamed), then put back; a built state
    shared with other pytest processes only once none of them uses it any more."""
    with sole_user_of(state):
        away = state.with_name(state.name + ".hidden")
        state.rename(away)
        try:
            yield
        finally:
            away.rename(state)


def assert_works_on_its_own(state: Path) -> None:
    resources = build_resources(profile="local", state=state)
    registry = resources["model_registry"]
    client = registry.client()
    # the champion, or (when a gate such as one_row_latency failed on a busy machine) the newest candidate
    versions = client.search_model_versions(f"name = '{FRAUD_MODEL.name}'")
    assert versions
    version = registry.version_for(FRAUD_MODEL.name, CHAMPION) or str(max(int(v.version) for v in versions))
    experiment = client.get_experiment(registry.experiment_id())
    assert experiment.artifact_location == (state / "mlflow" / "artifacts").as_uri()
    model = load_model_version(registry, FRAUD_MODEL.name, version)  # artifacts read from this state
    # a retraining writes here: a new run's artifact lands under this state
    run = client.create_run(experiment.experiment_id)
    client.log_text(run.info.run_id, "relocated", "note.txt")
    client.set_terminated(run.info.run_id)
    assert list((state / "mlflow" / "artifacts").rglob("note.txt"))
    # Feast reads this state's parquet exports
    store = resources["feature_store"].store()
    data = (state / "feast" / "data").resolve()
    paths = [s.path for s in store.list_data_sources() if getattr(s, "path", None)]
    assert paths and all(Path(p).resolve().is_relative_to(data) for p in paths)
    rows = resources["warehouse"].read_sql(
        f"select {', '.join(TRANSACTION_FIELDS)} from raw.transactions order by event_ts desc limit 20"
    )
    features = features_as_of_events(store, rows, model.feature_service)
    assert len(features) == 20
    scores = model.score(features)["score"]
    assert scores.between(0, 1).all()


def test_a_copied_state_works_and_leaves_the_original_untouched(built_state, tmp_path):
    original, _ = built_state
    before = fingerprint(original)
    copy = tmp_path / "elsewhere" / "state"
    shutil.copytree(original, copy)
    with hidden(original):
        assert_works_on_its_own(copy)
    assert fingerprint(original) == before


def test_backup_and_restore_on_the_local_profile(built_state, tmp_path, monkeypatch):
    original, _ = built_state
    source = tmp_path / "source"
    shutil.copytree(original, source)
    before = fingerprint(original)
    runner = CliRunner()
    archive = tmp_path / "backups" / "state.tar.gz"

    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(source))
    backed_up = runner.invoke(main, ["backup", str(archive)])
    assert backed_up.exit_code == 0, backed_up.output
    again = runner.invoke(main, ["backup", str(archive)])
    assert again.exit_code != 0 and "never overwrites" in again.output

    restored = tmp_path / "restored" / "state"
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(restored))
    with hidden(original), hidden(source):
        result = runner.invoke(main, ["restore", str(archive)])
        assert result.exit_code == 0, result.output
        assert_works_on_its_own(restored)
        refused = runner.invoke(main, ["restore", str(archive)])
        assert refused.exit_code != 0 and "--force" in refused.output
        forced = runner.invoke(main, ["restore", str(archive), "--force"])
        assert forced.exit_code == 0 and "previous state is in" in forced.output
    assert fingerprint(original) == before
    assert len(list(restored.parent.glob("state.replaced-*"))) == 1  # nothing lost


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd"])
def test_restore_refuses_an_archive_that_is_not_a_state_backup(tmp_path, name):
    import tarfile

    from mlplatform.state_backup import StateError, restore_state

    payload = tmp_path / "payload"
    payload.write_text("x")
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname=name)
    with pytest.raises(StateError, match="not an mlplatform state backup"):
        restore_state(archive, tmp_path / "state")
    assert not (tmp_path / "state").exists()

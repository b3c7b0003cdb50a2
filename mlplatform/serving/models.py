"""The models being served, kept in step with the registry aliases without a restart."""

import threading

from mlplatform.inference.scoring import ScoringModel, load_model_version
from mlplatform.resources.model_registry import ModelRegistry
from mlplatform.serving.routing import Arm


class ServedModels:
    """The versions behind `champion` and `challenger` (or only the `arms` given). `refresh` re-reads the
    aliases and loads a version that moved before swapping it in, so requests never wait for a load or see
    half a change."""

    def __init__(self, registry: ModelRegistry, model_name: str, arms: tuple[Arm, ...] = tuple(Arm)) -> None:
        self.registry = registry
        self.model_name = model_name
        self.arms = arms
        self.last_error: str | None = None
        self._models: dict[Arm, ScoringModel] = {}
        self._loaded: dict[str, ScoringModel] = {}  # version -> model, so an alias swap reloads nothing

    def get(self, arm: Arm) -> ScoringModel | None:
        return self._models.get(arm)

    def versions(self) -> dict[str, str | None]:
        return {arm.value: getattr(self._models.get(arm), "version", None) for arm in self.arms}

    def refresh(self) -> bool:
        """Follow the aliases; True if what is served changed. A registry outage keeps the current models."""
        try:
            wanted = {arm: self.registry.version_for(self.model_name, arm.value) for arm in self.arms}
            models = {
                arm: self._loaded.get(version) or load_model_version(self.registry, self.model_name, version)
                for arm, version in wanted.items()
                if version is not None
            }
        except Exception as error:  # keep serving what we have; /ready reports the problem
            self.last_error = repr(error)
            return False
        self.last_error = None
        self._loaded = {model.version: model for model in models.values()}
        changed = {a: m.version for a, m in models.items()} != {a: m.version for a, m in self._models.items()}
        self._models = models
        return changed

    def follow(self, every_seconds: float, stop: threading.Event, on_change=None) -> threading.Thread:
        """Poll the aliases in a daemon thread until `stop` is set."""

        def poll() -> None:
            while not stop.wait(every_seconds):
                if self.refresh() and on_change:
                    on_change(self.versions())

        thread = threading.Thread(target=poll, name="alias-follower", daemon=True)
        thread.start()
        return thread

"""The bounds a model candidate must meet before it may serve: configuration, so each deployment (and
each test) sets its own, while the gates themselves stay one piece of code."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dagster import ConfigurableResource

if TYPE_CHECKING:
    from mlplatform.training.spec import ModelSpec


class GateBounds(ConfigurableResource):
    """Floors on the holdout, the tolerated loss against the champion, fairness across slices,
    calibration and one-row scoring time."""

    # no defaults: the model spec's `gates` (models/*.yaml) set them, through the profile
    min_roc_auc: float
    min_pr_auc: float
    min_recall_at_1pct_fpr: float
    champion_tolerance: float  # ROC AUC a candidate may lose against the champion
    max_slice_auc_gap: float
    max_calibration_error: float
    max_one_row_latency_ms: float

    def floors(self) -> dict[str, float]:
        return {
            "roc_auc": self.min_roc_auc,
            "pr_auc": self.min_pr_auc,
            "recall_at_1pct_fpr": self.min_recall_at_1pct_fpr,
        }


def gates_resource_key(model: str) -> str:
    """Each model's gate bounds are their own resource, `<model>_gates`."""
    return f"{model}_gates"


def default_gate_bounds(specs: Iterable["ModelSpec"]) -> dict[str, GateBounds]:
    """The gate bounds each spec declares, as the resources its gates read (a deployment may override)."""
    return {gates_resource_key(spec.name): GateBounds(**spec.gates.model_dump()) for spec in specs}

"""The bounds a model candidate must meet before it may serve: configuration, so each deployment (and
each test) sets its own, while the gates themselves stay one piece of code."""

from dagster import ConfigurableResource


class GateBounds(ConfigurableResource):
    """Floors on the holdout, the tolerated loss against the champion, fairness across slices,
    calibration and one-row scoring time."""

    min_roc_auc: float = 0.85
    min_pr_auc: float = 0.30
    min_recall_at_1pct_fpr: float = 0.30
    champion_tolerance: float = 0.005  # ROC AUC a candidate may lose against the champion
    max_slice_auc_gap: float = 0.15
    max_calibration_error: float = 0.05
    max_one_row_latency_ms: float = 50.0

    def floors(self) -> dict[str, float]:
        return {
            "roc_auc": self.min_roc_auc,
            "pr_auc": self.min_pr_auc,
            "recall_at_1pct_fpr": self.min_recall_at_1pct_fpr,
        }

"""Monitoring thresholds: configuration, not code, so each deployment sets its own."""

from dagster import ConfigurableResource


class MonitoringSettings(ConfigurableResource):
    """PSI bounds (< 0.1 stable, > 0.25 drifted by convention) and the champion's ROC AUC floors on
    labelled days; a day is judged only once enough of its frauds are labelled."""

    psi_warn: float = 0.1
    psi_error: float = 0.25
    min_roc_auc_warn: float = 0.85
    min_roc_auc_error: float = 0.75
    min_labelled_frauds: int = 10
    reference_days: int = 7  # the reference: the newest days of the champion's training set
    reference_rows: int = 20_000
    latency_p99_warn_ms: float = 100.0
    latency_p99_error_ms: float = 250.0
    # labels since the champion's promotion that justify retraining, for every model; unset: each spec's
    retrain_min_new_labels: int | None = None
    # share of served predictions whose inputs differ from an offline recomputation: any is suspicious
    skew_warn_rate: float = 0.0
    skew_error_rate: float = 0.01
    history_days: int = 30  # how far back the performance-over-time chart looks
    report_dir: str = ""  # where the HTML monitoring report is written (set per profile)

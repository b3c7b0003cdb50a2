from mlplatform.inference.assets import (
    batch_predictions,
    batch_scoring_job,
    external_outputs,
    inference_assets,
    nightly_batch_scoring,
)

__all__ = [
    "batch_predictions",
    "batch_scoring_job",
    "external_outputs",
    "inference_assets",
    "nightly_batch_scoring",
]

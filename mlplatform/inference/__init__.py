from mlplatform.inference.assets import build_batch_predictions, build_batch_scoring, external_outputs

__all__ = ["build_batch_predictions", "build_batch_scoring", "external_outputs"]

from mlplatform.inference.assets import build_batch_predictions, build_batch_scoring, build_prediction_log

__all__ = ["build_batch_predictions", "build_batch_scoring", "build_prediction_log"]

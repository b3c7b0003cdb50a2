"""The fraud model as MLflow logs it: a pyfunc that answers the platform's question (the fraud score,
and the decision at the version's own threshold), so `mlflow.pyfunc.load_model(...).predict(rows)` gives
the same numbers as batch and online scoring."""

import pandas as pd
from mlflow.pyfunc import PythonModel

from mlplatform.training.model import predict_scores


class FraudScorer(PythonModel):
    """A fitted scikit-learn pipeline and the threshold its evaluation chose."""

    def __init__(self, pipeline, threshold: float) -> None:
        self.pipeline = pipeline
        self.threshold = threshold

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """`score` (probability of fraud) and `decision` (1 = flag) per row, through the same function
        batch and online scoring use."""
        scores = predict_scores(self.pipeline, model_input)
        return pd.DataFrame(
            {"score": scores, "decision": (scores >= self.threshold).astype("int64")}, index=model_input.index
        )

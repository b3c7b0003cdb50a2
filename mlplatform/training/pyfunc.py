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


def signature_for(features: pd.DataFrame, outputs: pd.DataFrame):
    """The model signature, with integer-valued inputs (counts, hour, flags) accepting any number type:
    Feast returns them as int64 when every value is known and as float64 with NaN otherwise, and MLflow
    refuses int64 where the training frame (with its NaNs) said double. Numeric inputs may be missing
    (an entity without history): the trees handle NaN."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inferred = infer_signature(features, outputs)
    numeric = {c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])}
    integral = {c for c in numeric if (features[c].dropna() % 1 == 0).all()}
    inputs = Schema(
        [
            ColSpec(AnyType() if spec.name in integral else spec.type, spec.name, required=False)
            if spec.name in numeric
            else spec
            for spec in inferred.inputs.inputs
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)

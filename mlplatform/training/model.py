"""A spec's estimator and its evaluation, as plain scikit-learn: no Dagster, no MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from mlplatform.training.spec import ModelSpec

if TYPE_CHECKING:  # scikit-learn takes seconds to import: paid by the steps that train or score
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

MIN_SLICE_POSITIVES = 10
# scikit-learn's HistGradientBoosting with early_stopping="auto" stops early above this many training rows
AUTO_EARLY_STOPPING_ROWS = 10_000
PREPARE_ROWS = 500_000  # rows encoded at a time when fitting: their Python strings stay ~100 MB


def numeric_features(spec: ModelSpec, columns) -> list[str]:
    """The spec's numeric inputs, then every feature-service column (`view__feature`) not declared
    categorical or ignored."""
    declared = {*spec.inputs.categorical, *spec.inputs.ignored}
    return [*spec.inputs.numeric, *(c for c in columns if "__" in c and c not in declared)]


def feature_columns(spec: ModelSpec, columns) -> list[str]:
    return [*spec.inputs.categorical, *numeric_features(spec, columns)]


def labels_of(spec: ModelSpec, rows: pd.DataFrame) -> np.ndarray:
    return rows[spec.label.column].astype(int).to_numpy()


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    max_iter: int
    max_leaf_nodes: int
    l2_regularization: float
    seed: int

    @classmethod
    def of(cls, spec: ModelSpec) -> Hyperparameters:
        estimator = spec.estimator
        return cls(
            estimator.learning_rate,
            estimator.max_iter,
            estimator.max_leaf_nodes,
            estimator.l2_regularization,
            spec.seed,
        )


def build_pipeline(spec: ModelSpec, columns) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    params = Hyperparameters.of(spec)
    categorical = spec.inputs.categorical
    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    prepare = ColumnTransformer(
        [("categorical", encode, categorical), ("numeric", "passthrough", numeric_features(spec, columns))]
    )
    classifier = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        l2_regularization=params.l2_regularization,
        categorical_features=list(range(len(categorical))),
        random_state=params.seed,
    )
    return Pipeline([("prepare", prepare), ("classifier", classifier)])


@cache
def thread_limiter():
    """One threadpoolctl controller per process: building it reads /proc/self/maps (~4.6 ms), reusing it
    to limit threads costs ~0.09 ms (measured), which matters when one row is scored."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass
class PreparedInputs:
    """What the classifier fits on, as float arrays: the rows' frame can be freed before the fit starts.

    `validation` holds the early-stopping rows given apart (`early_stopping_split`), or None when the
    classifier splits `inputs` itself or does not stop early."""

    pipeline: Pipeline
    inputs: np.ndarray
    labels: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None = None


def fit(spec: ModelSpec, rows: pd.DataFrame, threads: int = 1) -> Pipeline:
    """The spec's estimator fitted on `rows`: the same pipeline `Pipeline.fit` would give, with less memory
    (`prepare_inputs`, then `fit_prepared`)."""
    return fit_prepared(prepare_inputs(spec, rows), threads)


def prepare_inputs(spec: ModelSpec, rows: pd.DataFrame, consume: bool = False) -> PreparedInputs:
    """The spec's pipeline with its encoders fitted, and `rows` prepared for its classifier.

    The encoders learn from the rows with distinct categorical values (the categories they would learn from
    all rows), then the inputs are prepared into float arrays: the categorical ones `PREPARE_ROWS` rows at
    a time, the numeric ones column by column. `Pipeline.fit` copied the inputs as a frame, as Python
    strings and as arrays at once (a year of 9.8M labelled events: past 17 GB). When the classifier stops
    early, its training and validation rows are prepared apart (`early_stopping_split`) instead of it
    splitting a copy of all of them. With `consume`, each numeric input column is deleted from `rows` once
    prepared: a caller holding no other reference to them then never holds a year's inputs twice."""
    import numpy as np

    pipeline = build_pipeline(spec, rows.columns)
    prepare, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    categorical, numeric = list(spec.inputs.categorical), numeric_features(spec, rows.columns)
    prepare.fit(rows.iloc[np.flatnonzero(~rows[categorical].duplicated())][[*categorical, *numeric]])
    encoder = prepare.named_transformers_["categorical"]

    def prepared(*selections: np.ndarray | None) -> list[np.ndarray]:
        """The prepared inputs of the rows at each selection's positions (None: all rows), in that order,
        as `prepare.transform` gives them."""
        counts = [len(rows) if positions is None else len(positions) for positions in selections]
        # by column: writing one column of a row-major array would touch every page of it
        outputs = [np.empty((count, len(categorical) + len(numeric)), order="F") for count in counts]
        for inputs, positions in zip(outputs, selections, strict=True):
            for start in range(0, len(inputs), PREPARE_ROWS):
                part = slice(start, start + PREPARE_ROWS)
                chunk = rows.iloc[part] if positions is None else rows.iloc[positions[part]]
                inputs[part, : len(categorical)] = encoder.transform(chunk[categorical])
        for column, name in enumerate(numeric, start=len(categorical)):
            values = rows[name].to_numpy(dtype=float, na_value=np.nan)
            for inputs, positions in zip(outputs, selections, strict=True):
                inputs[:, column] = values if positions is None else values[positions]
            if consume:
                from mlplatform.resources.warehouse import release_unused_memory  # imports Dagster

                del rows[name], values
                release_unused_memory()  # the column's memory back to the system, for the next arrays
        return outputs

    labels = labels_of(spec, rows)
    split = early_stopping_split(classifier, labels)
    if split is None:
        [inputs] = prepared(None)
        return PreparedInputs(pipeline, inputs, labels)
    train, validation = split
    x_train, x_validation = prepared(train, validation)
    if all_seen(x_validation[:, : len(categorical)], x_train[:, : len(categorical)]):
        return PreparedInputs(pipeline, x_train, labels[train], (x_validation, labels[validation]))
    # the classifier learns its categories from every row: let it split them itself
    inputs = np.empty((len(labels), x_train.shape[1]))
    inputs[train], inputs[validation] = x_train, x_validation
    return PreparedInputs(pipeline, inputs, labels)


def fit_prepared(prepared: PreparedInputs, threads: int = 1) -> Pipeline:
    """`prepared.pipeline`, its classifier fitted on the prepared inputs. OpenMP threads spin-wait: on a
    shared 2-core machine 2 threads fit 7x slower than 1 (measured)."""
    classifier = prepared.pipeline.steps[-1][1]
    with thread_limiter().limit(limits=threads):
        if prepared.validation is None:
            classifier.fit(prepared.inputs, prepared.labels)
        else:
            x_validation, y_validation = prepared.validation
            classifier.fit(prepared.inputs, prepared.labels, X_val=x_validation, y_val=y_validation)
    return prepared.pipeline


def early_stopping_split(classifier, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The training and validation positions a HistGradientBoosting classifier draws when it stops early
    (scikit-learn's own stratified split, with the seed it derives from `random_state`), or None when
    it would not split. Given apart, the two parts are never held beside a copy of all rows."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    stops_early = classifier.early_stopping is True or (
        classifier.early_stopping == "auto" and len(labels) > AUTO_EARLY_STOPPING_ROWS
    )
    if (
        not stops_early
        or classifier.validation_fraction is None
        or not isinstance(classifier.random_state, int)
    ):
        return None
    seed = np.random.RandomState(classifier.random_state).randint(np.iinfo(np.uint32).max, dtype="u8")
    train, validation = train_test_split(
        np.arange(len(labels)),
        test_size=classifier.validation_fraction,
        stratify=labels,
        random_state=seed,
    )
    if classifier.early_stopping == "auto" and len(train) <= AUTO_EARLY_STOPPING_ROWS:
        return None  # given apart, "auto" would count the training rows alone and not stop early
    return train, validation


def all_seen(codes: np.ndarray, seen: np.ndarray) -> bool:
    """Every column's codes in `codes` also appear in the same column of `seen`."""
    import numpy as np

    return all(
        np.isin(np.unique(codes[:, column]), np.unique(seen[:, column])).all()
        for column in range(codes.shape[1])
    )


def predict_scores(model: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    """Scores in the columns' fitted order, whatever order `rows` has (online features come unordered).

    Single-threaded: scoring one row with OpenMP threads took 60 ms instead of 10 ms here."""
    with thread_limiter().limit(limits=1):
        return model.predict_proba(rows[list(model.feature_names_in_)])[:, 1]


def permutation_importances(
    model: Pipeline, rows: pd.DataFrame, labels: np.ndarray, repeats: int, seed: int
) -> pd.Series:
    """scikit-learn's permutation importance of each input column (mean ROC AUC lost when it is shuffled),
    computed on the classifier over the rows prepared once.

    Every prepared column is one input column encoded value by value, so shuffling it is shuffling that
    input, and scikit-learn shuffles every column with the same row orders: the figures are those of the
    whole pipeline, without preparing the frame again for each column and repeat. One thread: the trees
    score a few thousand rows at a time, where OpenMP's threads cost 2-3x the CPU (together this was four
    times the model's fit)."""
    import pandas as pd
    from sklearn.inspection import permutation_importance

    prepare, classifier = model.named_steps["prepare"], model.named_steps["classifier"]
    prepared_order = [c for name, _, cols in prepare.transformers_ if name != "remainder" for c in cols]
    with thread_limiter().limit(limits=1):
        result = permutation_importance(
            classifier,
            prepare.transform(rows[list(model.feature_names_in_)]),
            labels,
            scoring="roc_auc",
            n_repeats=repeats,
            random_state=seed,
        )
    return pd.Series(result.importances_mean, index=prepared_order)


def time_split(spec: ModelSpec, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the past, validate on the spec's most recent share of events: how the model will be used.

    Rows already in event order (as the warehouse reads give them, ties by key) are cut as they are:
    sorting copies every column."""
    ordered = (
        rows
        if rows["event_ts"].is_monotonic_increasing
        else rows.sort_values(["event_ts", *spec.label.keys], ignore_index=True)
    )
    cut = int(len(ordered) * (1 - spec.holdout_fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    threshold: float
    confusion: list[list[int]]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)  # "segment=mass" -> metrics

    @property
    def slice_gap(self) -> float:
        """Largest ROC AUC difference between qualifying slices of the same attribute (segments against
        segments, regions against regions); NaN when no attribute has two qualifying slices."""
        import numpy as np

        gaps = []
        for column in dict.fromkeys(name.split("=", 1)[0] for name in self.slices):
            aucs = [
                s["roc_auc"]
                for name, s in self.slices.items()
                if name.startswith(f"{column}=") and not np.isnan(s["roc_auc"])
            ]
            if len(aucs) > 1:
                gaps.append(max(aucs) - min(aucs))
        return float(max(gaps)) if gaps else float("nan")


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    slice_values: pd.DataFrame | None = None,
    target_fpr: float = 0.01,
) -> Evaluation:
    """Holdout metrics, the threshold flagging the most fraud within `target_fpr` (the spec's decision
    rule), and ROC AUC per value of each column of `slice_values` (the spec's slices)."""
    import numpy as np
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

    labels = np.asarray(labels).astype(int)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(np.where(fpr <= target_fpr, tpr, -1)))
    threshold = float(min(thresholds[best], 1.0))
    flagged = scores >= threshold
    metrics = {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "recall_at_1pct_fpr": float(np.max(np.where(fpr <= 0.01, tpr, 0.0))),
        "recall_at_decision": float(tpr[best]),  # at the spec's alert budget (target_fpr)
        "expected_calibration_error": expected_calibration_error(labels, scores),
        "holdout_rows": float(len(labels)),
        "holdout_fraud_rate": float(labels.mean()),
    }
    evaluation = Evaluation(metrics, threshold, confusion_matrix(labels, flagged, labels=[0, 1]).tolist())
    if slice_values is not None:
        for column in slice_values.columns:
            for value, index in slice_values.groupby(column).indices.items():
                positives = int(labels[index].sum())
                auc = (
                    roc_auc_score(labels[index], scores[index])
                    if MIN_SLICE_POSITIVES <= positives < len(index)
                    else np.nan
                )
                evaluation.slices[f"{column}={value}"] = {
                    "roc_auc": float(auc),
                    "rows": len(index),
                    "positives": positives,
                }
    evaluation.metrics["slice_auc_gap"] = evaluation.slice_gap
    return evaluation


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| fraud rate over equal-width score bins, weighted by bin size."""
    import numpy as np

    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(scores[members].mean() - labels[members].mean())
    return float(error)

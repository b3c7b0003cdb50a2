"""From a fitted scikit-learn pipeline to a `CompiledModel`: its encoder and trees as arrays."""

import numpy as np

from mlplatform.export.embedded import FORMAT, TREE_FIELDS, CompiledModel


class NotCompilable(ValueError):
    """The pipeline has a step the compiled scorer does not reproduce exactly."""


def compile_pipeline(pipeline, identity: dict | None = None) -> CompiledModel:
    """The pipeline (a ColumnTransformer of an OrdinalEncoder and passthrough columns, then a binary
    HistGradientBoostingClassifier) as a `CompiledModel` scoring the same values. `identity` (model name,
    version, threshold, feature service) goes into the contract."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import OrdinalEncoder

    if len(pipeline.steps) != 2:
        raise NotCompilable("expected two steps: a ColumnTransformer and the classifier")
    prepare, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(prepare, ColumnTransformer) or not isinstance(
        classifier, HistGradientBoostingClassifier
    ):
        raise NotCompilable(f"unsupported steps: {type(prepare).__name__}, {type(classifier).__name__}")
    if classifier.n_trees_per_iteration_ != 1 or len(classifier.classes_) != 2:
        raise NotCompilable("only binary classifiers are compiled")
    outer = encoder_inputs(prepare, OrdinalEncoder)
    contract = {
        "format": FORMAT,
        **(identity or {}),
        "pipeline_inputs": [str(c) for c in pipeline.feature_names_in_],
        "inputs": classifier_inputs(outer, classifier),
        "score": "probability of the positive class (fraud), as predict_proba(...)[:, 1]",
    }
    return CompiledModel(contract, tree_arrays(classifier))


def encoder_inputs(prepare, encoder_type) -> list[dict]:
    """The ColumnTransformer's output columns in order: `numeric`, or `categorical` with the code of
    each category (`codes`) and the code an unknown or missing category gets (`unknown_code`)."""
    inputs: list[dict] = []
    for _, transformer, columns in prepare.transformers_:
        if transformer == "drop" or len(columns) == 0:
            continue
        if transformer == "passthrough" or _identity(transformer):
            inputs += [{"name": str(c), "kind": "numeric"} for c in columns]
        elif isinstance(transformer, encoder_type):
            if transformer.handle_unknown != "use_encoded_value":
                raise NotCompilable("the OrdinalEncoder must encode unknown categories")
            if float(transformer.unknown_value) != float(transformer.encoded_missing_value):
                raise NotCompilable("unknown and missing categories must share one code")
            inputs += [
                {
                    "name": str(column),
                    "kind": "categorical",
                    "codes": [[c, float(i)] for i, c in enumerate(categories.tolist()) if not _is_nan(c)],
                    "unknown_code": float(transformer.unknown_value),
                }
                for column, categories in zip(columns, transformer.categories_, strict=True)
            ]
        else:
            raise NotCompilable(f"unsupported transformer {type(transformer).__name__}")
    return inputs


def classifier_inputs(outer: list[dict], classifier) -> list[dict]:
    """The inputs as the trees see them. HistGradientBoosting encodes its categorical columns once more
    (its own OrdinalEncoder over the codes seen in training, an unseen code becoming NaN, i.e. missing)
    and puts them first: compose both encodings, in the classifier's column order."""
    inner = getattr(classifier, "_preprocessor", None)
    if inner is None:
        return outer
    categorical = [bool(c) for c in classifier.is_categorical_]
    encoder = inner.named_transformers_["encoder"]
    ordered = [spec for spec, c in zip(outer, categorical, strict=True) if c]
    composed = []
    for spec, seen in zip(ordered, encoder.categories_, strict=True):
        if spec["kind"] != "categorical":
            raise NotCompilable(f"{spec['name']} is categorical for the classifier only")
        inner_code = {float(code): float(i) for i, code in enumerate(seen.tolist()) if not _is_nan(code)}
        composed.append(
            {
                **spec,
                "codes": [[c, inner_code.get(code)] for c, code in spec["codes"]],
                "unknown_code": inner_code.get(spec["unknown_code"]),  # None: NaN, missing
            }
        )
    return composed + [spec for spec, c in zip(outer, categorical, strict=True) if not c]


def tree_arrays(classifier) -> dict[str, np.ndarray]:
    """Every tree's nodes flattened into one set of arrays, child and bitset indexes made global."""
    predictors = [iteration[0] for iteration in classifier._predictors]
    known_bitsets, known_row = classifier._bin_mapper.make_known_categories_bitsets()
    columns: dict[str, list[np.ndarray]] = {name: [] for name in TREE_FIELDS}
    values, roots, bitsets = [], [], []
    offset = bitset_offset = 0
    for predictor in predictors:
        nodes = predictor.nodes
        roots.append(offset)
        columns["feature"].append(nodes["feature_idx"].astype(np.int64))
        columns["threshold"].append(nodes["num_threshold"].astype(np.float64))
        columns["left"].append(nodes["left"].astype(np.int64) + offset)
        columns["right"].append(nodes["right"].astype(np.int64) + offset)
        columns["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
        columns["is_leaf"].append(nodes["is_leaf"].astype(bool))
        columns["is_categorical"].append(nodes["is_categorical"].astype(bool))
        columns["bitset"].append(nodes["bitset_idx"].astype(np.int64) + bitset_offset)
        values.append(nodes["value"].astype(np.float64))
        bitsets.append(np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8))
        offset += len(nodes)
        bitset_offset += len(bitsets[-1])
        depth = int(nodes["depth"].max()) + 1 if len(nodes) else 1
        columns.setdefault("_depth", []).append(np.array([depth]))
    depth_max = int(np.concatenate(columns.pop("_depth")).max())
    left_bitsets = np.concatenate([*bitsets, np.zeros((1, 8), dtype=np.uint32)])  # a row for no split
    return {
        **{name: np.concatenate(parts) for name, parts in columns.items()},
        "values": np.concatenate(values),
        "roots": np.asarray(roots, dtype=np.int64),
        "left_bitsets": left_bitsets,
        "known_bitsets": np.asarray(known_bitsets, dtype=np.uint32).reshape(-1, 8)
        if len(known_bitsets)
        else np.zeros((1, 8), dtype=np.uint32),
        "known_row": np.asarray(known_row, dtype=np.int64),
        "baseline": np.asarray(classifier._baseline_prediction, dtype=np.float64).reshape(1),
        "depth": np.array([depth_max], dtype=np.int64),
    }


def _identity(transformer) -> bool:
    """A fitted ColumnTransformer keeps `passthrough` columns as a FunctionTransformer without function."""
    return type(transformer).__name__ == "FunctionTransformer" and transformer.func is None


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value

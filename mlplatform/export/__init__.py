"""Embedded inference: the champion (or any alias) as a self-contained artifact scored with numpy alone.

    mlplatform export --alias champion --out exported/

writes `exported/fraud_model-<version>/`: `trees.npz` (every tree's nodes), `contract.json` (the model's
identity, threshold, feature service and inputs in order, each categorical input's codes) and
`fraud_scorer.py` (`mlplatform.export.embedded`, copied as is). Scoring it:

    import sys; sys.path.insert(0, "exported/fraud_model-3")
    from fraud_scorer import CompiledModel
    model = CompiledModel.load("exported/fraud_model-3")
    model.score_rows(rows)  # rows: dicts by input name, e.g. what the prediction log records as features
"""

import shutil
from pathlib import Path

from mlplatform.export import embedded

SCORER_FILE = "fraud_scorer.py"


def export_model(model, out_dir: Path) -> Path:
    """Write `model` (a `ScoringModel`) as an artifact folder under `out_dir`; returns the folder."""
    if model.compiled is None:
        raise ValueError(f"{model.name} version {model.version} cannot be compiled for embedding")
    folder = model.compiled.save(Path(out_dir) / f"{model.name}-{model.version}")
    shutil.copyfile(embedded.__file__, folder / SCORER_FILE)
    return folder

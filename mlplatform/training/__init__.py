"""Models as declared units: each spec in models/ becomes its training set, candidate, gates, champion and
jobs (mlplatform.training.factory)."""

from mlplatform.training.factory import ModelDefinitions, build_model
from mlplatform.training.spec import SPECS_DIR, load_specs

__all__ = ["SPECS_DIR", "ModelDefinitions", "build_model", "load_specs"]

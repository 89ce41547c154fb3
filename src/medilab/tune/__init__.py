"""``medilab tune``: hyperparameter search with Optuna over dotted config keys, one ordinary
run folder per trial, resumable and shared by many workers (see :mod:`medilab.tune.search`)."""

from medilab.tune.folder import TUNE_FILE
from medilab.tune.results import rebuild
from medilab.tune.search import tune

__all__ = ["TUNE_FILE", "rebuild", "tune"]

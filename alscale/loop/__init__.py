"""The active-learning loop: workspace, seed and evaluation sets, train and export, evaluate,
stopping rules, labeled-set composition, rounds and simulation.

Nothing here imports Ray at import time; only :func:`run_round` and :func:`simulate` reach the
engine (``alscale.select``) when called.
"""

from __future__ import annotations

from alscale.loop.composition import compare_distributions, composition_report, js_divergence
from alscale.loop.labels import import_labels
from alscale.loop.metrics import cohen_kappa, evaluate, expected_calibration_error
from alscale.loop.rounds import load_history, run_round
from alscale.loop.simulate import digits_pool, simulate
from alscale.loop.stopping import Verdict, check_stopping
from alscale.loop.train import export_model, predict_onnx, train_model
from alscale.loop.workspace import Workspace

__all__ = [
    "Verdict",
    "Workspace",
    "check_stopping",
    "cohen_kappa",
    "compare_distributions",
    "composition_report",
    "digits_pool",
    "evaluate",
    "expected_calibration_error",
    "export_model",
    "import_labels",
    "js_divergence",
    "load_history",
    "predict_onnx",
    "run_round",
    "simulate",
    "train_model",
]

"""ONNX models: the output contract, sessions and committees, and exporters."""

from __future__ import annotations

from alscale.model.contract import ModelContract, check_probabilities, inspect_model, load_session
from alscale.model.session import ModelOutputs, ModelRunner, check_committee, softmax

__all__ = [
    "ModelContract",
    "ModelOutputs",
    "ModelRunner",
    "check_committee",
    "check_probabilities",
    "inspect_model",
    "load_session",
    "softmax",
]

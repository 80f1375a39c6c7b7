"""alscale: active-learning scoring for very large pools.

Score an unlabeled Arrow/Parquet pool with ONNX Runtime on Ray actors, select a batch and
write a manifest a labeling queue can take::

    import alscale
    manifest = alscale.select("pool/", "model.onnx", strategy="margin", k=1000, out="batch-1")

The active-learning loop (loaded on first use: it needs scikit-learn and matplotlib):
``alscale.Workspace`` (a loop's folder), ``alscale.run_round`` (train, evaluate, select the next
batch) and ``alscale.simulate`` (a whole loop against known labels).  Also ``inspect_model``,
``make_settings``/``load_config_file``/``SelectSettings`` (the settings of a selection),
``Manifest`` and ``AlscaleError``, the root of every error alscale raises.
"""

from __future__ import annotations

__version__ = "0.1.0"

from alscale.api import select
from alscale.config import SelectSettings, load_config_file, make_settings
from alscale.exceptions import AlscaleError
from alscale.manifest import Manifest
from alscale.model.contract import inspect_model

__all__ = [
    "AlscaleError",
    "Manifest",
    "SelectSettings",
    "Workspace",
    "__version__",
    "inspect_model",
    "load_config_file",
    "make_settings",
    "run_round",
    "select",
    "simulate",
]

# the loop pulls in scikit-learn and matplotlib: load it only when asked for
_LAZY = {"Workspace": "alscale.loop", "run_round": "alscale.loop", "simulate": "alscale.loop"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

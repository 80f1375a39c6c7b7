"""alscale: active-learning scoring for very large pools."""

__version__ = "0.1.0"

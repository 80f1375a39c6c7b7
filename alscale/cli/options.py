"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

__all__ = ["engine_options", "model_options", "pool_options"]


class BatchSize(click.ParamType):
    """An int, or ``auto``; anything else goes on to the settings, which reject it in one line."""

    name = "INTEGER|auto"

    def get_metavar(self, param, ctx=None):  # click upper-cases a type's name; keep 'auto' as it is typed
        return self.name

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return int(value)
        except (TypeError, ValueError):
            return value


def _stack(*decorators):
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


pool_options = _stack(
    click.option("--pool", help="Parquet file, directory or glob (local or any pyarrow filesystem URI). Required, here or in --config."),
    click.option("--id-column", default=None, help="Column holding row ids (int64 or string). [default: id]"),
    click.option(
        "--features",
        multiple=True,
        help="Feature column: one vector column, or repeat for several numeric columns. [default: the one vector column; without one, every numeric column but the id]",
    ),
)

model_options = _stack(
    click.option("--model", "models", multiple=True, help="ONNX classifier; repeat (or give a directory) for a committee. Required, here or in --config."),
    click.option("--probs-output", default=None, help="Name of the probability/logit output. [default: detected]"),
    click.option("--embedding-output", default=None, help="Name of the embedding output. [default: detected]"),
)

engine_options = _stack(
    click.option("--actors", type=int, default=None, help="Shard actors. [default: one per CPU of the Ray cluster]"),
    click.option("--address", default=None, help="Ray cluster address (e.g. auto, ray://head:10001). [default: a private local Ray]"),
    click.option(
        "--batch-size",
        type=BatchSize(),
        default=None,
        help="Rows per model run (shards are read a few runs at a time), or 'auto': each actor times its model on 512-2048 rows and keeps 2048 unless a smaller batch is clearly faster (wide models). [default: auto]",
    ),
    click.option("--threads", type=int, default=None, help="ONNX Runtime threads per actor (1 plus more actors is fastest). [default: 1]"),
)

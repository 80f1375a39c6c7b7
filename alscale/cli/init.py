"""``alscale init``: create an active-learning workspace and reserve its evaluation set."""

from __future__ import annotations

import click

from alscale.loop.evalset import size_from_flag
from alscale.loop.metrics import METRICS
from alscale.loop.seedset import INITIAL_METHODS
from alscale.loop.train import TRAINERS

__all__ = ["command"]


@click.command("init")
@click.argument("workspace")
@click.option("--pool", required=True, help="Parquet file, directory or glob.")
@click.option("--id-column", default="id", show_default=True, help="Pool column holding row ids (int64 or string).")
@click.option("--label-column", default=None, help="Pool column of true labels: the evaluation set's labels come from it (nothing to "
              "label there), and its values give the classes. Training labels still come from `alscale label` or a queue.")
@click.option("--classes", default=None,
              help="Comma-separated class names; labels outside them are refused. [default: from --label-column, else any label]")
@click.option("--group-column", "group_columns", multiple=True, help="Column whose distribution to watch (repeatable).")
@click.option("--model", default=None, help="Your own ONNX model file, used by every round instead of the built-in trainer "
              "(write the retrained model to the same path between rounds; `alscale round --model` overrides it).")
@click.option("--eval-size", default=None, help="Evaluation-set rows (500), or a fraction of the pool (0.2). [default: min(1000, pool/5)]")
@click.option("--initial", "initial_size", type=int, default=100, show_default=True, help="Size of the seed set.")
@click.option("--initial-method", type=click.Choice(INITIAL_METHODS), default="random", show_default=True,
              help="How round 0 picks the seed set: uniform random, random rows stratified over k-means clusters of the features, "
              "or spread over --hint-column.")
@click.option("--hint-column", default=None, help="Column to spread the seed set over (weak label, source).")
@click.option("--strategy", default="margin", show_default=True,
              help="Selection strategy of rounds 1+ (entropy, margin, least-confidence, random, badge, coreset, cluster-margin).")
@click.option("--batch", "batch_size", type=int, default=100, show_default=True, help="Labels per round.")
@click.option("--trainer", type=click.Choice(TRAINERS), default="logistic", show_default=True,
              help="Built-in model each round trains and exports to ONNX (or bring your own: alscale round --model).")
@click.option("--metric", type=click.Choice(METRICS), default="accuracy", show_default=True,
              help="What rounds report first, status tabulates, and the target and gain stopping rules watch.")
@click.option("--target", type=float, default=None, help="Stop once the metric reaches this value.")
@click.option("--budget", type=int, default=None, help="Stop once this many labels are used; no round selects more than the budget leaves after the labels used and the ids still pending.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation set, the seed set and the selections.")
def command(workspace, pool, id_column, label_column, classes, group_columns, model, eval_size, initial_size, initial_method,
            hint_column, strategy, batch_size, trainer, metric, target, budget, seed):
    """Create WORKSPACE (a directory) for an active-learning loop on POOL.

    Reserves a uniform random evaluation set (never selected or trained on) and a stop set,
    and records the loop settings.  Next: `alscale round WORKSPACE` picks the seed set.
    """
    from alscale.loop.workspace import Workspace

    settings = {"initial_size": initial_size, "initial_method": initial_method, "hint_column": hint_column,
                "strategy": strategy, "batch_size": batch_size, "trainer": trainer, "metric": metric, "target": target,
                "budget": budget, "seed": seed, "eval_seed": seed}
    if eval_size is not None:
        settings["eval_size"] = size_from_flag(eval_size)
    class_list = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    ws = Workspace.create(workspace, pool=pool, model=model, id_column=id_column, label_column=label_column,
                          classes=class_list, group_columns=group_columns, settings=settings)
    click.echo(f"workspace {ws.path}: pool of {ws.config['pool_rows']:,} rows, evaluation set "
               f"{ws.config['evaluation']['size']:,}, stop set {ws.config['stop_set']['size']:,}, "
               f"classes {'any (none given)' if ws.classes is None else ', '.join(map(str, ws.classes))}")
    if not label_column and ws.config["evaluation"]["size"]:  # an empty evaluation set (--eval-size 0) has nothing to label
        batch = ws.evaluation_batch()
        click.echo(f"label the evaluation set too: push {batch} like a round's batch (`alscale push "
                   f"{batch} -w {ws.path} ...`), or `alscale label` its ids "
                   f"({ws.path / ws.config['evaluation']['file']}); rounds report metrics, and the target and gain stopping "
                   "rules act, only on its labeled rows")

"""``alscale init``: create an active-learning workspace and reserve its evaluation set."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("init")
@click.argument("workspace")
@click.option("--pool", required=True, help="Parquet file, directory or glob.")
@click.option("--id-column", default="id", show_default=True)
@click.option("--label-column", default=None, help="Oracle label column (simulation or partly labeled pool).")
@click.option("--classes", default=None, help="Comma-separated class names. [default: from --label-column, else any]")
@click.option("--group-column", "group_columns", multiple=True, help="Column whose distribution to watch (repeatable).")
@click.option("--model", default=None, help="A starting ONNX model (bring your own).")
@click.option("--eval-size", type=float, default=None, help="Evaluation-set rows, or a fraction (< 1). [default: min(1000, pool/5)]")
@click.option("--initial", "initial_size", type=int, default=100, show_default=True, help="Size of the seed set.")
@click.option("--initial-method", type=click.Choice(["random", "kmeans", "hint"]), default="random", show_default=True)
@click.option("--hint-column", default=None, help="Column to spread the seed set over (weak label, source).")
@click.option("--strategy", default="margin", show_default=True)
@click.option("--batch", "batch_size", type=int, default=100, show_default=True, help="Labels per round.")
@click.option("--trainer", type=click.Choice(["logistic", "mlp"]), default="logistic", show_default=True)
@click.option("--metric", type=click.Choice(["accuracy", "macro_f1", "log_loss", "ece"]), default="accuracy", show_default=True)
@click.option("--target", type=float, default=None, help="Stop once the metric reaches this value.")
@click.option("--budget", type=int, default=None, help="Stop once this many labels are used.")
@click.option("--seed", type=int, default=0, show_default=True)
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
        settings["eval_size"] = int(eval_size) if eval_size >= 1 else eval_size
    class_list = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    ws = Workspace.create(workspace, pool=pool, model=model, id_column=id_column, label_column=label_column,
                          classes=class_list, group_columns=group_columns, settings=settings)
    click.echo(f"workspace {ws.path}: pool of {ws.config['pool_rows']:,} rows, evaluation set "
               f"{ws.config['evaluation']['size']:,}, stop set {ws.config['stop_set']['size']:,}, classes {ws.classes}")

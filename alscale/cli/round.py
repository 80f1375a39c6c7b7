"""``alscale round``: train, export, evaluate, check stopping, select the next batch."""

from __future__ import annotations

import os

import click

__all__ = ["command"]

#: The metrics a round prints, as it names them; the workspace's metric first.
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "log_loss": "log loss", "ece": "ECE"}


@click.command("round")
@click.argument("workspace")
@click.option("--model", default=None, help="Use this ONNX model instead of training one (classes must match).")
@click.option("--strategy", default=None, help="Selection strategy. [default: the workspace's]")
@click.option("--k", type=int, default=None, help="Batch size. [default: the workspace's]")
@click.option("--seed", type=int, default=None, help="[default: workspace seed + round number]")
@click.option("--actors", type=int, default=None, help="Ray actors for the selection.")
@click.option("--mark-pending", is_flag=True, help="Mark the selected ids pending (labeling outside a queue).")
def command(workspace, model, strategy, k, seed, actors, mark_pending):
    """Run the next round of the loop in WORKSPACE.

    The first round picks the seed set.  Later rounds train on the labels so far (or take
    --model), export ONNX into rounds/NNN/, evaluate on the evaluation set, apply the
    stopping rules and select the next batch with the engine, skipping labeled, pending and
    evaluation ids.  An interrupted round is finished by running the command again.
    """
    from alscale.loop.rounds import run_round

    rec = run_round(workspace, model=model, strategy=strategy, k=k, seed=seed, actors=actors, mark_pending=mark_pending)
    click.echo(f"round {rec['round']:03d}: {rec['selected']} selected ({rec.get('strategy')}) with {rec['labels']} training labels")
    budget = rec.get("budget")
    pending = budget["pending"] if budget else 0  # sent for labeling, not answered yet: the budget counts them
    if budget and budget["left"]:
        click.echo(f"  budget: {budget['left']} of {budget['budget']} labels left ({budget['used']} used, {pending} pending), "
                   f"so {budget['left']} selected instead of {budget['asked']}")
    elif budget:
        click.echo(f"  budget: spent ({budget['used']} training labels used and {pending} pending of {budget['budget']}), so "
                   f"nothing selected; raise 'budget' in {workspace}/alscale-workspace.json to go on")
    if rec.get("metrics"):
        from alscale.loop.workspace import Workspace

        m = rec["metrics"]
        first = Workspace.open(workspace).settings["metric"]  # init --metric: reported first, as its help says
        names = sorted(METRIC_NAMES, key=lambda name: name != first)
        click.echo("  " + "  ".join(f"{METRIC_NAMES[name]} {m[name]:.4f}" for name in names) + f"  (evaluation set: {m['n']} labeled)")
    elif rec["round"] > 0:
        from alscale.loop.workspace import Workspace

        ws = Workspace.open(workspace)
        if not ws.config["evaluation"]["size"]:
            click.echo("  no metrics: the evaluation set is empty (init --eval-size 0)")
        elif ws.config.get("label_column"):
            click.echo(f"  no metrics: no evaluation-set row has a value in the label column {ws.config['label_column']!r}")
        else:
            click.echo(f"  no metrics: none of the {ws.config['evaluation']['size']:,} evaluation-set ids is labeled; push "
                       f"{ws.evaluation_batch()} to a queue or `alscale label` its ids (in {ws.path / ws.config['evaluation']['file']}) "
                       "for metrics and the target and gain stopping rules")
    for reason in (rec.get("stopping") or {}).get("reasons", []):
        click.echo(f"  stop: {reason}")
    for warning in rec.get("composition_warnings", []):
        click.echo(f"  warning: composition {warning}")
    if rec.get("batch"):
        batch = os.path.join(workspace, "rounds", f"{rec['round']:03d}", "batch")
        click.echo(f"  batch: {batch} (send it with `alscale push {batch} -w {workspace} ...`, or label it with "
                   f"`alscale label {workspace} FILE`)")

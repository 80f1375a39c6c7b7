"""``alscale status``: the round history of a workspace as a table."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("status")
@click.argument("workspace")
@click.option("--plot", default=None, help="Also write a composition-over-rounds PNG here.")
def command(workspace, plot):
    """Print WORKSPACE's labels and rounds: labels, metric, gain per batch, stopping verdict, warnings.

    Ids whose answers disagree (two annotators, or a label file and a queue) are listed with
    the answer used, the latest.
    """
    from alscale.loop.report import status_table
    from alscale.loop.workspace import Workspace

    ws = Workspace.open(workspace)
    click.echo(status_table(ws))
    if plot:
        from alscale.loop.plots import plot_composition
        from alscale.loop.rounds import load_history

        click.echo(f"plot: {plot_composition(load_history(ws), plot)}")

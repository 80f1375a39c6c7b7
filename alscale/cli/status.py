"""``alscale status``: the round history of a workspace as a table."""

from __future__ import annotations

import pathlib

import click

__all__ = ["command"]


@click.command("status")
@click.argument("workspace")
@click.option("--plot", default=None, metavar="PNG",
              help="Also write the labeled set's composition over the rounds (Jensen-Shannon divergence of the classes and "
                   "group columns) to this .png file, outside the workspace; an earlier PNG there is replaced.")
def command(workspace, plot):
    """Print WORKSPACE's labels and rounds: labels, metric, gain per batch, stopping verdict, warnings.

    A gain is positive when the metric gets better (for log_loss and ece too: a loss that falls),
    and compares two rounds' models on the same evaluation rows. Ids whose answers disagree (two
    annotators, or a label file and a queue) are listed with the answer used, the latest.
    """
    from alscale.loop.report import status_table
    from alscale.loop.workspace import Workspace

    ws = Workspace.open(workspace)
    if plot:
        _check_plot_path(plot, ws.path)  # before anything is printed: a refused path is one line
    click.echo(status_table(ws))
    if plot:
        from alscale.loop.plots import plot_composition
        from alscale.loop.rounds import load_history

        history = load_history(ws)
        if not any(h.get("composition") for h in history):
            click.echo("plot: not written: no round has compared the labeled set's composition yet", err=True)
            return
        click.echo(f"plot: {plot_composition(history, plot)}")


def _check_plot_path(plot: str, workspace: pathlib.Path) -> None:
    """Refuse a plot path that is not a .png, or that lies in the workspace (its files are alscale's state)."""
    from alscale.exceptions import ConfigError

    path = pathlib.Path(plot)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"Expected --plot to name a .png file. Got {plot!r}; an existing file there would be replaced by the plot.")
    if path.is_dir():
        raise ConfigError(f"Expected --plot to name a .png file. Got {plot!r}, which is a folder.")
    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":  # an earlier plot is replaced; another file called .png is not
                raise ConfigError(f"Expected --plot to name a new .png file or an earlier plot. Got {plot!r}, which is not a PNG image.")
    resolved, ws = path.resolve(), workspace.resolve()
    if resolved == ws or ws in resolved.parents:
        raise ConfigError(f"Expected --plot outside the workspace {str(workspace)!r} (its files are the workspace's state). Got {plot!r}.")

"""``alscale simulate``: replay active learning with an oracle label column, strategies vs random."""

from __future__ import annotations

import click

from alscale.loop.metrics import METRICS
from alscale.loop.train import TRAINERS

__all__ = ["command"]


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def _holds_table_of(path, reference) -> bool:
    """Whether ``path`` holds the same table as the Parquet file ``reference`` (False when ``path`` is absent).

    Raises
    ------
    OutputError
        ``path`` is there and holds anything else (another pool, a folder, a file that is not Parquet).
    """
    import pyarrow.parquet as pq

    from alscale.exceptions import OutputError

    if not path.exists() and not path.is_symlink():
        return False
    expected = pq.ParquetFile(reference)
    got = "a folder" if path.is_dir() else "a file that cannot be read as Parquet"
    if path.is_file():
        try:
            found = pq.ParquetFile(path)
            got = f"a pool of {found.metadata.num_rows:,} rows with columns {found.schema_arrow.names}"
            if (found.metadata.num_rows == expected.metadata.num_rows and found.schema_arrow.equals(expected.schema_arrow)
                    and found.read().equals(expected.read())):
                return True
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            pass
    raise OutputError(f"Expected no {path.name} in {str(path.parent)!r}, or the digits dataset that an earlier "
                      f"`alscale simulate --dataset digits` wrote there. Got {got} at {str(path)!r}; it is left as it is "
                      "(--force does not replace it): choose another --out, or simulate on it with --pool.")


@click.command("simulate")
@click.option("--pool", default=None, help="A labeled Parquet pool (file, directory or glob).")
@click.option("--dataset", type=click.Choice(["digits"]), default=None,
              help="Use a bundled dataset instead of --pool, written to OUT/pool.parquet (an OUT/pool.parquet "
                   "holding anything else is refused, even with --force).")
@click.option("--label-column", default="label", show_default=True, help="The oracle label column.")
@click.option("--id-column", default="id", show_default=True, help="Column of --pool holding row ids.")
@click.option("--features", multiple=True, help="Feature column(s). [default: the one obvious column]")
@click.option("--strategies", default="random,margin,entropy", show_default=True,
              help="Comma-separated strategies; random is always included.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--initial", "initial_size", type=int, default=20, show_default=True, help="Random initial labels.")
@click.option("--batch", "batch_size", type=int, default=20, show_default=True, help="Labels per round.")
@click.option("--budget", type=int, default=200, show_default=True, help="Total labels, initial included.")
@click.option("--eval-size", default="0.25", show_default=True, help="Evaluation rows (500), or a fraction of the pool (0.25).")
@click.option("--trainer", type=click.Choice(TRAINERS), default="logistic", show_default=True,
              help="Model trained each round (exported to ONNX and scored by the engine).")
@click.option("--metric", type=click.Choice(METRICS), default="accuracy", show_default=True,
              help="The metric of the labels-needed table, the learning-curve plot and the area under it.")
@click.option("--fractions", default="0.9,0.95,0.98", show_default=True, help="Fractions of the full-data metric for the table.")
@click.option("--actors", type=int, default=None, help="Ray actors per selection. [default: one per CPU]")
@click.option("--address", default=None, help="Ray cluster address. [default: one local Ray for the whole run]")
@click.option("--out", required=True, help="Output folder (curves.csv/json, learning_curve.png, table.md, summary.json, runs/).")
@click.option("--force", is_flag=True, help="Replace an earlier simulation's results in --out (other files there are kept).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (one step per strategy and seed).")
def command(pool, dataset, label_column, id_column, features, strategies, seeds, initial_size, batch_size, budget, eval_size,
            trainer, metric, fractions, actors, address, out, force, quiet):
    """Simulate the loop on a labeled pool and compare strategies with random sampling.

    Every round trains the built-in model on the labels so far, exports it as ONNX, evaluates
    it on a fixed random evaluation set and selects the next batch with the same engine as
    `alscale select` (one Ray session for the whole simulation).  Writes learning curves, a
    plot with a band over seeds, and a table of the labels needed to reach fractions of the
    full-data metric with the saving against random.

    Everything is checked before anything is written: a refused run leaves --out as it was,
    and a failed or interrupted (Ctrl-C) one removes what it wrote. An --out holding an
    earlier simulation's results is refused unless --force, which replaces only those.
    """
    import contextlib
    import tempfile
    from pathlib import Path

    from alscale.exceptions import AlscaleError, ConfigError
    from alscale.loop.evalset import size_from_flag
    from alscale.loop.simulate import check_simulation, digits_pool, simulate

    if (pool is None) == (dataset is None):
        raise ConfigError("Expected exactly one of --pool and --dataset. Got " + ("both." if pool else "neither."))
    try:
        fracs = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        raise ConfigError(f"Expected comma-separated fractions for --fractions. Got {fractions!r}.") from None
    settings = dict(out=out, label_column=label_column, strategies=strategies,
                    seeds=_ints(seeds), initial_size=initial_size, batch_size=batch_size, budget=budget,
                    eval_size=size_from_flag(eval_size), trainer=trainer, metric=metric, fractions=fracs, id_column=id_column,
                    features=list(features) or None, actors=actors, address=address, force=force)
    wrote_pool, made = None, []
    if dataset == "digits":
        # the pool goes into OUT: check the whole simulation on a copy elsewhere first, so a refused one writes nothing
        target = Path(out) / "pool.parquet"
        with tempfile.TemporaryDirectory(prefix="alscale-digits-") as tmp:
            copy = digits_pool(Path(tmp) / "digits.parquet")
            try:
                check_simulation(copy, **settings)
            except AlscaleError as exc:  # the message names the dataset, not the copy (whatever the error's own arguments)
                exc.args = (str(exc).replace(str(copy), "digits"),)
                raise exc from None
            there = _holds_table_of(target, copy)  # an earlier --dataset digits run's pool is used again; another file is refused
        if not there:
            made = [folder for folder in (target.parent.absolute(), *target.parent.absolute().parents) if not folder.exists()]
            wrote_pool = digits_pool(target)
        pool = target
    try:
        summary = simulate(pool, **settings, progress=not quiet)
    except BaseException:  # simulate removed what it wrote; the pool written here goes too, so OUT is as it was
        if wrote_pool is not None:
            wrote_pool.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise
    click.echo(f"full-data {metric}: {summary['full_metric']:.4f}  ({summary['wall_seconds']:.0f} s)")
    click.echo(summary["table_markdown"])
    for name, path in summary["outputs"].items():
        click.echo(f"{name}: {path}")

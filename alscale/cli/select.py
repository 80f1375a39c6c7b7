"""``alscale select``: score a pool and write a batch manifest."""

from __future__ import annotations

import json
import time

import click

from alscale.cli.options import engine_options, model_options, pool_options
from alscale.strategies import STRATEGIES

__all__ = ["command"]


def _parse_params(values: tuple[str, ...]) -> dict:
    params = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        key, raw = item.split("=", 1)
        try:
            params[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = raw
    return params


@click.command("select")
@pool_options
@model_options
@click.option(
    "--strategy",
    default=None,
    help="Selection strategy: " + ", ".join(sorted(STRATEGIES)) + ". [default: entropy]",
)
@click.option("--k", "k", type=int, default=None, help="How many examples to select. [default: 100]")
@click.option("--out", default=None, help="Output directory for batch.parquet and manifest.json; it must not exist unless --force. Without it nothing is written: the summary shows the first 10 rows of the batch, and --json prints the manifest, not the batch.")
@click.option("--exclude", multiple=True, help="File of ids never to select (Parquet/CSV/one per line); repeatable, added to --config's.")
@click.option("--labeled", multiple=True, help="File of already-labeled ids (excluded; initial centers for coreset); repeatable, added to --config's.")
@engine_options
@click.option("--seed", type=int, default=None, help="Seed for random and sampling strategies. [default: 0]")
@click.option("--on-invalid", type=click.Choice(["error", "skip"]), default=None, help="Rows with NaN/inf features: fail, or skip and count. [default: error]")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Strategy parameter (JSON value); repeatable.")
@click.option("--skip-bad-shards", is_flag=True, default=None, help="Skip and record shards that cannot be read instead of failing.")
@click.option("--checkpoint-dir", default=None, help="Where finished shards are saved for resume (local or URI). [default: OUT.checkpoints]")
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="TOML/YAML file with any of these options but --quiet and --json (how this run prints); flags override it (--exclude and --labeled add to it; a --strategy other than its own drops its [strategy_params]). Relative paths in it are relative to its own folder.")
@click.option("--force", is_flag=True, default=None, help="Replace an existing output directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print manifest.json to stdout when done.")
def command(pool, id_column, features, models, probs_output, embedding_output, strategy, k, out, exclude, labeled,
            actors, address, batch_size, threads, seed, on_invalid, params, skip_bad_shards, checkpoint_dir, config, force, quiet, as_json):
    """Select the K most informative examples of a Parquet pool.

    Shards the pool over Ray actors, scores every row with the ONNX model, merges the
    per-shard results exactly, and writes OUT/batch.parquet (id, rank, score, strategy,
    predicted_class, predicted_index, confidence, plus cluster for cluster-margin) and
    OUT/manifest.json (provenance, counts, timings).

    \b
    Example:
      alscale select --pool data/pool/ --model model.onnx --strategy margin --k 1000 \\
          --out batches/round-1 --exclude labeled.parquet
    """
    import alscale

    started = time.perf_counter()
    manifest = alscale.select(
        pool,
        list(models) or None,
        strategy=strategy,
        k=k,
        out=out,
        exclude=exclude,
        labeled=labeled,
        actors=actors,
        address=address,
        seed=seed,
        batch_size=batch_size,
        threads=threads,
        id_column=id_column,
        features=list(features) or None,
        probs_output=probs_output,
        embedding_output=embedding_output,
        on_invalid=on_invalid,
        force=force,
        progress=False if quiet else _progress_default(config),
        strategy_params=_parse_params(params) or None,
        skip_bad_shards=skip_bad_shards,
        checkpoint_dir=checkpoint_dir,
        config=config,
    )
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps(manifest.data, indent=2, default=str))
    elif not quiet:
        counts = manifest.data["counts"]
        click.echo(manifest.summary(), err=True)
        click.echo(
            f"scored {counts['rows_scored']:,} rows ({counts['rows_excluded']:,} excluded, {counts['rows_invalid']:,} invalid) "
            f"in {elapsed:.1f} s; " + (f"wrote {manifest.path}" if manifest.path else "nothing written (no --out)"),
            err=True,
        )


def _progress_default(config: str | None) -> bool | None:
    """A progress bar unless --quiet; a config file's own ``progress`` setting wins over that default."""
    if config:
        from alscale.config import load_config_file

        if "progress" in load_config_file(config):
            return None  # not given on the command line: the file's value stands
    return True

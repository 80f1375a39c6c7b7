"""``alscale demo``: the whole flow on a built-in pool and model, on a local Ray."""

from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["command"]


@click.command("demo")
@click.option("--dir", "workdir", default="alscale-demo", show_default=True, help="Folder for the generated pool, model and batch.")
@click.option("--rows", type=click.IntRange(min=1), default=200_000, show_default=True, help="Rows in the generated pool.")
@click.option("--strategy", default="margin", show_default=True,
              help="Selection strategy: entropy, margin, least-confidence, random, badge, coreset or cluster-margin "
                   "(the committee strategies need more models than the demo's one).")
@click.option("--k", type=click.IntRange(min=1), default=100, show_default=True, help="Batch size to select.")
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Shard actors. [default: one per CPU]")
def command(workdir, rows, strategy, k, actors):
    """Run alscale end to end on a generated pool and a small trained model.

    Generates a 10-class Gaussian-mixture pool (ROWS x 32 float32 features, Parquet) and an
    MLP trained on a separate labeled sample (ONNX, with an embedding output), starts a local
    Ray, selects K examples and prints what was selected and how fast.  Everything lands in
    DIR: pool/, model.onnx and batch/ (the manifest).
    """
    import alscale
    from alscale.datasets import make_model, make_pool
    from alscale.exceptions import PoolExhaustedError, StrategyError
    from alscale.strategies import get_strategy

    # what select would refuse fails before minutes of generating
    if get_strategy(strategy).needs_committee:
        raise StrategyError(f"Strategy {strategy!r} needs a committee of models; the demo has one model.")
    if k > rows:
        raise PoolExhaustedError(rows, k)
    work = Path(workdir)
    pool_dir, model_path, out = work / "pool", work / "model.onnx", work / "batch"
    if not pool_dir.exists() or sum(1 for _ in pool_dir.glob("*.parquet")) == 0 or _rows(pool_dir) != rows:
        click.echo(f"generating a demo pool of {rows:,} rows in {pool_dir} ...", err=True)
        import shutil

        shutil.rmtree(pool_dir, ignore_errors=True)
        make_pool(pool_dir, rows, n_features=32, n_classes=10, files=4, row_group_size=16_384, with_labels=False)
    if not model_path.exists():
        click.echo(f"training a demo MLP (32-64-10) -> {model_path}", err=True)
        make_model(model_path, n_features=32, n_classes=10, hidden=64)
    click.echo(f"selecting {k} examples with {strategy!r} on a local Ray ...", err=True)
    t0 = time.perf_counter()
    manifest = alscale.select(pool_dir, model_path, strategy=strategy, k=k, out=out, force=True, actors=actors, progress=True)
    wall = time.perf_counter() - t0
    t = manifest.data["timings"]
    counts = manifest.data["counts"]
    scan = t["score"] + t.get("check_ids", 0) + t.get("reduce", 0)
    click.echo("")
    click.echo(manifest.summary(rows=10))
    click.echo("")
    click.echo(
        f"scored {counts['rows_scored']:,} rows on {counts['shards']} actor(s): {counts['rows_scored'] / scan:,.0f} rows/s "
        f"(actors up in {t['startup']:.1f} s, scoring {t['score']:.2f} s, merge {t['reduce'] * 1000:.0f} ms, total with Ray start and stop {wall:.1f} s)"
    )
    click.echo(f"manifest: {out}/manifest.json   batch: {out}/batch.parquet")
    click.echo("next: alscale select --help, alscale inspect-model " + str(model_path))


def _rows(pool_dir: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in pool_dir.glob("*.parquet"))
    except Exception:
        return -1

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
    DIR: pool/, model.onnx and batch/ (the manifest).  DIR must be new, empty or an earlier
    demo's: a folder holding anything else is refused, never changed.
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
    _claim(work)
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


#: The file that marks a folder as a demo's own: what it holds there, it may replace.
MARKER = ".alscale-demo"
#: What a demo writes in its folder (an earlier version's folder has no marker, only these).
_DEMO_NAMES = {"pool", "model.onnx", "batch", "batch.checkpoints", MARKER}


def _claim(work: Path) -> None:
    """Make ``work`` the demo's folder: new, empty or an earlier demo's; anything else is refused untouched."""
    from alscale.exceptions import ConfigError

    if work.exists() and not work.is_dir():
        raise ConfigError(f"Expected a folder for --dir. Got {str(work)!r}, which is a file.")
    names = sorted(p.name for p in work.iterdir()) if work.exists() else []
    earlier = MARKER in names or (set(names) <= _DEMO_NAMES and not _foreign_parts(work / "pool"))
    if names and not earlier:
        foreign = [n for n in names if n not in _DEMO_NAMES] or [f"pool/{n}" for n in _foreign_parts(work / "pool")]
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"Expected a new or empty --dir, or one an earlier alscale demo made. Got {str(work)!r}, which "
                          f"holds files of its own ({shown}): the demo replaces its pool and batch there, so choose another --dir.")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by alscale demo: its pool/, model.onnx and batch/ may be replaced by the next demo\n")


def _foreign_parts(pool_dir: Path) -> list[str]:
    """Names in a demo's pool/ that the demo did not write (it writes part-NNNNN.parquet only)."""
    if not pool_dir.is_dir():
        return [] if not pool_dir.exists() else ["(a file named pool)"]
    return sorted(p.name for p in pool_dir.iterdir() if not (p.name.startswith("part-") and p.name.endswith(".parquet")))


def _rows(pool_dir: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in pool_dir.glob("*.parquet"))
    except Exception:
        return -1

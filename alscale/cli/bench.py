"""``alscale bench``: pipeline throughput against raw ONNX Runtime, and memory."""

from __future__ import annotations

import click

from alscale.cli.options import BatchSize

__all__ = ["command"]


#: Options of the engine benchmark that the strategy benchmark does not take, and the other way round.
_ENGINE_ONLY = ("n_features", "hidden", "n_classes", "batch_size", "strategy", "scaling", "repeats")
_STRATEGY_ONLY = ("cm_k", "coreset_rows")


@click.command("bench")
@click.option("--rows", type=int, default=None, help="Rows in the generated pool. [default: 2,000,000; 1,000,000 with --strategies]")
@click.option("--features", "n_features", type=int, default=64, show_default=True, help="float32 features per row.")
@click.option("--hidden", type=int, default=256, show_default=True, help="Hidden units of the MLP (features-hidden-classes).")
@click.option("--classes", "n_classes", type=int, default=10, show_default=True, help="Classes of the generated MLP.")
@click.option("--actors", "actors", multiple=True, type=int, help="Actor counts to measure (repeatable); one with --strategies. [default: 1 and 2; 2 with --strategies]")
@click.option("--k", type=int, default=1000, show_default=True, help="Rows each select keeps.")
@click.option("--batch-size", type=BatchSize(), default="auto", show_default=True, help="Rows per model run, or 'auto' (each actor times its model).")
@click.option("--strategy", default="entropy", show_default=True, help="Strategy of the measured select runs.")
@click.option("--scaling", multiple=True, type=int, help="Also record actor memory at these pool sizes (e.g. --scaling 1000000 --scaling 4000000). Pools are 4 files in row groups of up to 131,072 rows, and actor memory follows the row group: below 524,288 rows a pool has smaller row groups (rows / 4), so compare sizes of 524,288 rows and up.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per actor count, each paired with a fresh raw measurement; the median is reported.")
@click.option("--workdir", default=None, help="Keep generated pools here (default: a temp dir, removed after).")
@click.option("--json", "out_json", default=None,
              help="Where to write the results: a path ending in .json, new or holding an earlier benchmark's results "
                   "(any other file is refused, and kept); missing folders are created. "
                   "[default: bench-results/engine.json, or strategies.json]")
@click.option("--strategies", "strategies", is_flag=True, help="Benchmark the selection strategies end to end instead (badge, qbc, cluster-margin, coreset).")
@click.option("--cm-k", type=int, default=100_000, show_default=True, help="With --strategies: batch size for Cluster-Margin vs entropy.")
@click.option("--coreset-rows", type=int, default=200_000, show_default=True, help="With --strategies: pool size for the core-set timing.")
@click.pass_context
def command(ctx, rows, n_features, hidden, n_classes, actors, k, batch_size, strategy, scaling, repeats, workdir, out_json, strategies, cm_k, coreset_rows):
    """Measure select throughput against raw ONNX Runtime on the same model.

    With --strategies: time badge, qbc-vote, qbc-kl, cluster-margin and coreset end to end
    (Parquet to manifest, inference included) against exact k-means++ and entropy top-K.

    Generates a pool (ROWS x FEATURES float32, fixed_size_binary) and an MLP, then measures
    (a) raw onnxruntime, one thread, in memory, and (b) select as the CLI runs it (checkpoints,
    manifest) with 1 and 2 actors.  Its rows/s, and so the ratio pipeline / (actors x raw), time
    only the scan (Parquet reads, inference, scores, id check, top-K reduce), not planning,
    actor start-up or the manifest write; the end-to-end seconds of each select are printed
    beside it.  Prints, with the raw rows/s that ratio divides by (measured again right before
    each run), the peak memory of each actor and of the benchmark process (the driver, which
    also generates the pool and runs raw onnxruntime); writes everything as JSON.  Results go
    to stdout, progress and notes to stderr.
    """
    from alscale.bench import default_results, run_bench, run_strategy_bench

    from alscale.exceptions import ConfigError

    echo = click.echo  # results on stdout, as simulate, round and status print theirs
    note = lambda m: click.echo(m, err=True)  # noqa: E731  (progress and notes on stderr)
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    only = _STRATEGY_ONLY if not strategies else _ENGINE_ONLY
    given = [flags[name] for name in only if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        where = "to the engine benchmark (without --strategies)" if strategies else "with --strategies"
        raise ConfigError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only {where}.")
    if strategies and len(actors) > 1:  # it runs every strategy with one actor count
        raise ConfigError(f"--strategies measures one actor count: expected one --actors. Got {', '.join(map(str, actors))}.")
    if strategies:
        out_json = out_json or default_results("strategies.json")
        run_strategy_bench(rows=1_000_000 if rows is None else rows, k=k, cm_k=cm_k, coreset_rows=coreset_rows,
                           actors=actors[0] if actors else 2, workdir=workdir, out_json=out_json, echo=echo, note=note)
        click.echo(f"results written to {out_json}")
        return
    out_json = out_json or default_results("engine.json")
    run_bench(
        rows=2_000_000 if rows is None else rows,
        n_features=n_features,
        hidden=hidden,
        n_classes=n_classes,
        actors=tuple(actors) or (1, 2),
        k=k,
        batch_size=batch_size,
        strategy=strategy,
        scaling=tuple(scaling),
        repeats=repeats,
        workdir=workdir,
        out_json=out_json,
        echo=echo,
        note=note,
    )
    click.echo(f"results written to {out_json}")

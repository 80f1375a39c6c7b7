"""BADGE k-means|| against exact sequential k-means++ (factored, numpy), plus core-set, QBC
and Cluster-Margin timings; prints ratios against limits measured in the same run.

Two parts, both on synthetic pools (Gaussian-mixture ReLU embeddings, softmax of a linear
head), pure numpy over a LocalShardGroup of ``--shards`` shards, ``--threads`` BLAS threads:

* quality: ``--quality-rows`` rows, every configuration, ``--seeds`` seeds; k-means cost of
  the selected set in gradient space divided by the median cost of exact k-means++ (limit 1.10).
* speed: ``--rows`` rows; the exact k-means++ reference is timed on ``--ref-k`` and twice as
  many centers and extrapolated to k (its set-up once, then one pass over the factors per
  center: :func:`alscale.bench.exact_kmeanspp_seconds`), and each
  configuration is timed from the model outputs to the selection (shard states built from
  probs and embeddings, then k-means||), best of ``--repeats``.  Limit: 20x faster.
  Inference and Parquet reading are not in this script (see ``alscale bench``).

Usage::

    python benchmarks/bench_diversity.py --rows 1000000 --out bench-results/diversity.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from alscale.bench import exact_kmeanspp_seconds
from alscale.reduce.badge import BadgeBuilder, select_badge
from alscale.reduce.kmeans_parallel import kmeans_cost_factored, kmeanspp_factored
from alscale.reduce.shardgroup import LocalShardGroup
from alscale.rowrandom import id_keys
from alscale.strategies import gradient_factors


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    from alscale.bench import ScriptArgumentParser, count, default_results

    ap = ScriptArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first sentence spans two lines
    ap.add_argument("--rows", type=count(), default=1_000_000, help="rows of the speed and other timings")
    ap.add_argument("--quality-rows", type=count(), default=50_000, help="rows of the quality comparison")
    ap.add_argument("--classes", type=count(2), default=10, help="classes C of the synthetic probabilities")
    ap.add_argument("--dim", type=count(), default=256, help="embedding width D")
    ap.add_argument("--k", type=count(), default=1000, help="rows each selection keeps")
    ap.add_argument("--ref-k", type=count(), default=50, help="centers timed for the exact reference at --rows (and twice as many; at most half --rows)")
    ap.add_argument("--seeds", type=count(), default=5, help="seeds of the quality comparison (the median is kept)")
    ap.add_argument("--shards", type=count(), default=2, help="shards of the LocalShardGroup")
    ap.add_argument("--threads", type=count(), default=1, help="BLAS and OpenMP threads")
    ap.add_argument("--skip-speed", action="store_true", help="leave out the speed part")
    ap.add_argument("--skip-quality", action="store_true", help="leave out the quality part")
    ap.add_argument("--skip-others", action="store_true", help="leave out core-set, QBC and Cluster-Margin")
    ap.add_argument("--repeats", type=count(), default=2, help="timed runs per configuration at --rows (best kept)")
    ap.add_argument("--cm-k", type=count(), default=100_000, help="batch size for the Cluster-Margin timing")
    ap.add_argument("--coreset-rows", type=count(), default=100_000, help="rows of the core-set timing (at most --rows)")
    ap.add_argument("--configs", default="default,none,r1,r3-l05,l2,kron80,tensor32,tensor64",
                    help="BADGE configurations to compare, comma-separated")
    ap.add_argument("--out", default=default_results("diversity.json"),
                    help="where to write the results: a new .json path or an earlier benchmark's results")
    return ap.parse_args(argv)


def _check_sizes(args: argparse.Namespace) -> None:
    """Refuse sizes the parts asked for cannot measure, before anything is timed (minutes)."""
    from alscale.exceptions import ConfigError, PoolExhaustedError

    pools = [(not args.skip_quality, args.quality_rows, args.k),
             (not args.skip_speed, args.rows, args.k),
             (not args.skip_others, min(args.rows, args.coreset_rows), args.k),
             (not args.skip_others, args.rows, args.cm_k)]
    for used, rows, k in pools:
        if used and k > rows:
            raise PoolExhaustedError(rows, k)
    if not args.skip_speed and 2 * args.ref_k > args.rows:  # ref_k and twice as many centers are timed
        raise ConfigError(f"The 'ref_k' parameter must be an int from 1 to half 'rows' ({args.rows // 2}). Got {args.ref_k} instead.")
    smallest = min([n for used, n, _ in pools if used], default=args.shards)
    if args.shards > smallest:
        raise ConfigError(f"The 'shards' parameter must be an int from 1 to the rows of the smallest pool ({smallest}). "
                          f"Got {args.shards} instead.")


CONFIGS = {
    "default": {},
    "none": {"sketch": "none"},
    "r1": {"rounds": 1},
    "r3-l05": {"rounds": 3, "oversampling": 0.5},
    "l2": {"oversampling": 2.0},
    "kron80": {"sketch": "kron", "sketch_dim": 80},
    "tensor32": {"sketch_dim": 32},
    "r3-l05-t32": {"rounds": 3, "oversampling": 0.5, "sketch_dim": 32},
    "tensor64": {"sketch_dim": 64},
    "plain-pp": {"local_trials": 1},
}


def synthetic_pool(n: int, c: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """probs (n, c) float32 and ReLU embeddings (n, d) float32 from a 20-cluster mixture."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d)).astype(np.float32) * 2
    w = (rng.standard_normal((d, c)) * (1.5 / np.sqrt(d))).astype(np.float32)
    probs = np.empty((n, c), np.float32)
    emb = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        h = centers[rng.integers(0, 20, m)] + rng.standard_normal((m, d), dtype=np.float32)
        np.maximum(h, 0, out=h)
        logits = h @ w
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        probs[s : s + m], emb[s : s + m] = p, h
    return probs, emb


def build_group(probs, emb, shards: int) -> LocalShardGroup:
    ids = np.arange(len(probs), dtype=np.int64)
    keys = id_keys(ids)
    states = []
    for part in np.array_split(np.arange(len(probs)), shards):
        b = BadgeBuilder(gradient_factors, capacity=len(part))
        for s in range(part[0], part[-1] + 1, 65536):
            sl = slice(s, min(s + 65536, part[-1] + 1))
            b.add(ids[sl], keys[sl], probs[sl], emb[sl], np.ones(sl.stop - sl.start, bool))
        states.append(b.finish())
    return LocalShardGroup(states)


def quality(args, names) -> dict:
    probs, emb = synthetic_pool(args.quality_rows, args.classes, args.dim)
    a, h = gradient_factors(probs, emb)
    group = build_group(probs, emb, args.shards)
    ref_costs, ref_times = [], []
    for seed in range(args.seeds):
        t = time.perf_counter()
        idx, _ = kmeanspp_factored(a, h, args.k, np.random.default_rng(seed), n_local_trials=1)
        ref_times.append(time.perf_counter() - t)
        ref_costs.append(kmeans_cost_factored(a, h, a[idx], h[idx]))
    ref = float(np.median(ref_costs))
    out = {"rows": args.quality_rows, "reference": {"cost_median": ref, "time_median_s": float(np.median(ref_times))}, "configs": {}}
    print(f"[quality] {args.quality_rows} rows, k={args.k}: exact k-means++ cost {ref:.4g}, {np.median(ref_times):.2f} s", flush=True)
    for name in names:
        costs, times = [], []
        for seed in range(args.seeds):
            t = time.perf_counter()
            sel = select_badge(group, args.k, seed, CONFIGS[name])
            times.append(time.perf_counter() - t)
            ids = sel.columns["id"]
            assert len(np.unique(ids)) == args.k
            costs.append(kmeans_cost_factored(a, h, a[ids], h[ids]))
        ratio = float(np.median(costs)) / ref
        out["configs"][name] = {"params": CONFIGS[name], "cost_ratio_median": ratio, "time_median_s": float(np.median(times)), "candidates": sel.info["candidates"]}
        print(f"[quality] {name:10s} cost ratio {ratio:.3f} (limit 1.10)  select {np.median(times):.2f} s  candidates {sel.info['candidates']}", flush=True)
    return out


def speed(args, names) -> dict:
    probs, emb = synthetic_pool(args.rows, args.classes, args.dim, seed=1)
    a, h = gradient_factors(probs, emb)
    timing = exact_kmeanspp_seconds(a, h, args.k, args.ref_k)
    per_center, ref_s = timing["seconds_per_center"], timing["seconds_for_k"]
    del a, h
    out = {"rows": args.rows, "reference_s_extrapolated": ref_s, "reference_ref_k": args.ref_k, "reference": timing, "configs": {}}
    print(f"[speed] {args.rows} rows: exact k-means++ {per_center * 1e3:.1f} ms/center + {timing['seconds_setup']:.1f} s set-up "
          f"-> {ref_s:.1f} s for k={args.k}", flush=True)
    for name in names:
        runs = []
        for _ in range(args.repeats):  # the best of a few: the first run pays for page faults
            t = time.perf_counter()
            group = build_group(probs, emb, args.shards)
            t_build = time.perf_counter() - t
            sel = select_badge(group, args.k, 0, CONFIGS[name])
            runs.append((time.perf_counter() - t, t_build))
            del group
        total, t_build = min(runs)
        out["configs"][name] = {"params": CONFIGS[name], "build_s": t_build, "total_s": total, "speedup": ref_s / total, "candidates": sel.info["candidates"]}
        print(f"[speed] {name:10s} build {t_build:.2f} s  total {total:.2f} s  speedup {ref_s / total:.1f}x (limit 20x)", flush=True)
    return out


def others(args) -> dict:
    """Core-set, QBC and Cluster-Margin (k=cm_k) against an entropy top-K of the same k."""
    from alscale.reduce.cluster_margin import make_cluster_margin_builder, select_cluster_margin
    from alscale.reduce.kcenter import make_coreset_builder, select_coreset
    from alscale.reduce.topk import TopK
    from alscale.strategies.committee import kl_to_consensus, vote_entropy
    from alscale.strategies.uncertainty import entropy

    probs, emb = synthetic_pool(args.rows, args.classes, args.dim, seed=2)
    ids = np.arange(len(probs), dtype=np.int64)
    keys = id_keys(ids)
    parts = np.array_split(np.arange(len(probs)), args.shards)
    out = {}

    t = time.perf_counter()
    acc = TopK(args.cm_k)
    for part in parts:
        for s in range(part[0], part[-1] + 1, 65536):
            sl = slice(s, min(s + 65536, part[-1] + 1))
            acc.add(entropy(probs[sl]), ids[sl])
    out["entropy_topk_s"] = time.perf_counter() - t

    def run(make, select, k, params):
        t = time.perf_counter()
        states = []
        for part in parts:
            b = make(params)
            for s in range(part[0], part[-1] + 1, 65536):
                sl = slice(s, min(s + 65536, part[-1] + 1))
                b.add(ids[sl], keys[sl], probs[sl], emb[sl], np.ones(sl.stop - sl.start, bool), np.zeros(sl.stop - sl.start, bool))
            states.append(b.finish())
        sel = select(LocalShardGroup(states), k, 0, params)
        return time.perf_counter() - t, sel

    cm_runs = [run(make_cluster_margin_builder, select_cluster_margin, args.cm_k, {}) for _ in range(args.repeats)]
    cm_s, sel = min(cm_runs, key=lambda r: r[0])
    out["cluster_margin_s"] = cm_s
    out["cluster_margin_info"] = sel.info
    out["cluster_margin_vs_entropy"] = cm_s / out["entropy_topk_s"]
    print(f"[others] {args.rows} rows k={args.cm_k}: entropy top-K {out['entropy_topk_s']:.2f} s, cluster-margin {cm_s:.2f} s "
          f"({out['cluster_margin_vs_entropy']:.1f}x; limit 3x, scoring excluded here)", flush=True)
    n_cs = min(args.rows, args.coreset_rows)
    sub = slice(0, n_cs)
    t = time.perf_counter()
    b = make_coreset_builder({})
    b.add(ids[sub], keys[sub], probs[sub], emb[sub], np.ones(n_cs, bool), np.zeros(n_cs, bool))
    select_coreset(LocalShardGroup([b.finish()]), args.k, 0, {})
    out["coreset_s"] = time.perf_counter() - t
    out["coreset_rows"] = n_cs
    print(f"[others] core-set {n_cs} rows k={args.k}: {out['coreset_s']:.2f} s", flush=True)
    rng = np.random.default_rng(0)
    member = np.stack([probs, np.roll(probs, 1, axis=1), rng.dirichlet(np.ones(args.classes), len(probs)).astype(np.float32)])
    for name, fn in (("qbc_vote_s", vote_entropy), ("qbc_kl_s", kl_to_consensus)):
        t = time.perf_counter()
        for s in range(0, len(probs), 65536):
            fn(member[:, s : s + 65536])
        out[name] = time.perf_counter() - t
    print(f"[others] 3-member committee scores over {args.rows} rows: vote {out['qbc_vote_s']:.2f} s, kl {out['qbc_kl_s']:.2f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _check_sizes(args)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # for what starts later; the pools loaded already are limited below
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    if not names:
        print(f"bench_diversity.py: error: --configs names no configuration; expected names among {sorted(CONFIGS)}", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:  # before the reference is timed (minutes)
        print(f"bench_diversity.py: error: unknown --configs {unknown}; expected names among {sorted(CONFIGS)}", file=sys.stderr)
        return 2
    from threadpoolctl import threadpool_limits

    from alscale.bench import measure_in_scratch

    # --out is checked before anything is timed (minutes), and never replaces another file
    with threadpool_limits(limits=args.threads):  # numpy's BLAS was loaded with alscale, before --threads was read
        result = measure_in_scratch(lambda a, _work: _measure(a, names), args, args.out, prefix="alscale-div-")
    ok = True
    if "quality" in result and "speed" in result and "default" in names:  # the goals are the default configuration's
        d_q = result["quality"]["configs"]["default"]["cost_ratio_median"]
        d_s = result["speed"]["configs"]["default"]["speedup"]
        ok = d_q <= 1.10 and d_s >= 20
        print(f"default: cost ratio {d_q:.3f} (<= 1.10), speedup {d_s:.1f}x (>= 20x): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _measure(args, names) -> dict:
    from alscale.bench import machine_info

    result = {"machine": machine_info(), "k": args.k, "classes": args.classes, "dim": args.dim, "shards": args.shards,
              "threads": args.threads}
    if not args.skip_quality:
        result["quality"] = quality(args, names)
    if not args.skip_speed:
        result["speed"] = speed(args, names)
    if not args.skip_others:
        result["others"] = others(args)
    return result


if __name__ == "__main__":
    from alscale.bench import run_script

    sys.exit(run_script(main))

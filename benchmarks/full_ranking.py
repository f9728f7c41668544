#!/usr/bin/env python
"""Benchmark: three ways to get the exact whole-gallery ranking behind mAP, on the same features.

Why the evaluator's CMC/mAP ranking does not go through a faiss index: mAP needs every gallery item's rank, so
a faiss search would need ``k = gallery size``. This script times, on Market-sized features (``eval_bench``'s
generator; queries limited by ``--queries``), all in one process and one run:

  * ``faiss``: ``IndexFlatIP.search`` with k = gallery size (faiss's exact search, its result heaps sized k);
  * ``gemm+argsort``: the distance block by GEMM, then a full ``argsort`` per row (what fastreid does);
  * ``ours``: ``fastreid_gan.evaluation.evaluate_rank_features`` (chunked GEMM, match positions per row).

The three give the same ranking up to float32 rounding of near-ties (checked through the mAP each implies; exit
status 1 if they differ by more). Figures are printed as seconds and as ratios to ``ours``.

Usage:
    .venv/bin/python benchmarks/full_ranking.py               # 500 queries x 15,913 gallery, 2048-d
    .venv/bin/python benchmarks/full_ranking.py --queries 3368
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import List

import numpy as np


def _ap_from_order(order: np.ndarray, q_pids, g_pids, q_cams, g_cams) -> float:
    """Mean AP (Market protocol) from a full (q, g) ranking order, as a cross-check of the three methods."""
    aps = []
    for i in range(len(order)):
        o = order[i]
        keep = ~((g_pids[o] == q_pids[i]) & (g_cams[o] == q_cams[i]))
        match = (g_pids[o] == q_pids[i])[keep]
        if not match.any():
            continue
        hits = np.cumsum(match)
        aps.append(float((hits[match] / (np.flatnonzero(match) + 1)).mean()))
    return float(np.mean(aps))


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--gallery", type=int, default=15913)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3, help="timings are the fastest of this many runs")
    args = ap.parse_args(argv)

    import faiss
    import torch

    # the sibling benchmark's data generator, loaded by path (benchmarks/ is not a package)
    spec = importlib.util.spec_from_file_location("eval_bench", Path(__file__).resolve().parent / "eval_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    MARKET, iter_batches, make_labels = bench.MARKET, bench.iter_batches, bench.make_labels

    from fastreid_gan.evaluation import evaluate_rank_features
    from fastreid_gan.evaluation.distance import l2_normalize

    pids, cams = make_labels(args.queries, args.gallery, MARKET["num_ids"], MARKET["num_cams"], seed=0)
    feats = torch.cat([f for _, f in iter_batches(pids, cams, MARKET["num_ids"], MARKET["num_cams"], args.dim, 0)])
    feats = l2_normalize(feats.numpy().astype(np.float32))
    qf, gf = feats[:args.queries], feats[args.queries:]
    q_pids, g_pids, q_cams, g_cams = pids[:args.queries], pids[args.queries:], cams[:args.queries], cams[args.queries:]

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    def with_faiss():
        index = faiss.IndexFlatIP(args.dim)
        index.add(gf)
        return index.search(qf, len(gf))[1]

    def with_argsort():
        return np.argsort(1.0 - qf @ gf.T, axis=1)

    def with_ours():
        return evaluate_rank_features(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="cosine")

    t_faiss, order_faiss = best(with_faiss)
    t_sort, order_sort = best(with_argsort)
    t_ours, ours = best(with_ours)
    maps = {"faiss": _ap_from_order(order_faiss, q_pids, g_pids, q_cams, g_cams),
            "gemm+argsort": _ap_from_order(order_sort, q_pids, g_pids, q_cams, g_cams),
            "ours": float(ours.all_AP.mean())}
    print(f"{args.queries} queries x {args.gallery} gallery, {args.dim}-d, cosine, faiss threads "
          f"{faiss.omp_get_max_threads()}, fastest of {args.repeat}")
    print(f"{'method':<14} {'seconds':>8} {'x ours':>7} {'mAP':>9}")
    for name, t in (("faiss", t_faiss), ("gemm+argsort", t_sort), ("ours", t_ours)):
        print(f"{name:<14} {t:8.3f} {t / t_ours:7.2f} {100 * maps[name]:9.4f}")
    # float32 distances from different kernels round differently; near-ties may swap, nothing more
    spread = max(maps.values()) - min(maps.values())
    print(f"largest mAP difference between methods: {100 * spread:.1e} percentage points")
    return 0 if spread < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark: exact whole-gallery ranking against a faiss index's top-k, at 100K and 1M gallery images.

3,368 queries (Market-1501's) against synthetic galleries of 100K and 1M features (512-d; 2048-d at 100K), with
fastreid's cosine distance. For each size two fresh child processes (so that each peak RSS is the measurement's
own):

  * ``exact``: :func:`fastreid_gan.evaluation.rank_chunked` over :class:`FeatureDistance` (chunked GEMM, exact CMC,
    mAP, mINP), then the exact top-k by the same distances (:func:`exact_topk`, for recall@k);
  * ``faiss``: :func:`build_search_index` (``--index``, default ``IVF1024,PQ64x4fs,RFlat``) over the gallery, the
    search of each query's top k and the truncated metrics (:func:`search_rank`): build time, search time,
    recall@k against the exact top-k, mAP@k against the exact mAP.

Peak memory: the child's peak RSS (the kernel's ``VmHWM``, reset through ``/proc/self/clear_refs`` once the features
are generated; ``ru_maxrss`` if the reset is not permitted) above the RSS holding the features, so it counts every
allocator (numpy, BLAS, faiss) and, for faiss, the index itself.

Data (deterministic, generated in the child block by block): Market-like labels, 750 identities with the 15,913
labelled gallery images and the queries (6 cameras, so same-camera images of a query's identity exist and are
removed by the protocol), the rest of the gallery distractors (pid 0, as Market-1501's 500K distractor set) in
groups of 10 images per distractor identity. An identity is a point of a 12-d latent space mapped linearly to the
feature space; an image adds a camera offset and latent noise, plus a little noise in every feature dimension: a
low intrinsic dimension, as trained re-id features have (on isotropic random vectors no index reaches a useful
recall).

Usage:
    .venv/bin/python benchmarks/search_scale.py                       # 100K x 512, 100K x 2048, 1M x 512
    .venv/bin/python benchmarks/search_scale.py --sizes 20000:128 --queries 500      # quick check
    .venv/bin/python benchmarks/search_scale.py --device cuda --index IVF4096,Flat   # GPU (exact on CUDA too)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from process_memory import peak_mb, reset_peak, status_mb  # benchmarks/process_memory.py

NUM_QUERY = 3368
NUM_IDS, NUM_CAMS, LABELLED_GALLERY = 750, 6, 15913
DISTRACTOR_GROUP = 10    # images per distractor identity
LATENT_DIM = 12
CAM_SHIFT = 0.35         # camera offset std in the latent space (relative to unit-variance identities)
LATENT_NOISE = 0.45      # per-image latent noise std
AMBIENT_NOISE = 0.3      # per-image noise std in every feature dimension (identity centres: about 1 a dimension)
BLOCK = 65536            # rows per generated block (the features are stored as blocks: no full-size copy)
DEFAULT_SIZES = "100000:512,100000:2048,1000000:512"


# ----------------------------------------------------------------------------------------------------------- data
def make_labels(num_query: int, num_gallery: int, seed: int):
    """(q_pids, q_cams, g_pids, g_cams): labelled ids 1..750 then pid-0 distractors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_lab = min(LABELLED_GALLERY, num_gallery // 2)
    ids = min(NUM_IDS, max(2, n_lab // 8))
    q_pids = rng.integers(1, ids + 1, num_query)
    q_cams = rng.integers(0, NUM_CAMS, num_query)
    g_pids = np.concatenate([rng.integers(1, ids + 1, n_lab), np.zeros(num_gallery - n_lab, np.int64)])
    g_cams = rng.integers(0, NUM_CAMS, num_gallery)
    return q_pids, q_cams, g_pids, g_cams, ids


def make_features(pids, cams, ids: int, dim: int, seed: int, row_seed: int = 0):
    """Features of ``pids``/``cams`` as a list of float32 blocks (the same for the same arguments); the i-th
    distractor row (pid 0) belongs to distractor identity ``i // DISTRACTOR_GROUP``."""
    import numpy as np

    base = np.random.default_rng(seed)
    proj = (base.standard_normal((LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)).astype(np.float32)
    centres = base.standard_normal((ids + 1, LATENT_DIM)).astype(np.float32)
    cam_off = (CAM_SHIFT * base.standard_normal((NUM_CAMS, LATENT_DIM))).astype(np.float32)
    is_distr = pids == 0
    group = np.where(is_distr, np.cumsum(is_distr) - 1, 0) // DISTRACTOR_GROUP
    n_groups = int(group.max()) + 1 if is_distr.any() else 0
    distractor_centres = np.random.default_rng([seed, 7]).standard_normal((n_groups, LATENT_DIM)).astype(np.float32)
    blocks = []
    for b, s in enumerate(range(0, len(pids), BLOCK)):
        e = min(len(pids), s + BLOCK)
        rng = np.random.default_rng([seed, row_seed, b])
        lat = centres[pids[s:e]]
        d = is_distr[s:e]
        if d.any():
            lat[d] = distractor_centres[group[s:e][d]]
        lat = lat + cam_off[cams[s:e]] + LATENT_NOISE * rng.standard_normal((e - s, LATENT_DIM), np.float32)
        x = lat @ proj
        x += AMBIENT_NOISE * rng.standard_normal((e - s, dim), np.float32)
        blocks.append(np.ascontiguousarray(x, np.float32))
    return blocks


# ----------------------------------------------------------------------------------------------------- child run
def child(conf: Dict[str, Any]) -> Dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    import fastreid_gan  # noqa: F401  (fastreid compat fixes first)
    from fastreid_gan.evaluation import (FeatureBlocks, FeatureDistance, SearchSettings, TorchFeatureDistance,
                                         build_search_index, exact_topk, rank_chunked, recall_at_k, search_rank)

    torch.set_grad_enabled(False)
    nq, ng, dim, seed = conf["num_query"], conf["num_gallery"], conf["dim"], conf["seed"]
    cuda = conf["device"] == "cuda"
    q_pids, q_cams, g_pids, g_cams, ids = make_labels(nq, ng, seed)
    a = np.ones((512, 512), np.float32)
    (a @ a).sum()  # BLAS thread buffers: allocated once, not part of a measurement
    del a
    rss0 = status_mb("VmRSS")
    query = FeatureBlocks(make_features(q_pids, q_cams, ids, dim, seed, row_seed=1))
    gallery = FeatureBlocks(make_features(g_pids, g_cams, ids, dim, seed, row_seed=2))
    rss1 = status_mb("VmRSS")
    out: Dict[str, Any] = {"features_mb": rss1 - rss0}
    k = conf["topk"]
    if conf["what"] == "exact":
        resettable = reset_peak()
        t = time.perf_counter()
        provider = (TorchFeatureDistance(query, gallery, "cosine", "cuda") if cuda
                    else FeatureDistance(query, gallery, "cosine"))
        res = rank_chunked(provider, q_pids, g_pids, q_cams, g_cams, 50, conf["budget_mb"])
        if cuda:
            torch.cuda.synchronize()
        out.update(rank_s=time.perf_counter() - t, gemm_s=res.extra["gemm_s"], mAP=res.mAP * 100,
                   rank1=float(res.cmc[0]) * 100, mINP=res.mINP * 100, peak_mb=peak_mb(resettable) - rss1,
                   peak_reset=resettable)
        t = time.perf_counter()
        top = exact_topk(provider, k, conf["budget_mb"])
        out["topk_s"] = time.perf_counter() - t
        np.save(conf["topk_path"], top)
        if cuda:
            out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        resettable = reset_peak()
        settings = SearchSettings(mode="faiss", topk=k, index=conf["index"], nprobe=conf["nprobe"],
                                  ef_search=conf["ef_search"], refine=conf["refine"])
        index = build_search_index(gallery, "cosine", settings.index, settings.nprobe, settings.ef_search,
                                   settings.refine, use_gpu=cuda)
        out["build_peak_mb"] = peak_mb(resettable) - rss1
        res = search_rank(query, gallery, q_pids, g_pids, q_cams, g_cams, "cosine", settings, index=index)
        out.update(build_s=res.extra["build_s"], search_s=res.extra["search_s"], searched_k=res.extra["searched_k"],
                   on_gpu=res.extra["on_gpu"], mAP_at_k=res.mAP * 100, rank1=float(res.cmc[0]) * 100,
                   peak_mb=peak_mb(resettable) - rss1, peak_reset=resettable, index=conf["index"])
        # the index's raw top-k (before the same-camera items are removed) against the exact one
        out["recall"] = recall_at_k(res.ranked_idx[:, :k], np.load(conf["topk_path"]))
    return out


# ----------------------------------------------------------------------------------------------------- parent run
def run_child(conf: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(conf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"child {conf['what']} {conf['num_gallery']} x {conf['dim']} failed "
                           f"(exit status {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            g, d = item.split(":")
            sizes.append((int(g), int(d)))
        except ValueError:
            raise SystemExit(f"--sizes takes GALLERY:DIM pairs separated by commas (e.g. {DEFAULT_SIZES}), "
                             f"got {item!r}") from None
    return sizes


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="GALLERY:DIM pairs (default %(default)s)")
    ap.add_argument("--queries", type=int, default=NUM_QUERY)
    ap.add_argument("--topk", type=int, default=100)
    ap.add_argument("--index", default="IVF1024,PQ64x4fs,RFlat",
                    help="faiss index_factory string (default %(default)s: 1024 IVF lists of 4-bit fast-scan PQ codes, "
                         "the candidates re-scored with the exact distances)")
    ap.add_argument("--nprobe", type=int, default=64, help="IVF lists searched per query")
    ap.add_argument("--ef-search", type=int, default=128, help="HNSW efSearch")
    ap.add_argument("--refine", type=int, default=8, help="a refining index re-scores refine x k candidates")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: exact ranking with torch on the GPU and the faiss index on the GPU (when faiss has "
                         "a GPU version of it)")
    ap.add_argument("--budget-mb", type=float, default=256.0, help="the exact path's memory budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per child process, seconds")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="search_scale_") as tmp:
        for ng, dim in parse_sizes(args.sizes):
            conf = dict(num_query=args.queries, num_gallery=ng, dim=dim, seed=args.seed, topk=args.topk,
                        index=args.index, nprobe=args.nprobe, ef_search=args.ef_search, refine=args.refine,
                        device=args.device,
                        budget_mb=args.budget_mb, topk_path=str(Path(tmp) / f"exact_top{args.topk}_{ng}_{dim}.npy"))
            exact = run_child(dict(conf, what="exact"), args.timeout)
            print(f"[{ng:>9,} x {dim:>4}] exact: rank {exact['rank_s']:.2f} s (GEMM {exact['gemm_s']:.2f} s), "
                  f"peak +{exact['peak_mb']:.0f} MB over the features ({exact['features_mb']:.0f} MB); mAP "
                  f"{exact['mAP']:.2f} R1 {exact['rank1']:.2f}; exact top-{args.topk} {exact['topk_s']:.2f} s",
                  flush=True)
            approx = run_child(dict(conf, what="faiss"), args.timeout)
            print(f"[{ng:>9,} x {dim:>4}] faiss {args.index} ({'GPU' if approx['on_gpu'] else 'CPU'}): build "
                  f"{approx['build_s']:.2f} s, search {approx['search_s']:.2f} s (k={approx['searched_k']}), peak "
                  f"+{approx['peak_mb']:.0f} MB over the features; recall@{args.topk} {approx['recall']:.4f}, "
                  f"mAP@{args.topk} {approx['mAP_at_k']:.2f} R1 {approx['rank1']:.2f}", flush=True)
            rows.append(dict(num_gallery=ng, dim=dim, exact=exact, faiss=approx,
                             search_speedup=exact["rank_s"] / approx["search_s"],
                             total_speedup=exact["rank_s"] / (approx["build_s"] + approx["search_s"]),
                             map_ratio=approx["mAP_at_k"] / exact["mAP"],
                             memory_ratio=approx["peak_mb"] / max(exact["peak_mb"], 1e-9)))

    k = args.topk
    print(f"\n{args.queries} queries, cosine, top {k}, faiss {args.index} (nprobe {args.nprobe}, efSearch "
          f"{args.ef_search}, refine {args.refine}), device {args.device}; ratios = exact / faiss")
    print(f"| gallery | dim | exact rank s | faiss build s | faiss search s | x search | x build+search | "
          f"recall@{k} | exact mAP | mAP@{k} | mAP@{k}/mAP | peak MB exact | peak MB faiss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, f = r["exact"], r["faiss"]
        print(f"| {r['num_gallery']:,} | {r['dim']} | {e['rank_s']:.2f} | {f['build_s']:.2f} | {f['search_s']:.2f} | "
              f"{r['search_speedup']:.1f} | {r['total_speedup']:.2f} | {f['recall']:.4f} | {e['mAP']:.2f} | "
              f"{f['mAP_at_k']:.2f} | {r['map_ratio']:.3f} | {e['peak_mb']:.0f} | {f['peak_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark: fastreid_gan's FaissReidEvaluator vs fastreid's ReidEvaluator (Cython ranker compiled).

Market-1501-sized synthetic features (3,368 queries, 15,913 gallery, 2048-d; 750 test ids, 6 cameras,
~17.5% pid-0 distractors and ~3% pid -1 junk in the gallery, same-camera matches present) and a 10x gallery
(159,130). Features are clustered by identity (centroid + camera offset + noise) so the metrics are in a
realistic range, and are generated batch by batch from per-batch seeds, so both evaluators see identical
inputs and neither gets a pre-built matrix for free.

Each (evaluator, size) runs in a fresh child process. Reported per run:
  * ``eval_s``: wall time of ``evaluator.evaluate()``;
  * ``peak_eval_mb``: peak RSS increase during ``evaluate()`` over the RSS after all ``process()`` calls;
  * ``peak_total_mb``: peak RSS increase over the whole process()+evaluate() sequence (feature storage
    included) relative to the RSS before the first batch.
RSS peaks are the kernel's high-water mark of the child (``VmHWM``, the counter behind ``ru_maxrss``; it
includes every allocator: numpy, torch, BLAS), reset to the current RSS with ``/proc/self/clear_refs`` at the
start of each phase so that import-time peaks do not leak into it (``ru_maxrss`` is used if the reset is not
permitted); baselines from ``/proc/self/status`` VmRSS.

fastreid's Cython rankers are compiled with Cython + setuptools into ``<out-dir>/cython_cache`` (never into
site-packages) and patched into ``fastreid.evaluation.rank``.

Usage:
    .venv/bin/python benchmarks/eval_bench.py                # full Market size and 10x gallery
    .venv/bin/python benchmarks/eval_bench.py --scale 0.1 --skip-10x   # quick check
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from process_memory import peak_mb, reset_peak, status_mb  # benchmarks/process_memory.py

MARKET = dict(num_query=3368, num_gallery=15913, num_ids=750, num_cams=6)
DISTRACTOR_FRAC = 0.175   # pid 0 ("0000" distractor images in Market's gallery)
JUNK_FRAC = 0.03          # pid -1
NOISE = 3.5               # feature noise std relative to unit-variance identity centroids
CAM_SHIFT = 0.6           # camera offset std: makes same-camera images of an id closer (what the protocol removes)
BATCH = 64                # fastreid's default TEST.IMS_PER_BATCH


# ----------------------------------------------------------------------------------------------------------- data
def make_labels(num_query: int, num_gallery: int, num_ids: int, num_cams: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_query)
    q_cams = rng.integers(0, num_cams, num_query)
    n_distr = int(round(DISTRACTOR_FRAC * num_gallery))
    n_junk = int(round(JUNK_FRAC * num_gallery))
    n_id = num_gallery - n_distr - n_junk
    g_pids = np.concatenate([rng.integers(1, num_ids + 1, n_id), np.zeros(n_distr, np.int64),
                             -np.ones(n_junk, np.int64)])
    rng.shuffle(g_pids)
    g_cams = rng.integers(0, num_cams, num_gallery)
    return np.concatenate([q_pids, g_pids]), np.concatenate([q_cams, g_cams])


def iter_batches(pids, cams, num_ids: int, num_cams: int, dim: int, seed: int):
    """Yield (inputs, features) batches; features depend only on (seed, batch index)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    centroids = torch.randn(num_ids + 1, dim, generator=g)
    cam_off = torch.randn(num_cams, dim, generator=g) * CAM_SHIFT
    pids_t, cams_t = torch.from_numpy(pids), torch.from_numpy(cams)
    for b, s in enumerate(range(0, len(pids), BATCH)):
        gb = torch.Generator().manual_seed(seed * 1_000_003 + b)
        p, c = pids_t[s:s + BATCH], cams_t[s:s + BATCH]
        base = centroids[p.clamp(min=0)]
        other = p <= 0  # distractors/junk: each image its own random identity
        if other.any():
            base[other] = torch.randn(int(other.sum()), dim, generator=gb)
        feats = base + cam_off[c] + NOISE * torch.randn(len(p), dim, generator=gb)
        yield {"targets": p, "camids": c}, feats


# ------------------------------------------------------------------------------------------------------ child run
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_s() -> float:
    # CPU time (all threads) is less sensitive than wall time to other jobs on a shared machine.
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child(cfg_json: str) -> None:
    conf = json.loads(cfg_json)
    import warnings

    warnings.filterwarnings("ignore")
    import fastreid_gan  # noqa: F401  (fastreid compat fixes first)
    import numpy as np
    import torch
    from fastreid.config import get_cfg

    cfg = get_cfg()
    cfg.TEST.METRIC = conf["metric"]
    if conf["impl"] == "fastreid":
        from fastreid_gan.compat import build_cython_ranker

        if build_cython_ranker(Path(conf["cython_cache"])) is None:
            raise SystemExit("fastreid's Cython ranker did not compile: the comparison would be unfair")
        from fastreid.evaluation.reid_evaluation import ReidEvaluator

        evaluator = ReidEvaluator(cfg, conf["num_query"])
    else:
        from fastreid_gan.evaluation import FaissReidEvaluator

        evaluator = FaissReidEvaluator(cfg, conf["num_query"], memory_budget_mb=conf["budget_mb"])

    pids, cams = make_labels(conf["num_query"], conf["num_gallery"], conf["num_ids"], conf["num_cams"],
                             conf["seed"])
    torch.set_grad_enabled(False)
    # Warm up both BLAS libraries (their per-thread buffers are allocated on first use), so the RSS figures
    # are the evaluation's own and not a one-off library cost.
    a = np.ones((1024, 1024), np.float32)
    (a @ a).sum(), (torch.from_numpy(a) @ torch.from_numpy(a)).sum()
    del a
    rss0 = _rss_mb()
    resettable = reset_peak()
    t0 = time.perf_counter()
    evaluator.reset()
    for inputs, feats in iter_batches(pids, cams, conf["num_ids"], conf["num_cams"], conf["dim"], conf["seed"]):
        evaluator.process(inputs, feats)
        del inputs, feats
    t_process = time.perf_counter() - t0
    rss1 = _rss_mb()
    peak_process = peak_mb(resettable)
    resettable = resettable and reset_peak()
    t1, c1 = time.perf_counter(), _cpu_s()
    results = evaluator.evaluate()
    t_eval, c_eval = time.perf_counter() - t1, _cpu_s() - c1
    peak = peak_mb(resettable)
    out = {
        "impl": conf["impl"], "size": conf["size"], "eval_s": t_eval, "eval_cpu_s": c_eval, "process_s": t_process,
        "peak_eval_mb": peak - rss1, "peak_total_mb": max(peak, peak_process) - rss0, "features_mb": rss1 - rss0,
        "peak_reset": resettable,
        "results": {k: float(v) for k, v in results.items()},
        "gemm_s": getattr(evaluator, "timings", {}).get("gemm_s"),
    }
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------------------------- parent run
def run_child(conf: Dict, timeout: float) -> Dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(conf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"child {conf['impl']}/{conf['size']} failed (rc={proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the Market sizes (quick runs)")
    ap.add_argument("--skip-10x", action="store_true", help="only the Market-sized gallery")
    ap.add_argument("--skip-fastreid", action="store_true", help="only time this project's evaluator")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    ap.add_argument("--budget-mb", type=float, default=256.0, help="FaissReidEvaluator memory budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=os.path.join(tempfile.gettempdir(), "fastreid_gan_eval_bench"))
    ap.add_argument("--timeout", type=float, default=900.0, help="per child process, seconds")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per (evaluator, Market size), alternating; the summary takes the fastest time and "
                         "the largest peak (shared machines are noisy). The 10x size runs --repeat-10x times")
    ap.add_argument("--repeat-10x", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "cython_cache"
    impls = ["faiss"] if args.skip_fastreid else ["fastreid", "faiss"]
    if "fastreid" in impls:
        import fastreid_gan  # noqa: F401
        from fastreid_gan.compat import build_cython_ranker

        t = time.perf_counter()
        if build_cython_ranker(cache) is None:
            raise SystemExit("fastreid's Cython ranker did not compile: the comparison would be unfair")
        print(f"fastreid Cython ranker ready in {cache} ({time.perf_counter() - t:.1f} s)", flush=True)

    sizes = [("market", 1)] + ([] if args.skip_10x else [("10x", 10)])
    rows = []
    for size, factor in sizes:
        conf = dict(
            size=size, metric=args.metric, dim=args.dim, seed=args.seed, budget_mb=args.budget_mb,
            num_query=max(10, int(round(MARKET["num_query"] * args.scale))),
            num_gallery=max(50, int(round(MARKET["num_gallery"] * args.scale * factor))),
            num_ids=max(5, int(round(MARKET["num_ids"] * args.scale))),
            num_cams=MARKET["num_cams"], cython_cache=str(cache),
        )
        all_runs: Dict[str, List[Dict]] = {impl: [] for impl in impls}
        for _ in range(max(1, args.repeat if factor == 1 else args.repeat_10x)):
            for impl in impls:
                r = run_child(dict(conf, impl=impl), args.timeout)
                all_runs[impl].append(r)
                gemm = f" (GEMMs {r['gemm_s']:.2f} s)" if r.get("gemm_s") else ""
                print(f"[{size:6s}] {impl:8s} q={conf['num_query']} g={conf['num_gallery']}: evaluate "
                      f"{r['eval_s']:.2f} s{gemm} ({r['eval_cpu_s']:.2f} CPU-s), peak +{r['peak_eval_mb']:.0f} MB in evaluate, "
                      f"+{r['peak_total_mb']:.0f} MB with features (features {r['features_mb']:.0f} MB); "
                      f"mAP {r['results']['mAP']:.3f} R1 {r['results']['Rank-1']:.3f}", flush=True)
        runs = {}
        for impl, rs in all_runs.items():
            best = dict(min(rs, key=lambda r: r["eval_s"]))
            for k in ("peak_eval_mb", "peak_total_mb"):
                best[k] = max(r[k] for r in rs)
            best["eval_s_all"] = [r["eval_s"] for r in rs]
            best["eval_cpu_s"] = min(r["eval_cpu_s"] for r in rs)
            runs[impl] = best
        rows.append((size, conf, runs))

    print("\nsummary (ratios = fastreid / fastreid_gan):")
    summary = []
    for size, conf, runs in rows:
        ours = runs["faiss"]
        line = {"size": size, "num_query": conf["num_query"], "num_gallery": conf["num_gallery"],
                "dim": conf["dim"], "metric": conf["metric"], "faiss": ours}
        msg = f"  {size:6s} {conf['num_query']}x{conf['num_gallery']}: ours {ours['eval_s']:.2f} s, " \
              f"+{ours['peak_eval_mb']:.0f} MB (eval) / +{ours['peak_total_mb']:.0f} MB (total)"
        if "fastreid" in runs:
            fr = runs["fastreid"]
            diff = max(abs(fr["results"][k] - ours["results"][k]) for k in fr["results"])
            line.update(fastreid=fr, speedup=fr["eval_s"] / ours["eval_s"],
                        cpu_ratio=fr["eval_cpu_s"] / ours["eval_cpu_s"],
                        mem_ratio_eval=fr["peak_eval_mb"] / max(ours["peak_eval_mb"], 1e-9),
                        mem_ratio_total=fr["peak_total_mb"] / max(ours["peak_total_mb"], 1e-9),
                        max_metric_diff_pct=diff)
            msg += f" | fastreid {fr['eval_s']:.2f} s, +{fr['peak_eval_mb']:.0f} MB / +{fr['peak_total_mb']:.0f} MB" \
                   f" | speedup x{line['speedup']:.2f} (CPU time x{line['cpu_ratio']:.2f}), memory x{line['mem_ratio_eval']:.2f} (eval) " \
                   f"x{line['mem_ratio_total']:.2f} (total) | max |metric diff| {diff:.2e} (percent points)"
        print(msg)
        summary.append(line)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwritten {out_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

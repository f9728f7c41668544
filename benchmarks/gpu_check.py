#!/usr/bin/env python
"""The prepared GPU check (`make gpu-check`): the project's GPU paths in one call of at most about 8 minutes.

Eight parts, each run as subprocesses under its own time budget and one overall deadline; a part that fails or
runs out of time is recorded with its error and the check goes on:

  tests       the suite's CUDA-only tests (pytest -k over tests/ and projects/, see CUDA_TESTS_K);
  train_step  benchmarks/train_step.py: full-size DG-Net (market.yml) at batch 8 in fp32, bf16 and fp16, then the
              AMP runs without activation recomputation while time is left: time per iteration and peak GPU
              memory against the goal (<= 8 GB with AMP, <= 0.29 s per iteration: 100K iterations in 8 hours);
  evaluator   fastreid_gan.evaluation.ReidEvaluator ranking on CUDA against its CPU path on the same features
              (Market size, a 10x gallery, euclidean, ROC, re-ranking + AQE): timings, same metrics to 1e-6;
              faiss's GPU k-NN against its CPU search when faiss has GPU support;
  dgnet       a synthetic teacher, then DG-Net (projects/DGNet/configs/synthetic.yml) with bf16 AMP at 128x64,
              sized to the time left, then its swap grid and swap accuracy (tools/generate.py);
  fdgan_step  benchmarks/train_step.py --method fdgan: full-size FD-GAN (market.yml) stages III then II at 32 pairs
              with bf16 AMP, ours (the GANTrainer step) against the published loop (benchmarks/fdgan_published_loop.py):
              time per iteration, peak GPU memory (max allocated), FLOPs and the ratios; then ours alone with
              MODEL.FDGAN.CHECKPOINT on. Last, with the time the other parts left (``--parts fdgan_step`` gives it
              its whole cap of 150 s).
  spgan_step  benchmarks/train_step.py --method spgan: full-size SPGAN (market2duke.yml) at batch 8 with bf16 AMP,
              ours (the GANTrainer step) against the published train_spgan.py iteration
              (benchmarks/spgan_published_loop.py): time per G iteration and per other iteration, peak GPU memory,
              FLOPs and the ratios; then ours alone with MODEL.SPGAN.GENERATOR.CHECKPOINT on;
  espgan_step the same for eSPGAN (espgan_market2duke.yml, published espgan.py; ours is recorded as "not
              implemented" until ESPGAN trains). These two come after fdgan_step and get the time left: run them
              with ``--parts spgan_step,espgan_step`` for their whole caps.
  search_scale benchmarks/search_scale.py --device cuda: 3,368 queries against 1M x 512 and 100K x 2048
              synthetic gallery features, exact ranking (torch on CUDA) against a faiss GPU index (IVF4096,Flat,
              nprobe 32) when faiss has GPU support (else its CPU index): build and search time, recall@100,
              mAP@100 vs exact mAP. Last: run it with ``--parts search_scale`` for its whole cap.

Everything lands flat in --out (at most 8 files): gpu_check.json (figures per part, environment), the PNGs
dgnet_swap_grid.png, dgnet_interpolation.png and dgnet_train_grid.png, and subprocess_logs.txt (the tail of every
subprocess's output). The JSON is rewritten after each part, so a run cut short still leaves one.

Without CUDA every part prints one line "skipped: <part>: no CUDA device" and the script exits 0.
``--cpu-smoke`` instead runs every part at toy size on the CPU (CUDA hidden from the subprocesses), so that the
code paths are exercised on a machine without a GPU. The exit status is 1 when a part failed or timed out.

    python benchmarks/gpu_check.py --out DIR          # default: $OUT, else logs/gpu_check
    python benchmarks/gpu_check.py --cpu-smoke        # toy sizes on the CPU (4-6 minutes on 2 cores)
    python benchmarks/gpu_check.py --parts evaluator,dgnet --budget 300
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "train_step", "evaluator", "dgnet", "fdgan_step", "spgan_step", "espgan_step", "search_scale")

#: pytest -k expression for the CUDA-only tests. -k also matches marker names, so a test marked
#: ``@pytest.mark.cuda`` is picked up too, wherever it lives (tests/ or projects/*/tests/).
CUDA_TESTS_K = "cuda or gpu or test_amp or mixed_precision"

#: the goal for full-size DG-Net at batch 8 with AMP (the published code: about 15 GB fp32, 10 GB fp16)
GOAL_MEMORY_BYTES = 8e9
GOAL_SECONDS_PER_ITER = 0.29  # 100K iterations in under 8 hours
PUBLISHED_GB = {"fp32": 15, "fp16": 10}

#: name, --amp, --checkpoint (None: as market.yml, which recomputes E_a, E_s, G and D); run in this order
#: while the part's budget lasts (each takes ~20-40 s on an H200, mostly start-up)
TRAIN_STEP_VARIANTS: List[Tuple[str, str, Optional[str]]] = [
    ("fp32", "off", None), ("bf16", "bf16", None), ("fp16", "fp16", None),
    ("bf16_no_recompute", "bf16", "none"), ("fp16_no_recompute", "fp16", "none"), ("fp32_no_recompute", "off", "none"),
]

#: per-part caps in seconds (GPU run); the overall --budget clamps them, so the later parts get what is left
GPU_CAPS = {"tests": 70, "train_step": 150, "evaluator": 75, "dgnet": 210, "fdgan_step": 150, "spgan_step": 150,
            "espgan_step": 150, "search_scale": 150}
SMOKE_CAPS = {"tests": 120, "train_step": 150, "evaluator": 90, "dgnet": 240, "fdgan_step": 150, "spgan_step": 120,
              "espgan_step": 120, "search_scale": 120}

#: FD-GAN on the GPU: pairs per batch and AMP (the issue's GPU setting); name, stage, --checkpoint, --loop of the
#: benchmarks/train_step.py runs, in this order while the part's time lasts (the smoke run: the first only)
FDGAN_GPU_PAIRS, FDGAN_GPU_AMP = 32, "bf16"
FDGAN_VARIANTS: List[Tuple[str, int, str, str]] = [
    ("stage3", 3, "off", "ours,published"), ("stage2", 2, "off", "ours,published"),
    ("stage3_recompute", 3, "on", "ours"), ("stage2_recompute", 2, "on", "ours"),
]

#: SPGAN / eSPGAN on the GPU: images per domain and batch, and AMP (the issue's GPU setting); name, --checkpoint,
#: --loop of the benchmarks/train_step.py runs, in this order while the part's time lasts (the smoke run: the first
#: only, with toy networks)
SPGAN_GPU_BATCH, SPGAN_GPU_AMP = 8, "bf16"
SPGAN_VARIANTS: List[Tuple[str, str, str]] = [
    ("compare", "none", "ours,published"), ("recompute", "generator", "ours"),
]
ESPGAN_VARIANTS: List[Tuple[str, str, str]] = [
    ("compare", "none", "ours,published"), ("recompute", "generator,feature_learner", "ours"),
]

#: DG-Net synthetic on the GPU is bound by kernel launches (~6,000 aten ops an iteration at 128x64), not FLOPs:
#: a guess of the seconds per iteration, used to size the run to the time left (--dgnet-sec-per-iter)
DGNET_SEC_PER_ITER_GUESS = 0.1

SWAP_RE = re.compile(r"swap accuracy (?P<accuracy>[\d.]+) over (?P<pairs>\d+) pairs \(chance [\d.]+; real images "
                     r"(?P<real>[\d.naNinf]+); (?P<skipped>\d+) pairs skipped\); structure kept (?P<structure>[\d.naNinf]+)")
SPEED_RE = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")
ITER_TIME_RE = re.compile(r"epoch/iter: \d+/(\d+) .* time: ([\d.]+)")
MAX_MEM_RE = re.compile(r"max_mem: (\d+)M")


# ------------------------------------------------------------------------------------------------ subprocesses
_ACTIVE: List[subprocess.Popen] = []  # the subprocess running now, so a signal can stop its whole group


def _stop_active(signum: int, _frame: Any) -> None:
    for proc in _ACTIVE:
        _kill_group(proc)
    sys.exit(128 + signum)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: data-loader workers and pytest's children too
    except ProcessLookupError:
        pass


@dataclass
class Proc:
    """A finished (or killed) subprocess: exit status (None when it ran out of time), wall time, log file."""

    name: str
    cmd: List[str]
    rc: Optional[int]
    seconds: float
    log: Path

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def error(self) -> str:
        what = f"timed out after {self.seconds:.0f} s" if self.timed_out else f"exit status {self.rc}"
        return f"{self.name}: {what} (log: subprocess_logs.txt, section {self.name})"


@dataclass
class Context:
    """What every part needs: folders, mode, the overall deadline and the subprocess environment."""

    out: Path
    work: Path
    smoke: bool
    cuda: bool
    deadline: float  # time.monotonic()
    env: Dict[str, str]
    args: argparse.Namespace
    logs: List[Tuple[str, Path]] = field(default_factory=list)

    @property
    def device(self) -> str:
        return "cuda" if self.cuda and not self.smoke else "cpu"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, cmd: Sequence[str], timeout: float) -> Proc:
        """Run ``cmd`` from the repository root, output to ``<work>/logs/<name>.log``; kill it after ``timeout``."""
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(c) for c in cmd]
        timeout = max(1.0, min(timeout, self.left()))
        shown = shlex.join(cmd)  # in full in the log; the device returns only the end of the output
        print(f"  $ {shown if len(shown) < 240 else shown[:220] + ' ...'}  (timeout {timeout:.0f} s)", flush=True)
        start = time.monotonic()
        with open(log, "w") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)
            _ACTIVE.append(proc)
            try:
                rc: Optional[int] = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                rc = None
            finally:
                _ACTIVE.remove(proc)
        self.logs.append((name, log))
        result = Proc(name, cmd, rc, time.monotonic() - start, log)
        print(f"    -> {'ok' if result.ok else result.error()} in {result.seconds:.1f} s", flush=True)
        return result


@dataclass
class Clock:
    """A part's own deadline (its cap, clamped by the overall deadline)."""

    deadline: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


def failed(proc: Proc, **extra: Any) -> Dict[str, Any]:
    return dict(status="timeout" if proc.timed_out else "failed", error=proc.error(), log_tail=proc.tail(), **extra)


# ------------------------------------------------------------------------------------------------ environment
def environment() -> Dict[str, Any]:
    """Versions and devices: python, torch/CUDA/cuDNN, GPU, fastreid, faiss (and whether it has GPU support)."""
    from importlib import metadata

    env: Dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                           "platform": platform.platform(), "cpus": os.cpu_count(),
                           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    for dist in ("torch", "torchvision", "numpy", "fastreid", "faiss-cpu", "faiss-gpu-cu12", "fastreid-gan", "yacs"):
        try:
            env[f"{dist}_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[f"{dist}_version"] = None
    try:
        import torch

        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                   cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_capability=f"{props.major}.{props.minor}",
                       gpu_memory_bytes=props.total_memory, gpu_multiprocessors=props.multi_processor_count)
    except Exception as exc:  # a broken torch is itself the finding
        env["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import faiss

        env["faiss"] = getattr(faiss, "__version__", None)
        env["faiss_gpu_support"] = hasattr(faiss, "StandardGpuResources")
        env["faiss_num_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except Exception as exc:
        env["faiss_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import fastreid_gan

        env["fastreid_gan_path"] = str(Path(fastreid_gan.__file__).parent)
    except Exception as exc:
        env["fastreid_gan_error"] = f"{type(exc).__name__}: {exc}"
    if shutil.which("nvidia-smi"):
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["nvidia_smi"] = f"failed: {exc}"
    try:  # the device's copy of the tree may have no .git
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        env["git_commit"] = None
    return env


# ------------------------------------------------------------------------------------------------ (a) tests
def _junit_cases(path: Path) -> List[Dict[str, str]]:
    """Per test case: node id, outcome (passed / failed / error / skipped) and the skip or failure message."""
    if not path.is_file():
        return []
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "")[:300]
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "seconds": case.get("time", ""), "message": message})
    return cases


def part_tests(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(a) pytest on the CUDA-only tests, selected by name/marker (-k), not by file."""
    paths = [p for p in ("tests", "projects") if (REPO / p).is_dir()]
    junit = ctx.work / "junit.xml"
    # pytest-timeout stops a hung CUDA test; without the plugin the option would be an error
    timeout = ["--timeout", "300"] if importlib.util.find_spec("pytest_timeout") else []
    proc = ctx.run("tests", [sys.executable, "-m", "pytest", *paths, "-k", CUDA_TESTS_K, "-p", "no:cacheprovider",
                             "-q", "-rs", *timeout, f"--junitxml={junit}"], clock.left())
    cases = _junit_cases(junit)
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    result: Dict[str, Any] = {"k": CUDA_TESTS_K, "paths": paths, "counts": counts, "cases": cases}
    if proc.rc == 5:
        return dict(result, status="failed", error=f"no test matched -k {CUDA_TESTS_K!r}")
    if not proc.ok:
        return dict(failed(proc), **result)
    skipped = [c["test"] for c in cases if c["outcome"] == "skipped"]
    if ctx.device == "cuda" and skipped:
        # on a GPU a CUDA-only test that still skips did not test what it is for
        return dict(result, status="warning", error=f"skipped on a CUDA machine: {skipped}")
    return dict(result, status="ok")


# ------------------------------------------------------------------------------------------------ (b) train step
def part_train_step(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(b) full-size DG-Net iteration: fp32 / bf16 / fp16 (+ without recomputation), against the goal."""
    if ctx.smoke:
        variants, base = TRAIN_STEP_VARIANTS[:1], ["--batch", "1", "--warmup", "0", "--iters", "1", "--skip-flops"]
        per_run_cap, min_start = clock.left(), 0.0
    else:
        variants, base = TRAIN_STEP_VARIANTS, ["--batch", "8", "--warmup", "3", "--iters", "10"]
        per_run_cap, min_start = 90.0, 35.0  # don't start a variant that cannot finish
    runs: Dict[str, Any] = {}
    for name, amp, checkpoint in variants:
        if clock.left() < min_start:
            runs[name] = {"status": "skipped", "reason": f"out of time ({clock.left():.0f} s left in this part)"}
            print(f"  skipped: train_step {name}: out of time", flush=True)
            continue
        path = ctx.work / f"train_step_{name}.json"
        cmd = [sys.executable, "benchmarks/train_step.py", *base, "--amp", amp, "--device", ctx.device,
               "--json", path] + (["--checkpoint", checkpoint] if checkpoint else [])
        proc = ctx.run(f"train_step_{name}", cmd, min(per_run_cap, clock.left()))
        if not proc.ok or not path.is_file():
            runs[name] = failed(proc)
            continue
        fig = json.loads(path.read_text())
        peak = fig["peak_memory"]
        run = {"status": "ok", "amp": amp, "recomputed": fig["recomputed"], "seconds_per_iter": fig["seconds_per_iter"],
               "seconds_all": fig["seconds_all"], "flops_per_iter": fig["flops_per_iter"],
               "resnet50_seconds": fig["resnet50_seconds"], "ratio_to_resnet50": fig["ratio_to_resnet50"],
               "peak_memory": peak, "tf32": fig.get("tf32"), "wall_s": proc.seconds}
        if fig["flops_per_iter"]:
            run["achieved_tflops"] = fig["flops_per_iter"] / fig["seconds_per_iter"] / 1e12
        if peak["kind"] == "cuda":
            run["max_allocated_gb"] = peak["max_allocated_bytes"] / 1e9
            run["max_reserved_gb"] = peak["max_reserved_bytes"] / 1e9
            # the goal is read against reserved memory (what the process holds, >= allocated)
            run["memory_goal_met"] = peak["max_reserved_bytes"] <= GOAL_MEMORY_BYTES
            run["time_goal_met"] = fig["seconds_per_iter"] <= GOAL_SECONDS_PER_ITER
            run["goal_met"] = amp != "off" and run["memory_goal_met"] and run["time_goal_met"]
        runs[name] = run
    statuses = [r["status"] for r in runs.values()]
    result: Dict[str, Any] = {
        "goal": {"memory_bytes": GOAL_MEMORY_BYTES, "memory_measure": "torch.cuda.max_memory_reserved",
                 "seconds_per_iter": GOAL_SECONDS_PER_ITER, "applies_to": "AMP (bf16, fp16)",
                 "published_gb": PUBLISHED_GB},
        "batch": 1 if ctx.smoke else 8, "runs": runs,
        "goal_met_by": [n for n, r in runs.items() if r.get("goal_met")],
    }
    if "failed" in statuses or "timeout" in statuses:
        bad = [n for n, r in runs.items() if r["status"] in ("failed", "timeout")]
        return dict(result, status="failed", error=f"train_step failed for {bad}")
    return dict(result, status="ok")


# ------------------------------------------------------------------------------------------------ (c) evaluator
MARKET = {"num_query": 3368, "num_gallery": 15913, "num_ids": 750, "num_cams": 6}
#: tolerance on CMC / mAP / mINP as fractions (the evaluator reports percentages); TPR@FPR counts single pairs
#: near a threshold, so float rounding of a distance can move it by 1/#positives
TOL_RANK = 1e-6
TOL_TPR = 1e-3


def evaluator_cases(smoke: bool) -> List[Dict[str, Any]]:
    """The (size, metric, options) cases compared CUDA vs CPU; toy sizes with --cpu-smoke."""
    scale, dim = (0.03, 128) if smoke else (1.0, 2048)
    nq, ng, ids = (max(20, round(MARKET[k] * scale)) for k in ("num_query", "num_gallery", "num_ids"))
    base = {"num_query": nq, "num_gallery": ng, "num_ids": ids, "num_cams": MARKET["num_cams"], "dim": dim,
            "metric": "cosine", "roc": False, "rerank": False, "aqe": False}
    small_q, small_g = (60, 300) if smoke else (500, 3000)
    return [
        dict(base, name="market_cosine_roc", roc=True),
        dict(base, name="market_euclidean", metric="euclidean"),
        dict(base, name="gallery_10x_cosine", num_gallery=10 * ng),
        dict(base, name="small_rerank_aqe", num_query=small_q, num_gallery=small_g, dim=min(dim, 512),
             rerank=True, aqe=True),
    ]


def part_evaluator(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(c) the evaluator's CUDA ranking vs its CPU path (and faiss GPU vs CPU) in a child process."""
    conf = {"cases": evaluator_cases(ctx.smoke), "seed": 0, "smoke": ctx.smoke,
            "knn": {"num_query": 200 if ctx.smoke else MARKET["num_query"],
                    "num_gallery": 1000 if ctx.smoke else MARKET["num_gallery"],
                    "dim": 128 if ctx.smoke else 2048, "k": 20}}
    conf_path, out_path = ctx.work / "evaluator_conf.json", ctx.work / "evaluator_result.json"
    conf_path.write_text(json.dumps(conf))
    proc = ctx.run("evaluator", [sys.executable, "benchmarks/gpu_check.py", "--child-evaluator", conf_path,
                                 "--child-out", out_path], clock.left())
    partial = json.loads(out_path.read_text()) if out_path.is_file() else {}
    if not proc.ok:
        return dict(failed(proc), **partial)
    bad = [c["name"] for c in partial.get("cases", []) if not c.get("same_results")]
    if bad:
        return dict(partial, status="failed", error=f"CUDA and CPU results differ beyond tolerance: {bad}")
    return dict(partial, status="ok")


def _load_eval_bench():
    # benchmarks/ is not a package: load the sibling benchmark's feature generator by path (as full_ranking.py does)
    spec = importlib.util.spec_from_file_location("eval_bench", Path(__file__).resolve().parent / "eval_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(a: Dict[str, float], b: Dict[str, float]) -> Dict[str, Any]:
    """Largest differences between two evaluator results, as fractions (ranks/mAP/mINP are percentages)."""
    rank_keys = [k for k in a if not k.startswith("TPR") and k in b]
    tpr_keys = [k for k in a if k.startswith("TPR") and k in b]
    rank_diff = max((abs(a[k] - b[k]) / 100.0 for k in rank_keys), default=0.0)
    tpr_diff = max((abs(a[k] - b[k]) for k in tpr_keys), default=0.0)
    return {"max_abs_diff": rank_diff, "max_abs_diff_tpr": tpr_diff if tpr_keys else None,
            "identical": all(a[k] == b[k] for k in rank_keys + tpr_keys),
            "same_results": rank_diff <= TOL_RANK and tpr_diff <= TOL_TPR}


def evaluator_child(conf: Dict[str, Any], out_path: Path) -> Dict[str, Any]:
    """In a child process: every case through the CPU evaluator and the CUDA evaluator, then faiss k-NN.
    The results so far are written to ``out_path`` after each case (a crash or timeout keeps them)."""
    import gc
    import warnings

    import torch

    warnings.filterwarnings("ignore")  # fastreid's import-time notices would crowd the log
    import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
    from fastreid.config import get_cfg

    from fastreid_gan.evaluation import FaissReidEvaluator, TorchFeatureDistance, rank_chunked

    bench = _load_eval_bench()
    cuda = torch.cuda.is_available()
    out: Dict[str, Any] = {"accelerated": "cuda" if cuda else "torch ranking on the CPU (stand-in: no CUDA)",
                           "tolerance": {"rank_map_minp": TOL_RANK, "tpr": TOL_TPR},
                           # TF32 GEMMs would differ from the CPU's fp32 by far more than the tolerance
                           "float32_matmul_precision": torch.get_float32_matmul_precision(), "cases": []}

    def run_evaluator(cfg, nq: int, batches, device: str, repeats: int = 1) -> Dict[str, Any]:
        evaluator = FaissReidEvaluator(cfg, nq, device=device)
        t = time.perf_counter()
        for inputs, feats in batches:
            evaluator.process(inputs, feats)
        process_s = time.perf_counter() - t
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times, results = [], {}
        for _ in range(repeats):  # the first CUDA evaluate() pays for the copy to the GPU and cuBLAS set-up
            t = time.perf_counter()
            results = evaluator.evaluate()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        run = {"evaluate_s": min(times), "evaluate_s_all": times, "process_s": process_s,
               "gemm_s": evaluator.timings.get("gemm_s"), "results": dict(results)}
        if device == "cuda":
            run["gpu_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        return run

    def torch_ranking_on_cpu(case: Dict[str, Any], nq: int, batches) -> Dict[str, Any]:
        # without CUDA, the evaluator's torch ranking (the code that runs on CUDA) on the CPU instead
        inputs = [b for b, _ in batches]
        feats = torch.cat([f for _, f in batches])
        pids = torch.cat([b["targets"] for b in inputs]).numpy()
        cams = torch.cat([b["camids"] for b in inputs]).numpy()
        t = time.perf_counter()
        provider = TorchFeatureDistance(feats[:nq], feats[nq:], case["metric"], "cpu")
        res = rank_chunked(provider, pids[:nq], pids[nq:], cams[:nq], cams[nq:], 50)
        results = {f"Rank-{r}": float(res.cmc[r - 1] * 100) for r in (1, 5, 10)}
        results.update({"mAP": res.mAP * 100, "mINP": res.mINP * 100,
                        "metric": (res.mAP + float(res.cmc[0])) / 2 * 100})
        return {"evaluate_s": time.perf_counter() - t, "results": results}

    for case in conf["cases"]:
        nq, ng = case["num_query"], case["num_gallery"]
        pids, cams = bench.make_labels(nq, ng, case["num_ids"], case["num_cams"], conf["seed"])
        batches = list(bench.iter_batches(pids, cams, case["num_ids"], case["num_cams"], case["dim"], conf["seed"]))
        cfg = get_cfg()
        cfg.TEST.METRIC = case["metric"]
        cfg.TEST.ROC.ENABLED = case["roc"]
        cfg.TEST.RERANK.ENABLED = case["rerank"]
        cfg.TEST.AQE.ENABLED = case["aqe"]
        row: Dict[str, Any] = dict(case)
        row["cpu"] = run_evaluator(cfg, nq, batches, "cpu")
        if cuda:
            row["cuda"] = run_evaluator(cfg, nq, batches, "cuda", repeats=2)
            row["speedup"] = row["cpu"]["evaluate_s"] / row["cuda"]["evaluate_s"]
            accel = row["cuda"]
        elif case["roc"] or case["rerank"] or case["aqe"]:
            # the stand-in covers the plain ranking only; here the CPU path runs twice (code path check)
            row["note"] = "no CUDA: CPU evaluator against itself"
            accel = row["accelerated"] = run_evaluator(cfg, nq, batches, "cpu")
        else:
            accel = row["accelerated"] = torch_ranking_on_cpu(case, nq, batches)
        row.update(_compare(row["cpu"]["results"], accel["results"]))
        print(f"  {case['name']}: {nq} x {ng}, {case['dim']}-d {case['metric']}: CPU {row['cpu']['evaluate_s']:.2f} s, "
              f"{'CUDA' if cuda else 'stand-in'} {accel['evaluate_s']:.2f} s, max |diff| {row['max_abs_diff']:.1e}, "
              f"mAP {row['cpu']['results']['mAP']:.3f}", flush=True)
        out["cases"].append(row)
        out_path.write_text(json.dumps(out, indent=2))
        del batches
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    out["faiss"] = faiss_check(conf["knn"], bench, conf["seed"])
    out_path.write_text(json.dumps(out, indent=2))
    return out


def faiss_check(conf: Dict[str, Any], bench, seed: int) -> Dict[str, Any]:
    """faiss k-NN (re-ranking's and AQE's neighbour search): GPU index vs CPU index where faiss has GPU support."""
    import faiss
    import numpy as np
    import torch

    from fastreid_gan.evaluation import faiss_gpu_available, knn_search

    info: Dict[str, Any] = {"version": getattr(faiss, "__version__", None),
                            "gpu_support": hasattr(faiss, "StandardGpuResources"),
                            "num_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}
    nq, ng, k = conf["num_query"], conf["num_gallery"], conf["k"]
    pids, cams = bench.make_labels(nq, ng, MARKET["num_ids"], MARKET["num_cams"], seed)
    feats = torch.cat([f for _, f in bench.iter_batches(pids, cams, MARKET["num_ids"], MARKET["num_cams"],
                                                        conf["dim"], seed)]).numpy()
    xq, xb = feats[:nq], feats[nq:]
    t = time.perf_counter()
    d_cpu, i_cpu = knn_search(xq, xb, k, "euclidean", use_gpu=False)
    info.update(num_query=nq, num_gallery=ng, dim=conf["dim"], k=k, cpu_s=time.perf_counter() - t)
    if not faiss_gpu_available():
        info["gpu"] = None
        info["note"] = "faiss has no GPU support in this environment (faiss-cpu wheel): re-ranking and AQE search on the CPU"
        print(f"  faiss {info['version']}: {info['note']}", flush=True)
        return info
    knn_search(xq[:10], xb, k, "euclidean", use_gpu=True)  # warm-up: GPU resources and the first index
    t = time.perf_counter()
    d_gpu, i_gpu = knn_search(xq, xb, k, "euclidean", use_gpu=True)
    info["gpu_s"] = time.perf_counter() - t
    info["same_neighbours"] = float(np.mean(i_cpu == i_gpu))
    info["max_abs_distance_diff"] = float(np.max(np.abs(d_cpu - d_gpu)))
    print(f"  faiss GPU k-NN: {info['gpu_s']:.2f} s vs CPU {info['cpu_s']:.2f} s, "
          f"{info['same_neighbours']:.4f} of the neighbours identical", flush=True)
    return info


# ------------------------------------------------------------------------------------------------ (d) DG-Net
def _yaml_node(config: Path, *keys: str) -> Dict[str, Any]:
    """One node of a yacs config file, its _BASE_ chain merged in (PyYAML only, no project import)."""
    import yaml

    data = yaml.safe_load(config.read_text()) or {}
    node: Dict[str, Any] = {}
    if "_BASE_" in data:
        node = _yaml_node((config.parent / data["_BASE_"]).resolve(), *keys)
    for key in keys:
        data = (data or {}).get(key, {})
    node.update(data or {})
    return node


def dgnet_schedule(iters: int) -> List[str]:
    """Overrides that stretch synthetic.yml's schedule (600 iterations) to ``iters``: the loss-weight ramps,
    the learning-rate steps (60% and 90%), checkpoints, image grids and logs, so the run keeps its shape."""
    config = REPO / "projects/DGNet/configs/synthetic.yml"
    base_iters = int(_yaml_node(config, "SOLVER", "GAN").get("MAX_ITER", 600))
    factor = iters / base_iters
    # checkpoints every quarter, so that a run cut short by its timeout still has weights for the swap grid
    # (toy runs: only the final one); five image grids (toy runs: two)
    short = iters < 100
    opts = ["SOLVER.GAN.MAX_ITER", str(iters), "SOLVER.GAN.CHECKPOINT_PERIOD", str(iters if short else iters // 4),
            "SOLVER.GAN.VIS_PERIOD", str(max(1, iters // (2 if short else 5))),
            "SOLVER.GAN.LOG_PERIOD", str(max(1, min(20, iters // 4)))]
    steps = f"({max(1, round(0.6 * iters))}, {max(2, round(0.9 * iters))})"
    for opt in ("GEN", "DIS", "ID"):
        opts += [f"SOLVER.GAN.OPTIMIZERS.{opt}.STEPS", steps]
    for key, spec in _yaml_node(config, "MODEL", "DGNET", "LOSS_WEIGHTS").items():
        if isinstance(spec, list) and len(spec) == 4:  # [from, to, start iteration, ramp length]
            start, length = round(spec[2] * factor), max(1, round(spec[3] * factor))
            opts += [f"MODEL.DGNET.LOSS_WEIGHTS.{key}", f"[{spec[0]}, {spec[1]}, {start}, {length}]"]
    return opts


def _metrics(output_dir: Path) -> Optional[Dict[str, float]]:
    path = output_dir / "metrics.json"
    if not path.is_file():
        return None
    return next(iter(json.loads(path.read_text()).values()), None)


def _training_log_figures(log_text: str) -> Dict[str, Any]:
    figures: Dict[str, Any] = {}
    speed = SPEED_RE.findall(log_text)
    if speed:
        figures["sec_per_iter"] = float(speed[-1][1])
    times = ITER_TIME_RE.findall(log_text)
    if times:  # also there when the run was cut short
        figures["last_logged_iter"], figures["last_logged_sec_per_iter"] = int(times[-1][0]), float(times[-1][1])
    mem = MAX_MEM_RE.findall(log_text)
    if mem:
        figures["gpu_max_allocated_mb"] = int(mem[-1])
    return figures


def part_dgnet(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(d) synthetic teacher, DG-Net with AMP at 128x64 sized to the time left, swap grid and swap accuracy."""
    work = ctx.work / "dgnet"
    teacher_dir, dgnet_dir = work / "teacher", work / "dgnet"
    teacher_config = "configs/Synthetic/baseline_market.yml"
    dgnet_config = "projects/DGNet/configs/synthetic.yml"
    device = ["MODEL.DEVICE", "cuda"]  # in the smoke run CUDA is hidden: the tools fall back to CPU (one warning)
    if ctx.smoke:
        size, padding, workers = "[64, 32]", "3", "2"
        data = ["DATASETS.NAMES", "('SyntheticMarketTiny',)", "DATASETS.TESTS", "('SyntheticMarketTiny',)"]
        teacher_extra = ["SOLVER.MAX_EPOCH", "1", "SOLVER.IMS_PER_BATCH", "16"]  # tiny: >= 3 iterations an epoch
    else:
        size, padding, workers = "[128, 64]", "5", str(min(8, max(2, (os.cpu_count() or 4) // 2)))
        data, teacher_extra = [], []
    common = data + ["INPUT.SIZE_TRAIN", size, "INPUT.SIZE_TEST", size, "INPUT.PADDING.SIZE", padding,
                     "DATALOADER.NUM_WORKERS", workers]
    result: Dict[str, Any] = {"size": size, "amp": "bf16", "dataset": "SyntheticMarketTiny" if ctx.smoke else "SyntheticMarket"}

    proc = ctx.run("dgnet_teacher", [sys.executable, "tools/train_net.py", "--config-file", teacher_config,
                                     "OUTPUT_DIR", teacher_dir, *device, *common, *teacher_extra],
                   clock.left() - (30 if ctx.smoke else 90))
    result["teacher"] = {"wall_s": proc.seconds, "metrics": _metrics(teacher_dir)}
    teacher = teacher_dir / "model_final.pth"
    if not proc.ok or not teacher.is_file():
        return dict(failed(proc), **result)

    teacher_opts = ["MODEL.DGNET.TEACHER.CONFIG", teacher_config, "MODEL.DGNET.TEACHER.WEIGHTS", teacher,
                    "MODEL.BACKBONE.PRETRAIN_PATH", teacher]
    # time after training: DG-Net's start-up and final evaluation, two generate.py runs, a margin
    reserve = 25 if ctx.smoke else 60
    if ctx.args.dgnet_iters:
        iters = ctx.args.dgnet_iters
    elif ctx.smoke:
        iters = 6  # every loss is on from iteration 2 (the schedule is stretched to 6 iterations)
    else:
        fit = (clock.left() - reserve) / ctx.args.dgnet_sec_per_iter
        iters = int(min(3000, max(100, fit // 100 * 100)))
    result["iters"] = iters
    result["sec_per_iter_guess"] = None if ctx.smoke else ctx.args.dgnet_sec_per_iter
    amp = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", "bf16"]
    opts = [*device, *amp, *common, *teacher_opts, "OUTPUT_DIR", dgnet_dir]
    generate_reserve = 20 if ctx.smoke else 35
    proc = ctx.run("dgnet_train", [sys.executable, "tools/train_net.py", "--config-file", dgnet_config, *opts,
                                   *dgnet_schedule(iters)], clock.left() - generate_reserve)
    log_text = proc.text()
    result["train"] = dict(wall_s=proc.seconds, metrics=_metrics(dgnet_dir), **_training_log_figures(log_text))
    if result["teacher"]["metrics"] and result["train"]["metrics"]:
        result["mAP_minus_teacher"] = result["train"]["metrics"]["mAP"] - result["teacher"]["metrics"]["mAP"]
    grids = sorted((dgnet_dir / "images").glob("iter_*.png"))
    if grids:
        shutil.copyfile(grids[-1], ctx.out / "dgnet_train_grid.png")
        result["train_grid"] = {"file": "dgnet_train_grid.png", "from": grids[-1].name}
    weights = dgnet_dir / "model_final.pth"
    if not proc.ok:
        result.update(failed(proc))
        # a run cut short still gets its swap grid from its newest checkpoint, if there is time
        checkpoints = sorted(dgnet_dir.glob("model_*.pth"), key=lambda p: p.stat().st_mtime)
        if not checkpoints or clock.left() < 15:
            return result
        weights = checkpoints[-1]
    result["weights"] = weights.name

    generate = [sys.executable, "tools/generate.py", "--config-file", dgnet_config, "--weights", weights,
                "--output-dir", dgnet_dir]
    gen = ctx.run("dgnet_swap_grid", generate + opts, clock.left())
    for name in ("swap_grid", "interpolation"):
        if (dgnet_dir / f"{name}.png").is_file():
            shutil.copyfile(dgnet_dir / f"{name}.png", ctx.out / f"dgnet_{name}.png")
            result[name] = f"dgnet_{name}.png"
    pairs = ["--pairs", "20"] if ctx.smoke else []
    acc = ctx.run("dgnet_swap_accuracy", generate + ["--swap-accuracy", *pairs] + opts, clock.left())
    match = SWAP_RE.search(acc.text()) if acc.ok else None
    if match:
        result["swap"] = {k: int(v) if k in ("pairs", "skipped") else float(v) for k, v in match.groupdict().items()}
    for step in (gen, acc):
        if not step.ok and result.get("status") is None:
            result.update(failed(step))
    result.setdefault("status", "ok")
    return result


# ------------------------------------------------------------------------------------------------ (e) FD-GAN step
def part_fdgan_step(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(e) full-size FD-GAN stages III and II: ours against the published loop, 32 pairs with bf16 AMP; then
    ours alone with MODEL.FDGAN.CHECKPOINT on, while time is left."""
    if ctx.smoke:  # the code path only: stage III, 1 pair, fp32, one iteration, no FLOP count, one CPU thread
        variants, amp = FDGAN_VARIANTS[:1], "off"
        base = ["--pairs", "1", "--warmup", "0", "--iters", "1", "--skip-flops", "--threads", "1"]
        min_start = 0.0
    else:
        variants, amp = FDGAN_VARIANTS, FDGAN_GPU_AMP
        base = ["--pairs", str(FDGAN_GPU_PAIRS), "--warmup", "2", "--iters", "5"]
        min_start = 45.0  # fresh processes with their start-up and warm-up
    result: Dict[str, Any] = {"pairs": 1 if ctx.smoke else FDGAN_GPU_PAIRS, "amp": amp, "runs": {}}
    for name, stage, checkpoint, loops in variants:
        if clock.left() < min_start:
            reason = f"out of time ({clock.left():.0f} s left in this part)"
            result["runs"][name] = {"status": "skipped", "reason": reason}
            print(f"  skipped: fdgan_step {name}: out of time", flush=True)
            continue
        path = ctx.work / f"fdgan_step_{name}.json"
        cmd = [sys.executable, "benchmarks/train_step.py", "--method", "fdgan", "--stage", str(stage),
               "--loop", loops, "--checkpoint", checkpoint, *base, "--amp", amp, "--device", ctx.device,
               "--json", path]
        proc = ctx.run(f"fdgan_step_{name}", cmd, clock.left())
        if not proc.ok or not path.is_file():
            result["runs"][name] = failed(proc)
            continue
        figs = json.loads(path.read_text())["stages"][str(stage)]
        run: Dict[str, Any] = {"status": "ok", "stage": stage, "checkpoint": checkpoint == "on",
                               "wall_s": proc.seconds, "ratios": figs.get("ratios")}
        for loop in loops.split(","):
            fig = figs[loop]
            peak = fig["peak_memory"]
            run[loop] = {"seconds_per_iter": fig["seconds_per_iter"], "seconds_all": fig["seconds_all"],
                         "flops_per_iter": fig["flops_per_iter"], "peak_memory": peak}
            if peak["kind"] == "cuda":
                run[loop]["max_allocated_gb"] = peak["max_allocated_bytes"] / 1e9
                run[loop]["max_reserved_gb"] = peak["max_reserved_bytes"] / 1e9
            if fig["flops_per_iter"]:
                run[loop]["achieved_tflops"] = fig["flops_per_iter"] / fig["seconds_per_iter"] / 1e12
        result["runs"][name] = run
    bad = [n for n, r in result["runs"].items() if r["status"] in ("failed", "timeout")]
    if bad:
        return dict(result, status="failed", error=f"fdgan_step failed for {bad}")
    return dict(result, status="ok")


# ------------------------------------------------------------------------------------------------ (f, g) SPGAN, eSPGAN step
def _spgan_step(method: str, variants: List[Tuple[str, str, str]], ctx: Context, clock: Clock) -> Dict[str, Any]:
    """Full-size SPGAN (market2duke.yml) or eSPGAN (espgan_market2duke.yml): ours against the published loop
    (benchmarks/spgan_published_loop.py) at batch 8 with bf16 AMP, time per G iteration and per other iteration,
    peak GPU memory, FLOPs and the ratios; then ours alone with recomputation, while time is left."""
    if ctx.smoke:  # the code path only: toy networks, fp32, one G and one other iteration, one CPU thread
        variants, amp, batch = variants[:1], "off", 1
        base = ["--toy", "--warmup", "0", "--iters", "2", "--skip-flops", "--threads", "1"]
        min_start = 0.0
    else:
        amp, batch = SPGAN_GPU_AMP, SPGAN_GPU_BATCH
        base = []  # the default warm-up (one G cycle) and timed iterations (two cycles)
        min_start = 45.0
    result: Dict[str, Any] = {"batch": batch, "amp": amp, "toy": ctx.smoke, "runs": {}}
    for name, checkpoint, loops in variants:
        if clock.left() < min_start:
            result["runs"][name] = {"status": "skipped", "reason": f"out of time ({clock.left():.0f} s left in this part)"}
            print(f"  skipped: {method}_step {name}: out of time", flush=True)
            continue
        path = ctx.work / f"{method}_step_{name}.json"
        cmd = [sys.executable, "benchmarks/train_step.py", "--method", method, "--loop", loops,
               "--checkpoint", checkpoint, "--batch", str(batch), *base, "--amp", amp, "--device", ctx.device,
               "--json", path]
        proc = ctx.run(f"{method}_step_{name}", cmd, clock.left())
        if not proc.ok or not path.is_file():
            result["runs"][name] = failed(proc)
            continue
        figures = json.loads(path.read_text())
        run: Dict[str, Any] = {"status": "ok", "checkpoint": checkpoint, "wall_s": proc.seconds,
                               "ratios": figures.get("ratios")}
        for loop in loops.split(","):
            fig = figures["loops"][loop]
            if fig["status"] != "ok":  # eSPGAN's own training not there yet: recorded, not a failure
                run[loop] = {"status": fig["status"], "error": fig.get("error")}
                continue
            peak = fig["peak_memory"]
            run[loop] = {key: fig[key] for key in ("seconds_gen", "seconds_other", "seconds_per_iter", "flops_gen",
                                                   "flops_other", "seconds_gen_all", "seconds_other_all")}
            run[loop]["peak_memory"] = peak
            if peak["kind"] == "cuda":
                run[loop]["max_allocated_gb"] = peak["max_allocated_bytes"] / 1e9
                run[loop]["max_reserved_gb"] = peak["max_reserved_bytes"] / 1e9
        result["runs"][name] = run
    bad = [n for n, r in result["runs"].items() if r["status"] in ("failed", "timeout")]
    if bad:
        return dict(result, status="failed", error=f"{method}_step failed for {bad}")
    return dict(result, status="ok")


def part_spgan_step(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(f) full-size SPGAN, ours against the published train_spgan.py iteration (batch 8, bf16)."""
    return _spgan_step("spgan", SPGAN_VARIANTS, ctx, clock)


def part_espgan_step(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(g) full-size eSPGAN, ours (when ESPGAN trains) against the published espgan.py iteration (batch 8, bf16)."""
    return _spgan_step("espgan", ESPGAN_VARIANTS, ctx, clock)


# ------------------------------------------------------------------------------------------------ (h) search scale
#: GALLERY:DIM sizes, faiss index and queries of the search_scale part: on the GPU the benchmark's 1M and 2048-d
#: cases with an IVF index (faiss has no GPU HNSW); with --cpu-smoke a toy gallery, same code paths on the CPU
SEARCH_GPU = {"sizes": "1000000:512,100000:2048", "index": "IVF4096,Flat", "nprobe": 32, "queries": 3368, "topk": 100}
SEARCH_SMOKE = {"sizes": "4000:32", "index": "IVF16,Flat", "nprobe": 4, "queries": 100, "topk": 10}


def part_search_scale(ctx: Context, clock: Clock) -> Dict[str, Any]:
    """(h) benchmarks/search_scale.py: exact ranking against the faiss index (GPU index when faiss has one)."""
    conf = SEARCH_SMOKE if ctx.smoke else SEARCH_GPU
    path = ctx.work / "search_scale.json"
    cmd = [sys.executable, "benchmarks/search_scale.py", "--device", ctx.device, "--sizes", conf["sizes"],
           "--index", conf["index"], "--nprobe", conf["nprobe"], "--queries", conf["queries"], "--topk", conf["topk"],
           "--json", path]
    proc = ctx.run("search_scale", cmd, clock.left())
    if not proc.ok or not path.is_file():
        return failed(proc)
    rows = json.loads(path.read_text())["rows"]
    result: Dict[str, Any] = {"settings": conf, "rows": rows}
    off_gpu = [r["num_gallery"] for r in rows if not r["faiss"]["on_gpu"]]
    if ctx.device == "cuda" and off_gpu:
        return dict(result, status="warning", error=f"the faiss index ran on the CPU for galleries {off_gpu} "
                                                    f"(faiss without GPU support?)")
    return dict(result, status="ok")


# ------------------------------------------------------------------------------------------------ report
def bundle_logs(ctx: Context, limit: int = 200_000) -> None:
    """All subprocess logs in one file of --out (the device returns at most 8 files): the tail of each."""
    if not ctx.logs:
        return
    with open(ctx.out / "subprocess_logs.txt", "w") as f:
        for name, path in ctx.logs:
            text = path.read_text(errors="replace") if path.is_file() else "(no log)"
            cut = f"[... {len(text) - limit} characters cut ...]\n" if len(text) > limit else ""
            f.write(f"\n{'=' * 40} {name} ({path.name})\n{cut}{text[-limit:]}\n")


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """A short human table of the figures."""
    parts = report["parts"]
    lines = [f"{'part':<12} {'status':<9} {'seconds':>8}  figures", "-" * 100]
    for name in PARTS:
        part = parts.get(name)
        if part is None:
            continue
        figures = part.get("reason") or part.get("error") or ""
        if name == "tests" and "counts" in part:
            figures = ", ".join(f"{v} {k}" for k, v in part["counts"].items() if v) + (f"; {figures}" if figures else "")
        lines.append(f"{name:<12} {part['status']:<9} {_fmt(part.get('seconds'), '.1f'):>8}  {figures[:150]}")
        if part["status"] == "skipped":
            continue
        if name == "train_step":
            for variant, run in part.get("runs", {}).items():
                if run["status"] != "ok":
                    lines.append(f"    {variant:<18} {run['status']}: {run.get('reason') or run.get('error', '')}")
                    continue
                peak = run["peak_memory"]
                memory = (f"{run['max_allocated_gb']:.2f} GB allocated / {run['max_reserved_gb']:.2f} GB reserved"
                          if peak["kind"] == "cuda" else f"{peak['max_rss_bytes'] / 1e9:.2f} GB RSS (CPU)")
                goal = "" if "goal_met" not in run else (
                    f"  goal {'met' if run['goal_met'] else 'not met'} (memory {'ok' if run['memory_goal_met'] else 'over'},"
                    f" time {'ok' if run['time_goal_met'] else 'over'})")
                lines.append(f"    {variant:<18} {run['seconds_per_iter']:.3f} s/iter, {memory}{goal}")
        if name == "evaluator":
            for case in part.get("cases", []):
                accel = case.get("cuda") or case.get("accelerated") or {}
                lines.append(f"    {case['name']:<20} {case['num_query']} x {case['num_gallery']}: CPU "
                             f"{_fmt(case['cpu']['evaluate_s'], '.2f')} s, accel {_fmt(accel.get('evaluate_s'), '.2f')} s,"
                             f" max |diff| {case['max_abs_diff']:.1e} -> {'same' if case['same_results'] else 'DIFFERENT'}")
            faiss = part.get("faiss")
            if faiss:
                lines.append(f"    faiss {faiss.get('version')}: " + (faiss.get("note") or
                             f"GPU {faiss['gpu_s']:.2f} s vs CPU {faiss['cpu_s']:.2f} s, "
                             f"{faiss['same_neighbours']:.4f} same neighbours"))
        if name == "fdgan_step":
            for variant, run in part.get("runs", {}).items():
                if run["status"] != "ok":
                    lines.append(f"    {variant:<18} {run['status']}: {run.get('reason') or run.get('error', '')}")
                    continue
                figures = []
                for loop in ("ours", "published"):
                    if loop not in run:
                        continue
                    fig = run[loop]
                    memory = (f"{fig['max_allocated_gb']:.2f} GB" if "max_allocated_gb" in fig
                              else f"{fig['peak_memory'].get('max_rss_bytes', 0) / 1e9:.2f} GB RSS")
                    figures.append(f"{loop} {fig['seconds_per_iter']:.3f} s/iter, {memory}")
                ratios = run.get("ratios") or {}
                if ratios:
                    figures.append(f"published/ours time {_fmt(ratios.get('time'), '.2f')}x, "
                                   f"ours/published memory {_fmt(ratios.get('memory'), '.2f')}")
                lines.append(f"    {variant:<18} {'; '.join(figures)}")
        if name in ("spgan_step", "espgan_step"):
            for variant, run in part.get("runs", {}).items():
                if run["status"] != "ok":
                    lines.append(f"    {variant:<18} {run['status']}: {run.get('reason') or run.get('error', '')}")
                    continue
                figures = []
                for loop in ("ours", "published"):
                    fig = run.get(loop)
                    if fig is None:
                        continue
                    if "seconds_gen" not in fig:
                        figures.append(f"{loop} {fig.get('status')}")
                        continue
                    memory = (f"{fig['max_allocated_gb']:.2f} GB" if "max_allocated_gb" in fig
                              else f"{fig['peak_memory'].get('max_rss_bytes', 0) / 1e9:.2f} GB RSS")
                    figures.append(f"{loop} G {_fmt(fig['seconds_gen'])} s, other {_fmt(fig['seconds_other'])} s, "
                                   f"{memory}")
                ratios = run.get("ratios") or {}
                if ratios:
                    figures.append(f"published/ours time {_fmt(ratios.get('time_gen'), '.2f')}x (G), "
                                   f"{_fmt(ratios.get('time_other'), '.2f')}x (other), ours/published memory "
                                   f"{_fmt(ratios.get('memory'), '.2f')}")
                lines.append(f"    {variant:<18} {'; '.join(figures)}")
        if name == "search_scale":
            for row in part.get("rows", []):
                e, fa = row["exact"], row["faiss"]
                lines.append(f"    {row['num_gallery']:,} x {row['dim']}: exact {e['rank_s']:.2f} s, faiss "
                             f"{'GPU' if fa['on_gpu'] else 'CPU'} build {fa['build_s']:.2f} s + search "
                             f"{fa['search_s']:.3f} s (x{row['search_speedup']:.1f}), recall {fa['recall']:.4f}, "
                             f"mAP {e['mAP']:.2f} -> mAP@k {fa['mAP_at_k']:.2f}")
        if name == "dgnet":
            teacher, train = part.get("teacher") or {}, part.get("train") or {}
            tm, dm = teacher.get("metrics") or {}, train.get("metrics") or {}
            lines.append(f"    teacher R1/mAP {_fmt(tm.get('Rank-1'), '.1f')}/{_fmt(tm.get('mAP'), '.1f')};"
                         f" DG-Net {part.get('iters')} iterations"
                         f" {_fmt(train.get('sec_per_iter') or train.get('last_logged_sec_per_iter'))} s/iter:"
                         f" R1/mAP {_fmt(dm.get('Rank-1'), '.1f')}/{_fmt(dm.get('mAP'), '.1f')};"
                         f" swap accuracy {_fmt((part.get('swap') or {}).get('accuracy'))},"
                         f" structure kept {_fmt((part.get('swap') or {}).get('structure'))}")
    return lines


def write_report(ctx: Context, report: Dict[str, Any]) -> None:
    report["files"] = sorted(p.name for p in ctx.out.iterdir() if p.is_file() and p.name != "gpu_check.json") + [
        "gpu_check.json"]
    (ctx.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))


# ------------------------------------------------------------------------------------------------ main
PART_FUNCS: Dict[str, Callable[[Context, Clock], Dict[str, Any]]] = {
    "tests": part_tests, "train_step": part_train_step, "evaluator": part_evaluator, "dgnet": part_dgnet,
    "fdgan_step": part_fdgan_step, "spgan_step": part_spgan_step, "espgan_step": part_espgan_step,
    "search_scale": part_search_scale}


def run_part(ctx: Context, name: str, cap: float) -> Dict[str, Any]:
    """One part under its cap; a crash of the part's own code is recorded like a failed subprocess."""
    if not ctx.cuda and not ctx.smoke:
        print(f"skipped: {name}: no CUDA device", flush=True)
        return {"status": "skipped", "reason": "no CUDA device"}
    if ctx.left() < 10:
        print(f"skipped: {name}: out of time", flush=True)
        return {"status": "skipped", "reason": "out of time (overall budget spent)"}
    clock = Clock(min(ctx.deadline, time.monotonic() + cap))
    print(f"== {name} (up to {clock.left():.0f} s)", flush=True)
    start = time.monotonic()
    try:
        result = PART_FUNCS[name](ctx, clock)
    except Exception as exc:
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["seconds"] = time.monotonic() - start
    print(f"== {name}: {result['status']}" + (f": {result['error']}" if result.get("error") else ""), flush=True)
    return result


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "logs" / "gpu_check"),
                   help="where gpu_check.json and the PNGs go (default: $OUT, else logs/gpu_check)")
    p.add_argument("--work-dir", default="", help="scratch folder: datasets, training outputs, logs (default: a "
                                                   "temporary folder, removed at the end unless --keep-work)")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--cpu-smoke", action="store_true", help="every part at toy size on the CPU (no GPU needed)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--budget", type=float, default=None,
                   help="overall seconds for the parts (default 430 on a GPU, 420 with --cpu-smoke)")
    p.add_argument("--dgnet-iters", type=int, default=0, help="DG-Net iterations (default: sized to the time left)")
    p.add_argument("--dgnet-sec-per-iter", type=float, default=DGNET_SEC_PER_ITER_GUESS,
                   help="expected DG-Net seconds per iteration on the GPU, to size the run (the JSON records the "
                        "measured figure: dgnet.train.sec_per_iter)")
    p.add_argument("--child-evaluator", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.child_evaluator:
        evaluator_child(json.loads(Path(args.child_evaluator).read_text()), Path(args.child_out))
        return 0
    signal.signal(signal.SIGTERM, _stop_active)
    signal.signal(signal.SIGINT, _stop_active)
    started = time.monotonic()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("gpu_check.json", "subprocess_logs.txt", "dgnet_swap_grid.png", "dgnet_interpolation.png",
                  "dgnet_train_grid.png"):
        (out / stale).unlink(missing_ok=True)  # a rerun into the same folder must not report old images
    work = Path(args.work_dir).resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)

    env_info = environment()
    cuda = bool(env_info.get("cuda_available"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", FASTREID_DATASETS=str(work / "datasets"))
    if args.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke run tests the CPU code paths, also on a GPU machine
    # 430 s: with gpu_check.sh's installs (~15-30 s) the device call stays under 8 minutes
    budget = args.budget or (420.0 if args.cpu_smoke else 430.0)
    ctx = Context(out=out, work=work, smoke=args.cpu_smoke, cuda=cuda, deadline=started + budget, env=env, args=args)
    mode = "cpu-smoke" if args.cpu_smoke else ("gpu" if cuda else "no-cuda")
    print(f"gpu_check: mode {mode}, budget {budget:.0f} s, out {out}, work {work}", flush=True)
    print(f"  torch {env_info.get('torch')} (CUDA {env_info.get('torch_cuda')}), GPU {env_info.get('gpu', 'none')}, "
          f"fastreid {env_info.get('fastreid_version')}, faiss {env_info.get('faiss')} "
          f"(GPU support: {env_info.get('faiss_gpu_support')})", flush=True)

    report: Dict[str, Any] = {
        "mode": mode, "started": datetime.datetime.now().isoformat(timespec="seconds"), "budget_s": budget,
        "command": shlex.join([sys.executable, *sys.argv]), "environment": env_info, "parts": {}}
    caps = SMOKE_CAPS if args.cpu_smoke else GPU_CAPS
    for name in PARTS:
        if name in args.parts.split(","):
            report["parts"][name] = run_part(ctx, name, caps[name])
            report["seconds"] = time.monotonic() - started
            bundle_logs(ctx)
            write_report(ctx, report)
    report["seconds"] = time.monotonic() - started
    bundle_logs(ctx)
    write_report(ctx, report)
    if not args.work_dir and not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)

    print("\n" + "\n".join(summary_lines(report)))
    print(f"\n{mode}: {report['seconds']:.0f} s; written {out / 'gpu_check.json'} ({', '.join(report['files'])})")
    bad = [n for n, p in report["parts"].items() if p["status"] in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

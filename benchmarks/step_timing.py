"""Shared helpers of ``benchmarks/train_step.py``: device sync, peak memory, FLOP counting, timing loops, JSON, and
running one measurement in a fresh interpreter (peak RSS is a per-process high-water mark that never goes down,
so two loops measured in one process would contaminate each other)."""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

__all__ = ["sync", "peak_memory_stats", "peak_memory", "peak_bytes", "reset_peak_memory", "rss_now_bytes",
           "count_flops", "cpu_seconds", "load_average", "time_steps", "tf32_settings", "write_json", "run_child"]


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    """CUDA: restart the allocator's high-water marks (the CPU's peak RSS cannot be reset: measure in a fresh
    process, :func:`run_child`)."""
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_stats(device: str) -> Dict[str, Any]:
    """Peak memory so far: the CUDA caching allocator's high-water marks, or the process's peak RSS on CPU."""
    if str(device).startswith("cuda"):
        return {"kind": "cuda", "max_allocated_bytes": torch.cuda.max_memory_allocated(),
                "max_reserved_bytes": torch.cuda.max_memory_reserved()}
    return {"kind": "rss", "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def rss_now_bytes() -> Optional[int]:
    """The process's resident set now (Linux /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_memory(device: str, stats: Optional[Dict[str, Any]] = None) -> str:
    stats = stats or peak_memory_stats(device)
    if stats["kind"] == "cuda":
        return (f"{stats['max_allocated_bytes'] / 2**30:.2f} GiB GPU (max allocated; "
                f"{stats['max_reserved_bytes'] / 2**30:.2f} GiB reserved)")
    return f"{stats['max_rss_bytes'] / 2**30:.2f} GiB RSS (process high-water mark)"


def peak_bytes(stats: Dict[str, Any]) -> int:
    """The one figure compared: max allocated on CUDA, peak RSS on CPU."""
    return stats["max_allocated_bytes"] if stats["kind"] == "cuda" else stats["max_rss_bytes"]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> Optional[float]:
    """The 1-minute load average (Linux), or None: how busy the machine was."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def time_steps(step: Callable[[int], Any], device: str, warmup: int, iters: int,
               first: Optional[Callable[[Callable[[], Any]], Any]] = None) -> Dict[str, Any]:
    """Run ``step(i)`` ``warmup + iters`` times. ``first``: runs iteration 0 (``first(thunk)``, e.g. under a FLOP
    counter): a warm-up iteration, or with ``warmup=0`` the first timed one (a counter's overhead then adds to
    its time: a python call per operator, about 1 %). Returns the median seconds of the timed iterations
    (``seconds``), all of them (``seconds_all``), and for the timed part the CPU seconds per wall second
    (``cpu_per_wall``: near the thread count when the process had its cores, lower when other jobs took them;
    spinning OpenMP threads count as busy) and the 1-minute load average before and after."""
    times: List[float] = []
    load_before, cpu_start, wall = load_average(), 0.0, 0.0
    for i in range(warmup + iters):
        if i == warmup:
            cpu_start = cpu_seconds()
        sync(device)
        start = time.perf_counter()
        if i == 0 and first is not None:
            first(lambda: step(i))
        else:
            step(i)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            wall += times[-1]
    return {"seconds": statistics.median(times), "seconds_all": times,
            "cpu_per_wall": (cpu_seconds() - cpu_start) / wall if wall > 0 else None,
            "load_average": [load_before, load_average()]}


def count_flops(fn: Callable[[], Any]) -> Optional[int]:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
    backward; None when the counter fails on this version)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()
    except Exception as exc:  # the counter does not support every op on every version
        print(f"(FLOP count unavailable: {exc})")
        return None


def tf32_settings() -> Dict[str, Any]:
    """TF32 changes what "fp32" means on Ampere and later GPUs: record what was in force."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates the allow_tf32 flags in favour of fp32_precision
        return {"cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "float32_matmul_precision": torch.get_float32_matmul_precision()}


def write_json(path: str, figures: Dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(figures, f, indent=2)


def run_child(script: str, args: Sequence[str], timeout: Optional[float] = None) -> Dict[str, Any]:
    """Run ``python script *args --child-json <tmp>`` in a fresh interpreter and return the JSON it wrote; its
    output (the trainer's log) is shown only when it fails, which raises ``RuntimeError``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "child.json")
        proc = subprocess.run([sys.executable, script, *args, "--child-json", path], timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not os.path.isfile(path):
            print(proc.stdout[-6000:], file=sys.stderr)
            raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)}: exit status {proc.returncode}")
        with open(path) as f:
            return json.load(f)

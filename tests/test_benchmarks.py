"""The benchmark scripts run end to end at toy sizes (their figures are for humans; here only that they work and
that the implementations they compare agree)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_full_ranking_methods_agree():
    proc = _run("full_ranking.py", "--queries", "40", "--gallery", "600", "--dim", "64", "--repeat", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"faiss", "gemm+argsort", "ours"} <= rows, proc.stdout


def test_eval_bench_against_fastreid(tmp_path):
    proc = _run("eval_bench.py", "--scale", "0.02", "--skip-10x", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads((tmp_path / "results.json").read_text())
    assert result["max_metric_diff_pct"] < 1e-4, result  # fastreid's Cython ranker and ours give the same numbers
    assert result["faiss"]["results"]["mAP"] > 0 and "speedup" in result and "mem_ratio_total" in result


def test_train_step_runs_full_size_dgnet():
    proc = _run("train_step.py", "--batch", "1", "--warmup", "0", "--iters", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "time per iteration" in proc.stdout and "FLOPs per iteration" in proc.stdout, proc.stdout


def test_train_step_runs_full_size_fdgan(tmp_path):
    """Ours (the GANTrainer step) and the published loop, stage III at full size, 1 pair, one iteration each (one
    thread per process: on a shared 2-core machine two threads that wait for each other can take 4x as long)."""
    path = tmp_path / "fdgan.json"
    proc = _run("train_step.py", "--method", "fdgan", "--device", "cpu", "--stage", "3", "--pairs", "1",
                "--threads", "1", "--warmup", "0", "--iters", "1", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("time per iteration") == 2 and out.count("FLOPs per iteration") == 2, out
    assert "peak memory" in out and "published / ours" in out and "memory floor of both" in out, out
    stage = json.loads(path.read_text())["stages"]["3"]
    floor = stage["ours"]["floor_bytes"]  # parameters: E, V, G, D_id, D_pd at full size (about 106M floats)
    assert 0.38 * 2**30 < floor["parameters"] < 0.42 * 2**30 and floor["optimizer_state"] > floor["parameters"], floor
    ours, published = stage["ours"], stage["published"]
    assert ours["seconds_per_iter"] > 0 and ours["peak_memory"]["max_rss_bytes"] > 0, stage
    # D_id encodes the origins once per phase instead of three times a step: fewer FLOPs, whatever the timing
    assert 0 < ours["flops_per_iter"] < published["flops_per_iter"], stage


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine `make gpu-check` runs the parts themselves")
def test_gpu_check_skips_every_gpu_part_without_cuda(tmp_path):
    proc = _run("gpu_check.py", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["parts"] and all(part["status"] == "skipped" for part in report["parts"].values()), report
    assert proc.stdout.count("skipped: ") == len(report["parts"]), proc.stdout

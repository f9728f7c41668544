"""The benchmark scripts run end to end at toy sizes (their figures are for humans; here only that they work and
that the implementations they compare agree)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401  (compat fixes before fastreid's modules: the datasets_root fixture imports one)

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


# ------------------------------------------------------------------------------------------------ SPGAN / eSPGAN
def _import_benchmark(name: str):
    """A module of benchmarks/ (they import their siblings by name, as a script does)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_published_spgan_loop_computes_what_ours_computes(datasets_root, tmp_path):
    """The published train_spgan.py iteration (benchmarks/spgan_published_loop.py) and ours (the GANTrainer step
    on SPGAN) from the same weights on the same batches, toy networks, SiaNet's dropout off: the same losses and
    the same weights after a G iteration and after an other one; so the benchmark compares two ways of organising
    one computation."""
    import copy
    import itertools

    from fastreid.utils.events import EventStorage
    from fastreid_gan.engine import GANTrainer

    train_step = _import_benchmark("train_step")
    loops = _import_benchmark("spgan_published_loop")
    torch.manual_seed(0)
    cfg = train_step.spgan_cfg("spgan", 2, "cpu", "off", [], str(tmp_path), toy=True,
                               extra_opts=["MODEL.SPGAN.METRIC.DROPOUT", "0.0"])
    trainer = GANTrainer(cfg)
    published = loops.PublishedSPGANLoop(copy.deepcopy(trainer.model))
    batches = train_step._cached_batches(trainer.data_loader, 2)
    trainer._data_iter = itertools.cycle(batches)
    with EventStorage(0) as storage:
        trainer.storage = storage
        for i in range(2):
            trainer.iter = i
            trainer.run_step()
            theirs = published.step(batches[i], i)
            ours = {k: v[0] for k, v in storage.latest().items()}
            if i == 0:  # the G iteration: G's loss, LSGAN + 10 cycle + 5 identity + 2 contrastive
                assert ours["gen/total_loss"] == pytest.approx(theirs["g_loss"], rel=1e-5)
            else:
                assert "g_loss" not in theirs
            assert ours["sianet/loss_sianet"] == pytest.approx(theirs["m_loss_M"], rel=1e-5)
            assert ours["dis/loss_dis_s"] == pytest.approx(theirs["a_d_loss"], rel=1e-5)
            assert ours["dis/loss_dis_t"] == pytest.approx(theirs["b_d_loss"], rel=1e-5)
            storage.step()
    mine, other = trainer.model.state_dict(), published.model.state_dict()
    # Adam's first steps move every weight by about lr = 2e-4, whatever the size of its gradient; the residual
    # blocks' second conv bias feeds an instance norm that cancels it: its gradient is 0 up to rounding, and the
    # direction of its step is noise in both implementations
    cancelled = [k for k in mine if k.endswith("convs.1.conv.bias")]
    assert cancelled
    differ = [k for k, v in mine.items() if k not in cancelled
              and not torch.allclose(v.float(), other[k].float(), rtol=1e-3, atol=2e-6)]
    assert not differ, differ


def test_published_espgan_loop_computes_what_ours_computes(datasets_root, tmp_path):
    """The published espgan.py iteration and ours (the GANTrainer step on ESPGAN's joint stage) from the same
    weights on the same batches (toy networks, the feature learner's dropout off, its BatchNorm statistics set
    from the batches): the same losses over a G iteration and an other one."""
    import copy
    import itertools

    from fastreid.utils.events import EventStorage
    from fastreid_gan.engine import GANTrainer

    train_step = _import_benchmark("train_step")
    loops = _import_benchmark("spgan_published_loop")
    torch.manual_seed(0)
    cfg = train_step.spgan_cfg("espgan", 2, "cpu", "off", [], str(tmp_path), toy=True,
                               extra_opts=["MODEL.SPGAN.FEATURE_LEARNER.DROPOUT", "0.0"])
    trainer = GANTrainer(cfg)
    batches = train_step._cached_batches(trainer.data_loader, 2)
    train_step._calibrate_ide_batchnorm(trainer.model.ide, trainer.model.normalize, batches)
    trainer.model.train()
    published = loops.PublishedESPGANLoop(copy.deepcopy(trainer.model))
    trainer._data_iter = itertools.cycle(batches)
    with EventStorage(0) as storage:
        trainer.storage = storage
        for i in range(2):
            trainer.iter = i
            trainer.run_step()
            theirs = published.step(batches[i], i)
            ours = {k: v[0] for k, v in storage.latest().items()}
            if i == 0:  # G's loss: LSGAN + 10 cycle + 5 identity + 5 CE of C on [G(a), F(G(a))]
                assert ours["gen/total_loss"] == pytest.approx(theirs["g_loss"], rel=1e-5)
            assert ours["ide/loss_feature_learner"] == pytest.approx(theirs["ide_loss_cls"], rel=1e-5)
            assert ours["dis/loss_dis_s"] == pytest.approx(theirs["a_d_loss"], rel=1e-5)
            assert ours["dis/loss_dis_t"] == pytest.approx(theirs["b_d_loss"], rel=1e-5)
            storage.step()


def test_train_step_spgan_ours_against_published(tmp_path):
    """--method spgan end to end with toy networks: a G and an other iteration per loop, the two kinds apart,
    peak memory, FLOPs, the ratios and the floor; ours' other iteration makes its two translations without a graph
    where the published one makes four (the cycle's too) with theirs: fewer FLOPs, whatever the timing."""
    path = tmp_path / "spgan.json"
    proc = _run("train_step.py", "--method", "spgan", "--toy", "--threads", "1", "--warmup", "0", "--iters", "2",
                "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("time per G iteration") == 2 and out.count("FLOPs per iteration: G") == 2, out
    assert "published / ours" in out and "memory floor of both" in out, out
    figures = json.loads(path.read_text())
    ours, published = figures["loops"]["ours"], figures["loops"]["published"]
    assert ours["status"] == published["status"] == "ok", figures
    assert ours["runs"][0]["gen_iters"] == [0] and ours["seconds_gen"] > 0 and ours["seconds_other"] > 0
    assert 0 < ours["flops_other"] < 0.9 * published["flops_other"], figures
    # a G iteration: the same generator passes (cycle and identity batched); the published one adds D's and
    # SiaNet's weight gradients, ours SiaNet's and G's first-layer input gradients of the real images in a batch
    assert 0.95 < ours["flops_gen"] / published["flops_gen"] < 1.05, figures
    assert set(figures["ratios"]) >= {"time_gen", "time_other", "time", "memory", "memory_above_floor"}


def test_train_step_espgan_published_loop(tmp_path):
    """--method espgan with toy networks: the published espgan.py iteration (G step on iteration 0, the IDE's step
    on a fresh source batch every iteration); ours is measured as well once ESPGAN trains, else reported so."""
    path = tmp_path / "espgan.json"
    proc = _run("train_step.py", "--method", "espgan", "--toy", "--threads", "1", "--warmup", "0", "--iters", "2",
                "--skip-flops", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(path.read_text())
    published, ours = figures["loops"]["published"], figures["loops"]["ours"]
    assert published["status"] == "ok" and published["seconds_gen"] > 0 and published["seconds_other"] > 0, figures
    assert figures["gen_every"] == 3 and published["runs"][0]["gen_iters"] == [0], figures
    assert ours["status"] in ("ok", "not implemented"), ours
    if ours["status"] == "not implemented":
        assert "not implemented" in proc.stdout, proc.stdout

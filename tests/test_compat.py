"""Each fastreid 1.4.0 fix in fastreid_gan.compat, shown failing without the fix and working with it."""
import logging
import subprocess
from pathlib import Path
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fastreid_gan  # noqa: F401
from fastreid_gan import compat


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_fastreid_does_not_import_without_the_shims_and_does_with_them():
    bare = _run("import fastreid.engine")
    assert bare.returncode != 0
    assert "torch._six" in bare.stderr or "Mapping" in bare.stderr
    fixed = _run("import fastreid_gan, fastreid.engine, fastreid.evaluation.testing")
    assert fixed.returncode == 0, fixed.stderr


def _tiny_cfg():
    from fastreid.config import get_cfg

    cfg = get_cfg()
    cfg.SOLVER.OPT = "SGD"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MOMENTUM = 0.0
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    return cfg


def _train_steps(optimizer, model, steps=3):
    x = torch.randn(8, 4)
    losses = []
    for _ in range(steps):
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()  # torch 2 default: set_to_none=True, as fastreid's SimpleTrainer calls it
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_fastreids_contiguous_optimizer_silently_does_not_train_and_the_fix_does():
    import fastreid.solver.build as solver_build
    from fastreid.solver import build_optimizer

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = model.weight.detach().clone()
    broken, _ = solver_build.build_optimizer.__wrapped__(_tiny_cfg(), model, contiguous=True)
    _train_steps(broken, model)
    assert torch.equal(model.weight.detach(), before), "fastreid's contiguous params bug no longer reproduces"

    optimizer, _ = build_optimizer(_tiny_cfg(), model)
    losses = _train_steps(optimizer, model)
    assert not torch.equal(model.weight.detach(), before)
    assert losses[-1] < losses[0]


@pytest.mark.cuda  # a CUDA branch too: make gpu-check runs it on a GPU
def test_data_loader_x_works_without_cuda():
    from fastreid.data import build as data_build

    loader = data_build.DataLoaderX(0, dataset=torch.arange(10).float(), batch_size=4)
    assert [b.shape[0] for b in loader] == [4, 4, 2]
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            compat._ORIGINAL["DataLoaderX"](0, dataset=torch.arange(10).float(), batch_size=4)


def test_trainer_ddp_wrapper_accepts_cpu_models(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import fastreid.engine.defaults as defaults

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError):
            DistributedDataParallel(nn.Linear(2, 2), device_ids=[0])
        wrapped = defaults.DistributedDataParallel(nn.Linear(2, 2), device_ids=[0], broadcast_buffers=False)
        assert wrapped(torch.ones(1, 2)).shape == (1, 2)
    finally:
        dist.destroy_process_group()


def test_baseline_preprocess_leaves_the_callers_images_alone():
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    model = build_model(cfg).eval()
    images = torch.rand(2, 3, 64, 32) * 255
    original = images.clone()
    with torch.no_grad():
        first = model({"images": images})
        second = model({"images": images})
    assert torch.equal(images, original)
    assert torch.allclose(first, second)  # flip-test style double calls no longer double-normalise


@pytest.mark.cuda
def test_amp_trainer_uses_torch_amp_and_fails_clearly_on_cpu():
    import fastreid.engine.train_loop as train_loop

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # torch.cuda.amp.GradScaler() is deprecated
        warnings.filterwarnings("ignore", category=UserWarning)
        trainer = train_loop.AMPTrainer(model, [{"x": 1}], optimizer, None)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="SOLVER.AMP.ENABLED"):
            trainer.run_step()


def test_eval_period_zero_runs_the_final_evaluation_once():
    from fastreid.engine.hooks import EvalHook

    calls = []

    class _Trainer:
        epoch, max_epoch = 4, 5

    hook = EvalHook(0, lambda: calls.append(1))
    hook.trainer = _Trainer()
    hook.after_epoch()
    hook.after_train()
    assert calls == [1]


def test_cython_ranker_never_exits(monkeypatch, tmp_path, caplog):
    import fastreid.evaluation.rank as rank
    from fastreid.config import get_cfg
    from fastreid.evaluation import ReidEvaluator

    monkeypatch.setattr(rank, "IS_CYTHON_AVAI", False)
    monkeypatch.setattr(compat, "_cython_cache_dir", lambda: tmp_path / "cache")

    def failing_run(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "error: no compiler")

    monkeypatch.setattr(compat.subprocess, "run", failing_run)
    with caplog.at_level(logging.WARNING):
        ReidEvaluator(get_cfg(), num_query=1)  # fastreid would sys.exit(1) here
    assert "Could not compile" in caplog.text
    assert rank.IS_CYTHON_AVAI is False


def test_cython_ranker_never_shows_a_half_built_library(monkeypatch, tmp_path):
    """The compiler writes into a private folder: a compile that dies after writing part of the library leaves
    nothing in the cache that a process starting at the same time would load."""
    import fastreid.evaluation.rank as rank

    monkeypatch.setattr(rank, "IS_CYTHON_AVAI", False)
    cache = tmp_path / "cache"
    seen = []

    def dying_compiler(cmd, cwd, **kwargs):
        seen.append(Path(cwd))
        (Path(cwd) / "rank_cy.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF half")
        assert not list(cache.glob("rank_cy*.so"))  # the cache never holds it while it is being written
        return subprocess.CompletedProcess(cmd, -9, "", "killed")

    monkeypatch.setattr(compat.subprocess, "run", dying_compiler)
    assert compat.build_cython_ranker(cache_dir=cache) is None
    assert seen and seen[0] != cache and seen[0].parent == cache
    assert list(cache.iterdir()) == []  # no library, no build folder left behind


def test_cython_ranker_compiles_into_the_cache(monkeypatch):
    import fastreid.evaluation.rank as rank

    monkeypatch.setattr(rank, "IS_CYTHON_AVAI", False)
    module = compat.build_cython_ranker()
    assert module is not None and rank.IS_CYTHON_AVAI
    distmat = np.random.RandomState(0).rand(3, 5).astype(np.float32)
    pids = np.array([1, 2, 3])
    gpids = np.array([1, 2, 3, 1, 2])
    cy = rank.evaluate_rank(distmat, pids, gpids, np.zeros(3, int), np.ones(5, int), use_cython=True)
    py = rank.evaluate_rank(distmat, pids, gpids, np.zeros(3, int), np.ones(5, int), use_cython=False)
    np.testing.assert_allclose(cy[1], py[1], rtol=1e-6)


def test_checkpoints_with_numpy_scalars_load(tmp_path):
    from fastreid.utils.checkpoint import Checkpointer

    model = nn.Linear(2, 2)
    path = tmp_path / "model.pth"
    torch.save({"model": model.state_dict(), "metric": np.float64(0.5), "epoch": np.int64(3)}, path)
    with pytest.raises(Exception):
        torch.load(path)  # torch >= 2.6: weights_only=True refuses numpy scalars
    target = nn.Linear(2, 2)
    checkpoint = Checkpointer(target).load(str(path))
    assert torch.equal(target.weight, model.weight)
    assert float(checkpoint["metric"]) == 0.5


def test_unreadable_image_names_the_file(tmp_path):
    from fastreid.data.common import CommDataset

    bad = tmp_path / "0001_c1s1_000001_00.jpg"
    bad.write_bytes(b"not a jpeg")
    dataset = CommDataset([(str(bad), 1, 1)], transform=None, relabel=False)
    with pytest.raises(compat.UnreadableImageError, match=str(bad)):
        dataset[0]


def _original_to_tensor():
    """fastreid's own to_tensor, from a fresh copy of its module (the compat fix replaced the imported one)."""
    import importlib.util

    import fastreid.data.transforms.functional as functional

    spec = importlib.util.spec_from_file_location("_fastreid_functional_original", functional.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.to_tensor


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "F", "I"])
def test_to_tensor_without_deprecated_storage(mode):
    from PIL import Image

    from fastreid.data.transforms import ToTensor

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8))
    pic = rgb.convert(mode)
    if mode == "1":  # NumPy 2: np.array(..., copy=False) cannot convert a bit image without a copy
        with pytest.raises(ValueError, match="copy"):
            _original_to_tensor()(pic)
        expected = torch.from_numpy(np.asarray(pic, dtype=np.uint8) * np.uint8(255))[None].float()
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            expected = _original_to_tensor()(pic)
        if mode == "RGB":
            assert any("TypedStorage" in str(w.message) for w in caught)  # what the fix removes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation or non-writable-array warning left
        got = ToTensor()(pic)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    array = np.asarray(rgb)
    assert torch.equal(ToTensor()(array), _original_to_tensor()(array))


def test_metric_printer_writes_twice_on_one_iteration():
    """A run of 1-3 iterations: the writer runs after the epoch and after the last iteration, on the same
    iteration, before the iteration timer has any data (fastreid divides by zero there)."""
    from fastreid.utils.events import CommonMetricPrinter, EventStorage

    printer = CommonMetricPrinter(max_iter=3)
    with EventStorage(0) as storage:
        storage.epoch = 0  # fastreid's trainers set it
        storage.put_scalar("total_loss", 1.0)
        printer.write()
        printer.write()  # ZeroDivisionError without the fix
        storage.step()
        storage.put_scalar("total_loss", 0.5)
        printer.write()  # later writes still estimate the ETA
    assert printer._last_write is not None and printer._last_write[0] == 1
    unfixed = CommonMetricPrinter(max_iter=3)
    with EventStorage(0) as storage, pytest.raises(ZeroDivisionError):
        storage.epoch = 0
        storage.put_scalar("total_loss", 1.0)
        CommonMetricPrinter.write.__wrapped__(unfixed)
        CommonMetricPrinter.write.__wrapped__(unfixed)


def test_frozen_batchnorm_loads_a_batchnorm_checkpoint_as_it_is():
    """fastreid's FrozenBatchNorm took a BatchNorm2d's state (metadata version 2) for an old FrozenBN of its own and
    subtracted eps from running_var; a variance under eps became negative (NaN features)."""
    from fastreid.layers.batch_norm import FrozenBatchNorm

    bn = torch.nn.BatchNorm2d(3)
    bn.running_var.copy_(torch.tensor([2.0, 1e-6, 0.5]))
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    frozen = torch.nn.Sequential(FrozenBatchNorm(3))
    frozen.load_state_dict(torch.nn.Sequential(bn).state_dict())
    assert torch.equal(frozen[0].running_var, bn.running_var)
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(frozen(x), bn.eval()(x), atol=1e-6) and torch.isfinite(frozen(x)).all()
    # an old FrozenBN state of fastreid's own (version 2, no num_batches_tracked) still gets fastreid's upgrade
    state = FrozenBatchNorm(3).state_dict()
    state._metadata = {"": {"version": 2}}
    upgraded = FrozenBatchNorm(3)
    upgraded.load_state_dict(state)
    assert (upgraded.running_var < 1).all()


def test_periodic_checkpointer_without_test_sets():
    """fastreid's PeriodicCheckpointer read DATASETS.TESTS[0] before training: IndexError for a run without tests."""
    from types import SimpleNamespace

    from fastreid.engine.hooks import PeriodicCheckpointer

    hook = PeriodicCheckpointer(SimpleNamespace(), period=1)
    for tests, name in (((), "metric"), (("A",), "metric"), (("A", "B"), "A/metric")):
        hook.trainer = SimpleNamespace(cfg=SimpleNamespace(DATASETS=SimpleNamespace(TESTS=tests)), max_epoch=3)
        hook.before_train()
        assert hook.metric_name == name and hook.max_epoch == 3

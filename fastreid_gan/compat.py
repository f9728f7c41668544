"""Targeted fixes that make fastreid 1.4.0 (PyPI) work on Python 3.11, PyTorch 2.x and NumPy 2, and on CPU.

Importing :mod:`fastreid_gan` calls :func:`apply` before anything else imports fastreid.  Every fix is
small, idempotent, replaces one attribute of one fastreid module (nothing in site-packages is edited)
and has a test in ``tests/test_compat.py`` that fails without it.  ``docs/compat.md`` lists them.

=========================  ====================================================================
fix                        what breaks in fastreid 1.4.0
=========================  ====================================================================
import shims               ``collections.Mapping`` (gone in Python 3.10), ``torch._six`` (gone in torch 2)
contiguous optimizer       ``ContiguousParams`` + ``zero_grad(set_to_none=True)`` (torch 2 default):
                           gradients land in fresh tensors, ``optimizer.step()`` updates nothing
CPU data loader            ``DataLoaderX`` creates CUDA streams unconditionally
CPU DDP                    ``DefaultTrainer`` passes ``device_ids=[rank]`` even for CPU models (gloo)
in-place normalisation     ``Baseline.preprocess_image`` normalises the caller's tensor in place
AMP                        ``AMPTrainer`` uses deprecated ``torch.cuda.amp`` and asserts CUDA
EVAL_PERIOD 0              ``EvalHook.after_train`` computes ``epoch % 0``
Cython ranker              the evaluator runs ``make`` in site-packages and ``sys.exit(1)`` on failure
torch.load                 torch >= 2.6 defaults to ``weights_only=True``: fastreid checkpoints with
                           numpy scalars (``metric``) no longer load
unreadable image           PIL's error does not always say which dataset file failed
ToTensor                   ``to_tensor`` reads PIL images through ``torch.ByteStorage.from_buffer``
                           (TypedStorage: deprecated, to be removed; a warning in every data worker),
                           and bit images through ``np.array(copy=False)``, a ValueError on NumPy 2
missing dataset            ``check_before_run`` and MSMT17's constructor fail with a bare
                           ``RuntimeError``/``AssertionError`` naming no layout
dataset file names         Market1501/DukeMTMC ``process_dir``: ``AttributeError`` on a misnamed file,
                           bare ``assert`` on a bad camera, nothing on an empty folder (a sampler asserts)
metric printer             ``CommonMetricPrinter`` divides by zero when it writes twice on one
                           iteration before the iteration timer has data (runs of 1-3 iterations)
get_cfg                    ``fastreid.config.get_cfg`` knows none of this project's keys: a training
                           run's config.yaml fails in ``merge_from_file``
=========================  ====================================================================
"""
from __future__ import annotations

import collections
import collections.abc
import functools
import hashlib
import importlib.util
import logging
import os
import os.path as osp
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

_APPLIED = False


def _install_import_shims() -> None:
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    if "torch._six" not in sys.modules:
        import torch

        six = types.ModuleType("torch._six")
        six.string_classes = (str, bytes)
        six.int_classes = (int,)
        six.container_abcs = collections.abc
        six.inf = float("inf")
        sys.modules["torch._six"] = six
        torch._six = six


def _fix_optimizer_builder() -> None:
    import fastreid.engine.defaults as defaults
    import fastreid.solver as solver
    import fastreid.solver.build as solver_build

    original = solver_build.build_optimizer
    if getattr(original, "_fastreid_gan_fixed", False):
        return

    @functools.wraps(original)
    def build_optimizer(cfg, model, contiguous: bool = False):
        # contiguous=True silently disables training on torch 2: never use it.
        return original(cfg, model, contiguous=False)

    build_optimizer._fastreid_gan_fixed = True
    for module in (solver_build, solver, defaults):
        module.build_optimizer = build_optimizer


class _CPUSafeDataLoader:
    """Factory standing in for ``DataLoaderX``: the CUDA-stream prefetcher only when CUDA exists."""

    def __new__(cls, local_rank: int, **kwargs: Any):
        import torch
        from torch.utils.data import DataLoader

        if torch.cuda.is_available():
            return _ORIGINAL["DataLoaderX"](local_rank, **kwargs)
        return DataLoader(**kwargs)


_ORIGINAL: dict = {}


def _fix_data_loader() -> None:
    import fastreid.data.build as data_build
    import fastreid.data.data_utils as data_utils

    if data_build.DataLoaderX is _CPUSafeDataLoader:
        return
    _ORIGINAL["DataLoaderX"] = data_utils.DataLoaderX
    data_build.DataLoaderX = _CPUSafeDataLoader


def _cpu_safe_ddp(module, *args, device_ids=None, **kwargs):
    from torch.nn.parallel import DistributedDataParallel

    on_cpu = next(module.parameters()).device.type == "cpu"
    return DistributedDataParallel(module, *args, device_ids=None if on_cpu else device_ids, **kwargs)


def _fix_trainer_ddp() -> None:
    import fastreid.engine.defaults as defaults

    defaults.DistributedDataParallel = _cpu_safe_ddp


def _fix_preprocess_image() -> None:
    import torch
    from fastreid.modeling.meta_arch.baseline import Baseline

    def preprocess_image(self, batched_inputs):
        """Normalise and batch the input images (a new tensor: the caller's batch is left untouched)."""
        if isinstance(batched_inputs, dict):
            images = batched_inputs["images"]
        elif isinstance(batched_inputs, torch.Tensor):
            images = batched_inputs
        else:
            raise TypeError(f"batched_inputs must be dict or torch.Tensor, got {type(batched_inputs)}")
        return (images.to(self.pixel_mean.device) - self.pixel_mean) / self.pixel_std

    Baseline.preprocess_image = preprocess_image


def _fix_amp_trainer() -> None:
    import time

    import torch
    import fastreid.engine.defaults as defaults
    import fastreid.engine.train_loop as train_loop

    class AMPTrainer(train_loop.SimpleTrainer):
        """fastreid's AMPTrainer on ``torch.amp`` (CUDA only; the trainer turns AMP off on CPU)."""

        def __init__(self, model, data_loader, optimizer, param_wrapper, grad_scaler=None):
            super().__init__(model, data_loader, optimizer, param_wrapper)
            self.grad_scaler = grad_scaler if grad_scaler is not None else torch.amp.GradScaler("cuda")

        def run_step(self):
            if not torch.cuda.is_available():
                raise RuntimeError("SOLVER.AMP.ENABLED needs CUDA: set SOLVER.AMP.ENABLED False on CPU.")
            start = time.perf_counter()
            data = next(self._data_loader_iter)
            data_time = time.perf_counter() - start
            with torch.autocast("cuda"):
                loss_dict = self.model(data)
                losses = sum(loss_dict.values())
            self.optimizer.zero_grad()
            self.grad_scaler.scale(losses).backward()
            self._write_metrics(loss_dict, data_time)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    train_loop.AMPTrainer = AMPTrainer
    defaults.AMPTrainer = AMPTrainer


def _fix_metric_printer() -> None:
    from fastreid.utils.events import CommonMetricPrinter, get_event_storage

    original = CommonMetricPrinter.write
    if getattr(original, "_fastreid_gan_fixed", False):
        return

    @functools.wraps(original)
    def write(self) -> None:
        last = self._last_write
        if last is not None and last[0] == get_event_storage().iter:
            # a second write on the same iteration (the last one, or after an epoch) before the timer has data:
            # fastreid estimates the ETA from a zero-iteration interval and divides by zero; skip the estimate
            self._last_write = None
        original(self)

    write._fastreid_gan_fixed = True
    CommonMetricPrinter.write = write


def _fix_eval_hook() -> None:
    from fastreid.engine.hooks import EvalHook

    def after_train(self):
        next_epoch = self.trainer.epoch + 1
        periodic_done = self._period > 0 and next_epoch % self._period == 0
        if not periodic_done and next_epoch >= self.trainer.max_epoch:
            self._do_eval()
        del self._func

    EvalHook.after_train = after_train


def _cython_cache_dir() -> Path:
    root = os.environ.get("FASTREID_GAN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fastreid_gan"))
    return Path(root) / "rank_cylib"


def build_cython_ranker(cache_dir: Optional[Path] = None) -> Optional[types.ModuleType]:
    """Compile fastreid's Cython ranker (``rank_cy.pyx``) into a cache folder and plug it into fastreid.

    fastreid runs ``make`` inside site-packages and calls ``sys.exit(1)`` when that fails.  Here the
    extension is built in a subprocess into ``cache_dir`` (default ``~/.cache/fastreid_gan/rank_cylib``,
    or ``$FASTREID_GAN_CACHE``); on failure a warning is logged and fastreid keeps its Python ranker.
    Returns the compiled module, or None.
    """
    import fastreid.evaluation.rank as rank
    from fastreid.evaluation import rank_cylib

    if getattr(rank, "IS_CYTHON_AVAI", False):
        return sys.modules.get("fastreid.evaluation.rank_cylib.rank_cy")
    source = Path(rank_cylib.__file__).with_name("rank_cy.pyx")
    tag = hashlib.sha1(source.read_bytes() + sys.version.encode()).hexdigest()[:12]
    out_dir = Path(cache_dir) if cache_dir is not None else _cython_cache_dir() / tag
    out_dir.mkdir(parents=True, exist_ok=True)
    built = sorted(out_dir.glob("rank_cy*.so"))
    if not built:
        # built in a private folder and moved into the cache with one rename: processes that start together
        # (test workers, distributed ranks) each see the whole library or none, never a half-written one
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
            (Path(tmp) / "rank_cy.pyx").write_bytes(source.read_bytes())
            script = (
                "import numpy, setuptools\n"
                "from Cython.Build import cythonize\n"
                "ext = setuptools.Extension('rank_cy', ['rank_cy.pyx'], include_dirs=[numpy.get_include()])\n"
                "setuptools.setup(name='rank_cy', ext_modules=cythonize([ext], quiet=True),"
                " script_args=['build_ext', '--inplace'])\n"
            )
            proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True)
            made = sorted(Path(tmp).glob("rank_cy*.so"))
            if proc.returncode != 0 or not made:
                logger.warning(
                    "Could not compile fastreid's Cython ranker in %s (fastreid falls back to its slow Python "
                    "ranker; fastreid_gan's evaluator does not need it):\n%s", out_dir, proc.stderr[-2000:]
                )
                return None
            os.replace(made[0], out_dir / made[0].name)
        built = sorted(out_dir.glob("rank_cy*.so"))
    # Registered under fastreid's own name so that ``from .rank_cylib.rank_cy import evaluate_cy`` works.
    name = "fastreid.evaluation.rank_cylib.rank_cy"
    spec = importlib.util.spec_from_file_location(name, built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    rank.evaluate_cy = module.evaluate_cy
    rank.IS_CYTHON_AVAI = True
    return module


def _fix_cython_compile() -> None:
    import fastreid.evaluation.rank_cylib as rank_cylib
    import fastreid.evaluation.reid_evaluation as reid_evaluation

    def compile_helper() -> None:
        """Build the ranker without ``make`` in site-packages and without ``sys.exit`` on failure."""
        build_cython_ranker()

    def _compile_dependencies(self) -> None:
        from fastreid.utils import comm

        if comm.is_main_process():
            build_cython_ranker()
        comm.synchronize()

    rank_cylib.compile_helper = compile_helper
    reid_evaluation.compile_helper = compile_helper
    reid_evaluation.ReidEvaluator._compile_dependencies = _compile_dependencies


def _fix_checkpoint_loading() -> None:
    """fastreid's ``Checkpointer`` reads files with :func:`fastreid_gan.checkpoint_io.read_checkpoint`:
    ``weights_only`` first (torch>=2.6's default refuses the numpy scalars of fastreid's own checkpoints, so
    those are read again in full), and a file that is no checkpoint is an error naming it."""
    from fastreid.utils.checkpoint import Checkpointer

    from fastreid_gan.checkpoint_io import read_checkpoint

    def _load_file(self, f: str):
        return read_checkpoint(f)

    Checkpointer._load_file = _load_file


def _fix_frozen_batchnorm_loading() -> None:
    """``FrozenBatchNorm`` takes a checkpoint whose metadata says version < 3 for one of its own old versions and
    subtracts ``eps`` from ``running_var``; a ``BatchNorm2d``'s state (version 2, with ``num_batches_tracked``,
    which ``FrozenBatchNorm`` never saves) is no such thing: its statistics are loaded as they are."""
    from fastreid.layers.batch_norm import FrozenBatchNorm

    original = FrozenBatchNorm._load_from_state_dict

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if state_dict.pop(prefix + "num_batches_tracked", None) is not None:
            local_metadata = {**local_metadata, "version": FrozenBatchNorm._version}
        original(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    FrozenBatchNorm._load_from_state_dict = _load_from_state_dict


def _fix_periodic_checkpointer() -> None:
    """fastreid's ``PeriodicCheckpointer.before_train`` reads ``DATASETS.TESTS[0]``: a run without test sets
    (``DATASETS.TESTS ()``, training only) stopped with a bare ``IndexError``; it now checkpoints as with one test
    set (no "best" metric to compare)."""
    from fastreid.engine.hooks import PeriodicCheckpointer

    original = PeriodicCheckpointer.before_train

    def before_train(self) -> None:
        if len(self.trainer.cfg.DATASETS.TESTS) == 0:
            self.max_epoch = self.trainer.max_epoch
            self.metric_name = "metric"
            return
        original(self)

    PeriodicCheckpointer.before_train = before_train


def _root_of(dataset: Any) -> str:
    # Market1501/DukeMTMC keep the root in .root; MSMT17 only in .dataset_dir.
    return str(getattr(dataset, "root", None) or getattr(dataset, "dataset_dir", None) or ".")


def _fix_dataset_errors() -> None:
    """Missing datasets name the searched path and the expected layout (:mod:`fastreid_gan.data.dataset_errors`).

    Wraps ``ImageDataset.check_before_run`` to raise ``DatasetNotFoundError``, and checks MSMT17's root before
    its constructor asserts on it.
    """
    from fastreid.data.datasets.bases import ImageDataset
    from fastreid.data.datasets.msmt17 import MSMT17

    from fastreid_gan.data.dataset_errors import DatasetNotFoundError, dataset_missing_message

    original = ImageDataset.check_before_run
    if not getattr(original, "_fastreid_gan_wrapped", False):
        @functools.wraps(original)
        def check_before_run(self: ImageDataset, required_files: Any) -> None:
            files = [required_files] if isinstance(required_files, str) else list(required_files)
            for path in files:
                if not osp.exists(path):
                    raise DatasetNotFoundError(dataset_missing_message(type(self).__name__, _root_of(self), path))
            original(self, required_files)

        check_before_run._fastreid_gan_wrapped = True  # type: ignore[attr-defined]
        ImageDataset.check_before_run = check_before_run  # type: ignore[method-assign]

    init = MSMT17.__init__
    if not getattr(init, "_fastreid_gan_wrapped", False):
        @functools.wraps(init)
        def msmt_init(self: MSMT17, root: str = "datasets", **kwargs: Any) -> None:
            if not any(osp.isdir(osp.join(root, d)) for d in ("MSMT17_V1", "MSMT17_V2")):
                raise DatasetNotFoundError(dataset_missing_message("MSMT17", root))
            init(self, root=root, **kwargs)

        msmt_init._fastreid_gan_wrapped = True  # type: ignore[attr-defined]
        MSMT17.__init__ = msmt_init  # type: ignore[method-assign]


def _fix_dataset_file_names() -> None:
    """Market1501/DukeMTMC read their folders with :func:`~fastreid_gan.data.dataset_errors.read_market_style_dir`.

    fastreid's ``process_dir`` calls ``.groups()`` on a failed regex search (``AttributeError`` for a file such
    as ``foo.jpg``), asserts bare on cameras/pids and returns ``[]`` for an empty folder; the replacement keeps
    its items (same regex, ranges, junk handling: Market1501 drops pid -1, DukeMTMC has none) and raises
    ``DatasetFormatError`` naming the file or folder.  The originals stay in ``_ORIGINAL`` (tests).
    """
    from fastreid.data.datasets import DukeMTMC, Market1501

    from fastreid_gan.data.dataset_errors import NAME_FORMATS, read_market_style_dir

    for cls, num_cams, max_pid, skip_junk in ((Market1501, 6, 1501, True), (DukeMTMC, 8, None, False)):
        original = cls.process_dir
        if getattr(original, "_fastreid_gan_fixed", False):
            continue
        _ORIGINAL[f"{cls.__name__}.process_dir"] = original

        def process_dir(self: Any, dir_path: str, is_train: bool = True, *, _cams: int = num_cams,
                        _max_pid: Optional[int] = max_pid, _skip_junk: bool = skip_junk,
                        _format: tuple = NAME_FORMATS[cls.__name__]) -> list:
            """(path, pid, camid) items of ``dir_path`` as fastreid reads them; a misnamed file or an empty
            folder raises ``DatasetFormatError`` naming it (``fastreid_gan.compat._fix_dataset_file_names``)."""
            return read_market_style_dir(dir_path, is_train, class_name=type(self).__name__,
                                         dataset_name=self.dataset_name, num_cams=_cams, max_pid=_max_pid,
                                         skip_junk=_skip_junk, name_format=_format)

        process_dir._fastreid_gan_fixed = True  # type: ignore[attr-defined]
        cls.process_dir = process_dir  # type: ignore[method-assign]


class UnreadableImageError(OSError):
    """An image file of a dataset could not be decoded."""


def _fix_read_image() -> None:
    import fastreid.data.common as common
    import fastreid.data.data_utils as data_utils

    original = data_utils.read_image
    if getattr(original, "_fastreid_gan_fixed", False):
        return

    @functools.wraps(original)
    def read_image(file_name, format=None):
        try:
            return original(file_name, format)
        except (OSError, ValueError) as exc:
            raise UnreadableImageError(
                f"Cannot read image {file_name!r}: {exc}. Re-download or delete the file (and its dataset "
                f"folder, for a generated synthetic dataset) and run again."
            ) from exc

    read_image._fastreid_gan_fixed = True
    data_utils.read_image = read_image
    common.read_image = read_image


def _to_tensor(pic: Any) -> Any:
    """fastreid's ``to_tensor`` (HWC image -> CHW tensor, uint8 -> float 0..255, other dtypes kept) on numpy
    arrays only: no TypedStorage, and writable arrays so torch does not warn."""
    import numpy as np
    import torch

    if isinstance(pic, np.ndarray):
        arr = pic
    else:  # PIL image; fastreid reads modes I, I;16 and F with these dtypes and '1' as 0 / 255
        dtype = {"I": np.int32, "I;16": np.int16, "F": np.float32}.get(pic.mode, np.uint8)
        arr = np.array(pic, dtype=dtype)
        if pic.mode == "1":
            arr = arr * np.uint8(255)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    img = torch.from_numpy(np.ascontiguousarray(arr.transpose((2, 0, 1))))
    return img.float() if img.dtype == torch.uint8 else img


def _fix_to_tensor() -> None:
    import fastreid.data.transforms.functional as functional
    import fastreid.data.transforms.transforms as transforms

    functional.to_tensor = _to_tensor
    transforms.to_tensor = _to_tensor


_FASTREID_GET_CFG: Any = None


def fastreid_default_config() -> Any:
    """fastreid's own defaults (its ``get_cfg`` before :func:`_fix_get_cfg` replaced it)."""
    import fastreid.config.config as config_module

    return (_FASTREID_GET_CFG or config_module.get_cfg)()


def _fix_get_cfg() -> None:
    """``fastreid.config.get_cfg()`` returns this project's config (fastreid's defaults + the engine's keys +
    every installed project's keys, :func:`fastreid_gan.config.get_cfg`), so that fastreid's deployment code
    (``get_cfg()`` + ``merge_from_file(config.yaml)``) reads the config.yaml of a training run once
    ``fastreid_gan`` is imported, instead of stopping at ``Non-existent config key: DATALOADER.POSITIVES``."""
    global _FASTREID_GET_CFG
    import fastreid.config as config_package
    import fastreid.config.config as config_module

    if getattr(config_package.get_cfg, "_fastreid_gan_wrapped", False):
        return
    _FASTREID_GET_CFG = config_module.get_cfg

    @functools.wraps(_FASTREID_GET_CFG)
    def get_cfg() -> Any:
        from fastreid_gan.config import get_cfg as project_get_cfg

        return project_get_cfg()

    get_cfg._fastreid_gan_wrapped = True  # type: ignore[attr-defined]
    config_package.get_cfg = config_module.get_cfg = get_cfg


def apply() -> None:
    """Apply every fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _install_import_shims()
    _fix_optimizer_builder()
    _fix_data_loader()
    _fix_trainer_ddp()
    _fix_preprocess_image()
    _fix_amp_trainer()
    _fix_eval_hook()
    _fix_cython_compile()
    _fix_checkpoint_loading()
    _fix_frozen_batchnorm_loading()
    _fix_periodic_checkpointer()
    _fix_read_image()
    _fix_to_tensor()
    _fix_dataset_errors()
    _fix_dataset_file_names()
    _fix_metric_printer()
    _fix_get_cfg()
    _APPLIED = True

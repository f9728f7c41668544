"""ONNX export of any method's test-time model, checked by running the exported file with onnxruntime.

What is exported is the model's eval ``forward`` on a tensor, exactly as fastreid's ``DefaultPredictor`` calls it:
input ``images`` float32 ``(batch, 3, H, W)``, RGB in 0..255 at ``INPUT.SIZE_TEST`` (normalisation by
``MODEL.PIXEL_MEAN/PIXEL_STD`` is inside the graph); output ``features`` float32 ``(batch, D)``, the feature the
evaluator ranks with (DG-Net's two normalised halves, FD-GAN's E pool feature, the baseline's head feature, and
with ``TEST.LMP.ENABLED`` the flip-summed, L2-normalised LMP feature).  The batch axis is dynamic; H and W are
fixed at export.  ``TEST.FLIP`` is the evaluator's, not the model's, and is not part of the graph.

The check (:func:`check_onnx_model`) runs the file with onnxruntime's CPU provider on a batch of real test
images and on a single image, and compares with the torch model: :func:`max_relative_error`.
See ``docs/export.md``.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportError",
    "ONNX_OPSET",
    "OnnxCheck",
    "check_onnx_model",
    "export_model_to_onnx",
    "export_onnx",
    "max_relative_error",
    "onnx_features",
    "onnx_session",
    "sample_test_images",
]

# Opset 17: every op of the methods' eval forwards has a form there and onnxruntime runs it from 1.12 on; the
# exporter's own default (20) would shut out older runtimes for nothing.
ONNX_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
EXPORT_EXTRA_HINT = "pip install -e '.[export]' (the project's export extra: onnx and onnxruntime)"


class ExportError(RuntimeError):
    """The model cannot be exported to ONNX, or the exported file does not reproduce its features.

    The message is one line naming the model, what went wrong and what to do.
    """


@dataclass(frozen=True)
class OnnxCheck:
    """What the onnxruntime check measured: the exported file against the torch model on the same images."""

    path: str
    images: int                  # images of the batch that was checked
    feature_dim: int
    max_rel_error: float         # on the whole batch, one onnxruntime call
    max_rel_error_single: float  # on its first image alone (batch 1 through the same file: the dynamic axis)

    @property
    def worst(self) -> float:
        """The larger of the two errors."""
        return max(self.max_rel_error, self.max_rel_error_single)


class _ImagesToFeatures(nn.Module):
    """``images -> features``: the model's eval forward with the one-tensor signature ONNX exports."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:  # noqa: D102
        return self.model(images)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (what is exported and checked is the eval forward), its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _model_name(model: nn.Module) -> str:
    return type(getattr(model, "module", model)).__name__


def _check_lmp_is_expressible(model: nn.Module, example: Tensor, name: str) -> None:
    """ONNX pools with one kernel per axis: LMP stripes of unequal height (``PARTS`` not dividing the map's
    height, where torch's adaptive pooling lets neighbouring stripes share a row) have no ONNX form.  Checked
    here, on the map the model really gives at this input size, so the error names the fix."""
    local_pooling = getattr(model, "local_pooling", None)
    feature_map = getattr(model, "reid_feature_map", None)
    if local_pooling is None or not callable(feature_map):
        return
    with torch.no_grad():
        height = int(feature_map(example[:1]).shape[2])
    parts = int(local_pooling.parts)
    if parts <= height and height % parts:
        divisors = [p for p in range(1, height + 1) if height % p == 0]
        raise ExportError(
            f"{name}: ONNX cannot express the LMP forward with TEST.LMP.PARTS = {parts} on the model's {height}-row "
            f"feature map (stripes of unequal height: torch's adaptive_{local_pooling.pool}_pool2d with an output "
            f"size that does not divide the input has no ONNX pooling form): export with TEST.LMP.PARTS one of "
            f"{', '.join(map(str, divisors))}, or at an INPUT.SIZE_TEST whose map height {parts} divides")


def _first_line(exc: BaseException) -> str:
    """The exception's first line, without the exporter's "Please feel free to request support ..." tail."""
    text = str(exc).strip().splitlines()
    line = " ".join(text[0].split()) if text else type(exc).__name__
    return line.split(" Please feel free")[0].rstrip(" .:") + "."


def export_model_to_onnx(model: nn.Module, path: str, example: Tensor, *, opset: int = ONNX_OPSET,
                         name: Optional[str] = None) -> Tuple[int, ...]:
    """Write ``model``'s eval forward to ``path`` as ONNX, batch axis dynamic; returns the feature shape on
    ``example`` (a ``(B, 3, H, W)`` 0..255 batch, B >= 2 so that nothing is traced as a batch of one).

    The model is traced in eval mode and left in the mode it had; nothing else of it changes.  ``name`` names it
    in errors (default: its class).

    Raises:
        ExportError: the eval forward does not return one ``(B, D)`` tensor, or uses something ONNX cannot
            express (the op is named).
    """
    name = name or _model_name(model)
    if example.dim() != 4 or example.shape[1] != 3 or example.shape[0] < 2:
        raise ExportError(f"{name}: the example batch must be (B >= 2, 3, H, W) images, got shape "
                          f"{tuple(example.shape)}")
    with _eval_mode(model):
        return _trace_to_onnx(model, path, example, opset, name)


def _trace_to_onnx(model: nn.Module, path: str, example: Tensor, opset: int, name: str) -> Tuple[int, ...]:
    """:func:`export_model_to_onnx` on a model in eval mode."""
    wrapper = _ImagesToFeatures(model)
    _check_lmp_is_expressible(model, example, name)
    with torch.no_grad():
        out = wrapper(example)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != example.shape[0]:
        what = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise ExportError(f"{name}: its eval forward returns {what}, not one (batch, D) feature tensor: only a "
                          f"model whose forward(images) gives the retrieval feature can be exported")
    try:
        with warnings.catch_warnings():
            # The tracer warns about Python conditions on shapes (e.g. LMP's PARTS <= height): H and W are fixed
            # at export by design, and the batch axis is checked by running batch sizes 1 and B afterwards.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # dynamo=False: the TorchScript exporter. It is built into torch (no onnxscript), exports these
            # convolutional networks op for op, and honours dynamic_axes; the torch.export-based default needs
            # the onnxscript package and re-traces the model through torch.export, which adds a dependency and
            # a second tracer for the same graph.
            torch.onnx.export(wrapper, (example,), path, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    except (torch.onnx.errors.OnnxExporterError, RuntimeError, TypeError) as exc:
        if os.path.exists(path):
            os.remove(path)
        raise ExportError(f"{name}: ONNX cannot express its eval forward (opset {opset}): {_first_line(exc)} "
                          f"Replace that op in the model's eval forward with ONNX-supported ones, or export "
                          f"with the test-time option that uses it switched off") from exc
    return tuple(out.shape)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(f"onnxruntime is not installed, so the exported file cannot be checked: "
                          f"{EXPORT_EXTRA_HINT}") from None
    return onnxruntime


def onnx_session(path: str) -> Any:
    """An onnxruntime session of the exported file on the CPU provider, with torch's thread count."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the thread budget the caller gave torch
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def onnx_features(session: Any, images: Tensor) -> np.ndarray:
    """Run the exported file (its path, or an :func:`onnx_session` of it, to run several batches through one
    session) on ``images`` (B, 3, H, W) 0..255 -> features (B, D)."""
    if isinstance(session, (str, os.PathLike)):
        session = onnx_session(str(session))
    batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return session.run(["features"], {"images": batch})[0]


def max_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest per-image error, relative to that image's feature: ``max_i max_j |a_ij - e_ij| / max_j |e_ij|``.

    Relative to the row's largest value rather than element by element, because ReLU features hold exact zeros
    that any rounding would turn into an infinite element-wise ratio.
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ExportError(f"the exported model gives features of shape {actual.shape}, the torch model "
                          f"{expected.shape}")
    if not np.isfinite(actual).all():
        return float("inf")
    scale = np.maximum(np.abs(expected).max(axis=1), 1e-12)
    return float((np.abs(actual - expected).max(axis=1) / scale).max())


def check_onnx_model(model: nn.Module, path: str, images: Tensor) -> OnnxCheck:
    """Compare the exported file with the torch ``model`` on ``images`` (B, 3, H, W) 0..255: the whole batch in
    one onnxruntime call, then its first image alone (the dynamic batch axis)."""
    with _eval_mode(model), torch.no_grad():  # the single image goes through torch alone too: a batch value
        expected = model(images).cpu().numpy()  # traced into the graph as a constant shows there
        expected_single = model(images[:1]).cpu().numpy()
    session = onnx_session(path)
    batch_error = max_relative_error(onnx_features(session, images), expected)
    single_error = max_relative_error(onnx_features(session, images[:1]), expected_single)
    return OnnxCheck(path=path, images=int(images.shape[0]), feature_dim=int(expected.shape[1]),
                     max_rel_error=batch_error, max_rel_error_single=single_error)


def sample_test_images(cfg: Any, dataset: str, count: int) -> Tensor:
    """``count`` real images of ``dataset``'s query set (then gallery), spread over it, read through the
    config's test transform (``INPUT.SIZE_TEST``): (count, 3, H, W) float in 0..255, as the evaluator sees them.

    Raises:
        ExportError: ``dataset`` is not registered, cannot be read, or has fewer than ``count`` images.
    """
    import fastreid_gan.data  # noqa: F401  (registers the synthetic datasets)
    from fastreid.data.datasets import DATASET_REGISTRY

    from fastreid_gan.data.samples import eval_image_loader, split_items

    if count < 2:
        raise ExportError(f"the check needs at least 2 images (a batch and a single image), got {count}")
    if dataset not in DATASET_REGISTRY._obj_map:  # noqa: SLF001 (fastreid's Registry has no membership test)
        raise ExportError(f"check dataset {dataset!r} is not a registered dataset: name one of fastreid's "
                          f"(e.g. Market1501) or a synthetic one (SyntheticMarketTiny is generated on first use)")
    try:
        paths: List[str] = [item[0] for item in split_items(dataset, "query") + split_items(dataset, "gallery")]
    except (OSError, RuntimeError, ValueError, AssertionError) as exc:
        raise ExportError(f"check dataset {dataset} cannot be read: {_first_line(exc)} Check on another dataset, "
                          f"e.g. SyntheticMarketTiny (generated on first use)") from None
    if len(paths) < count:
        raise ExportError(f"check dataset {dataset} has {len(paths)} query and gallery images, fewer than the "
                          f"{count} asked for")
    load = eval_image_loader(cfg)
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return torch.stack([load(paths[int(k)]) for k in picks])


def _metadata(cfg: Any, check: OnnxCheck, input_shape: Sequence[int]) -> dict:
    lmp = cfg.TEST.LMP
    return {
        "fastreid_gan.meta_architecture": str(cfg.MODEL.META_ARCHITECTURE),
        "fastreid_gan.weights": os.path.basename(str(cfg.MODEL.WEIGHTS)),
        "fastreid_gan.input": f"images: float32 (batch, 3, {input_shape[2]}, {input_shape[3]}), RGB, 0..255, "
                              f"not normalised",
        "fastreid_gan.output": f"features: float32 (batch, {check.feature_dim})",
        "fastreid_gan.test_lmp": f"parts={lmp.PARTS} pool={lmp.POOL}" if lmp.ENABLED else "off",
        "fastreid_gan.max_rel_error": f"{check.worst:.3g}",
    }


def _add_metadata(path: str, props: dict) -> None:
    """Record what the file expects and gives in its ``metadata_props`` and check it with ``onnx.checker``."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"onnx is not installed: {EXPORT_EXTRA_HINT}") from None
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)


def export_onnx(cfg: Any, output: str, images: Tensor, *, tolerance: float = DEFAULT_TOLERANCE,
                opset: int = ONNX_OPSET) -> OnnxCheck:
    """The config's test-time model with ``MODEL.WEIGHTS`` loaded, exported to ``output`` and checked on
    ``images`` (:func:`sample_test_images`) with onnxruntime.

    The model is built and run on the CPU (the graph does not depend on the device; the check then compares
    torch and onnxruntime in the same precision).  The file is written beside ``output`` and moved into place
    only once its features match the torch model's within ``tolerance`` (max relative error).

    Raises:
        ValueError: ``MODEL.WEIGHTS`` is empty.  FileNotFoundError / CheckpointFileError /
            WeightsMismatchError: the weights cannot be loaded for this config.
        ExportError: the forward cannot be exported, or the exported file's features differ by more than
            ``tolerance``.
    """
    from fastreid_gan.model_loading import load_model_for_inference

    if not str(cfg.MODEL.WEIGHTS):
        raise ValueError("ONNX export needs trained weights: add MODEL.WEIGHTS /path/to/model_final.pth")
    name = f"{cfg.MODEL.META_ARCHITECTURE}{' with TEST.LMP' if cfg.TEST.LMP.ENABLED else ''}"
    expected_hw = tuple(int(s) for s in cfg.INPUT.SIZE_TEST)
    if images.dim() != 4 or tuple(images.shape[2:]) != expected_hw:
        raise ExportError(f"{name}: the check images have shape {tuple(images.shape)}, the config tests at "
                          f"INPUT.SIZE_TEST {list(expected_hw)}: read them with the config's test transform "
                          f"(sample_test_images)")
    images = images.to(torch.float32)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = load_model_for_inference(cfg, cfg.MODEL.WEIGHTS)
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    partial = f"{output}.{os.getpid()}.tmp"
    try:
        export_model_to_onnx(model, partial, images, opset=opset, name=name)
        check = check_onnx_model(model, partial, images)
        if not check.worst <= tolerance:
            raise ExportError(f"{name}: onnxruntime's features differ from the torch model's by a max relative "
                              f"error of {check.worst:.3g} (batch of {check.images}: {check.max_rel_error:.3g}, one "
                              f"image: {check.max_rel_error_single:.3g}), above {tolerance:g}: the file was not "
                              f"written; report the model and the onnxruntime version")
        _add_metadata(partial, _metadata(cfg, check, tuple(images.shape)))
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return OnnxCheck(path=output, images=check.images, feature_dim=check.feature_dim,
                     max_rel_error=check.max_rel_error, max_rel_error_single=check.max_rel_error_single)

"""How good a translation is: how far it moved the source images towards the target domain's style, and how much
of their identity it kept (``projects/SPGAN/tools/translation_quality.py``; issue 12).

The paper judges its translators by the re-id accuracy of the model trained on their output (TPAMI Table 1,
Sec. 4.3-4.4) and by eye (Fig. 4); SPGAN's two principles (Sec. 3.2.2) are that a translated image takes the target
domain's style (*domain dissimilarity* to the source) and keeps its person (*self-similarity*). This module measures
both directly on a translated dataset, before any re-id model is trained on it:

* **Style** (:func:`style_distance`, :func:`style_report`). Each image is summarised by its colour statistics: the
  mean and the standard deviation of each channel in CIE L*a*b* (D65, 2 degree observer; :func:`rgb_to_lab`), a
  6-vector (Reinhard et al.'s colour-transfer statistics, 2001). A domain is the Gaussian with the mean ``mu`` and
  covariance ``Sigma`` of its images' vectors (:func:`domain_colour_statistics`), and two domains are compared by
  the Fréchet distance between their Gaussians, as FID compares Inception features (Heusel et al., 2017)::

      d(a, b) = |mu_a - mu_b|^2 + Tr(Sigma_a + Sigma_b - 2 (Sigma_a^1/2 Sigma_b Sigma_a^1/2)^1/2)

  (squared Lab units; 0 for identical statistics). A translator that does its job brings d(translated, target)
  below d(source, target). Colour is the part of a domain's style a pixel statistic can see (illumination, white
  balance, season: SPGAN's L_ide is there to keep the colour composition, Sec. 3.2.1); texture and background are
  not measured.
* **Identity** (:func:`identity_preservation`). A re-id model (any of the project's, :func:`load_reid_model`)
  embeds the translated source images (queries) and the untranslated ones (gallery); the source identities and
  cameras are the labels, and the Market-1501 protocol of the project's evaluator
  (:func:`~fastreid_gan.evaluation.evaluate_rank_features`) applies: the gallery images of the query's person and
  camera are junk, so the query's own untranslated image never counts and every match is cross-camera. The
  reference is the same ranking with the untranslated images as queries (cross-camera re-id on the source); the
  drop from it is the identity the translation lost, seen through that model.

Inputs are image folders (flat, or in Market-1501 layout: ``bounding_box_train/`` ...; :func:`resolve_images`) or
registered datasets; a translated folder holds the source's images under their source file names, as
``translate.py`` writes them (:func:`pair_translated`). Bad input is a :class:`TranslationQualityError` whose one-line
message names what to fix.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import os.path as osp
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .translated_dataset import SPLIT_FOLDERS

__all__ = ["TranslationQualityError", "ImageItem", "DomainStatistics", "IMAGE_EXTENSIONS", "STATISTIC_NAMES",
           "rgb_to_lab", "colour_statistics", "domain_colour_statistics", "frechet_distance", "style_distance",
           "style_report", "resolve_images", "pair_translated", "common_size", "load_reid_model",
           "extract_features", "rank_metrics", "identity_preservation", "parse_size", "build_parser", "run",
           "markdown_table", "main"]

#: file endings read as images in a folder (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# What fastreid's Market-1501 reader takes from a file name: <pid>_c<camera>, at the start of the name
_NAME_RE = re.compile(r"(-?\d+)_c(\d+)")
# sRGB (D65) -> CIE XYZ and the D65 / 2 degree white point: the constants of skimage.color.rgb2lab
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)
#: the names of the 6 colour statistics, in order
STATISTIC_NAMES = ("mean_L", "mean_a", "mean_b", "std_L", "std_a", "std_b")

Images = Union[Tensor, Sequence[Tensor], str, Sequence[str], Sequence["ImageItem"]]


class TranslationQualityError(ValueError):
    """Bad input to the translation-quality measures; the message is one line naming what to fix."""


@dataclass(frozen=True)
class ImageItem:
    """One image: its path and, when its file name is Market-1501 style (``<pid>_c<camera>...``), its person and
    camera (1-based, as in the name); None otherwise."""

    path: str
    pid: Optional[int] = None
    camera: Optional[int] = None

    @property
    def name(self) -> str:
        return osp.basename(self.path)

    @classmethod
    def from_path(cls, path: str) -> "ImageItem":
        match = _NAME_RE.match(osp.basename(path))
        if match is None:
            return cls(str(path))
        return cls(str(path), int(match.group(1)), int(match.group(2)))


# ---------------------------------------------------------------------------------------------- colour statistics
def rgb_to_lab(images: Tensor) -> Tensor:
    """sRGB 0..255 images ``(..., 3, H, W)`` -> CIE L*a*b* (D65, 2 degree observer; L in 0..100), float64.

    The conversion of ``skimage.color.rgb2lab`` (same matrix, white point and thresholds): sRGB gamma removed,
    XYZ, normalised by the white point, f(t) = t^1/3 above 0.008856 else 7.787 t + 16/116, L = 116 f(Y) - 16,
    a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)).
    """
    if images.dim() < 3 or images.shape[-3] != 3:
        raise TranslationQualityError(f"rgb_to_lab takes (..., 3, H, W) RGB images, got shape {tuple(images.shape)}")
    rgb = images.to(torch.float64) / 255.0
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64, device=rgb.device)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=torch.float64, device=rgb.device).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def colour_statistics(images: Union[Tensor, Sequence[Tensor]]) -> Tensor:
    """Per image, the mean and the (population) standard deviation of L*, a* and b*: ``(N, 6)`` float64, in the
    order of :data:`STATISTIC_NAMES`. ``images``: ``(N, 3, H, W)`` 0..255 RGB, or a sequence of ``(3, H, W)``
    images of any sizes."""
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise TranslationQualityError(f"colour_statistics takes (N, 3, H, W) RGB images in 0..255, got shape "
                                          f"{tuple(images.shape)}")
        lab = rgb_to_lab(images).flatten(2)
        return torch.cat([lab.mean(2), lab.std(2, unbiased=False)], dim=1)
    rows = [colour_statistics(image.unsqueeze(0)) for image in images]
    return torch.cat(rows) if rows else torch.empty(0, 6, dtype=torch.float64)


@dataclass(frozen=True)
class DomainStatistics:
    """A domain as the Gaussian of its images' colour statistics: ``mean`` (6,), ``cov`` (6, 6), float64, over
    ``count`` images (unbiased covariance, as FID's)."""

    mean: Tensor
    cov: Tensor
    count: int

    @classmethod
    def from_vectors(cls, vectors: Tensor, what: str = "the images") -> "DomainStatistics":
        """The mean and covariance of ``(N, D)`` per-image statistics (N >= 2: a covariance needs two images)."""
        vectors = vectors.to(torch.float64)
        if vectors.dim() != 2 or vectors.shape[0] < 2:
            n = vectors.shape[0] if vectors.dim() == 2 else 0
            raise TranslationQualityError(f"{what}: {n} image(s); the style measure needs at least 2 (a domain's "
                                          f"covariance): give a folder or dataset with more images")
        return cls(vectors.mean(0), torch.cov(vectors.T), int(vectors.shape[0]))

    def to_json(self) -> Dict[str, Any]:
        return {"count": self.count, "mean": dict(zip(STATISTIC_NAMES, self.mean.tolist())),
                "std_of_statistics": dict(zip(STATISTIC_NAMES, self.cov.diagonal().clamp(min=0).sqrt().tolist()))}


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from rounding
    clamped)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: DomainStatistics, b: DomainStatistics) -> float:
    """The Fréchet (2-Wasserstein) distance between the Gaussians N(mu_a, Sigma_a) and N(mu_b, Sigma_b), squared:
    |mu_a - mu_b|^2 + Tr(Sigma_a) + Tr(Sigma_b) - 2 Tr((Sigma_a^1/2 Sigma_b Sigma_a^1/2)^1/2) (FID's formula).

    The trace of the root is the sum of the square roots of the eigenvalues of the symmetric PSD product, which is
    exact where scipy's ``sqrtm`` of the non-symmetric Sigma_a Sigma_b can turn complex; the result is >= 0.
    """
    if a.mean.shape != b.mean.shape:
        raise TranslationQualityError(f"statistics of different lengths: {tuple(a.mean.shape)} and "
                                      f"{tuple(b.mean.shape)}")
    root_a = _sqrt_psd(a.cov)
    product = root_a @ b.cov @ root_a
    trace_root = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    value = ((a.mean - b.mean) ** 2).sum() + a.cov.trace() + b.cov.trace() - 2 * trace_root
    return max(float(value), 0.0)


# ---------------------------------------------------------------------------------------------- image files
def _open_rgb(path: str, size: Optional[Tuple[int, int]] = None) -> Image.Image:
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise TranslationQualityError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); remove or "
                                      f"replace the file") from None
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BICUBIC)  # as fastreid's test transform and translate.py
    return img


def _pixels(img: Image.Image) -> Tensor:
    """(3, H, W) float32 0..255, as fastreid's ``ToTensor``."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)


class _ImageFolderSet(Dataset):
    """(3, H, W) 0..255 images of ``paths``, resized (bicubic) to ``size`` (H, W) when given, or through
    ``transform`` (a PIL image -> tensor callable, e.g. fastreid's test transform)."""

    def __init__(self, paths: Sequence[str], size: Optional[Tuple[int, int]] = None,
                 transform: Optional[Callable[[Image.Image], Tensor]] = None) -> None:
        self.paths, self.size, self.transform = list(paths), size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        img = _open_rgb(self.paths[index], None if self.transform is not None else self.size)
        return self.transform(img) if self.transform is not None else _pixels(img)


def _image_sizes(paths: Sequence[str]) -> Counter:
    """(H, W) -> number of images (headers only)."""
    sizes: Counter = Counter()
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes[(img.height, img.width)] += 1
        except (OSError, ValueError) as exc:
            raise TranslationQualityError(f"{path}: not a readable image ({type(exc).__name__}); remove or replace "
                                          f"the file") from None
    return sizes


def common_size(paths: Sequence[str], what: str = "the translated images") -> Tuple[int, int]:
    """The one (H, W) of ``paths``. translate.py writes every image of a translation at ``INPUT.SIZE_TRAIN``, so
    images of several sizes are not one translation.

    Raises:
        TranslationQualityError: no images, or images of different sizes.
    """
    sizes = _image_sizes(paths)
    if not sizes:
        raise TranslationQualityError(f"{what}: no images")
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(4))
        raise TranslationQualityError(
            f"{what} have different sizes ({listed}): translate.py writes a whole translation at one size, so the "
            f"folder mixes several; translate again into an empty folder, or pass --size HxW (size=) to measure "
            f"every image at one size")
    return next(iter(sizes))


def _as_paths(images: Iterable[Any]) -> Optional[List[str]]:
    """The paths of a sequence of paths or :class:`ImageItem`-like items; None for tensors."""
    items = list(images)
    if all(isinstance(x, (str, os.PathLike)) for x in items):
        return [os.fspath(x) for x in items]
    if all(hasattr(x, "path") and not isinstance(x, Tensor) for x in items):
        return [os.fspath(x.path) for x in items]
    return None


def domain_colour_statistics(images: Images, *, size: Optional[Tuple[int, int]] = None, batch_size: int = 64,
                             num_workers: int = 0, what: str = "the images") -> DomainStatistics:
    """The Gaussian of the colour statistics (:func:`colour_statistics`) of a domain's images.

    ``images``: an ``(N, 3, H, W)`` 0..255 tensor, a sequence of ``(3, H, W)`` tensors, a folder (flat or Market
    layout, :func:`resolve_images`), or a sequence of paths / :class:`ImageItem`. Files are read in RGB and, with
    ``size`` (H, W), resized (bicubic) to it first; without, each is measured at its own size.
    """
    if isinstance(images, (str, os.PathLike)):
        images = resolve_images(os.fspath(images), role=what)
    if isinstance(images, Tensor):
        return DomainStatistics.from_vectors(colour_statistics(images), what)
    paths = _as_paths(images)
    if paths is None:  # tensors of any sizes
        return DomainStatistics.from_vectors(colour_statistics(list(images)), what)
    if not paths:
        raise TranslationQualityError(f"{what}: no images")
    if size is None:  # one image at a time: sizes may differ
        loader: Iterable[Tensor] = (_pixels(_open_rgb(p)).unsqueeze(0) for p in paths)
    else:
        loader = DataLoader(_ImageFolderSet(paths, size), batch_size=batch_size, num_workers=num_workers)
    vectors = [colour_statistics(batch) for batch in loader]
    return DomainStatistics.from_vectors(torch.cat(vectors), what)


def style_distance(images_a: Images, images_b: Images, *, size: Optional[Tuple[int, int]] = None,
                   **kwargs: Any) -> float:
    """The Fréchet distance between the colour statistics of two sets of images (see the module docstring);
    ``size`` and ``kwargs`` as :func:`domain_colour_statistics`."""
    return frechet_distance(domain_colour_statistics(images_a, size=size, what="images_a", **kwargs),
                            domain_colour_statistics(images_b, size=size, what="images_b", **kwargs))


def style_report(source: Images, translated: Images, target: Images, *, size: Optional[Tuple[int, int]] = None,
                 **kwargs: Any) -> Dict[str, Any]:
    """The style measure of a translation: ``source_to_target`` = d(source, target), ``translated_to_target`` =
    d(translated, target), ``source_to_translated``, ``relative_change`` = translated_to_target /
    source_to_target - 1 (below 0: the translation moved the source towards the target's colours) and each set's
    statistics (``domains``). All images are measured at ``size`` when given (the CLI: the translated images' size,
    so that resizing smooths every set alike)."""
    stats = {name: domain_colour_statistics(images, size=size, what=f"the {name} images", **kwargs)
             for name, images in (("source", source), ("translated", translated), ("target", target))}
    before = frechet_distance(stats["source"], stats["target"])
    after = frechet_distance(stats["translated"], stats["target"])
    return {"source_to_target": before, "translated_to_target": after,
            "source_to_translated": frechet_distance(stats["source"], stats["translated"]),
            "relative_change": (after / before - 1.0) if before > 0 else float("nan"),
            "size": list(size) if size is not None else None,
            "domains": {name: s.to_json() for name, s in stats.items()}}


# ---------------------------------------------------------------------------------------------- folders, datasets
def _list_images(folder: str) -> List[str]:
    return sorted(osp.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(osp.join(folder, name)))


def _registered_datasets() -> Dict[str, Any]:
    import fastreid_gan.data  # noqa: F401  (registers the project's datasets)
    from fastreid.data.datasets import DATASET_REGISTRY

    return dict(getattr(DATASET_REGISTRY, "_obj_map", {}))


def resolve_images(spec: str, split: str = "train", *, role: str = "--source", drop_junk: bool = True,
                   root: Optional[str] = None) -> List[ImageItem]:
    """The images ``spec`` names, sorted by file name.

    ``spec`` is a folder, or a registered dataset (``Market1501``, ``SyntheticDuke`` ...; read from ``root``, default
    ``$FASTREID_DATASETS``). A folder in Market-1501 layout (``bounding_box_train/``, ``query/``,
    ``bounding_box_test/``; a dataset root or translate.py's output) gives its ``split`` folder (``train``,
    ``query`` or ``gallery``), any other folder its own images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``). With
    ``drop_junk``, Market's junk images (pid -1) are left out, as fastreid's readers and translate.py leave them.

    Raises:
        TranslationQualityError: no such folder or dataset, a Market-layout folder without the split, an empty
            folder.
    """
    if split not in SPLIT_FOLDERS:
        raise TranslationQualityError(f"--split {split!r}: choose one of {', '.join(SPLIT_FOLDERS)}")
    if osp.isdir(spec):
        folder = spec
        layout = [name for name in SPLIT_FOLDERS.values() if osp.isdir(osp.join(spec, name))]
        if layout:
            folder = osp.join(spec, SPLIT_FOLDERS[split])
            if not osp.isdir(folder):
                raise TranslationQualityError(
                    f"{role} {spec}: a Market-1501-layout folder (it has {', '.join(layout)}/) without "
                    f"{SPLIT_FOLDERS[split]}/ (the {split} split): choose --split among those it has, or translate "
                    f"that split (translate.py --splits all)")
        items = [ImageItem.from_path(p) for p in _list_images(folder)]
        if drop_junk:
            items = [it for it in items if it.pid != -1]
        if not items:
            raise TranslationQualityError(f"{role} {osp.abspath(folder)}: the folder holds no images (*.jpg, *.png): "
                                          f"give the folder of the images (or a dataset in Market-1501 layout)")
        return items
    if osp.lexists(spec):
        raise TranslationQualityError(f"{role} {spec}: a file, not a folder: give a folder of images or a registered "
                                      f"dataset name")
    registered = _registered_datasets()
    if spec in registered:
        from .translate_dataset import TranslationError, collect_source_images

        try:
            found = collect_source_images(spec, [split], root=root)
        except TranslationError as exc:
            raise TranslationQualityError(f"{role} {str(exc).replace('--dataset ', '', 1)}") from None
        if not found:
            raise TranslationQualityError(f"{role} {spec}: its {split} split holds no images")
        return sorted((ImageItem(im.path, im.pid, im.camera) for im in found), key=lambda it: it.name)
    close = difflib.get_close_matches(spec, list(registered), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise TranslationQualityError(f"{role} {spec}: no such folder, and not a registered dataset{hint}: give an "
                                  f"existing folder of images or a dataset name such as Market1501, DukeMTMC, "
                                  f"SyntheticMarket")


def pair_translated(source: Sequence[Any], translated: Union[str, Sequence[Any]], split: str = "train",
                    role: str = "--translated") -> List[ImageItem]:
    """The translated image of each source image, in the source's order: the file of the same name.

    ``source``: items with a ``path`` (:class:`ImageItem`, ``translate_dataset.SourceImage``); ``translated``: a
    folder (flat, or in Market-1501 layout such as translate.py's output: its ``split`` folder;
    :func:`resolve_images`) or its items.

    Raises:
        TranslationQualityError: the names differ (translate.py keeps every source file name, so a mismatch is
            another split, another source or a foreign folder), or the folder is missing or empty.
    """
    if isinstance(translated, (str, os.PathLike)):
        items = resolve_images(os.fspath(translated), split, role=role)
    else:
        items = [it if isinstance(it, ImageItem) else ImageItem.from_path(os.fspath(it.path) if hasattr(it, "path")
                                                                          else os.fspath(it)) for it in translated]
    by_name = {it.name: it for it in items}
    source_names = [osp.basename(os.fspath(it.path)) for it in source]
    missing = [n for n in source_names if n not in by_name]
    extra = sorted(set(by_name) - set(source_names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the {len(source_names)} source images have no translated file of the "
                         f"same name (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} translated files are not source images (e.g. {extra[0]})")
        raise TranslationQualityError(
            f"{role}: {' and '.join(parts)}: the translated folder must hold the source's images under their source "
            f"file names, as translate.py writes them; check that --source, --translated and --split name the same "
            f"images")
    return [by_name[n] for n in source_names]


# ---------------------------------------------------------------------------------------------- identity
def load_reid_model(config_file: str, weights: str, opts: Sequence[str] = ()) -> Tuple[Any, nn.Module]:
    """``(cfg, model)``: a config of any of the project's methods and its trained weights, built and loaded as
    ``--eval-only`` and ``tools/cross_domain_eval.py`` do (:func:`~fastreid_gan.model_loading.
    load_model_for_inference`), in eval mode on ``MODEL.DEVICE`` (CPU when CUDA is missing).

    Raises:
        TranslationQualityError: a missing config or weights file, a config that does not merge, weights that do
            not fit it.
    """
    from fastreid_gan.checkpoint_io import CheckpointFileError, WeightsMismatchError
    from fastreid_gan.config import get_cfg, merge_config
    from fastreid_gan.model_loading import load_model_for_inference
    from fastreid_gan.runner import resolve_device

    if not osp.isfile(config_file):
        raise TranslationQualityError(f"--reid-config {config_file}: file not found (give the config the re-id model "
                                      f"was trained with, e.g. its run's config.yaml)")
    if not weights:
        raise TranslationQualityError("--reid-config needs --reid-weights /path/to/model_final.pth")
    if not osp.isfile(weights):
        raise TranslationQualityError(f"--reid-weights {weights}: file not found")
    try:
        cfg = merge_config(get_cfg(), config_file, list(opts))
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise TranslationQualityError(f"--reid-config {config_file}: {_one_line(exc)}") from None
    resolve_device(cfg)
    try:
        model = load_model_for_inference(cfg, weights, source="--reid-weights")
    except (WeightsMismatchError, CheckpointFileError) as exc:  # their messages name --reid-weights and the file
        raise TranslationQualityError(_one_line(exc)) from None
    except ValueError as exc:  # a config the model refuses to build
        raise TranslationQualityError(f"--reid-config {config_file}: {_one_line(exc)}") from None
    return cfg, model


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(model: nn.Module, paths: Sequence[str], *,
                     transform: Optional[Callable[[Image.Image], Tensor]] = None,
                     size: Optional[Tuple[int, int]] = None, flip: bool = False, batch_size: int = 64,
                     num_workers: int = 0) -> np.ndarray:
    """``(N, D)`` float32 re-id features of image files: ``model({"images": batch})`` in eval mode on 0..255
    batches, as fastreid's ``inference_on_dataset`` calls it (with ``flip``, the mean with the mirrored image's).
    Images go through ``transform`` (fastreid's test transform: resize to ``INPUT.SIZE_TEST``) or are resized to
    ``size``; with neither they must share one size."""
    if transform is None and size is None:
        size = common_size(paths, "the images to embed")
    loader = DataLoader(_ImageFolderSet(paths, size, transform), batch_size=batch_size, num_workers=num_workers)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        features = []
        for batch in loader:
            batch = batch.to(device)
            out = model({"images": batch})
            if flip:
                out = (out + model({"images": batch.flip(dims=[3])})) / 2
            features.append(out.float().reshape(len(batch), -1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(features).numpy() if features else np.empty((0, 0), np.float32)


def rank_metrics(query_features: np.ndarray, gallery_features: np.ndarray, q_pids: Sequence[int],
                 g_pids: Sequence[int], q_cams: Sequence[int], g_cams: Sequence[int], metric: str = "cosine",
                 what: str = "identity preservation") -> Dict[str, float]:
    """Rank-1/5/10 (those within the gallery's size), mAP, mINP (%) and the number of queries without a match, by
    the project's Market-1501 ranking (:func:`~fastreid_gan.evaluation.evaluate_rank_features`: same person and
    camera = junk; queries without a cross-camera match are left out)."""
    from fastreid_gan.evaluation import EvaluationDataError, evaluate_rank_features

    try:
        res = evaluate_rank_features(query_features, gallery_features, np.asarray(q_pids), np.asarray(g_pids),
                                     np.asarray(q_cams), np.asarray(g_cams), metric=metric)
    except EvaluationDataError:
        raise TranslationQualityError(
            f"{what}: no source identity has images from two cameras, so no query has a cross-camera match; the "
            f"measure needs a source split with identities seen by several cameras (bounding_box_train has them)"
        ) from None
    out = {f"Rank-{r}": float(res.cmc[r - 1] * 100) for r in (1, 5, 10) if r <= len(res.cmc)}
    out.update({"mAP": res.mAP * 100, "mINP": res.mINP * 100, "unmatched_queries": res.num_unmatched})
    return out


def identity_preservation(model: nn.Module, source_items: Sequence[Any],
                          translated: Union[str, Sequence[Any]], *, cfg: Any = None,
                          size: Optional[Tuple[int, int]] = None, metric: Optional[str] = None,
                          flip: Optional[bool] = None, split: str = "train", batch_size: int = 64,
                          num_workers: int = 0) -> Dict[str, Any]:
    """Re-id of the translated source images against the untranslated ones, and the untranslated reference.

    ``source_items``: the source images with ``path``, ``pid``, ``camera`` (:class:`ImageItem`, or
    ``translate_dataset.SourceImage``; :func:`resolve_images` gives them); ``translated``: the folder with their
    translations under the same file names (flat, or translate.py's output, read at ``split``), or the translated
    items (:func:`pair_translated`). Gallery: the source images (junk pid -1 left out); queries: their
    translations (``translated``) and the source images themselves (``reference``), pid 0 (Market's distractors)
    left out. With ``cfg`` (the model's config) the images go
    through its test transform (``INPUT.SIZE_TEST``), ``TEST.METRIC`` and ``TEST.FLIP.ENABLED`` apply (flip not
    with ``TEST.LMP.ENABLED``, whose feature is flip-summed, as in evaluation); ``size``, ``metric`` (default
    cosine) and ``flip`` override them. Returns ``{"reference": metrics, "translated": metrics, "drop": reference
    - translated for Rank-1 and mAP, "queries", "gallery", "metric", "flip"}`` (:func:`rank_metrics`).
    """
    unnamed = [it for it in source_items if it.pid is None]
    if unnamed:
        raise TranslationQualityError(
            f"identity preservation: {len(unnamed)} source file names carry no identity (e.g. "
            f"{osp.basename(unnamed[0].path)}): the source images must be named <pid>_c<camera>... (Market-1501 "
            f"style), their labels")
    source = [it for it in source_items if it.pid != -1]
    if not source:
        raise TranslationQualityError("identity preservation: no source images")
    paired = pair_translated(source, translated, split)
    transform = None
    if cfg is not None:
        if size is None:
            from fastreid.data.transforms import build_transforms

            transform = build_transforms(cfg, is_train=False)
        metric = metric or str(cfg.TEST.METRIC)
        if flip is None:
            flip = bool(cfg.TEST.FLIP.ENABLED) and not bool(cfg.TEST.LMP.ENABLED)
    metric, flip = metric or "cosine", bool(flip)
    # without a transform or size each set is embedded at its own single size (translate.py resizes the source)
    embed = dict(transform=transform, flip=flip, batch_size=batch_size, num_workers=num_workers)
    g_feats = extract_features(model, [it.path for it in source], size=size, **embed)
    t_feats = extract_features(model, [it.path for it in paired], size=size, **embed)
    if g_feats.shape[1:] != t_feats.shape[1:]:
        raise TranslationQualityError(f"the model gives features of {g_feats.shape[1:]} for the source images but "
                                      f"{t_feats.shape[1:]} for the translated ones (a size-dependent model): "
                                      f"give size= (or a cfg) to embed both at one size")
    pids = [int(it.pid) for it in source]
    cams = [int(it.camera) for it in source]
    queries = np.array([p != 0 for p in pids])  # Market's distractors (pid 0) are no person to find
    if not queries.any():
        raise TranslationQualityError("identity preservation: the source images are all distractors (pid 0)")
    q_pids, q_cams = [p for p, q in zip(pids, queries) if q], [c for c, q in zip(cams, queries) if q]
    reference = rank_metrics(g_feats[queries], g_feats, q_pids, pids, q_cams, cams, metric)
    result = rank_metrics(t_feats[queries], g_feats, q_pids, pids, q_cams, cams, metric)
    return {"reference": reference, "translated": result,
            "drop": {k: reference[k] - result[k] for k in ("Rank-1", "mAP")},
            "queries": int(queries.sum()), "gallery": len(source), "metric": metric, "flip": flip}


# ---------------------------------------------------------------------------------------------- the CLI
def parse_size(text: str) -> Tuple[int, int]:
    """``"256x128"`` -> ``(256, 128)`` (height x width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text or "")
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise TranslationQualityError(f"--size {text!r}: give HEIGHTxWIDTH in pixels, e.g. --size 256x128")
    return int(match.group(1)), int(match.group(2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="translation_quality.py",
        description="How good a source -> target translation is: the Fréchet distance of the images' Lab colour "
                    "statistics to the target domain (translated vs untranslated source), and, with a re-id model, "
                    "the re-id of the translated images against their own source identities (vs the untranslated "
                    "reference).")
    p.add_argument("--source", required=True, help="the source images: a folder (flat or Market-1501 layout) or a "
                                                   "registered dataset (Market1501, SyntheticDuke ...)")
    p.add_argument("--translated", required=True, help="their translations under the source file names (a folder; "
                                                       "translate.py's output)")
    p.add_argument("--target", required=True, help="the target domain's images: a folder or a registered dataset")
    p.add_argument("--split", default="train", choices=list(SPLIT_FOLDERS),
                   help="split of Market-layout --source / --translated (default: train, what SPGAN translates)")
    p.add_argument("--target-split", default="train", choices=list(SPLIT_FOLDERS),
                   help="split of a Market-layout --target (default: train, what SPGAN trains on)")
    p.add_argument("--size", default="", help="HEIGHTxWIDTH at which every image's colours are measured (default: "
                                              "the translated images' size)")
    p.add_argument("--reid-config", default="", help="config of a re-id model (any method of the project)")
    p.add_argument("--reid-weights", default="", help="its trained weights")
    p.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--workers", type=int, default=0, help="image-reading worker processes (default 0)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("opts", nargs="*", help="KEY VALUE overrides of --reid-config")
    return p


def _check_args(args: Any) -> None:
    if bool(args.reid_config) != bool(args.reid_weights):
        given, needed = (("--reid-config", "--reid-weights") if args.reid_config else
                         ("--reid-weights", "--reid-config"))
        raise TranslationQualityError(f"{given} needs {needed}: the re-id model is a config and its weights")
    if args.opts and not args.reid_config:
        raise TranslationQualityError(f"KEY VALUE overrides {args.opts} apply to --reid-config, which is not given")
    if args.batch < 1 or args.workers < 0:
        raise TranslationQualityError("--batch must be at least 1 and --workers at least 0")
    if args.json:
        folder = osp.dirname(osp.abspath(args.json))
        if osp.isdir(args.json):
            raise TranslationQualityError(f"--json {args.json} is a folder: give a file name, e.g. "
                                          f"{osp.join(args.json, 'quality.json')}")
        if not osp.isdir(folder):
            raise TranslationQualityError(f"--json {args.json}: folder {folder} not found")


def run(args: Any, log: Callable[[str], None] = lambda line: None) -> Dict[str, Any]:
    """The CLI's work on parsed arguments: every input checked before the long work; returns the results."""
    _check_args(args)
    source = resolve_images(args.source, args.split, role="--source")
    translated = pair_translated(source, args.translated, args.split)
    target = resolve_images(args.target, args.target_split, role="--target")
    size = parse_size(args.size) if args.size else common_size([it.path for it in translated],
                                                                f"--translated {args.translated}: the images")
    reid = None
    if args.reid_config:
        reid = load_reid_model(args.reid_config, args.reid_weights, args.opts)
        if any(it.pid is None for it in source):
            bad = next(it for it in source if it.pid is None)
            raise TranslationQualityError(f"--source: {bad.name} carries no identity: the identity measure needs "
                                          f"Market-1501 file names <pid>_c<camera>... (the source's labels)")
    log(f"colour statistics of {len(source)} source, {len(translated)} translated and {len(target)} target images "
        f"at {size[0]}x{size[1]}")
    kwargs = dict(batch_size=args.batch, num_workers=args.workers)
    result: Dict[str, Any] = {
        "source": args.source, "translated": args.translated, "target": args.target, "split": args.split,
        "target_split": args.target_split, "images": {"source": len(source), "translated": len(translated),
                                                     "target": len(target)},
        "style": style_report(source, translated, target, size=size, **kwargs), "identity": None}
    if reid is not None:
        cfg, model = reid
        log(f"re-id features of {2 * len(source)} images ({cfg.MODEL.META_ARCHITECTURE}, {cfg.MODEL.DEVICE})")
        result["identity"] = identity_preservation(model, source, translated, cfg=cfg, **kwargs)
        result["identity"].update(reid_config=osp.abspath(args.reid_config),
                                  reid_weights=osp.abspath(args.reid_weights), reid_overrides=list(args.opts),
                                  meta_architecture=cfg.MODEL.META_ARCHITECTURE)
    return result


def markdown_table(result: Dict[str, Any]) -> str:
    """The results as a small markdown table: each measure for the untranslated source and the translation."""
    style = result["style"]
    n = result["images"]
    size = style["size"]
    at = f" at {size[0]}x{size[1]}" if size else ""
    lines = [f"source {result['source']} ({n['source']} images, {result['split']}), translated "
             f"{result['translated']}, target {result['target']} ({n['target']} images, {result['target_split']}); "
             f"colours measured{at}", "",
             "| measure | untranslated source | translated | change |", "| --- | ---: | ---: | ---: |",
             f"| style: Fréchet distance of Lab colour statistics to the target (lower: closer) | "
             f"{style['source_to_target']:.2f} | {style['translated_to_target']:.2f} | "
             f"{100 * style['relative_change']:+.1f}% |"]
    identity = result.get("identity")
    if identity:
        ref, tr = identity["reference"], identity["translated"]
        for key in ("Rank-1", "mAP"):
            lines.append(f"| identity: {key} (%) against the untranslated source images | {ref[key]:.1f} | "
                         f"{tr[key]:.1f} | {tr[key] - ref[key]:+.1f} |")
    else:
        lines.append("| identity: (give --reid-config and --reid-weights) | | | |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``translation_quality.py``: 0 on success (the table on stdout), 2 with one line on stderr for bad input."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        result = run(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    except TranslationQualityError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    print(markdown_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0

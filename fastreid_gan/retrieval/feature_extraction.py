"""Features of a folder of images, or of one split of a registered dataset, from any method's checkpoint.

What ``tools/extract_features.py`` does (``docs/retrieval.md``).  The feature of an image is what the evaluator
ranks: the model's eval ``forward`` (``TEST.LMP.*`` switches LMP on), plus the mirrored image's feature with
``TEST.FLIP.ENABLED`` as in fastreid's ``inference_on_dataset`` (not with LMP, whose feature is flip-summed
already).  Images are read and resized as the test loader reads them (fastreid's ``read_image`` + the config's
test transform), in batches, on ``MODEL.DEVICE``.

Outputs are written whole or not at all: each file goes to a temporary name beside it and is renamed into place
(:func:`atomic_write`), so an interrupted or failed run never leaves a half-written ``.npz`` or ``features.npy``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, IO, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms

from fastreid_gan.data.build import datasets_root

__all__ = [
    "IMAGE_EXTENSIONS",
    "BAD_IMAGE_POLICIES",
    "SPLITS",
    "RetrievalInputError",
    "ImageSet",
    "ExtractedFeatures",
    "folder_images",
    "dataset_images",
    "flip_test_enabled",
    "model_features",
    "extract_features",
    "atomic_write",
    "write_features",
    "read_features",
]

logger = logging.getLogger(__name__)

#: file endings read from an image folder (lower-case; the comparison ignores case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: ``--on-bad-image``: skip an unreadable file (named in a warning, counted) or stop with an error naming it
BAD_IMAGE_POLICIES = ("skip", "error")
SPLITS = ("query", "gallery", "train")
#: the files of a directory output (``labels``: only for a dataset's images)
DIR_FILES = ("features.npy", "files.txt", "meta.json")
DIR_LABEL_FILES = ("pids.npy", "camids.npy")


class RetrievalInputError(ValueError):
    """Bad input to the retrieval tools: the message names the problem and the fix, in one line."""


@dataclass
class ImageSet:
    """Image files to encode, with their identity labels when they come from a dataset split."""

    paths: List[str]
    pids: Optional[np.ndarray] = None      # (N,) int64, a dataset's
    camids: Optional[np.ndarray] = None    # (N,) int64
    source: str = ""                       # "folder DIR" / "dataset NAME, split SPLIT", for logs and meta
    dataset: str = ""                      # the dataset's registered name, and its split
    split: str = ""

    @property
    def labelled(self) -> bool:
        return self.pids is not None


@dataclass
class ExtractedFeatures:
    """Features (N, D) float32 of the readable images, in input order, with their paths (and labels)."""

    features: np.ndarray
    paths: List[str]
    pids: Optional[np.ndarray] = None
    camids: Optional[np.ndarray] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, why) of the unreadable files
    meta: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        return self.pids is not None


# ---------------------------------------------------------------------------------------------------- inputs
def folder_images(folder: str) -> ImageSet:
    """The image files under ``folder`` (recursively, sorted by path; endings :data:`IMAGE_EXTENSIONS`).

    Raises:
        RetrievalInputError: the folder does not exist or holds no image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RetrievalInputError(f"--images {folder}: not a folder (give a folder of image files)")
    paths = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise RetrievalInputError(f"--images {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in it or "
                                  f"its sub-folders")
    return ImageSet(paths, source=f"folder {folder}")


def registered_datasets() -> List[str]:
    """fastreid's registered dataset names (this project's synthetic ones included)."""
    return sorted(DATASET_REGISTRY._obj_map)  # fastreid's Registry has no public listing


def _int_labels(values: Sequence[Any], what: str, name: str) -> np.ndarray:
    try:
        return np.asarray([int(str(v).rsplit("_", 1)[-1]) for v in values], np.int64)
    except ValueError:
        raise RetrievalInputError(f"--dataset {name}: its {what} are not integers (e.g. {values[0]!r}), so no "
                                  f"labels can be written") from None


def dataset_images(name: str, split: str) -> ImageSet:
    """The images of one split of a registered dataset, with pids and camera ids (0-based, as the evaluator's).

    Training pids and camids, which fastreid prefixes with the dataset's name (``synthetic_market_12``), are
    written as the integers after the prefix.

    Raises:
        RetrievalInputError: an unregistered name (the registered ones are listed), an unknown split, a dataset
            that is missing or unreadable on disk, an empty split.
    """
    if split not in SPLITS:
        raise RetrievalInputError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    names = registered_datasets()
    if name not in names:
        raise RetrievalInputError(f"--dataset {name!r} is not a registered dataset; registered: {', '.join(names)}")
    try:
        data = DATASET_REGISTRY.get(name)(root=datasets_root())
        items = list({"train": data.train, "query": data.query, "gallery": data.gallery}[split])
    except (OSError, RuntimeError, ValueError, AssertionError) as exc:
        raise RetrievalInputError(f"--dataset {name}: {_one_line(exc)}") from None
    if not items:
        raise RetrievalInputError(f"--dataset {name}: its {split} split holds no images")
    return ImageSet([str(item[0]) for item in items], _int_labels([item[1] for item in items], "pids", name),
                    _int_labels([item[2] for item in items], "camera ids", name),
                    source=f"dataset {name}, split {split}", dataset=name, split=split)


# ---------------------------------------------------------------------------------------------------- features
def flip_test_enabled(cfg: Any) -> bool:
    """Whether the evaluator adds the mirrored image's feature: ``TEST.FLIP.ENABLED``, but not with LMP."""
    return bool(cfg.TEST.FLIP.ENABLED) and not bool(cfg.TEST.LMP.ENABLED)


@torch.no_grad()
def model_features(model: nn.Module, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The model's eval feature of a (B, 3, H, W) 0..255 batch; with ``flip`` averaged with the mirrored
    batch's, as fastreid's ``inference_on_dataset`` does.  ``images`` is not modified."""
    features = model({"images": images})
    if flip:
        features = (features + model({"images": images.flip(dims=[3])})) / 2
    return features


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _read_error(exc: BaseException) -> str:
    """Why an image could not be read: the decoder's own message (not the dataset-repair advice around it)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return _one_line(cause)


class _ImageFiles(Dataset):
    """``index -> (index, image (3, H, W) float 0..255 or None, why it is unreadable)`` through the test transform.

    An unreadable file is reported, not raised, so the policy is applied in the main process whatever the
    number of loader workers.
    """

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[int, Optional[torch.Tensor], str]:
        from fastreid.data import data_utils  # looked up here: fastreid_gan.compat wraps read_image

        try:
            # "RGB": a grayscale or RGBA file of a folder becomes 3 channels; an RGB file reads as the loader's
            image = data_utils.read_image(self.paths[index], "RGB")
            return index, self.transform(image).float(), ""
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError for some broken headers
            return index, None, _read_error(exc)


def _collate(items: List[Tuple[int, Optional[torch.Tensor], str]]):
    good = [(i, img) for i, img, _ in items if img is not None]
    bad = [(i, why) for i, img, why in items if img is None]
    indices = [i for i, _ in good]
    batch = torch.stack([img for _, img in good]) if good else None
    return indices, batch, bad


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def extract_features(model: nn.Module, images: ImageSet, cfg: Any, *, batch_size: Optional[int] = None,
                     on_bad_image: str = "skip", num_workers: Optional[int] = None, progress: bool = True,
                     desc: str = "features") -> ExtractedFeatures:
    """Encode ``images`` with ``model`` (in eval mode, on its device) as the evaluator would.

    Args:
        model: a loaded model (:func:`~fastreid_gan.model_loading.load_model_for_inference`).
        images: the files (and labels) to encode.
        cfg: the model's config: ``INPUT.SIZE_TEST`` and the test transform, ``TEST.FLIP``/``TEST.LMP``,
            ``TEST.IMS_PER_BATCH`` and ``DATALOADER.NUM_WORKERS`` (the defaults of the two options).
        on_bad_image: ``skip`` (each unreadable file is named in a warning and listed in ``skipped``) or
            ``error``.
        progress: show a progress bar (stderr).

    Raises:
        RetrievalInputError: an unreadable file with ``on_bad_image="error"`` (named), every file unreadable,
            an unknown policy.
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise RetrievalInputError(f"--on-bad-image {on_bad_image!r}: use one of {', '.join(BAD_IMAGE_POLICIES)}")
    batch_size = int(batch_size or cfg.TEST.IMS_PER_BATCH)
    if batch_size < 1:
        raise RetrievalInputError(f"--batch-size {batch_size}: must be at least 1")
    workers = int(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers)
    flip = flip_test_enabled(cfg)
    loader = DataLoader(_ImageFiles(images.paths, build_transforms(cfg, is_train=False)), batch_size=batch_size,
                        shuffle=False, num_workers=workers, collate_fn=_collate)
    was_training = model.training
    model.eval()
    features: Optional[np.ndarray] = None
    kept: List[int] = []
    skipped: List[Tuple[str, str]] = []
    try:
        with _progress_bar(len(images.paths), progress, desc) as bar:
            for indices, batch, bad in loader:
                for index, why in bad:
                    path = images.paths[index]
                    if on_bad_image == "error":
                        raise RetrievalInputError(f"cannot read image {path}: {why} (fix or delete the file, or "
                                                  f"pass --on-bad-image skip to leave it out)")
                    logger.warning("Skipping unreadable image %s: %s", path, why)
                    skipped.append((path, why))
                if batch is not None:
                    out = model_features(model, batch, flip).detach().to("cpu", torch.float32)
                    out = out.reshape(len(out), -1).numpy()
                    if features is None:  # one array for all (the skipped rows are cut off at the end)
                        features = np.empty((len(images.paths), out.shape[1]), np.float32)
                    features[len(kept):len(kept) + len(out)] = out
                    kept.extend(indices)
                bar.update(len(indices) + len(bad))
    finally:
        model.train(was_training)
    if not kept:
        raise RetrievalInputError(f"none of the {len(images.paths)} images of {images.source or 'the input'} could "
                                  f"be read (first: {skipped[0][0]}: {skipped[0][1]})")
    assert features is not None
    take = np.asarray(kept, np.int64)
    return ExtractedFeatures(
        features=features[:len(kept)],
        paths=[images.paths[i] for i in kept],
        pids=None if images.pids is None else images.pids[take],
        camids=None if images.camids is None else images.camids[take],
        skipped=skipped,
        meta={"source": images.source, "dataset": images.dataset, "split": images.split, "flip": flip,
              "feature_dim": int(features.shape[1]), "lmp": _lmp_meta(cfg), "skipped": [p for p, _ in skipped]},
    )


def _lmp_meta(cfg: Any) -> Optional[Dict[str, Any]]:
    lmp = cfg.TEST.LMP
    return {"parts": int(lmp.PARTS), "pool": str(lmp.POOL)} if lmp.ENABLED else None


# ---------------------------------------------------------------------------------------------------- files
def atomic_write(path: os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file whole or not at all: ``write(f)`` fills a temporary file beside ``path``, which is then
    renamed onto ``path``; if ``write`` fails, the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _npy_writer(array: np.ndarray) -> Callable[[IO[bytes]], None]:
    return lambda f: np.save(f, array, allow_pickle=False)


def _text_writer(text: str) -> Callable[[IO[bytes]], None]:
    return lambda f: f.write(text.encode("utf-8"))


def _check_paths_writable(paths: Sequence[str]) -> None:
    bad = next((p for p in paths if "\n" in p or "\r" in p), None)
    if bad is not None:
        raise RetrievalInputError(f"an image path holds a line break, which files.txt cannot list: {bad!r}; "
                                  f"rename the file or write an .npz")


def write_features(result: ExtractedFeatures, output: str) -> List[Path]:
    """Write ``result`` to ``output`` and return the files written.

    ``*.npz``: one file with ``features`` (N, D) float32, ``paths`` (N,) str, ``pids``/``camids`` (N,) int64
    for a dataset's images, and ``meta`` (a JSON string).  Anything else is a directory (created if needed) with
    ``features.npy``, ``files.txt`` (one path a line, in the features' order), ``meta.json`` and, for a dataset,
    ``pids.npy``/``camids.npy``; label files of an earlier run that this one has no labels for are removed.
    Every file is written atomically; a new directory is written under a temporary name and renamed into place.

    Raises:
        RetrievalInputError: ``output``'s parent is a file, or ``output`` names an existing file that is not
            ``.npz``.
    """
    out = Path(output)
    meta = json.dumps(result.meta, sort_keys=True)
    arrays: Dict[str, np.ndarray] = {"features": np.ascontiguousarray(result.features, np.float32),
                                     "paths": np.asarray(result.paths, dtype=str), "meta": np.asarray(meta)}
    if result.labelled:
        arrays["pids"] = np.asarray(result.pids, np.int64)
        arrays["camids"] = np.asarray(result.camids, np.int64)
    if out.parent.exists() and not out.parent.is_dir():
        raise RetrievalInputError(f"--output {output}: {out.parent} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npz":
        return [atomic_write(out, lambda f: np.savez(f, **arrays))]
    if out.exists() and not out.is_dir():
        raise RetrievalInputError(f"--output {output}: an existing file that is not .npz; give a path ending "
                                  f".npz for one file, or a folder for features.npy + files.txt")
    _check_paths_writable(result.paths)
    files = {"files.txt": _text_writer("".join(p + "\n" for p in result.paths)),
             "meta.json": _text_writer(meta + "\n")}
    if result.labelled:
        files["pids.npy"] = _npy_writer(arrays["pids"])
        files["camids.npy"] = _npy_writer(arrays["camids"])
    files["features.npy"] = _npy_writer(arrays["features"])  # last: its presence means the rest is there
    if not out.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(out.parent)))
        try:
            for name, writer in files.items():
                with open(staging / name, "wb") as f:
                    writer(f)
            os.rename(staging, out)
        except BaseException:
            for p in staging.glob("*"):
                p.unlink()
            staging.rmdir()
            raise
        return [out / name for name in files]
    # An existing folder: every file is complete before the renames, which follow one another at once.
    staged: List[Tuple[Path, Path]] = []
    try:
        for name, writer in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=str(out))
            staged.append((Path(tmp), out / name))
            with os.fdopen(fd, "wb") as f:
                writer(f)
    except BaseException:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    if not result.labelled:
        for name in DIR_LABEL_FILES:
            stale = out / name
            if stale.exists():
                stale.unlink()
    return [final for _, final in staged]


def read_features(path: str, what: str = "features") -> ExtractedFeatures:
    """Read what :func:`write_features` wrote (an ``.npz`` or a directory).  ``what`` names the option in errors.

    Raises:
        RetrievalInputError: the file or folder is missing, or is not such an output.
    """
    p = Path(path)
    try:
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                keys = set(z.files)
                if not {"features", "paths"} <= keys:
                    raise RetrievalInputError(f"{what} {path}: not an extract_features output (it has "
                                              f"{sorted(keys)}, not 'features' and 'paths')")
                features, paths = z["features"], [str(s) for s in z["paths"]]
                pids = z["pids"] if "pids" in keys else None
                camids = z["camids"] if "camids" in keys else None
                meta = json.loads(str(z["meta"])) if "meta" in keys else {}
        elif p.is_dir():
            missing = [n for n in ("features.npy", "files.txt") if not (p / n).is_file()]
            if missing:
                raise RetrievalInputError(f"{what} {path}: not an extract_features output folder ({', '.join(missing)} "
                                          f"missing)")
            features = np.load(p / "features.npy", allow_pickle=False)
            paths = (p / "files.txt").read_text(encoding="utf-8").splitlines()
            pids = np.load(p / "pids.npy") if (p / "pids.npy").is_file() else None
            camids = np.load(p / "camids.npy") if (p / "camids.npy").is_file() else None
            meta = json.loads((p / "meta.json").read_text()) if (p / "meta.json").is_file() else {}
        else:
            raise RetrievalInputError(f"{what} {path}: no such file or folder (write it with "
                                      f"tools/extract_features.py)")
    except (OSError, ValueError) as exc:
        if isinstance(exc, RetrievalInputError):
            raise
        raise RetrievalInputError(f"{what} {path}: cannot be read: {_one_line(exc)}") from None
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or len(features) != len(paths):
        raise RetrievalInputError(f"{what} {path}: {features.shape} features for {len(paths)} paths (a damaged or "
                                  f"mixed-up output: extract it again)")
    return ExtractedFeatures(features, paths, None if pids is None else np.asarray(pids, np.int64),
                             None if camids is None else np.asarray(camids, np.int64), meta=meta)

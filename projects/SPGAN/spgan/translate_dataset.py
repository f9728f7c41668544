"""Translate a whole source dataset into the target style with an SPGAN / eSPGAN translator and write it as a
dataset in Market-1501 layout (``projects/SPGAN/tools/translate.py``; docs/spgan.md, "Translating a dataset").

    python projects/SPGAN/tools/translate.py --config-file CFG --weights W [--dataset Market1501]
        [--output DIR] [--direction source_to_target] [--splits all|train] [--batch 16] [--overwrite] [KEY VALUE ...]

* Every image of the source's splits (``train``: ``bounding_box_train``; ``all``: also ``query`` and
  ``bounding_box_test``; what the dataset class reads, so junk ``-1`` images are not translated) is read in RGB,
  resized (bicubic, as fastreid's test transform) to the size the translator was trained on, ``INPUT.SIZE_TRAIN``,
  translated by G (``source_to_target``) or F (``target_to_source``) and written as JPEG (quality 95, no chroma
  subsampling) at that size, under its source file name: identities and cameras stay those of the source.
* Never a half-written dataset: everything goes to the sibling folder ``.<name>.partial``; the manifest
  ``translation.json`` (counts, the weights, config and direction) is written last, then the folder is renamed
  into place. A process killed on the way leaves only the partial folder, which the next run removes; a complete
  output is replaced only with ``--overwrite``; a folder that is neither is never touched.
* :class:`~spgan.translated_dataset.TranslatedMarket` reads the result (``DATASETS.NAMES ("TranslatedMarket",)``).

Bad input (a config of another method, weights of another method or size, an unknown direction or dataset, an
existing output) is a :class:`TranslationError` (or the checkpoint errors of :mod:`fastreid_gan.checkpoint_io`):
the CLI prints one line and exits with 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import os.path as osp
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fastreid.data.datasets import DATASET_REGISTRY

from fastreid_gan.checkpoint_io import CheckpointFileError, WeightsMismatchError, read_checkpoint
from fastreid_gan.config import ConfigKeyError, get_cfg, merge_config
from fastreid_gan.data.build import datasets_root
from fastreid_gan.model_loading import load_model_for_inference
from fastreid_gan.runner import resolve_device

from .metric_net import sianet_feature_map_size
from .translated_dataset import (MANIFEST_FILE, MANIFEST_FORMAT, SPLIT_FOLDERS, read_manifest, translated_folder)
from .translator import DIRECTIONS, CycleTranslator

__all__ = ["TranslationError", "SourceImage", "SPLIT_CHOICES", "JPEG_QUALITY", "partial_folder",
           "collect_source_images", "check_translator_config", "check_trained_size", "load_translator",
           "check_output", "prepare_output", "write_translated_dataset", "build_parser", "main"]

logger = logging.getLogger(__name__)

SPLIT_CHOICES: Dict[str, Tuple[str, ...]] = {"all": ("train", "query", "gallery"), "train": ("train",)}
JPEG_QUALITY = 95
MANIFEST_VERSION = 1
# What fastreid's Market-1501 reader takes from a file name: <pid>_c<camera>, at the start of the name
_NAME_RE = re.compile(r"(-?\d+)_c(\d+)")


class TranslationError(ValueError):
    """Bad input to the translation tool; the message is one line naming what to fix."""


@dataclass(frozen=True)
class SourceImage:
    """One image to translate: its split, its path, and the pid / camera (1-based) its file name carries."""

    split: str
    path: str
    pid: int
    camera: int

    @property
    def name(self) -> str:
        return osp.basename(self.path)


def partial_folder(output: str) -> str:
    """The sibling folder a run writes into before renaming it to ``output``: ``<parent>/.<name>.partial``."""
    output = osp.abspath(output)
    return osp.join(osp.dirname(output), f".{osp.basename(output)}.partial")


def _old_folder(output: str) -> str:
    output = osp.abspath(output)
    return osp.join(osp.dirname(output), f".{osp.basename(output)}.replaced")


# ---------------------------------------------------------------------------------------------- inputs
def _registered(registry: Any) -> Dict[str, Any]:
    """name -> object of a fastreid ``Registry`` (which has no public listing)."""
    return dict(getattr(registry, "_obj_map", {}))


def collect_source_images(dataset: str, splits: Sequence[str], root: Optional[str] = None) -> List[SourceImage]:
    """The images of ``splits`` of the registered dataset ``dataset``, as its fastreid class reads them.

    Raises:
        TranslationError: the dataset is not registered, missing or malformed, or a file name does not carry
            ``<pid>_c<camera>`` (the translated dataset keeps file names, so they must), or two images of a split
            share a name.
    """
    registered = _registered(DATASET_REGISTRY)
    if dataset not in registered:
        known = ", ".join(sorted(registered))
        raise TranslationError(f"--dataset {dataset!r} is not a registered dataset; registered: {known}")
    root = root if root is not None else datasets_root()
    # fastreid's Market1501 warns about its fallback layout before it finds nothing there: the warnings are shown
    # only when the dataset is read, not in front of the error that says it is missing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = DATASET_REGISTRY.get(dataset)(root=root)
            by_split = {split: list(getattr(data, split)) for split in splits}
        except (FileNotFoundError, RuntimeError, ValueError, AssertionError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TranslationError(f"--dataset {dataset}: {first}") from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    images: List[SourceImage] = []
    for split, items in by_split.items():
        seen: Dict[str, str] = {}
        for item in items:
            path = str(item[0])
            name = osp.basename(path)
            match = _NAME_RE.match(name)
            if match is None or not name.lower().endswith(".jpg"):
                raise TranslationError(
                    f"--dataset {dataset}: {path}: the translated dataset keeps file names, which must be Market-1501 "
                    f"style <pid>_c<camera>...jpg (Market1501, DukeMTMC and the synthetic datasets are)")
            if name in seen:
                raise TranslationError(f"--dataset {dataset}: two {split} images share the file name {name} "
                                       f"({seen[name]} and {path}); the translated {split} split cannot hold both")
            seen[name] = path
            images.append(SourceImage(split, path, int(match.group(1)), int(match.group(2))))
    return images


def check_translator_config(cfg: Any) -> None:
    """The config builds an SPGAN or eSPGAN translator, at a size its generator takes."""
    meta = cfg.MODEL.META_ARCHITECTURE
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    cls = _registered(META_ARCH_REGISTRY).get(meta)
    if not (isinstance(cls, type) and issubclass(cls, CycleTranslator)):
        raise TranslationError(f"MODEL.META_ARCHITECTURE {meta!r} has no translator: give an SPGAN or eSPGAN config "
                               f"(projects/SPGAN/configs/market2duke.yml, espgan_market2duke.yml)")
    h, w = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    step = 2 ** int(cfg.MODEL.SPGAN.GENERATOR.N_DOWNSAMPLING)
    if h < step or w < step or h % step or w % step:
        raise TranslationError(f"INPUT.SIZE_TRAIN {[h, w]}: the generator takes heights and widths that are "
                               f"multiples of {step} (2**MODEL.SPGAN.GENERATOR.N_DOWNSAMPLING)")


def check_trained_size(cfg: Any, weights: str) -> None:
    """Refuse a config whose ``INPUT.SIZE_TRAIN`` is not the size the weights were trained at, where that is known.

    The generators are fully convolutional, so their weights do not tell their training size. Two things do: the
    ``config.yaml`` that a training run writes next to its checkpoints (checked here), and, for SPGAN, SiaNet's
    fc1, whose input follows the size (checked by :func:`load_translator`).
    """
    sibling = osp.join(osp.dirname(osp.abspath(weights)), "config.yaml")
    if not osp.isfile(sibling):
        return
    import yaml

    try:
        with open(sibling, "r", encoding="utf-8") as f:
            trained = yaml.safe_load(f) or {}
        size = [int(v) for v in trained["INPUT"]["SIZE_TRAIN"]]
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return  # not a config of a run: nothing to compare with
    wanted = [int(v) for v in cfg.INPUT.SIZE_TRAIN]
    if size != wanted:
        raise TranslationError(
            f"--weights {weights} were trained at {size[0]}x{size[1]} ({sibling}: INPUT.SIZE_TRAIN {size}), the "
            f"config translates at {wanted[0]}x{wanted[1]}: use that config, or add INPUT.SIZE_TRAIN {size} "
            f"INPUT.SIZE_TEST {size}")


def load_translator(cfg: Any, weights: str, source: str = "--weights") -> CycleTranslator:
    """The config's SPGAN / eSPGAN with ``weights`` loaded, in eval mode. A SPGAN file trained at another image
    size is named as such (its SiaNet's fc1 does not fit)."""
    check_translator_config(cfg)
    check_trained_size(cfg, weights)
    try:
        model = load_model_for_inference(cfg, weights, source=source)
    except WeightsMismatchError:
        hint = _sianet_size_hint(cfg, weights)
        if hint:
            raise TranslationError(hint) from None
        raise
    assert isinstance(model, CycleTranslator)
    return model


def _sianet_size_hint(cfg: Any, weights: str) -> str:
    if cfg.MODEL.META_ARCHITECTURE != "SPGAN":
        return ""
    state = read_checkpoint(weights, source="--weights")["model"]
    fc1 = state.get("sianet.fc1.weight", state.get("module.sianet.fc1.weight"))
    if fc1 is None or fc1.dim() != 2:
        return ""
    size = [int(v) for v in cfg.INPUT.SIZE_TRAIN]
    h, w = sianet_feature_map_size(size)
    expected = int(cfg.MODEL.SPGAN.METRIC.CHANNELS[-1]) * h * w
    if int(fc1.shape[1]) == expected:
        return ""
    return (f"--weights {weights} were trained at another image size than INPUT.SIZE_TRAIN {size}: their SiaNet fc1 "
            f"takes {int(fc1.shape[1])} inputs, {expected} at {size[0]}x{size[1]} (2048 at the published 256x128); "
            f"set INPUT.SIZE_TRAIN and INPUT.SIZE_TEST to the training size (the config.yaml of the training run)")


def check_output(output: str, overwrite: bool) -> None:
    """Refuse an ``output`` that this run must not replace.

    Raises:
        TranslationError: ``output`` holds a complete translated dataset and ``overwrite`` is off, or it is a
            non-empty folder that translate.py did not write (never deleted, whatever ``overwrite`` says), or a file.
    """
    output = osp.abspath(output)
    if not osp.lexists(output):
        return
    if not osp.isdir(output):
        raise TranslationError(f"--output {output} is a file: give a folder")
    manifest = read_manifest(output)
    if manifest is not None and not overwrite:
        counts = _counts(manifest)
        raise TranslationError(f"--output {output} already holds a complete translated dataset ({counts} images, "
                               f"{manifest['direction']} with {manifest['weights']}): pass --overwrite to replace "
                               f"it, or choose another --output")
    if manifest is None and os.listdir(output):
        raise TranslationError(f"--output {output} is a non-empty folder without {MANIFEST_FILE} (not written by "
                               f"translate.py): remove it or choose another --output")


def prepare_output(output: str, overwrite: bool) -> str:
    """:func:`check_output`, then a fresh partial folder for ``output`` (one an interrupted run left is removed);
    returns the partial folder."""
    check_output(output, overwrite)
    partial = partial_folder(output)
    if osp.lexists(partial):
        logger.warning("Removing %s: the partial output of an interrupted translation", partial)
        shutil.rmtree(partial)
    os.makedirs(partial)
    return partial


# ---------------------------------------------------------------------------------------------- translation
class _ImageFiles(Dataset):
    """(index, (3, H, W) float 0..255) of image files, RGB, resized (bicubic) to ``size`` = (H, W)."""

    def __init__(self, paths: Sequence[str], size: Tuple[int, int]) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[int, torch.Tensor]:
        with Image.open(self.paths[index]) as img:
            img = img.convert("RGB")
            if img.size != (self.size[1], self.size[0]):
                img = img.resize((self.size[1], self.size[0]), Image.BICUBIC)
            array = np.asarray(img, dtype=np.float32)
        return index, torch.from_numpy(array.copy()).permute(2, 0, 1)


class _Progress:
    """tqdm when it is installed, else a line every few seconds (and at the end) on stderr."""

    def __init__(self, total: int, desc: str, every_s: float = 5.0) -> None:
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done, self.start, self.last = 0, time.perf_counter(), 0.0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(f"{self.desc}: {self.done}/{self.total} images ({rate:.1f} img/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def save_jpeg(image: np.ndarray, path: str) -> None:
    """Write an (H, W, 3) uint8 RGB array as the dataset's JPEG (quality 95, no chroma subsampling)."""
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


@torch.no_grad()
def write_translated_dataset(model: CycleTranslator, images: Sequence[SourceImage], output: str, *,
                             direction: str = "source_to_target", batch_size: int = 16, num_workers: int = 0,
                             overwrite: bool = False, splits: Optional[Sequence[str]] = None,
                             info: Optional[Dict[str, Any]] = None, on_batch: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """Translate ``images`` with ``model`` and write them as a complete dataset at ``output``; returns the manifest.

    Images go to ``<partial>/<split folder>/<source file name>`` at ``model.image_size``; ``splits`` (default: those
    of ``images``) get a folder and a manifest entry even when empty. ``translation.json`` (``info`` plus the counts)
    is written last, then the partial folder replaces ``output`` (see the module
    docstring). On an exception the partial folder is removed; a killed process leaves it for the next run to
    remove. ``on_batch(n_done)`` is called after each written batch (progress, tests).
    """
    if direction not in DIRECTIONS:
        raise TranslationError(f"--direction {direction!r} does not exist: choose {' or '.join(DIRECTIONS)}")
    if batch_size < 1:
        raise TranslationError(f"--batch {batch_size}: give at least 1")
    output = osp.abspath(output)
    if any(osp.abspath(im.path).startswith(output + os.sep) for im in images):
        raise TranslationError(f"--output {output} holds the source images themselves: choose another folder")
    splits = list(splits or sorted({im.split for im in images}, key=list(SPLIT_FOLDERS).index))
    unknown = sorted({im.split for im in images} - set(splits))
    if unknown:
        raise ValueError(f"images of splits {unknown} outside splits {splits}")
    partial = prepare_output(output, overwrite)
    try:
        for split in splits:
            os.makedirs(osp.join(partial, SPLIT_FOLDERS[split]), exist_ok=True)
        size = (int(model.image_size[0]), int(model.image_size[1]))
        loader = DataLoader(_ImageFiles([im.path for im in images], size), batch_size=batch_size,
                            num_workers=num_workers, shuffle=False)
        progress = _Progress(len(images), f"translating ({direction})")
        device = model.device
        done = 0
        try:
            for indices, batch in loader:
                fake = model.translate(batch.to(device), direction)
                pixels = fake.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for k, index in enumerate(indices.tolist()):
                    im = images[index]
                    save_jpeg(pixels[k], osp.join(partial, SPLIT_FOLDERS[im.split], im.name))
                done += len(indices)
                progress.update(len(indices))
                if on_batch is not None:
                    on_batch(done)
        finally:
            progress.close()
        result = _manifest(images, splits, info or {}, direction, size)
        _write_json_durably(osp.join(partial, MANIFEST_FILE), result)  # last: marks the folder complete
        _move_into_place(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return result


def _manifest(images: Sequence[SourceImage], requested: Sequence[str], info: Dict[str, Any], direction: str,
              size: Tuple[int, int]) -> Dict[str, Any]:
    splits = {}
    for split in requested:
        mine = [im for im in images if im.split == split]
        splits[split] = {"folder": SPLIT_FOLDERS[split], "images": len(mine), "ids": len({im.pid for im in mine}),
                         "cameras": len({im.camera for im in mine})}
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **info, "direction": direction,
            "image_size": list(size), "jpeg_quality": JPEG_QUALITY,
            "num_cams": max([im.camera for im in images] or [1]), "splits": splits,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _write_json_durably(path: str, data: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _move_into_place(partial: str, output: str) -> None:
    """Rename ``partial`` to ``output``; an existing (complete or empty) ``output`` is moved aside first and removed
    after, so ``output`` is never a mix of two runs."""
    old = _old_folder(output)
    if osp.lexists(old):
        shutil.rmtree(old)
    if osp.lexists(output):
        os.rename(output, old)
    os.rename(partial, output)
    if osp.lexists(old):
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- the CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="translate.py",
        description="Translate a source dataset into the target style with an SPGAN / eSPGAN translator and write it "
                    "as a Market-1501-layout dataset that DATASETS.NAMES ('TranslatedMarket',) reads.")
    p.add_argument("--config-file", required=True, help="the SPGAN / eSPGAN config the weights were trained with")
    p.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS of the config)")
    p.add_argument("--dataset", default="", help="registered source dataset (default: the config's first "
                                                 "DATASETS.NAMES, the source domain)")
    p.add_argument("--output", default="", help="folder to write (default: $SPGAN_TRANSLATED_DIR, else "
                                                "<FASTREID_DATASETS>/spgan-translated: where TranslatedMarket reads)")
    p.add_argument("--direction", default=DIRECTIONS[0],
                   help=f"{DIRECTIONS[0]} (G, the default) or {DIRECTIONS[1]} (F)")
    p.add_argument("--splits", default="all", help="all (train, query, gallery) or train")
    p.add_argument("--batch", type=int, default=16, help="images per translation batch")
    p.add_argument("--overwrite", action="store_true", help="replace a complete translated dataset at --output")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``translate.py``: 0 on success, 2 with one line on stderr for bad input."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        manifest = run(args)
    except (TranslationError, WeightsMismatchError, CheckpointFileError, ConfigKeyError, FileNotFoundError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(_done_line(manifest, _counts(manifest)))
    return 0


def _counts(manifest: Dict[str, Any]) -> str:
    """"train 12, query 3" in the Market-1501 order of the splits."""
    order = list(SPLIT_FOLDERS)
    splits = sorted(manifest["splits"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return ", ".join(f"{name} {v['images']}" for name, v in splits)


def _done_line(manifest: Dict[str, Any], counts: str) -> str:
    output = manifest["output"]
    where = ("" if output == translated_folder() else f" with SPGAN_TRANSLATED_DIR={output}")
    return (f"wrote {output} ({counts} images at {manifest['image_size'][0]}x{manifest['image_size'][1]}): configs "
            f"read it as DATASETS.NAMES ('TranslatedMarket',){where}")


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """The CLI's work on parsed arguments; returns the manifest written (with ``output``)."""
    if args.direction not in DIRECTIONS:
        raise TranslationError(f"--direction {args.direction!r} does not exist: choose {' or '.join(DIRECTIONS)}")
    if args.splits not in SPLIT_CHOICES:
        raise TranslationError(f"--splits {args.splits!r}: choose {' or '.join(SPLIT_CHOICES)}")
    if args.batch < 1:
        raise TranslationError(f"--batch {args.batch}: give at least 1")
    try:
        cfg = merge_config(get_cfg(), args.config_file, args.opts)
    except ValueError as exc:
        raise TranslationError(str(exc)) from None
    check_translator_config(cfg)
    weights = args.weights or cfg.MODEL.WEIGHTS
    source = "--weights" if args.weights else "MODEL.WEIGHTS"
    if not weights:
        raise TranslationError("no weights: give --weights /path/to/model_final.pth (a trained or converted SPGAN / "
                               "eSPGAN checkpoint)")
    if not osp.isfile(weights):
        raise TranslationError(f"{source} {weights}: file not found")
    check_trained_size(cfg, weights)
    dataset = args.dataset or (cfg.DATASETS.NAMES[0] if cfg.DATASETS.NAMES else "")
    if not dataset:
        raise TranslationError("no source dataset: give --dataset NAME (a registered dataset)")
    output = osp.abspath(args.output or translated_folder())
    # checked before the slow steps (dataset, model) and again when writing
    check_output(output, args.overwrite)
    splits = SPLIT_CHOICES[args.splits]
    images = collect_source_images(dataset, splits)
    resolve_device(cfg)
    try:
        model = load_translator(cfg, weights, source=source)
    except ValueError as exc:  # a config the model refuses to build (SPGAN's SIZE_TEST != SIZE_TRAIN, ...)
        if isinstance(exc, (WeightsMismatchError, CheckpointFileError, TranslationError)):
            raise
        raise TranslationError(f"{args.config_file}: {exc}") from None
    info = {"source_dataset": dataset, "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
            "config_file": osp.abspath(args.config_file), "config_overrides": list(args.opts),
            "weights": osp.abspath(weights)}
    manifest = write_translated_dataset(model, images, output, direction=args.direction, batch_size=args.batch,
                                        num_workers=int(cfg.DATALOADER.NUM_WORKERS), overwrite=args.overwrite,
                                        splits=splits, info=info)
    return {**manifest, "output": output}

"""SPGAN's two-domain training data (TPAMI Sec. 3.2; py-spgan ``train_spgan.py``): a labelled source and the
unlabelled training split of a target, sampled unaligned.

* source: ``DATASETS.NAMES`` (their training splits, relabelled: ``targets`` are source identities);
* target: ``MODEL.SPGAN.TARGET_DATASET``, its training split only (never query or gallery, whatever
  ``DATASETS.COMBINEALL`` says), its labels unused.

Each domain is an independent seeded stream: one permutation of the domain per pass over it, so a batch pairs
source and target images at random (unaligned, as the two shuffled loaders of the official code). Global batch b
covers positions ``[b * B * W, (b + 1) * B * W)`` of both streams, rank r takes its slice, and every position has its
own augmentation seed: the stream is a pure function of ``(SEED, batch, rank)``, so a resumed run continues it
exactly (the sampler's ``start_batch``). eSPGAN's feature learner also takes a *fresh* labelled source batch per
iteration (``fresh_source``: a third independent stream over the source, published ``espgan.py``). An "epoch" is
``MODEL.SPGAN.SCHEDULE.EPOCH_ITERS`` iterations, by default ``min(|source|, |target|) // SOLVER.IMS_PER_BATCH``
(the published ``min(len(a_loader), len(b_loader))``).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm

from fastreid_gan.data.build import (SeededInfiniteBatchSampler, _train_seed, _worker_init, build_train_set,
                                    datasets_root, gan_train_transforms)
from fastreid_gan.data.pairs import seeded_rng

__all__ = ["TwoDomainBatchSampler", "TwoDomainDataset", "build_two_domain_loader", "default_epoch_iters",
           "domain_sizes", "target_train_items"]

logger = logging.getLogger(__name__)

TARGET_KEY = "MODEL.SPGAN.TARGET_DATASET"


def target_train_items(cfg: Any) -> List[tuple]:
    """The training items ``(path, pid, camid, ...)`` of ``MODEL.SPGAN.TARGET_DATASET``, checked.

    Raises:
        ValueError: no target named, the target is one of the source datasets (or reads the same images), or its
            training split is empty.
        KeyError: the name is not a registered dataset.
        FileNotFoundError: the dataset's folder is missing (the dataset class's error, prefixed with the key).
    """
    name = str(cfg.MODEL.SPGAN.TARGET_DATASET).strip()
    sources = [str(n) for n in cfg.DATASETS.NAMES]
    if not name:
        raise ValueError(f"{TARGET_KEY} is empty: SPGAN trains on a labelled source (DATASETS.NAMES {sources}) and the "
                         f"unlabelled training split of a target domain; name the target's registered dataset "
                         f"(e.g. {TARGET_KEY} DukeMTMC, or SyntheticMarket)")
    if name in sources:
        raise ValueError(f"{TARGET_KEY} {name!r} is also a source dataset (DATASETS.NAMES {sources}): SPGAN translates "
                         f"between two different domains")
    try:
        dataset_class = DATASET_REGISTRY.get(name)
    except KeyError:
        raise KeyError(f"{TARGET_KEY} {name!r} is not a registered dataset (fastreid's DATASET_REGISTRY has e.g. "
                       f"{sorted(DATASET_REGISTRY._obj_map)[:8]} ...)") from None
    try:
        data = dataset_class(root=datasets_root(), combineall=False)
    except FileNotFoundError as exc:
        raise type(exc)(f"{TARGET_KEY} {name!r}: {exc}") from exc
    items = list(data.train)
    if not items:
        raise ValueError(f"{TARGET_KEY} {name!r} has no training images (its train split under {datasets_root()} is "
                         f"empty): SPGAN needs unlabelled target images to translate towards")
    return items


def domain_sizes(cfg: Any) -> Tuple[int, int]:
    """``(|source training images|, |target training images|)`` of the config (reads both datasets' lists)."""
    source = 0
    for name in cfg.DATASETS.NAMES:
        source += len(DATASET_REGISTRY.get(name)(root=datasets_root(), combineall=cfg.DATASETS.COMBINEALL).train)
    return source, len(target_train_items(cfg))


def default_epoch_iters(source_size: int, target_size: int, ims_per_batch: int) -> int:
    """The published epoch: ``min(|source|, |target|) // batch`` iterations (at least 1)."""
    return max(1, min(int(source_size), int(target_size)) // max(int(ims_per_batch), 1))


class TwoDomainBatchSampler(SeededInfiniteBatchSampler):
    """Infinite batches of ``(source index, target index, sample seed)`` keys, with ``fresh_source`` a fourth
    entry, the index of the fresh source image (see the module docstring).

    Iteration from ``start_batch`` and ``state_dict()`` / ``load_state_dict()`` are the engine's sampler's
    (inherited); ``samples_per_pass`` is one SPGAN epoch in images (``epoch_iters`` x global batch), so the
    trainer's logged epoch is the schedule's.
    """

    def __init__(self, source_size: int, target_size: int, batch_size: int, seed: int, epoch_iters: int,
                 rank: int = 0, world_size: int = 1, fresh_source: bool = False) -> None:
        if source_size <= 0 or target_size <= 0:
            raise ValueError(f"SPGAN needs images in both domains: {source_size} source, {target_size} target")
        self.size, self.target_size = int(source_size), int(target_size)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.epoch_iters = int(epoch_iters)
        self.rank, self.world_size = rank, world_size
        self.fresh_source = bool(fresh_source)
        self.start_batch = 0
        self._cache: Dict[Tuple[int, int], np.ndarray] = {}

    @property
    def samples_per_pass(self) -> int:
        """Images of one SPGAN epoch (global)."""
        return self.epoch_iters * self.batch_size * self.world_size

    def _permutation(self, domain: int, data_pass: int) -> np.ndarray:
        key = (domain, data_pass)
        if key not in self._cache:
            if len(self._cache) > 6:
                self._cache.clear()
            size = self.target_size if domain == 1 else self.size  # 0: source, 1: target, 2: fresh source
            self._cache[key] = np.random.default_rng([self.seed, domain, data_pass]).permutation(size)
        return self._cache[key]

    def _index(self, domain: int, position: int) -> int:
        size = self.target_size if domain == 1 else self.size
        return int(self._permutation(domain, position // size)[position % size])

    def keys(self, batch: int) -> List[Tuple[int, ...]]:
        """The keys of batch ``batch`` on this rank."""
        first = (batch * self.world_size + self.rank) * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            seed = int(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
            key: Tuple[int, ...] = (self._index(0, position), self._index(1, position), seed)
            if self.fresh_source:
                key += (self._index(2, position),)
            keys.append(key)
        return keys

    def _clear_cache(self) -> None:
        self._cache.clear()


class TwoDomainDataset(Dataset):
    """``dataset[(source index, target index, seed)]``: ``images``, ``targets``, ``camids``, ``img_paths`` of the
    source image (fastreid's ``CommDataset`` sample) and ``target_images``, ``target_img_paths`` of the target
    image (no target label), each augmented under its own seed derived from ``seed``; a fourth key entry (the
    fresh source index) adds ``fresh_images``, ``fresh_targets``, ``fresh_img_paths``."""

    def __init__(self, source: CommDataset, target: CommDataset) -> None:
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def num_cameras(self) -> int:
        return self.source.num_cameras

    @property
    def img_items(self) -> List[tuple]:
        return self.source.img_items

    def __getitem__(self, key: Tuple[int, int, int]) -> Dict[str, Any]:
        source_index, target_index, seed = key[:3]
        with seeded_rng(seed):
            sample = self.source[source_index]
        with seeded_rng(seed + 1):
            target = self.target[target_index]
        sample["target_images"] = target["images"]
        sample["target_img_paths"] = target["img_paths"]
        if len(key) > 3:
            with seeded_rng(seed + 2):
                fresh = self.source[key[3]]
            sample.update(fresh_images=fresh["images"], fresh_targets=fresh["targets"],
                          fresh_img_paths=fresh["img_paths"])
        return sample


def build_two_domain_loader(cfg: Any, fresh_source: bool = False) -> DataLoader:
    """SPGAN's training loader (see the module docstring); ``SOLVER.IMS_PER_BATCH`` source + as many target images
    per global batch (and as many fresh source images with ``fresh_source``: eSPGAN)."""
    target_items = target_train_items(cfg)
    source = build_train_set(cfg)
    if len(source) == 0:
        raise ValueError(f"DATASETS.NAMES {list(cfg.DATASETS.NAMES)} has no training images: SPGAN's source is empty")
    overlap = {item[0] for item in source.img_items} & {item[0] for item in target_items}
    if overlap:
        raise ValueError(f"{TARGET_KEY} {cfg.MODEL.SPGAN.TARGET_DATASET!r} reads {len(overlap)} of the source's images "
                         f"(DATASETS.NAMES {list(cfg.DATASETS.NAMES)}), e.g. {sorted(overlap)[0]}: source and target "
                         f"must be different domains")
    target = CommDataset(target_items, gan_train_transforms(cfg), relabel=True)
    if comm.is_main_process():
        logger.info("SPGAN: %d source images (%s), %d target images (%s, unlabelled)", len(source),
                    ", ".join(cfg.DATASETS.NAMES), len(target), cfg.MODEL.SPGAN.TARGET_DATASET)
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by {world_size} processes")
    epoch_iters = int(cfg.MODEL.SPGAN.SCHEDULE.EPOCH_ITERS) or default_epoch_iters(
        len(source), len(target), cfg.SOLVER.IMS_PER_BATCH)
    sampler = TwoDomainBatchSampler(len(source), len(target), cfg.SOLVER.IMS_PER_BATCH // world_size,
                                    _train_seed(cfg), epoch_iters, comm.get_rank(), world_size, fresh_source)
    num_workers = int(cfg.DATALOADER.NUM_WORKERS)
    return DataLoader(TwoDomainDataset(source, target), batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(),
                      worker_init_fn=_worker_init if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(sampler.seed))

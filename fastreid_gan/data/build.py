"""CPU-safe data loaders of the GAN engine (plain torch ``DataLoader``; fastreid's ``DataLoaderX`` needs CUDA streams).

Training: :func:`build_gan_train_loader` — an infinite, seeded stream whose batch ``b`` on rank ``r`` is a
pure function of ``(seed, b, r)``, so a resumed run continues the stream exactly (the trainer sets the
sampler's ``start_batch``).  Testing: :func:`build_test_loader`, fastreid's
``build_reid_test_loader`` without ``DataLoaderX``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data._utils.collate import default_collate

from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.samplers import InferenceSampler
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from .pairs import SampleHook, SeededPairDataset

__all__ = [
    "SeededInfiniteBatchSampler",
    "build_gan_train_loader",
    "build_test_loader",
    "build_train_set",
    "gan_train_transforms",
    "datasets_root",
]

logger = logging.getLogger(__name__)


def datasets_root() -> str:
    """Where fastreid datasets live: ``$FASTREID_DATASETS`` (read at call time), default ``datasets``."""
    return os.getenv("FASTREID_DATASETS", "datasets")


class SeededInfiniteBatchSampler(Sampler):
    """Infinite batches of ``(index, sample_seed)`` keys for :class:`~fastreid_gan.data.pairs.SeededPairDataset`.

    The global stream is ``perm(seed, 0) + perm(seed, 1) + ...`` (one random permutation of the dataset
    per pass).  Global batch ``b`` covers positions ``[b * B * W, (b + 1) * B * W)`` (``B`` per-rank batch
    size, ``W`` world size), rank ``r`` takes the ``r``-th slice of ``B``, so ranks see different data.
    Every position also gets its own augmentation seed.  Iteration starts at ``start_batch``.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size <= 0:
            raise ValueError("The training set is empty")
        self.size = size
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.start_batch = 0
        self._cached_pass: Tuple[int, Optional[np.ndarray]] = (-1, None)

    def _permutation(self, data_pass: int) -> np.ndarray:
        if self._cached_pass[0] != data_pass:
            rng = np.random.default_rng([self.seed, data_pass])
            self._cached_pass = (data_pass, rng.permutation(self.size))
        return self._cached_pass[1]

    def keys(self, batch: int) -> List[Tuple[int, int]]:
        """The ``(index, sample_seed)`` keys of batch ``batch`` on this rank."""
        first = (batch * self.world_size + self.rank) * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            index = int(self._permutation(position // self.size)[position % self.size])
            sample_seed = int(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
            keys.append((index, sample_seed))
        return keys

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        batch = self.start_batch
        while True:
            yield self.keys(batch)
            batch += 1

    def state_dict(self) -> dict:
        return {"seed": self.seed, "start_batch": self.start_batch}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.start_batch = int(state["start_batch"])
        self._clear_cache()

    def _clear_cache(self) -> None:
        """Forget cached permutations (they depend on the seed)."""
        self._cached_pass = (-1, None)


def gan_train_transforms(cfg: Any) -> Any:
    """fastreid's training transforms WITHOUT random erasing.

    GAN methods need clean images for their generators and reconstruction losses; they erase where they
    need it (e.g. DG-Net erases only the inputs of its re-id branch), so the loader never does.
    """
    cfg = cfg.clone()
    cfg.defrost()
    if cfg.INPUT.REA.ENABLED:
        logger.info("INPUT.REA (random erasing) is ignored by the GAN loader: methods apply erasing themselves")
    cfg.INPUT.REA.ENABLED = False
    if cfg.INPUT.RPT.ENABLED:
        logger.warning("INPUT.RPT (random patch) keeps a patch pool across samples: the data stream is not "
                       "reproducible and a resumed run will differ from an uninterrupted one")
    return build_transforms(cfg, is_train=True)


def _worker_init(worker_id: int) -> None:
    # each sample is augmented under its own seed (SeededPairDataset), so workers need no distinct seeds;
    # one thread per worker keeps a small machine responsive
    torch.set_num_threads(1)


def _train_seed(cfg: Any) -> int:
    seed = int(cfg.SEED)
    # every rank must use the same seed: shared_random_seed() agrees on one through an all_gather
    return seed if seed >= 0 else int(comm.shared_random_seed())


def build_train_set(cfg: Any, names: Optional[Sequence[str]] = None) -> CommDataset:
    """fastreid's relabelled ``CommDataset`` over the training images of ``names`` (default
    ``cfg.DATASETS.NAMES``) with :func:`gan_train_transforms`."""
    items = []
    for name in cfg.DATASETS.NAMES if names is None else names:
        data = DATASET_REGISTRY.get(name)(root=datasets_root(), combineall=cfg.DATASETS.COMBINEALL)
        if comm.is_main_process():
            data.show_train()
        items.extend(data.train)
    return CommDataset(items, gan_train_transforms(cfg), relabel=True)


def build_gan_train_loader(cfg: Any, sample_hook: Optional[SampleHook] = None) -> DataLoader:
    """An infinite training loader over ``cfg.DATASETS.NAMES`` for the GAN engine.

    Batches are dicts with ``images`` (float ``(B, 3, H, W)`` in 0..255, RGB), ``targets``, ``camids``,
    ``img_paths`` and, with ``cfg.DATALOADER.POSITIVES``, ``pos_images``/``pos_targets``/``pos_img_paths``;
    ``sample_hook(sample, rng)`` may add method-specific fields per sample (see
    :data:`~fastreid_gan.data.pairs.SampleHook`).  ``B`` is ``SOLVER.IMS_PER_BATCH // world_size``.
    ``DATALOADER.SAMPLER_TRAIN`` is not used: the stream is a seeded shuffle (``cfg.SEED`` when >= 0, else
    a random seed shared by all ranks).  The sampler (``loader.batch_sampler``) has ``start_batch`` and
    ``state_dict()`` for resuming.
    """
    dataset = SeededPairDataset(
        build_train_set(cfg), positives=bool(cfg.DATALOADER.POSITIVES), sample_hook=sample_hook
    )

    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by {world_size} processes")
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        logger.info("DATALOADER.SAMPLER_TRAIN=%s is ignored by the GAN loader (seeded shuffle; "
                    "DATALOADER.POSITIVES adds same-identity pairs)", cfg.DATALOADER.SAMPLER_TRAIN)
    sampler = SeededInfiniteBatchSampler(
        len(dataset), cfg.SOLVER.IMS_PER_BATCH // world_size, _train_seed(cfg), comm.get_rank(), world_size
    )
    num_workers = int(cfg.DATALOADER.NUM_WORKERS)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=default_collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_init if num_workers > 0 else None,
        # a private generator: creating the iterator must not consume the global torch RNG (exact resume)
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def build_test_loader(cfg: Any, dataset_name: str) -> Tuple[DataLoader, int]:
    """``(loader over query + gallery of dataset_name, number of queries)``, sharded over ranks."""
    data = DATASET_REGISTRY.get(dataset_name)(root=datasets_root())
    if comm.is_main_process():
        data.show_test()
    test_set = CommDataset(data.query + data.gallery, build_transforms(cfg, is_train=False), relabel=False)
    batch_size = max(cfg.TEST.IMS_PER_BATCH // comm.get_world_size(), 1)
    batch_sampler = torch.utils.data.BatchSampler(InferenceSampler(len(test_set)), batch_size, False)
    num_workers = int(cfg.DATALOADER.NUM_WORKERS)
    loader = DataLoader(
        test_set,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=default_collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )
    return loader, len(data.query)

"""Training-set wrapper of the GAN loader: per-sample seeded augmentation and same-identity positives.

Every sample is requested as ``(index, seed)``: its augmentation (torchvision uses torch's RNG, some of
fastreid's transforms python's or numpy's) and its positive are drawn from RNGs seeded with ``seed``
and restored afterwards.  So the data stream is a pure function of the sampler's seed and position,
whatever the number of worker processes, and loading data never disturbs the training RNGs — which is
what makes a resumed run bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import random
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["seeded_rng", "SeededPairDataset", "SampleHook"]

# hook(sample, rng) adds method-specific fields to one training sample (e.g. pose heatmaps read from
# sample["img_paths"], or a random image of another domain drawn with rng); it may modify the dict in
# place or return a new one.  It runs in the loader's workers under the sample's seed.
SampleHook = Callable[[Dict[str, Any], random.Random], Optional[Dict[str, Any]]]


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU) RNGs with ``seed`` inside the block; restore them after."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # the CPU generator only: torch.manual_seed would also queue CUDA seeding, capturing a stack trace per call
    # (milliseconds per sample in a loader without CUDA)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededPairDataset(Dataset):
    """Wraps fastreid's ``CommDataset`` (relabelled, with its transform).

    ``dataset[(index, seed)]`` is the ``CommDataset`` sample (``images``, ``targets``, ``camids``,
    ``img_paths``) augmented under ``seed``; with ``positives=True`` it also holds ``pos_images``,
    ``pos_targets`` and ``pos_img_paths``: another image of the same identity (the image itself when the
    identity has one image).  ``sample_hook`` (see :data:`SampleHook`) then adds method-specific fields.
    """

    def __init__(self, comm_dataset: Any, positives: bool = False, sample_hook: Optional[SampleHook] = None) -> None:
        self.dataset = comm_dataset
        self.positives = positives
        self.sample_hook = sample_hook
        by_pid: Dict[Any, List[int]] = defaultdict(list)
        for index, item in enumerate(comm_dataset.img_items):
            by_pid[item[1]].append(index)
        self._same_pid: Dict[Any, List[int]] = dict(by_pid)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def num_cameras(self) -> int:
        return self.dataset.num_cameras

    @property
    def img_items(self) -> List[Tuple[Any, ...]]:
        return self.dataset.img_items

    def positive_index(self, index: int, rng: random.Random) -> int:
        """A random index of another image with the identity of ``index``."""
        candidates = self._same_pid[self.dataset.img_items[index][1]]
        if len(candidates) == 1:
            return index
        choice = rng.randrange(len(candidates) - 1)
        own = candidates.index(index)
        return candidates[choice + 1 if choice >= own else choice]

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        index, seed = key
        with seeded_rng(seed):
            sample = self.dataset[index]
            # private Randoms keep the positive's choice and the hook's draws independent of how much
            # randomness the enabled transforms consumed
            if self.positives:
                pos_index = self.positive_index(index, random.Random(seed))
                positive = self.dataset[pos_index]
                sample["pos_images"] = positive["images"]
                sample["pos_targets"] = positive["targets"]
                sample["pos_img_paths"] = positive["img_paths"]
            if self.sample_hook is not None:
                hooked = self.sample_hook(sample, random.Random(seed + 1))
                if hooked is not None:
                    sample = hooked
        return sample

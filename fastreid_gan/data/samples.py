"""Picking and reading individual test images, as the method tools do (swap grids, pose transfer, translation)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch

from fastreid.data.data_utils import read_image
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms

from .build import datasets_root

__all__ = ["SPLITS", "split_items", "eval_image_loader", "pick_identities"]

SPLITS = ("train", "query", "gallery")


def split_items(dataset: str, split: str) -> List[tuple]:
    """``(img_path, pid, camid, ...)`` tuples of one split of a registered dataset."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = DATASET_REGISTRY.get(dataset)(root=datasets_root())
    return list({"train": data.train, "query": data.query, "gallery": data.gallery}[split])


def eval_image_loader(cfg: Any) -> Callable[[str], torch.Tensor]:
    """``path -> (3, H, W)`` float in 0..255 through the config's test transform (as the evaluator sees it)."""
    transform = build_transforms(cfg, is_train=False)
    return lambda path: transform(read_image(path)).float()


def pick_identities(items: Sequence[tuple], num: int, seed: int) -> List[str]:
    """The paths of one image each of ``num`` random identities (real ones: pid > 0 in Market-style names)."""
    by_pid: Dict[int, List[str]] = {}
    for item in items:
        pid = item[1]
        if isinstance(pid, str):  # fastreid prefixes training pids with the dataset name
            pid = pid.rsplit("_", 1)[-1]
        if int(pid) <= 0:
            continue
        by_pid.setdefault(int(pid), []).append(item[0])
    rng = np.random.default_rng(seed)
    pids = sorted(by_pid)
    chosen = rng.choice(len(pids), size=min(num, len(pids)), replace=False)
    return [by_pid[pids[k]][int(rng.integers(len(by_pid[pids[k]])))] for k in chosen]

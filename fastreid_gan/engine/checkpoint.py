"""One-file checkpoints of a GAN training run, and the RNG states that make resuming exact.

File layout (a plain dict written with ``torch.save``; only tensors, numbers, strings, lists, tuples,
dicts and None, so ``torch.load(weights_only=True)`` reads it)::

    {"model": meta-arch state_dict (every sub-network),       # what fastreid's Checkpointer loads
     "optimizers": {net: state}, "schedulers": {net: state}, "scalers": {phase: state},
     "iteration": index of the last finished iteration (training resumes at iteration + 1),
     "data": {"seed": int, "start_batch": int},               # training-stream position
     "rng": [per-rank RNG states]}

``<save_dir>/last_checkpoint`` names the latest file, as in fastreid.
"""
from __future__ import annotations

import logging
import os
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state", "rng_isolated", "GANCheckpointer"]

logger = logging.getLogger(__name__)


def get_rng_state() -> Dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python RNG states, as tensors and plain numbers."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    internal = tuple(int(v) for v in py_state["internal"].tolist())
    random.setstate((py_state["version"], internal, py_state["gauss_next"]))


@contextmanager
def rng_isolated() -> Iterator[None]:
    """Run a block (evaluation, image grids) without changing the training RNG streams."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class GANCheckpointer:
    """Saves/loads checkpoint dicts in ``save_dir`` and keeps fastreid's ``last_checkpoint`` tag file."""

    def __init__(self, save_dir: str, save_to_disk: bool = True) -> None:
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk

    def save(self, name: str, data: Dict[str, Any]) -> Optional[str]:
        """Write ``<save_dir>/<name>.pth`` atomically and tag it as the last checkpoint."""
        if not self.save_dir or not self.save_to_disk:
            return None
        os.makedirs(self.save_dir, exist_ok=True)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        tmp = path + ".tmp"
        torch.save(data, tmp)
        os.replace(tmp, path)  # an interrupted save never leaves a truncated checkpoint behind
        self.tag_last_checkpoint(basename)
        logger.info("Saved checkpoint to %s", path)
        return path

    def tag_last_checkpoint(self, basename: str) -> None:
        with open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(basename)

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and os.path.isfile(os.path.join(self.save_dir, "last_checkpoint"))

    def get_checkpoint_file(self) -> str:
        """Path of the last checkpoint ('' when there is none)."""
        try:
            with open(os.path.join(self.save_dir, "last_checkpoint")) as f:
                return os.path.join(self.save_dir, f.read().strip())
        except OSError:
            return ""

    @staticmethod
    def load(path: str) -> Dict[str, Any]:
        """Read a checkpoint written by :meth:`save` (tensors and plain data only: weights_only)."""
        return torch.load(path, map_location="cpu", weights_only=True)

"""One-file checkpoints of a GAN training run, and the RNG states that make resuming exact.

File layout (a plain dict written with ``torch.save``; only tensors, numbers, strings, lists, tuples,
dicts and None, so ``torch.load(weights_only=True)`` reads it)::

    {"model": meta-arch state_dict (every sub-network),       # what fastreid's Checkpointer loads
     "optimizers": {net: state}, "schedulers": {net: state}, "scalers": {phase: state},
     "iteration": index of the last finished iteration (training resumes at iteration + 1),
     "data": {"seed": int, "start_batch": int},               # training-stream position
     "rng": [per-rank RNG states]}

``<save_dir>/last_checkpoint`` names the latest file, as in fastreid (:class:`GANCheckpointer` is fastreid's
``Checkpointer`` with an atomic write and ``weights_only`` reading).
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional

import numpy as np
import torch

from fastreid.utils.checkpoint import Checkpointer

__all__ = ["get_rng_state", "set_rng_state", "rng_isolated", "StateDicts", "GANCheckpointer"]


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


class StateDicts:
    """Several objects with ``state_dict()`` saved as ONE checkpoint entry ``{name: state}`` (the optimizers of
    every sub-network, their schedulers, the per-phase scalers), so fastreid's ``Checkpointer`` handles them
    as one checkpointable."""

    def __init__(self, kind: str, objects: Mapping[str, Any]) -> None:
        self.kind = kind
        self.objects = objects

    def state_dict(self) -> Dict[str, Any]:
        return {name: obj.state_dict() for name, obj in self.objects.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, obj in self.objects.items():
            if name not in state:
                raise KeyError(f"The checkpoint has no {self.kind}[{name!r}] (saved: {sorted(state)})")
            obj.load_state_dict(state[name])


class GANCheckpointer(Checkpointer):
    """fastreid's ``Checkpointer`` (``save(name, **extra)``, ``load``, ``has_checkpoint``, ``get_checkpoint_file``,
    the ``last_checkpoint`` tag) with an atomic write and a ``weights_only`` reader for resuming.

    ``GANCheckpointer(model, save_dir, save_to_disk=..., optimizers=StateDicts(...), ...)``: every
    checkpointable becomes one entry of the file, next to ``"model"`` and the ``extra`` entries of ``save``.
    """

    def save(self, name: str, **extra: Any) -> Optional[str]:  # type: ignore[override]
        """Write ``<save_dir>/<name>.pth`` atomically, tag it as the last checkpoint; returns its path."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        os.makedirs(self.save_dir, exist_ok=True)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save(data, tmp)
        os.replace(tmp, path)  # an interrupted save never leaves a truncated checkpoint behind
        self.tag_last_checkpoint(basename)
        self.logger.info("Saved checkpoint to %s", path)
        return path

    def read(self, path: str) -> Dict[str, Any]:
        """The training checkpoint at ``path``, for resuming (tensors and plain data only: ``weights_only``).

        ``load()`` (``MODEL.WEIGHTS``) keeps fastreid's reader, which also takes stock fastreid checkpoints.
        """
        return torch.load(path, map_location="cpu", weights_only=True)

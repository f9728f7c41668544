"""What a GAN training run's checkpoint holds beyond the weights: the RNG states that make resuming exact, and
several optimizers/schedulers/scalers saved as one entry each.

File layout (a plain dict written with ``torch.save``; only tensors, numbers, strings, lists, tuples,
dicts and None, so ``torch.load(weights_only=True)`` reads it)::

    {"model": meta-arch state_dict (every sub-network),       # what fastreid's Checkpointer loads
     "optimizers": {net: state}, "schedulers": {net: state}, "scalers": {phase: state},
     "iteration": index of the last finished iteration (training resumes at iteration + 1),
     "data": {"seed": int, "start_batch": int},               # training-stream position
     "rng": [per-rank RNG states],
     "method_state": [per-rank GANMetaArch.training_state_dict()]}   # only when the method has such state

plus ``"meta_architecture"``.  :class:`~fastreid_gan.checkpointer.RunCheckpointer` writes and reads the files
(atomic write, ``last_checkpoint`` tag, fit check, retention, fall-back to the newest complete file).
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state", "rng_isolated", "StateDicts"]


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

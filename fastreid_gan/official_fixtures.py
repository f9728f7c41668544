"""The converter fixtures of ``../shared/reference/<method>_official/`` (their RECIPE.md): rebuilding the
published-format weights from a key listing, and the error measure the proofs use.

A fixture lists every state-dict key of a published network with its shape (``<net>_keys.tsv``) and holds the
outputs of the official code on those weights (``expected.pt``); the weights are drawn from a seeded recipe, so a
converter is proven exact without the (undownloadable) published files.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch
from torch import Tensor

__all__ = ["read_key_listing", "recipe_state_dict", "relative_error"]


def read_key_listing(path: Union[str, Path]) -> List[Tuple[str, Tuple[int, ...], str]]:
    """``(key, shape, dtype)`` rows of a ``<net>_keys.tsv`` listing (header line skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


def recipe_state_dict(listing: Union[str, Path], seed: int) -> Dict[str, Tensor]:
    """The RECIPE.md weights of one net: one ``torch.Generator`` seeded ``seed``, keys drawn in listing order.

    ``num_batches_tracked`` 0 (no draw); ``running_mean`` 0.1 N(0,1); ``running_var`` 1 + 0.5 U(0,1); tensors of
    >= 2 dims N(0,1) * sqrt(1 / prod(shape[1:])); other 1-D ``weight`` 1 + 0.1 N(0,1); other 1-D 0.1 N(0,1).
    """
    g = torch.Generator().manual_seed(seed)
    state: Dict[str, Tensor] = {}
    for key, shape, _ in read_key_listing(listing):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            state[key] = 1 + 0.5 * torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=g) * math.sqrt(1 / math.prod(shape[1:]))
        elif key.endswith("weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    return state


def relative_error(output: Tensor, reference: Tensor) -> float:
    """``||output - reference|| / ||reference||``, the fixtures' measure (below 1e-4 counts as exact)."""
    return float((output.float() - reference.float()).norm() / reference.float().norm())

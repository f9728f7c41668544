"""Activation checkpointing that is safe for GAN sub-networks: recompute in backward, BatchNorm statistics intact.

``torch.utils.checkpoint`` keeps a segment's inputs instead of its activations and runs the segment again during
backward.  Two things go wrong if that is used as is on re-id backbones:

* a BatchNorm layer in training mode updates its running statistics in the recomputation too, so they move twice
  per iteration (the recomputed *outputs* are right: training-mode BN normalises with batch statistics);
* a "frozen copy" pass (gradients to the input, none to the parameters, as DG-Net's Eq. 4 / Eq. 6 need) made with
  ``torch.func.functional_call`` would be recomputed with the live parameters once the call has returned, and
  leak gradients into them.

:func:`checkpointed` restores every BatchNorm buffer of the segment after the recomputation, and
:func:`run_segments` with ``frozen=True`` substitutes the detached parameters inside each checkpointed function,
so both stay correct.
Non-reentrant checkpointing (the only mode used here) also supports the double backward of R1 penalties.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

__all__ = ["checkpointed", "frozen_call", "keep_batchnorm_stats", "run_segments"]


class keep_batchnorm_stats:
    """Context manager: restore the running statistics (and batch counters) of every BatchNorm in ``module`` on
    exit. Reusable, as ``torch.utils.checkpoint`` needs (a double backward recomputes a segment twice)."""

    def __init__(self, module: Optional[nn.Module]) -> None:
        self.layers = [] if module is None else [
            m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        self._saved: List[Tuple[nn.Module, Dict[str, Tensor]]] = []

    def __enter__(self) -> "keep_batchnorm_stats":
        self._saved = [(m, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in self.layers]
        return self

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for m, buffers in self._saved:
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)
        self._saved = []


def _needs_graph(args: Sequence[Any], module: Optional[nn.Module]) -> bool:
    if not torch.is_grad_enabled():
        return False
    if any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return True
    return module is not None and any(p.requires_grad for p in module.parameters())


def checkpointed(fn: Callable[..., Any], *args: Any, module: Optional[nn.Module] = None) -> Any:
    """``fn(*args)``, keeping only ``args`` for backward and recomputing the rest (non-reentrant checkpoint).

    ``module``: the network ``fn`` runs, whose BatchNorm running statistics the recomputation must not move.
    Without gradients (``torch.no_grad()`` or nothing that requires grad) ``fn`` simply runs. Outputs and gradients
    equal those of ``fn(*args)``; random ops (dropout) replay the same draws (the RNG state is restored).
    """
    if not _needs_graph(args, module):
        return fn(*args)
    contexts = functools.partial(_contexts, module)
    return _torch_checkpoint(fn, *args, use_reentrant=False, context_fn=contexts)


def _contexts(module: Optional[nn.Module]) -> Tuple[Any, Any]:
    """(forward context, recomputation context) for ``torch.utils.checkpoint``'s ``context_fn``."""
    return contextlib.nullcontext(), keep_batchnorm_stats(module)


def frozen_call(module: nn.Module, *args: Any) -> Any:
    """``module(*args)`` with detached parameters and cloned buffers: gradients reach ``args`` only, and the
    module's running statistics are left as they were (a per-call stand-in for a deep copy in training mode).

    The substitution lasts for the call only: a module that checkpoints inside its own forward would be
    recomputed with its live parameters later. Freeze such a network segment by segment with
    :func:`run_segments` (``frozen=True``), which keeps the substitution inside each checkpointed function.
    """
    state: Dict[str, Tensor] = {k: v.detach() for k, v in module.named_parameters()}
    state.update({k: v.clone() for k, v in module.named_buffers()})
    return functional_call(module, state, args)


def run_segments(segments: Sequence[nn.Module], x: Tensor, *, checkpoint: bool = False,
                 frozen: bool = False) -> Tensor:
    """Apply ``segments`` in order; each one checkpointed on its own when ``checkpoint`` (then only the segment
    boundaries are kept for backward, and one segment's activations at a time are rebuilt), each one run with
    :func:`frozen_call` when ``frozen``."""
    for seg in segments:
        fn = functools.partial(frozen_call, seg) if frozen else seg
        x = checkpointed(fn, x, module=seg) if checkpoint else fn(x)
    return x

"""Data-parallel synchronisation without ``DistributedDataParallel``.

DDP only synchronises gradients of parameters used through the wrapped module's ``forward()``, while
GAN meta-archs call many sub-network methods (encode/decode/discriminate) and use double backward for R1
penalties, which DDP does not support.  So the engine keeps replicas identical by hand:

* at the start of training every parameter and buffer of the model is broadcast from rank 0;
* after each phase's backward the gradients of that phase's networks are averaged (coalesced all-reduce);
* after each iteration the buffers of every sub-network (BN running statistics) are broadcast from
  rank 0, as DDP's ``broadcast_buffers=True`` would do.

All helpers are no-ops in a single process.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, List, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fastreid.utils import comm

__all__ = [
    "is_distributed",
    "broadcast_tensors",
    "all_reduce_tensors",
    "broadcast_model",
    "broadcast_buffers",
    "all_reduce_gradients",
    "all_reduce_mean",
]

BUCKET_BYTES = 25 * 1024 * 1024  # like DDP's default bucket_cap_mb


def is_distributed() -> bool:
    return comm.get_world_size() > 1


def _buckets(tensors: Sequence[Tensor], bucket_bytes: int) -> List[List[Tensor]]:
    """Same-device, same-dtype groups of at most ``bucket_bytes`` (a larger tensor gets its own bucket)."""
    by_kind: Dict[Tuple[torch.device, torch.dtype], List[Tensor]] = OrderedDict()
    for tensor in tensors:
        by_kind.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    buckets: List[List[Tensor]] = []
    for group in by_kind.values():
        current: List[Tensor] = []
        size = 0
        for tensor in group:
            nbytes = tensor.numel() * tensor.element_size()
            if current and size + nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(tensor)
            size += nbytes
        if current:
            buckets.append(current)
    return buckets


def _coalesced(tensors: Sequence[Tensor], op, bucket_bytes: int) -> None:
    """Run ``op(flat)`` on flattened buckets of ``tensors`` and copy the results back in place."""
    with torch.no_grad():
        for bucket in _buckets([t for t in tensors if t.numel() > 0], bucket_bytes):
            flat = torch.cat([t.reshape(-1) for t in bucket])
            op(flat)
            offset = 0
            for tensor in bucket:
                n = tensor.numel()
                tensor.copy_(flat[offset : offset + n].view_as(tensor))
                offset += n


def broadcast_tensors(tensors: Sequence[Tensor], src: int = 0, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Overwrite ``tensors`` with rank ``src``'s values (coalesced)."""
    if not is_distributed():
        return
    _coalesced(tensors, lambda flat: dist.broadcast(flat, src), bucket_bytes)


def all_reduce_tensors(tensors: Sequence[Tensor], average: bool = True, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Sum (or average) ``tensors`` over all ranks in place (coalesced)."""
    if not is_distributed():
        return
    world = comm.get_world_size()

    def op(flat: Tensor) -> None:
        dist.all_reduce(flat)
        if average:
            flat.div_(world)

    _coalesced(tensors, op, bucket_bytes)


def broadcast_model(model: nn.Module, src: int = 0) -> None:
    """Make every parameter and buffer of ``model`` equal to rank ``src``'s."""
    broadcast_tensors([t for t in model.state_dict(keep_vars=True).values() if isinstance(t, Tensor)], src)


def broadcast_buffers(modules: Iterable[nn.Module], src: int = 0) -> None:
    """Make the buffers (BN running statistics, ...) of ``modules`` equal to rank ``src``'s."""
    if not is_distributed():
        return
    buffers = []
    seen = set()
    for module in modules:
        for buf in module.buffers():
            if id(buf) not in seen:
                seen.add(id(buf))
                buffers.append(buf)
    broadcast_tensors(buffers, src)


def all_reduce_gradients(params: Sequence[nn.Parameter], bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average the gradients of ``params`` over all ranks.

    A parameter that got no gradient on some ranks gets zeros there before averaging; one that got no
    gradient on any rank keeps ``grad=None`` (so the optimizer skips it, as in a single process).
    All ranks must pass the same parameters in the same order.
    """
    if not is_distributed() or not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has_grad)
    grads = []
    for param, flag in zip(params, has_grad.tolist()):
        if flag == 0:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    all_reduce_tensors(grads, average=True, bucket_bytes=bucket_bytes)


def all_reduce_mean(values: Tensor) -> Tensor:
    """The mean over ranks of a small tensor (loss values for logging and NaN checks); a copy."""
    values = values.detach().clone()
    if is_distributed():
        dist.all_reduce(values)
        values.div_(comm.get_world_size())
    return values

"""Functional adaptive instance normalisation (AdaIN, Huang & Belongie 2017), as used by DG-Net's decoder.

The published DG-Net/MUNIT code stores the per-sample AdaIN weight/bias as attributes of the AdaIN modules right
before each decoder call. That state mutation is not safe under DataParallel/DDP (replicas race on the
attributes) and hides the data flow. Here the parameters travel as arguments; nothing is mutated in forward.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["adaptive_instance_norm", "AdaIN2d"]


def _per_channel(p: Tensor, x: Tensor, name: str) -> Tensor:
    """Broadcast a (B, C) or (C,) parameter to x's (B, C, 1, ..., 1)."""
    b, c = x.shape[:2]
    if p.dim() == 1:
        p = p.unsqueeze(0)
    if p.dim() != 2 or p.shape[1] != c or p.shape[0] not in (1, b):
        raise ValueError(f"AdaIN {name} must be (B, C) = ({b}, {c}) or (C,), got {tuple(p.shape)}")
    return p.reshape(p.shape[0], c, *([1] * (x.dim() - 2)))


def adaptive_instance_norm(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN: normalise each sample and channel of ``x`` over its spatial dims, then ``* scale + shift``.

    Statistics are the per-instance mean and BIASED variance with ``eps`` inside the square root, exactly the
    published ``AdaptiveInstanceNorm2d`` (which runs ``F.batch_norm`` in training mode on a (1, B*C, H, W) view).

    Args:
        x: (B, C, H, W) features.
        scale: (B, C) per-sample scales (or (C,) shared).
        shift: (B, C) per-sample shifts (or (C,) shared).
        eps: added to the variance.
    """
    if x.dim() < 3:
        raise ValueError(f"AdaIN needs (B, C, *spatial) input, got {tuple(x.shape)}")
    normalized = F.instance_norm(x, eps=eps)
    return normalized * _per_channel(scale, x, "scale").to(x.dtype) + _per_channel(shift, x, "shift").to(x.dtype)


class AdaIN2d(nn.Module):
    """Stateless AdaIN layer: no parameters or buffers; scale/shift are forward arguments."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:  # noqa: D102
        if x.shape[1] != self.num_features:
            raise ValueError(f"AdaIN2d({self.num_features}) got {x.shape[1]} channels")
        return adaptive_instance_norm(x, scale, shift, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

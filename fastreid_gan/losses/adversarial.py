"""Adversarial losses over one or several discriminator outputs (a tensor or a list over scales).

Every function returns a scalar tensor. With a list, terms are SUMMED over scales (MUNIT / DG-Net ``MsImageDis``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["lsgan_d_loss", "lsgan_g_loss", "bce_d_loss", "bce_g_loss", "as_list"]

Outputs = Union[Tensor, Sequence[Tensor]]


def as_list(outs: Outputs) -> List[Tensor]:
    """A tensor becomes ``[tensor]``; a list/tuple of tensors is returned as a list."""
    if isinstance(outs, Tensor):
        return [outs]
    outs = list(outs)
    if not outs or not all(isinstance(o, Tensor) for o in outs):
        raise TypeError("expected a tensor or a non-empty sequence of tensors")
    return outs


def lsgan_d_loss(real_outs: Outputs, fake_outs: Outputs, factor: float = 1.0) -> Tensor:
    """LSGAN discriminator loss ``factor * sum_scales [mean((D(real) - 1)^2) + mean(D(fake)^2)]``.

    DG-Net (published ``calc_dis_loss``, gan_type lsgan) uses factor 1; its R1 term is separate
    (:func:`~fastreid_gan.losses.r1_penalty`). CycleGAN/SPGAN average the two terms: factor 0.5.
    """
    reals, fakes = as_list(real_outs), as_list(fake_outs)
    if len(reals) != len(fakes):
        raise ValueError(f"{len(reals)} real vs {len(fakes)} fake discriminator outputs")
    loss = sum(((r - 1) ** 2).mean() + (f ** 2).mean() for r, f in zip(reals, fakes))
    return loss * factor


def lsgan_g_loss(fake_outs: Outputs, factor: float = 1.0) -> Tensor:
    """LSGAN generator loss ``factor * sum_scales mean((D(fake) - 1)^2)``.

    The published DG-Net ``calc_gen_loss`` multiplies each scale's term by 2 (``torch.mean((out0 - 1)**2) * 2``):
    call with ``factor=2.0`` to reproduce it (its weight ``gan_w`` is 1). CycleGAN/SPGAN: factor 1.
    """
    return sum(((f - 1) ** 2).mean() for f in as_list(fake_outs)) * factor


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def bce_d_loss(
    real_logits: Outputs,
    fake_logits: Outputs,
    smoothing: Optional[Tuple[float, float, float, float]] = (0.7, 1.0, 0.0, 0.3),
    flip_prob: float = 0.0,
    factor: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Binary cross-entropy discriminator loss on logits with random label smoothing (FD-GAN).

    ``factor * sum_scales [BCE(sigmoid(real), t_real) + BCE(sigmoid(fake), t_fake)]`` where, as in FD-GAN's
    ``GANLoss(smooth=True)``, ONE target value per term and call is drawn: ``t_real ~ U(smoothing[0],
    smoothing[1])``, ``t_fake ~ U(smoothing[2], smoothing[3])`` (``smoothing=None``: hard 1/0). With probability
    ``flip_prob`` the real and fake targets are swapped for this call (FD-GAN's occasional label flip).
    FD-GAN averages the two terms: ``factor=0.5``. RNG: ``generator`` or torch's global RNG.
    """
    reals, fakes = as_list(real_logits), as_list(fake_logits)
    if len(reals) != len(fakes):
        raise ValueError(f"{len(reals)} real vs {len(fakes)} fake discriminator outputs")
    if smoothing is None:
        t_real, t_fake = 1.0, 0.0
    else:
        lo_r, hi_r, lo_f, hi_f = smoothing
        t_real, t_fake = _uniform(lo_r, hi_r, generator), _uniform(lo_f, hi_f, generator)
    if flip_prob > 0 and float(torch.rand((), generator=generator)) < flip_prob:
        t_real, t_fake = t_fake, t_real
    loss = sum(
        F.binary_cross_entropy_with_logits(r, torch.full_like(r, t_real))
        + F.binary_cross_entropy_with_logits(f, torch.full_like(f, t_fake))
        for r, f in zip(reals, fakes)
    )
    return loss * factor


def bce_g_loss(fake_logits: Outputs, factor: float = 1.0) -> Tensor:
    """Generator BCE loss on logits with hard target 1: ``factor * sum_scales BCE(sigmoid(D(fake)), 1)``."""
    return sum(F.binary_cross_entropy_with_logits(f, torch.ones_like(f)) for f in as_list(fake_logits)) * factor

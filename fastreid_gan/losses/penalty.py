"""Gradient penalties for discriminator training."""
from __future__ import annotations

import torch
from torch import Tensor

from .adversarial import Outputs, as_list

__all__ = ["r1_penalty"]


def r1_penalty(real_outs: Outputs, real_images: Tensor) -> Tensor:
    """R1 gradient penalty on real images (Mescheder et al. 2018; DG-Net Sec. 4.1 (iv) "gradient punishment").

    ``sum_scales mean_batch ||d sum(D_s(x)) / dx||^2`` -- per scale, the squared gradient norm of that scale's
    summed output w.r.t. the real images, summed over pixels, averaged over the batch, then summed over scales:
    the published DG-Net ``compute_grad2`` loop. UNWEIGHTED: DG-Net multiplies by ``LAMBDA`` = 0.01.

    ``real_images`` must have ``requires_grad=True`` BEFORE the discriminator forward that produced
    ``real_outs``. The graph is kept (``create_graph=True``) so the penalty trains D (double backward).
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: call real_images.requires_grad_(True) before the discriminator forward")
    outs = as_list(real_outs)
    total = real_images.new_zeros((), dtype=torch.float32)
    for out in outs:
        (grad,) = torch.autograd.grad(outputs=out.sum(), inputs=real_images, create_graph=True, retain_graph=True)
        # float32: squared fp16 gradients overflow easily under autocast
        total = total + grad.float().pow(2).flatten(1).sum(1).mean()
    return total

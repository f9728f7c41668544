"""Normalisation layers of the MUNIT / DG-Net family, and freezing BatchNorm statistics (FD-GAN, eSPGAN)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LayerNorm2d", "freeze_batchnorm"]


class LayerNorm2d(nn.Module):
    """Per-sample layer norm over (C, H, W) with per-channel affine, as in the published DG-Net/MUNIT ``LayerNorm``.

    ``y = (x - mean) / (std + eps) * gamma[c] + beta[c]`` where mean and the UNBIASED std are taken over all of
    one sample's C*H*W values (note: divides by std + eps, not sqrt(var + eps)). Used after the decoder's
    upsampling convs (DG-Net Table 7, Conv1/Conv2).

    The published fp16 branch pools statistics over the whole batch (a bug); here statistics are always per
    sample and computed in float32 for half inputs.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            # Published init: gamma ~ U(0, 1), beta = 0.
            self.gamma = nn.Parameter(torch.empty(num_features).uniform_())
            self.beta = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("gamma", None)
            self.register_parameter("beta", None)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        flat = x.flatten(1)
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mean = flat.mean(dim=1).view(shape)
        std = flat.std(dim=1, unbiased=True).view(shape)
        y = ((x.float() if x.dtype != flat.dtype else x) - mean) / (std + self.eps)
        if self.affine:
            cshape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.gamma.view(cshape) + self.beta.view(cshape)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


def freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm layers of ``module`` to eval mode: running statistics used and kept (their affine still trains).
    Call it after ``module.train()``, which would switch them back."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()

"""Weight initialisation schemes of the MUNIT / DG-Net / CycleGAN code bases."""
from __future__ import annotations

import math

from torch import nn

__all__ = ["init_weights", "INIT_TYPES"]

INIT_TYPES = ("gaussian", "kaiming", "xavier", "orthogonal", "default")


def init_weights(module: nn.Module, init_type: str = "gaussian", gain: float = 0.02) -> nn.Module:
    """Initialise every conv / transposed conv / linear weight in ``module``; their biases become 0.

    ``gaussian``: N(0, gain) (gain 0.02: DG-Net's discriminator, pix2pix/CycleGAN); ``kaiming``: He normal,
    fan_in, a=0 (DG-Net generator, ``gen.init: kaiming`` in the published config); ``xavier`` / ``orthogonal``:
    gain sqrt(2); ``default``: leave PyTorch's init. Norm layers are untouched (LayerNorm2d keeps its published
    U(0, 1) gamma). Returns ``module``.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; expected one of {INIT_TYPES}")
    if init_type == "default":
        return module
    for m in module.modules():
        if not isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        if init_type == "gaussian":
            nn.init.normal_(m.weight, 0.0, gain)
        elif init_type == "kaiming":
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        elif init_type == "xavier":
            nn.init.xavier_normal_(m.weight, gain=math.sqrt(2))
        elif init_type == "orthogonal":
            nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module

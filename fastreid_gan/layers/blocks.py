"""Convolution and residual blocks shared by the GAN methods (DG-Net, FD-GAN, SPGAN).

A :class:`Conv2dBlock` is ``[activation ->] padding -> conv -> norm -> activation [-> dropout]`` (the MUNIT /
DG-Net layout; ``activation_first=True`` gives the pix2pix/FD-GAN "LReLU -> conv -> BN" order). Norm ``"adain"``
takes its per-sample scale/shift as a forward argument (see :mod:`.adain`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from .adain import AdaIN2d
from .norms import LayerNorm2d

__all__ = [
    "AdaINParams",
    "Conv2dBlock",
    "ResBlock",
    "ResBlocks",
    "make_activation",
    "make_norm",
    "PAD_TYPES",
    "NORM_TYPES",
    "ACTIVATIONS",
]

IntOrPair = Union[int, Tuple[int, int]]
#: (scale, shift) for one AdaIN layer, each (B, C).
AdaINParams = Tuple[Tensor, Tensor]

PAD_TYPES = ("reflect", "zero", "replicate")
NORM_TYPES = ("none", "bn", "in", "ln", "adain")
ACTIVATIONS = ("lrelu", "relu", "tanh", "none")


def _pair(v: IntOrPair) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if len(v) != 2:
        raise ValueError(f"expected an int or an (h, w) pair, got {v!r}")
    return (int(v[0]), int(v[1]))


def make_activation(name: str, negative_slope: float = 0.2) -> Optional[nn.Module]:
    """``"lrelu"`` (LeakyReLU(negative_slope)), ``"relu"``, ``"tanh"`` or ``"none"`` (returns None)."""
    if name == "lrelu":
        return nn.LeakyReLU(negative_slope)
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return None
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def make_norm(name: str, channels: int) -> Optional[nn.Module]:
    """``"bn"``, ``"in"`` (no affine, no running stats, as MUNIT/CycleGAN), ``"ln"`` (:class:`LayerNorm2d`),
    ``"adain"`` (:class:`AdaIN2d`, parameters passed at forward) or ``"none"`` (returns None)."""
    if name == "bn":
        return nn.BatchNorm2d(channels)
    if name == "in":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if name == "ln":
        return LayerNorm2d(channels)
    if name == "adain":
        return AdaIN2d(channels)
    if name == "none":
        return None
    raise ValueError(f"unknown norm {name!r}; expected one of {NORM_TYPES}")


class Conv2dBlock(nn.Module):
    """Padding -> conv -> optional norm -> optional activation.

    Sub-modules: ``pad`` (reflect/replicate only; zero padding is done by the conv itself, which is numerically
    identical), ``conv`` (``nn.Conv2d`` or ``nn.ConvTranspose2d``), ``norm`` (or None), ``activation`` (or None).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d``; ``padding`` may be an
            (h, w) pair (e.g. SPGAN's asymmetric PatchGAN paddings).
        norm: one of ``"none" | "bn" | "in" | "ln" | "adain"``.
        activation: one of ``"lrelu" | "relu" | "tanh" | "none"``.
        pad_type: ``"reflect" | "zero" | "replicate"``.
        bias: conv bias (DG-Net always True; pix2pix/CycleGAN use False before BN).
        negative_slope: LeakyReLU slope (0.2 in DG-Net, FD-GAN and SPGAN).
        activation_first: apply the activation BEFORE the conv (FD-GAN encoder/decoder blocks).
        transposed: use ``nn.ConvTranspose2d`` (needs ``pad_type="zero"``); ``output_padding`` as in torch.
        dropout: dropout probability after everything else (FD-GAN decoder); 0 disables.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        *,
        dilation: IntOrPair = 1,
        norm: str = "none",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        bias: bool = True,
        negative_slope: float = 0.2,
        activation_first: bool = False,
        transposed: bool = False,
        output_padding: IntOrPair = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pad_type not in PAD_TYPES:
            raise ValueError(f"unknown pad_type {pad_type!r}; expected one of {PAD_TYPES}")
        ph, pw = _pair(padding)
        self.pad: Optional[nn.Module] = None
        conv_padding: Tuple[int, int] = (0, 0)
        if transposed:
            if pad_type != "zero":
                raise ValueError("a transposed Conv2dBlock supports pad_type='zero' only")
            self.conv: nn.Module = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size, stride, (ph, pw), output_padding=output_padding,
                dilation=dilation, bias=bias,
            )
        else:
            if pad_type == "zero":
                conv_padding = (ph, pw)
            elif ph or pw:
                pad_cls = nn.ReflectionPad2d if pad_type == "reflect" else nn.ReplicationPad2d
                self.pad = pad_cls((pw, pw, ph, ph))
            self.conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, conv_padding, dilation=dilation, bias=bias
            )
        self.norm = make_norm(norm, out_channels)
        self.activation = make_activation(activation, negative_slope)
        self.activation_first = activation_first
        self.dropout = float(dropout)
        self.norm_type = norm

    @property
    def uses_adain(self) -> bool:
        """True when this block's norm needs AdaIN parameters at forward."""
        return self.norm_type == "adain"

    def forward(self, x: Tensor, adain: Optional[AdaINParams] = None) -> Tensor:
        """Args: x (B, C, H, W); adain: (scale, shift), each (B, out_channels), required iff norm is "adain"."""
        if self.activation_first and self.activation is not None:
            x = self.activation(x)
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.norm is not None:
            if self.norm_type == "adain":
                if adain is None:
                    raise ValueError("this Conv2dBlock uses AdaIN: pass adain=(scale, shift)")
                x = self.norm(x, adain[0], adain[1])
            else:
                x = self.norm(x)
        elif adain is not None:
            raise ValueError("adain parameters given to a Conv2dBlock without AdaIN norm")
        if not self.activation_first and self.activation is not None:
            x = self.activation(x)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return x


class ResBlock(nn.Module):
    """Residual block ``x + conv(no act)(conv(act)(x))`` with 3x3 convs (DG-Net Tables 6-8 "ResBlocks"; the
    CycleGAN / SPGAN ResNet generator's blocks with ``activation="relu"`` and ``bias=(False, True)``).

    Sub-modules: ``convs`` = ModuleList of two :class:`Conv2dBlock`. ``bias``: one flag for both convs, or a
    (first, second) pair.
    """

    def __init__(
        self,
        channels: int,
        *,
        norm: str = "in",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        kernel_size: int = 3,
        negative_slope: float = 0.2,
        bias: Union[bool, Tuple[bool, bool]] = True,
    ) -> None:
        super().__init__()
        p = kernel_size // 2
        bias1, bias2 = (bias, bias) if isinstance(bias, bool) else (bool(bias[0]), bool(bias[1]))
        common = dict(norm=norm, pad_type=pad_type, negative_slope=negative_slope)
        self.convs = nn.ModuleList(
            [
                Conv2dBlock(channels, channels, kernel_size, 1, p, activation=activation, bias=bias1, **common),
                Conv2dBlock(channels, channels, kernel_size, 1, p, activation="none", bias=bias2, **common),
            ]
        )

    @property
    def num_adain_layers(self) -> int:
        """How many (scale, shift) pairs forward needs (0 or 2)."""
        return sum(int(c.uses_adain) for c in self.convs)

    def forward(self, x: Tensor, adain: Optional[Sequence[AdaINParams]] = None) -> Tensor:
        """Args: x (B, C, H, W); adain: one (scale, shift) per AdaIN conv, in module order."""
        params = _split_adain(adain, [c.uses_adain for c in self.convs])
        out = x
        for conv, p in zip(self.convs, params):
            out = conv(out, p)
        return x + out


class ResBlocks(nn.Module):
    """``n_blocks`` :class:`ResBlock` in sequence. Sub-modules: ``blocks`` (ModuleList)."""

    def __init__(self, n_blocks: int, channels: int, **kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(channels, **kwargs) for _ in range(n_blocks)])

    @property
    def num_adain_layers(self) -> int:
        """Total AdaIN layers (DG-Net decoder: 2 per block, 8 in all)."""
        return sum(b.num_adain_layers for b in self.blocks)

    def forward(self, x: Tensor, adain: Optional[Sequence[AdaINParams]] = None) -> Tensor:
        """Args: x (B, C, H, W); adain: ``num_adain_layers`` (scale, shift) pairs in module order."""
        counts = [b.num_adain_layers for b in self.blocks]
        if adain is not None and len(adain) != sum(counts):
            raise ValueError(f"expected {sum(counts)} AdaIN parameter pairs, got {len(adain)}")
        start = 0
        for block, n in zip(self.blocks, counts):
            x = block(x, None if adain is None or n == 0 else adain[start:start + n])
            start += n
        return x


def _split_adain(adain: Optional[Sequence[AdaINParams]], needs: List[bool]) -> List[Optional[AdaINParams]]:
    """Hand one pair to each block that uses AdaIN, None to the others."""
    n = sum(needs)
    if n == 0:
        if adain:
            raise ValueError("AdaIN parameters given to a block without AdaIN layers")
        return [None] * len(needs)
    if adain is None or len(adain) != n:
        raise ValueError(f"expected {n} AdaIN (scale, shift) pairs, got {0 if adain is None else len(adain)}")
    it = iter(adain)
    return [next(it) if need else None for need in needs]

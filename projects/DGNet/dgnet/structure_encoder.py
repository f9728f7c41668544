"""DG-Net structure encoder E_s (paper Sec. 3.1, appendix Table 6)."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from fastreid_gan.layers import Conv2dBlock, ResBlocks, init_weights, run_segments

__all__ = ["ASPP", "StructureEncoder"]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling as in the published ``ContentEncoder`` (Table 6 "ASPP" + "Conv5").

    Four branches on the input, concatenated in this order: ``conv1x1`` (1x1, norm, no act); then for each
    dilation d: ``branches[i]`` = [1x1 (norm, act), 3x3 dilation d, padding d (norm, no act)]; then ``fuse``
    (1x1, norm, no act) to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (3, 6, 9),
        *,
        norm: str = "in",
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__()
        kw = dict(norm=norm, pad_type=pad_type)
        self.conv1x1 = Conv2dBlock(in_channels, branch_channels, 1, activation="none", **kw)
        self.branches = nn.ModuleList(
            [
                nn.Sequential(
                    Conv2dBlock(in_channels, branch_channels, 1, activation=activation, **kw),
                    Conv2dBlock(branch_channels, branch_channels, 3, 1, d, dilation=d, activation="none", **kw),
                )
                for d in dilations
            ]
        )
        self.fuse = Conv2dBlock(branch_channels * (1 + len(dilations)), out_channels, 1, activation="none", **kw)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        outs: List[Tensor] = [self.conv1x1(x)] + [branch(x) for branch in self.branches]
        return self.fuse(torch.cat(outs, dim=1))


class StructureEncoder(nn.Module):
    """E_s: one-channel image (gray, or its edge map) -> structure code (Table 6: 1x256x128 -> 128x64x32).

    ``convs``: 3x3 Conv2dBlocks with ``widths`` / ``strides`` (published: 16 s2, 32, 32, 64 s2), all
    InstanceNorm + LReLU(0.2), reflect padding; ``res``: ``n_res`` ResBlocks (IN); ``aspp``: :class:`ASPP` with
    dilations 3/6/9 and branch width ``widths[-1] // 2`` (published) fusing to ``out_channels``. With
    ``aspp=False`` a 1x1 Conv2dBlock (IN, no act) maps to ``out_channels`` instead (attribute ``proj``).

    Args:
        in_channels: 1 (gray, the official input).
        widths: channels of the four stem convs; a CPU-sized variant may shrink them.
        strides: stride of each stem conv (total downsampling = product; 4 for the published net).
        n_res: residual blocks (4).
        out_channels: structure code channels (128); must equal the decoder's ``in_channels``.
        aspp: use ASPP (published: yes).
        aspp_channels: ASPP branch width (default ``widths[-1] // 2``).
        dilations: ASPP dilations.
        init: :func:`fastreid_gan.layers.init_weights` scheme (published generator: ``"kaiming"``).
        checkpoint: keep only the input of each conv / residual block / ASPP for backward and recompute the rest.
    Forward: (B, in_channels, H, W) -> (B, out_channels, H / 4, W / 4). The dilation-9 branch reflect-pads by 9,
    so the structure map must be at least 10 px in each direction (input >= 40 px with the default strides).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 32, 64),
        strides: Sequence[int] = (2, 1, 1, 2),
        n_res: int = 4,
        out_channels: int = 128,
        aspp: bool = True,
        aspp_channels: int = 0,
        dilations: Sequence[int] = (3, 6, 9),
        norm: str = "in",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        init: str = "kaiming",
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint = bool(checkpoint)
        widths, strides = list(widths), list(strides)
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"widths {widths} and strides {strides} must be non-empty and equally long")
        kw = dict(norm=norm, activation=activation, pad_type=pad_type)
        layers: List[nn.Module] = []
        ch = in_channels
        for w, s in zip(widths, strides):
            layers.append(Conv2dBlock(ch, w, 3, s, 1, **kw))
            ch = w
        self.convs = nn.Sequential(*layers)
        self.res = ResBlocks(n_res, ch, **kw)
        self.out_channels = out_channels
        self.use_aspp = bool(aspp)
        if aspp:
            self.aspp = ASPP(ch, aspp_channels or ch // 2, out_channels, dilations, **kw)
        else:
            self.proj = Conv2dBlock(ch, out_channels, 1, norm=norm, activation="none", pad_type=pad_type)
        init_weights(self, init)

    def forward(self, gray: Tensor, frozen: bool = False) -> Tensor:
        """Structure code; ``frozen``: with detached parameters, so gradients reach ``gray`` only."""
        segments = [*self.convs, *self.res.blocks, self.aspp if self.use_aspp else self.proj]
        return run_segments(segments, gray, checkpoint=self.checkpoint, frozen=frozen)

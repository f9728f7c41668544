"""DG-Net decoder G with its AdaIN parameter MLPs (paper Sec. 3.1, 4.1 (iii), appendix Table 7)."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.layers import AdaINParams, Conv2dBlock, ResBlocks, checkpointed, init_weights, run_segments

__all__ = ["MLP", "AdaINDecoder"]


class MLP(nn.Module):
    """``n_layers`` Linear layers with LReLU(0.2) between them and none after the last (published ``MLP``).

    Sub-modules: ``fcs`` (ModuleList of nn.Linear).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 512, n_layers: int = 3,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError("MLP needs at least one layer")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
        self.fcs = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = x.flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = F.leaky_relu(x, self.negative_slope)
        return x


def _adain_block(block: nn.Module, x: Tensor, *adain: Tensor) -> Tensor:
    """``block(x, pairs)`` with the AdaIN (scale, shift) pairs passed flat, as checkpointing wants tensors."""
    return block(x, list(zip(adain[0::2], adain[1::2])))


class AdaINDecoder(nn.Module):
    """G: (structure code, appearance code) -> image in normalised space (NO tanh, as published).

    Layout (Table 7): ``res`` = ``n_res`` ResBlocks(``in_channels``) with two AdaIN layers each; ``up`` =
    ``n_upsample`` x [nearest upsample x2, conv5x5 (pad 2) C -> C/2, LayerNorm2d, LReLU]; ``out`` = [conv3x3 +
    LReLU, conv3x3 + LReLU, conv1x1 -> ``out_channels``]. Reflect padding throughout.

    AdaIN parameters (published ``AdaINGen.decode``): the appearance code is split into ``n_chunks`` equal
    column slices; slice k goes through ``mlp_scale[k]`` and ``mlp_shift[k]`` (Linear ``appearance_dim /
    n_chunks`` -> ``mlp_dim``, LReLU, Linear ``mlp_dim`` -> ``mlp_dim``, LReLU, Linear -> ``num_adain_params /
    n_chunks``). Concatenating the slices' outputs gives all scales (shifts); the first ``in_channels`` go to the
    first AdaIN layer in module order, the next to the second, and so on.

    Args:
        in_channels: structure code channels (128).
        n_res: AdaIN residual blocks (4).
        appearance_dim: appearance code length (8192 = 2048 x 4 parts for ResNet-50; 2048 for ResNet-18).
        n_chunks: number of code slices / MLP pairs (4, one per residual block in the published net).
        mlp_dim: MLP hidden width (512). mlp_layers: Linear layers per MLP (3).
        n_upsample: x2 upsampling stages (2). out_channels: 3.
        dropout: dropout on the structure code (published ``Dropout(p=0)``, i.e. off).
        init: :func:`fastreid_gan.layers.init_weights` scheme (published generator: ``"kaiming"``).
        checkpoint: keep only the input of each residual block, upsampling stage and output conv for backward and
            recompute the rest there, one segment at a time (:func:`fastreid_gan.layers.checkpointed`): the
            decoder holds about half of an iteration's saved activations (``BENCHMARKS.md``), bought back with one
            more decoder forward. Same outputs and gradients.
    """

    def __init__(
        self,
        in_channels: int = 128,
        n_res: int = 4,
        appearance_dim: int = 8192,
        n_chunks: int = 4,
        mlp_dim: int = 512,
        mlp_layers: int = 3,
        n_upsample: int = 2,
        out_channels: int = 3,
        activation: str = "lrelu",
        pad_type: str = "reflect",
        dropout: float = 0.0,
        init: str = "kaiming",
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.checkpoint = bool(checkpoint)
        self.appearance_dim = appearance_dim
        self.n_chunks = n_chunks
        self.dropout = float(dropout)
        self.res = ResBlocks(n_res, in_channels, norm="adain", activation=activation, pad_type=pad_type)
        up: List[nn.Module] = []
        ch = in_channels
        for _ in range(n_upsample):
            up += [nn.Upsample(scale_factor=2, mode="nearest"),
                   Conv2dBlock(ch, ch // 2, 5, 1, 2, norm="ln", activation=activation, pad_type=pad_type)]
            ch //= 2
        self.up = nn.Sequential(*up)
        self.out = nn.Sequential(
            Conv2dBlock(ch, ch, 3, 1, 1, activation=activation, pad_type=pad_type),
            Conv2dBlock(ch, ch, 3, 1, 1, activation=activation, pad_type=pad_type),
            Conv2dBlock(ch, out_channels, 1, 1, 0, activation="none", pad_type=pad_type),
        )

        self.num_adain_layers = self.res.num_adain_layers
        self.num_adain_params = self.num_adain_layers * in_channels
        if appearance_dim % n_chunks or self.num_adain_params % n_chunks:
            raise ValueError(
                f"appearance_dim ({appearance_dim}) and the AdaIN parameter count ({self.num_adain_params}) "
                f"must both be divisible by n_chunks ({n_chunks})"
            )
        chunk_in, chunk_out = appearance_dim // n_chunks, self.num_adain_params // n_chunks
        self.mlp_scale = nn.ModuleList([MLP(chunk_in, chunk_out, mlp_dim, mlp_layers) for _ in range(n_chunks)])
        self.mlp_shift = nn.ModuleList([MLP(chunk_in, chunk_out, mlp_dim, mlp_layers) for _ in range(n_chunks)])
        init_weights(self, init)

    def adain_params(self, appearance: Tensor) -> Tuple[Tensor, Tensor]:
        """appearance (B, appearance_dim) -> (scales, shifts), each (B, num_adain_params)."""
        if appearance.dim() != 2 or appearance.shape[1] != self.appearance_dim:
            raise ValueError(f"appearance code must be (B, {self.appearance_dim}), got {tuple(appearance.shape)}")
        chunks = appearance.chunk(self.n_chunks, dim=1)
        scales = torch.cat([mlp(c) for mlp, c in zip(self.mlp_scale, chunks)], dim=1)
        shifts = torch.cat([mlp(c) for mlp, c in zip(self.mlp_shift, chunks)], dim=1)
        return scales, shifts

    def split_adain_params(self, scales: Tensor, shifts: Tensor) -> List[AdaINParams]:
        """(B, num_adain_params) x 2 -> one (scale, shift) pair of (B, in_channels) per AdaIN layer, module order."""
        c = self.in_channels
        return list(zip(scales.split(c, dim=1), shifts.split(c, dim=1)))

    def decode_with_params(self, structure: Tensor, scales: Tensor, shifts: Tensor) -> Tensor:
        """Decode with precomputed AdaIN parameters (e.g. to reuse one appearance's MLP output)."""
        x = F.dropout(structure, self.dropout, self.training) if self.dropout > 0 else structure
        pairs = iter(self.split_adain_params(scales, shifts))
        for block in self.res.blocks:
            adain = [t for _ in range(block.num_adain_layers) for t in next(pairs)]
            x = checkpointed(_adain_block, block, x, *adain) if self.checkpoint else _adain_block(block, x, *adain)
        # one segment per upsampling stage (upsample + conv) and per output conv
        up = [self.up[i:i + 2] for i in range(0, len(self.up), 2)]
        return run_segments([*up, *self.out], x, checkpoint=self.checkpoint)

    def forward(self, structure: Tensor, appearance: Tensor) -> Tensor:
        """structure (B, in_channels, h, w), appearance (B, appearance_dim) -> image (B, out_channels, 4h, 4w)."""
        scales, shifts = self.adain_params(appearance)
        return self.decode_with_params(structure, scales, shifts)

"""DG-Net generator: structure encoder E_s + decoder G (the published ``AdaINGen``)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .decoder import AdaINDecoder
from .structure_encoder import StructureEncoder

__all__ = ["DGNetGenerator"]


class DGNetGenerator(nn.Module):
    """E_s and G (with G's AdaIN MLPs). The appearance encoder E_a is a separate network (:class:`AppearanceEncoder`).

    Sub-modules: ``enc_structure`` (:class:`StructureEncoder`), ``dec`` (:class:`AdaINDecoder`, holding
    ``mlp_scale`` / ``mlp_shift``). Defaults are the published Market-1501 configuration.

    Args:
        in_channels: E_s input channels (1: gray).
        enc_widths, enc_strides, enc_n_res, aspp, dilations: :class:`StructureEncoder` layout.
        structure_dim: structure code channels (128).
        dec_n_res, n_upsample, out_channels: :class:`AdaINDecoder` layout.
        appearance_dim: appearance code length (E_a channels x parts; 8192 for ResNet-50).
        n_chunks, mlp_dim, mlp_layers: AdaIN MLPs.
        pad_type, activation: everywhere (reflect, lrelu).
        dropout: decoder input dropout (0).
        init: weight init of convs/linears (published: "kaiming").
    """

    def __init__(
        self,
        in_channels: int = 1,
        enc_widths: Sequence[int] = (16, 32, 32, 64),
        enc_strides: Sequence[int] = (2, 1, 1, 2),
        enc_n_res: int = 4,
        structure_dim: int = 128,
        aspp: bool = True,
        dilations: Sequence[int] = (3, 6, 9),
        dec_n_res: int = 4,
        n_upsample: int = 2,
        out_channels: int = 3,
        appearance_dim: int = 8192,
        n_chunks: int = 4,
        mlp_dim: int = 512,
        mlp_layers: int = 3,
        pad_type: str = "reflect",
        activation: str = "lrelu",
        dropout: float = 0.0,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        self.enc_structure = StructureEncoder(
            in_channels, enc_widths, enc_strides, enc_n_res, structure_dim, aspp=aspp, dilations=dilations,
            activation=activation, pad_type=pad_type, init=init,
        )
        self.dec = AdaINDecoder(
            structure_dim, dec_n_res, appearance_dim, n_chunks, mlp_dim, mlp_layers, n_upsample, out_channels,
            activation=activation, pad_type=pad_type, dropout=dropout, init=init,
        )

    @staticmethod
    def to_gray(images: Tensor) -> Tensor:
        """E_s input: mean over the RGB channels of the NORMALISED image, keepdim -> (B, 1, H, W) (official trainer)."""
        return images.mean(dim=1, keepdim=True)

    def encode(self, gray: Tensor) -> Tensor:
        """Structure code of a gray image: (B, 1, H, W) -> (B, structure_dim, H/4, W/4)."""
        return self.enc_structure(gray)

    def decode(self, structure: Tensor, appearance: Tensor) -> Tensor:
        """(structure code, appearance code) -> image in normalised space (no tanh)."""
        return self.dec(structure, appearance)

    def forward(self, gray: Tensor, appearance: Tensor) -> Tensor:
        """Encode ``gray`` and decode it with ``appearance``."""
        return self.decode(self.encode(gray), appearance)

"""DG-Net generator: structure encoder E_s + decoder G (the published ``AdaINGen``)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .decoder import AdaINDecoder
from .structure_encoder import StructureEncoder

__all__ = ["DGNetGenerator", "STRUCTURE_INPUTS", "soft_edges", "sobel_magnitude"]

#: E_s input modes (published ``single``): "gray" (default) or "edge"
STRUCTURE_INPUTS = ("gray", "edge")

# Sobel kernels, divided by 8 so that a response is a per-pixel intensity step
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel_magnitude(gray: Tensor) -> Tensor:
    """|Sobel gradient| of (B, 1, H, W) images, same size (replicate padding), in intensity steps per pixel."""
    kx = _SOBEL_X.to(device=gray.device, dtype=gray.dtype).view(1, 1, 3, 3)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


def soft_edges(gray: Tensor, scale: float, noise_std: float = 0.0) -> Tensor:
    """Edge map of a one-channel image in [-0.5, 0.5]: ``tanh(|Sobel(gray)| / scale) - 0.5`` (+ Gaussian noise).

    The published "edge" structure input is OpenCV Canny (thresholds 10 / 200) on the uint8 gray image, minus
    0.5, plus N(0, 0.1) noise.  Canny runs on the CPU in numpy and has no gradient, so Eq. 5 could not train G
    through it; this saturating Sobel magnitude keeps the property that matters (where the edges are, not how
    bright the regions between them are) and is differentiable on any device.  ``scale`` is the intensity step
    per pixel (in ``gray``'s units) at which an edge reaches tanh(1) = 0.76.
    """
    edges = torch.tanh(sobel_magnitude(gray) / scale) - 0.5
    if noise_std > 0:
        edges = edges + noise_std * torch.randn_like(edges)
    return edges


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
        structure_input: what E_s sees (published ``single``): "gray" = the channel mean of the normalised
            image; "edge" = :func:`soft_edges` of it (no brightness left for the structure code to carry, so
            G must take the colours from the appearance code).
        edge_scale: :func:`soft_edges` ``scale`` in normalised units (0.17 ~ 10 gray levels per pixel).
        edge_noise: std of the noise added to the edge map in training (published 0.1).
        enc_checkpoint, dec_checkpoint: recompute E_s's / G's activations in backward (``checkpoint`` of
            :class:`StructureEncoder` / :class:`AdaINDecoder`).
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
        structure_input: str = "gray",
        edge_scale: float = 0.17,
        edge_noise: float = 0.1,
        enc_checkpoint: bool = False,
        dec_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if structure_input not in STRUCTURE_INPUTS:
            raise ValueError(f"structure_input must be one of {STRUCTURE_INPUTS}, got {structure_input!r}")
        if in_channels != 1:
            raise ValueError(f"E_s reads a one-channel image (gray or edge), got in_channels={in_channels}")
        self.structure_input = structure_input
        self.edge_scale = float(edge_scale)
        self.edge_noise = float(edge_noise)
        self.enc_structure = StructureEncoder(
            in_channels, enc_widths, enc_strides, enc_n_res, structure_dim, aspp=aspp, dilations=dilations,
            activation=activation, pad_type=pad_type, init=init, checkpoint=enc_checkpoint,
        )
        self.dec = AdaINDecoder(
            structure_dim, dec_n_res, appearance_dim, n_chunks, mlp_dim, mlp_layers, n_upsample, out_channels,
            activation=activation, pad_type=pad_type, dropout=dropout, init=init, checkpoint=dec_checkpoint,
        )

    @staticmethod
    def to_gray(images: Tensor) -> Tensor:
        """E_s input: mean over the RGB channels of the NORMALISED image, keepdim -> (B, 1, H, W) (official trainer)."""
        return images.mean(dim=1, keepdim=True)

    def to_structure_input(self, images: Tensor) -> Tensor:
        """E_s input of normalised RGB images: gray, or its edge map (``structure_input``), (B, 1, H, W)."""
        gray = self.to_gray(images)
        if self.structure_input == "gray":
            return gray
        # noise only while training: inference (swap grids, swap accuracy) stays deterministic
        return soft_edges(gray, self.edge_scale, self.edge_noise if self.training else 0.0)

    def encode(self, gray: Tensor) -> Tensor:
        """Structure code of a one-channel E_s input: (B, 1, H, W) -> (B, structure_dim, H/4, W/4)."""
        return self.enc_structure(gray)

    def decode(self, structure: Tensor, appearance: Tensor) -> Tensor:
        """(structure code, appearance code) -> image in normalised space (no tanh)."""
        return self.dec(structure, appearance)

    def forward(self, gray: Tensor, appearance: Tensor) -> Tensor:
        """Encode ``gray`` and decode it with ``appearance``."""
        return self.decode(self.encode(gray), appearance)

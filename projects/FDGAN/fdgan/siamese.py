"""FD-GAN's Siamese networks (paper Sec. 3.1; published ``SiameseNet`` + ``EltwiseSubEmbed``).

* E (:class:`SiameseEncoder`): a ResNet (layer4 stride 2 as published) and a global average pool: the 2048-d
  test-time feature, with no normalisation after it.
* V and D_id's head (:class:`SquaredDifferenceHead`): ``(f1 - f2)^2 -> BatchNorm1d -> Linear``; 2 logits for V
  (class 1 = same identity, Eq. 1), 1 logit for D_id (Eq. 2).
* :class:`SiameseNet`: an encoder and a head; E + V, and D_id (its own encoder and head, initialised from E and
  V's "same" row when stage II starts).
"""
from __future__ import annotations

from typing import Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.layers import run_segments
from fastreid_gan.layers.resnet import build_resnet, load_imagenet_resnet, resnet_out_channels, resnet_segments

__all__ = ["SiameseEncoder", "SquaredDifferenceHead", "SiameseNet"]


class SiameseEncoder(nn.Module):
    """ResNet (torchvision layout, ``backbone``) + global average pool: (B, 3, H, W) normalised -> (B, C).

    Args:
        depth: ResNet depth (published 50: C = 2048).
        last_stride: layer4 stride (published 2: an 8x4 map at 256x128).
        bn_norm: fastreid norm name.
        pretrain_path: ImageNet weights to load (torchvision layout); empty: random initialisation.
        checkpoint: recompute each residual block's activations in backward instead of storing them
            (:func:`fastreid_gan.layers.run_segments`; same outputs and gradients, less memory).
    """

    def __init__(self, depth: Union[int, str] = 50, last_stride: int = 2, bn_norm: str = "BN",
                 pretrain_path: str = "", checkpoint: bool = False) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.backbone = build_resnet(depth, last_stride, bn_norm, torchvision_stem=True)
        self.out_dim = resnet_out_channels(depth)
        if pretrain_path:
            load_imagenet_resnet(self.backbone, pretrain_path)

    def feature_map(self, images: Tensor) -> Tensor:
        """The ResNet's last map (B, C, H/32, W/32) of normalised images: what the average pool (or LMP) reads."""
        return run_segments(resnet_segments(self.backbone), images, checkpoint=self.checkpoint)

    def forward(self, images: Tensor) -> Tensor:  # noqa: D102
        return F.adaptive_avg_pool2d(self.feature_map(images), 1).flatten(1)


class SquaredDifferenceHead(nn.Module):
    """``Linear(BatchNorm1d((f1 - f2)^2))``: V with ``out_dim=2``, D_id's head with ``out_dim=1``; logits out."""

    def __init__(self, in_dim: int = 2048, out_dim: int = 2) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.classifier = nn.Linear(in_dim, out_dim)

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:  # noqa: D102
        return self.classifier(self.bn((f1 - f2).pow(2)))


class SiameseNet(nn.Module):
    """``encoder`` + ``head``: ``forward(x1, x2) -> (f1, f2, logits)`` for two batches of normalised images."""

    def __init__(self, encoder: SiameseEncoder, head: SquaredDifferenceHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x1: Tensor, x2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:  # noqa: D102
        f1, f2 = self.encoder(x1), self.encoder(x2)
        return f1, f2, self.head(f1, f2)

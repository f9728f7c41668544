"""FD-GAN's pose-guided generator G (paper Sec. 3.2, Fig. 2; published ``CustomPoseGenerator``, no skips).

The pose encoder turns 18 heat-maps into a pose code; the decoder up-samples the concatenation
``[re-id feature, pose code, noise]`` (in this order) back to an image.  Layer by layer, as published:

* encoder: ``en_conv1`` Conv4x4/2 (no norm, no activation); ``en_conv2..5`` [LeakyReLU 0.2, Conv4x4/2, BN]
  (activation first), widths ngf, 2, 4, 8, 8 x ngf; ``en_avg`` [LeakyReLU, Conv (H/32, W/32), BN] -> 1x1;
* decoder: ``de_avg`` [ReLU, ConvTranspose (H/32, W/32), BN, Dropout]; ``de_conv5..2`` [ReLU, ConvTranspose4x4/2,
  BN, Dropout]; ``de_conv1`` [ReLU, ConvTranspose4x4/2 -> 3, Tanh].  No convolution has a bias.

The paper's encoder blocks are Conv-BN-ReLU; the published (and converted) ones are the above.  The published
code takes 256x128 only; here any size whose sides are multiples of 32 works (the 1x1 code comes from a
kernel of the last map's size).  The output is tanh-bounded and is compared with ImageNet-normalised targets,
as published.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["PoseGuidedGenerator"]


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out))


def _up(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.Dropout(dropout))


class PoseGuidedGenerator(nn.Module):
    """G: ``forward(posemaps, features, noise) -> images`` (B, 3, H, W) in [-1, 1].

    Args:
        num_joints: pose heat-map channels (COCO-18).
        feature_dim: re-id feature width (E's, 2048 for ResNet-50).
        pose_dim, noise_dim: pose code and noise widths (published 128 and 256).
        ngf: base width (published 64).
        dropout: decoder dropout (published 0.2).
        image_size: (H, W), multiples of 32 (published 256x128).
    """

    def __init__(self, num_joints: int = 18, feature_dim: int = 2048, pose_dim: int = 128, noise_dim: int = 256,
                 ngf: int = 64, dropout: float = 0.2, image_size: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        h, w = (int(s) for s in image_size)
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ValueError(f"FD-GAN's generator halves the image 5 times: INPUT.SIZE_TRAIN/SIZE_TEST must be "
                             f"multiples of 32 (e.g. 256x128 as published, 64x32 for the CPU demo); got {h}x{w}")
        self.image_size: Tuple[int, int] = (h, w)
        self.num_joints, self.feature_dim, self.pose_dim, self.noise_dim = num_joints, feature_dim, pose_dim, noise_dim
        bottom = (h // 32, w // 32)
        widths = [ngf, ngf * 2, ngf * 4, ngf * 8, ngf * 8]
        self.en_conv1 = nn.Conv2d(num_joints, widths[0], 4, 2, 1, bias=False)
        self.en_conv2 = _down(widths[0], widths[1])
        self.en_conv3 = _down(widths[1], widths[2])
        self.en_conv4 = _down(widths[2], widths[3])
        self.en_conv5 = _down(widths[3], widths[4])
        self.en_avg = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(widths[4], pose_dim, bottom, bias=False),
                                    nn.BatchNorm2d(pose_dim))
        fused = feature_dim + pose_dim + noise_dim
        self.de_avg = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(fused, widths[4], bottom, bias=False),
                                    nn.BatchNorm2d(widths[4]), nn.Dropout(dropout))
        self.de_conv5 = _up(widths[4], widths[3], dropout)
        self.de_conv4 = _up(widths[3], widths[2], dropout)
        self.de_conv3 = _up(widths[2], widths[1], dropout)
        self.de_conv2 = _up(widths[1], widths[0], dropout)
        self.de_conv1 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(widths[0], 3, 4, 2, 1, bias=False), nn.Tanh())

    def encode_pose(self, posemaps: Tensor) -> Tensor:
        """Pose code (B, pose_dim, 1, 1) of heat-maps (B, num_joints, H, W)."""
        if posemaps.dim() != 4 or posemaps.shape[1] != self.num_joints or tuple(posemaps.shape[2:]) != self.image_size:
            raise ValueError(f"pose maps must be (B, {self.num_joints}, {self.image_size[0]}, {self.image_size[1]}) "
                             f"for this generator; got {tuple(posemaps.shape)}")
        x = self.en_conv1(posemaps)
        for block in (self.en_conv2, self.en_conv3, self.en_conv4, self.en_conv5, self.en_avg):
            x = block(x)
        return x

    def decode(self, code: Tensor) -> Tensor:
        """Image (B, 3, H, W) from the fused code (B, feature_dim + pose_dim + noise_dim, 1, 1)."""
        x = code
        for block in (self.de_avg, self.de_conv5, self.de_conv4, self.de_conv3, self.de_conv2, self.de_conv1):
            x = block(x)
        return x

    def forward(self, posemaps: Tensor, features: Tensor, noise: Tensor) -> Tensor:  # noqa: D102
        batch = posemaps.shape[0]
        features = features.reshape(batch, -1, 1, 1)
        noise = noise.reshape(batch, -1, 1, 1)
        if features.shape[1] != self.feature_dim or noise.shape[1] != self.noise_dim:
            raise ValueError(f"G takes {self.feature_dim}-d features and {self.noise_dim}-d noise; got "
                             f"{features.shape[1]} and {noise.shape[1]}")
        return self.decode(torch.cat([features, self.encode_pose(posemaps), noise], dim=1))

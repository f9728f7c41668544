"""SiaNet M, SPGAN's metric net (TPAMI Sec. 3.2.2 and 4.2, Eq. 6): the embedding whose contrastive loss keeps
each image's identity cues through translation.

As ``train_spgan.py`` and OpenUnReID build it (``../shared/reference/spgan_official/RECIPE.md``; the paper's text
lists FC 256 -> 128 and an extra pool, the TF code 4 stages): 3 x [Conv4x4 s2 p1 (bias) -> LReLU 0.2 -> MaxPool 2]
(64, 128, 256 maps), flatten channel-major, fc1 -> 128 (no bias) -> LReLU 0.2 -> Dropout 0.5 -> fc2 -> 64 (no bias)
-> L2 normalisation. The stages shrink an image 64 times, so fc1's input follows the input size: 256 x 4 x 2 = 2048
at 256x128 (the published size); a model takes only the size it was built for.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.layers import Conv2dBlock

__all__ = ["SiaNet", "sianet_feature_map_size"]


def sianet_feature_map_size(input_size: Sequence[int], num_stages: int = 3) -> Tuple[int, int]:
    """(h, w) of the last stage's map for an (H, W) input: each stage is a 4x4 stride-2 conv (padding 1) and a 2x2
    max pool. Raises ValueError when the input is too small for any cell to remain."""
    h, w = (int(v) for v in input_size)
    for _ in range(num_stages):
        h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1  # conv 4x4, stride 2, padding 1
        h, w = h // 2, w // 2                      # max pool 2x2
    if h < 1 or w < 1:
        raise ValueError(f"SiaNet's {num_stages} conv + pool stages leave nothing of a {input_size[0]}x{input_size[1]} "
                         f"input: it needs at least {4 ** num_stages}x{4 ** num_stages} pixels (INPUT.SIZE_TRAIN)")
    return h, w


class SiaNet(nn.Module):
    """SiaNet (see the module docstring). ``forward``: (B, 3, H, W) images in the mean 0.5 / std 0.5 space ->
    (B, ``embed_dim``) unit-norm embeddings.

    Args:
        input_size: (H, W) of the images it takes (fc1's input is ``channels[-1] * h * w``).
        channels: output maps of the conv stages (published (64, 128, 256)).
        hidden: fc1's outputs (128). embed_dim: fc2's outputs (64). dropout: after fc1 (0.5, training only).
    Sub-modules: ``stages`` (Sequential of [Conv2dBlock, MaxPool2d] pairs), ``fc1``, ``fc2``.
    """

    def __init__(self, input_size: Sequence[int] = (256, 128), channels: Sequence[int] = (64, 128, 256),
                 hidden: int = 128, embed_dim: int = 64, dropout: float = 0.5, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        h, w = sianet_feature_map_size(self.input_size, len(channels))
        stages, ch = [], 3
        for out in channels:
            stages.append(nn.Sequential(Conv2dBlock(ch, out, 4, 2, 1, pad_type="zero", activation="lrelu",
                                                    negative_slope=negative_slope),
                                        nn.MaxPool2d(2)))
            ch = out
        self.stages = nn.Sequential(*stages)
        self.fc1 = nn.Linear(ch * h * w, hidden, bias=False)
        self.act = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, embed_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"SiaNet was built for {self.input_size[0]}x{self.input_size[1]} images (its fc1 takes "
                             f"{self.fc1.in_features} features, INPUT.SIZE_TRAIN); got {tuple(x.shape)}")
        x = self.stages(x).flatten(1)  # channel-major, as published
        x = self.fc2(self.dropout(self.act(self.fc1(x))))
        return F.normalize(x, p=2, dim=1, eps=1e-12)

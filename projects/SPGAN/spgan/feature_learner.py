"""eSPGAN's feature learner C (TPAMI Sec. 3.3 and 4.2, Eq. 9-10): IDE+, the published ``ft_net``.

ResNet-50 (torchvision layout, layer4 stride 2) -> global average pool ("pool5", 2048-d: the test feature) ->
bottleneck [Linear 2048->512 (bias), BatchNorm1d, LeakyReLU 0.1, Dropout 0.5] -> classifier Linear 512->classes.
It sees the translator's images, normalised with mean 0.5 / std 0.5 (not ImageNet's: a mismatch costs about 8 R1
points, eSPGAN issue #10).
"""
from __future__ import annotations

from typing import Dict, Union

import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.layers import run_segments
from fastreid_gan.layers.resnet import build_resnet, load_imagenet_resnet, resnet_out_channels, resnet_segments

__all__ = ["IDEFeatureLearner"]


class IDEFeatureLearner(nn.Module):
    """``ft_net`` (see the module docstring).

    Args:
        num_classes: source identities (751 for Market-1501).
        depth, last_stride, bn_norm: the ResNet (published 50, 2, BN).
        bottleneck_dim, dropout, negative_slope: the bottleneck (512, 0.5, 0.1).
        pretrain_path: ImageNet weights (torchvision layout) for the backbone; empty: random initialisation.
        checkpoint: recompute the residual blocks in backward (same outputs and gradients, less memory).
    Sub-modules: ``backbone`` (fastreid's ``ResNet``, torchvision keys), ``bottleneck`` (Sequential: 0 Linear,
    1 BatchNorm1d, 2 LeakyReLU, 3 Dropout), ``classifier`` (Linear).
    """

    def __init__(self, num_classes: int, depth: Union[int, str] = 50, last_stride: int = 2, bn_norm: str = "BN",
                 bottleneck_dim: int = 512, dropout: float = 0.5, negative_slope: float = 0.1,
                 pretrain_path: str = "", checkpoint: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"the eSPGAN feature learner needs num_classes >= 1 (MODEL.HEADS.NUM_CLASSES), got "
                             f"{num_classes}")
        self.checkpoint = bool(checkpoint)
        self.backbone = build_resnet(depth, last_stride, bn_norm, torchvision_stem=True)
        if pretrain_path:
            load_imagenet_resnet(self.backbone, pretrain_path)
        self.out_dim = resnet_out_channels(depth)
        self.bottleneck = nn.Sequential(nn.Linear(self.out_dim, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim),
                                        nn.LeakyReLU(negative_slope), nn.Dropout(dropout))
        self.classifier = nn.Linear(bottleneck_dim, num_classes)
        # the published init (weights_init_kaiming / weights_init_classifier)
        nn.init.kaiming_normal_(self.bottleneck[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.bottleneck[0].bias)
        nn.init.normal_(self.bottleneck[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.bottleneck[1].bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def feature_map(self, x: Tensor) -> Tensor:
        """layer4's map (B, 2048, H/32, W/32) of normalised images (what local max pooling splits)."""
        return run_segments(resnet_segments(self.backbone), x, checkpoint=self.checkpoint)

    def pool(self, x: Tensor) -> Tensor:
        """The 2048-d pool5 feature (B, C) of normalised images: the re-id feature at test time."""
        return F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)

    def features(self, x: Tensor) -> Dict[str, Tensor]:
        """``pool`` (B, 2048), ``bottleneck`` (B, 512, after LeakyReLU and dropout) and ``logits`` (B, classes)."""
        pool = self.pool(x)
        bottleneck = self.bottleneck(pool)
        return {"pool": pool, "bottleneck": bottleneck, "logits": self.classifier(bottleneck)}

    def forward(self, x: Tensor) -> Tensor:
        """Identity logits (B, classes), as the published ``ft_net.forward``."""
        return self.classifier(self.bottleneck(self.pool(x)))

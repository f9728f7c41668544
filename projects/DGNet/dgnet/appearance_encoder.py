"""DG-Net appearance encoder E_a with its two re-id heads (paper Sec. 3.2, 4.1 (i); published ``ft_netAB``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Tuple, Union

from torch import Tensor, nn

from fastreid_gan.layers import run_segments
from fastreid_gan.layers.resnet import (
    build_resnet,
    imagenet_weights_path,
    load_imagenet_resnet,
    resnet_depth_key,
    resnet_out_channels,
    resnet_segments,
)

logger = logging.getLogger(__name__)

__all__ = ["ClassifierHead", "AppearanceEncoder", "load_imagenet_resnet"]


class ClassifierHead(nn.Module):
    """Published ``ClassBlock``: Linear(in -> bottleneck) -> BatchNorm1d -> Dropout -> Linear(-> classes), no ReLU.

    Sub-modules: ``fc``, ``bn``, ``dropout``, ``classifier``. Forward: (B, in_dim) -> (bottleneck after BN, logits).
    Init as published: ``fc`` He normal (fan_out), ``classifier`` N(0, 0.001), biases 0, BN weight 1 / bias 0.
    """

    def __init__(self, in_dim: int, num_classes: int, bottleneck_dim: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.fc = nn.Linear(in_dim, bottleneck_dim)
        self.bn = nn.BatchNorm1d(bottleneck_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(bottleneck_dim, num_classes)
        nn.init.kaiming_normal_(self.fc.weight, a=0, mode="fan_out")
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: D102
        bottleneck = self.bn(self.fc(x))
        return bottleneck, self.classifier(self.dropout(bottleneck))


class AppearanceEncoder(nn.Module):
    """E_a: ResNet (layer4 stride ``last_stride``) -> appearance code + two re-id heads.

    - ``appearance``: layer4 map adaptive-MAX-pooled to (``parts``, 1), flattened channel-major
      (index = channel * parts + part): 2048 x 4 = 8192 for ResNet-50 (Sec. 4.1 (i)). Detached by default, as
      the published ``ft_netAB`` does (no generation loss updates E_a through the code); pass
      ``detach_appearance=False`` to let gradients flow.
    - ``pooled``: layer4 map adaptive-MAX-pooled to (1, 1), (B, C).
    - ``head_prim`` (f_prim, dropout 0.5) and ``head_fine`` (f_fine, dropout 0.75): :class:`ClassifierHead` on
      ``pooled``; ``bottleneck_*`` (B, 512) after BN, ``logits_*`` (B, num_classes).

    The backbone is fastreid's ``ResNet`` (sub-module ``backbone``; keys match torchvision's). With
    ``torchvision_stem=True`` its stem max-pool is torchvision's (3x3, stride 2, padding 1) rather than fastreid's
    (3x3, stride 2, no padding, ceil mode): the published model and the ImageNet weights use torchvision's, and
    the two are not numerically equal.

    Args:
        num_classes: identities (751 for Market-1501).
        depth: 18 / 34 / 50 / 101 (or "50x"); published 50. 18 gives a CPU-sized variant (512 x 4 code).
        last_stride: layer4 stride (published 1: 16x8 map at 256x128).
        parts: horizontal parts of the appearance code (4).
        bottleneck_dim: head width (512).
        dropout_prim, dropout_fine: head dropouts (0.5, 0.75).
        bn_norm: fastreid norm name for the backbone ("BN", "syncBN", ...).
        pretrain: load ImageNet weights (fastreid's MODEL.BACKBONE.PRETRAIN).
        pretrain_path: file to load them from (MODEL.BACKBONE.PRETRAIN_PATH); if empty the torch cache is
            searched for torchvision's file; nothing is downloaded. A missing file is a FileNotFoundError.
        detach_appearance: detach the appearance code (published behaviour).
        torchvision_stem: see above.
        checkpoint: keep only the inputs of the stem and of each residual block for backward and recompute the
            rest there (one more backbone forward; BatchNorm running statistics move once, as without it).
    Forward: images (B, 3, H, W), already normalised -> dict with ``appearance``, ``pooled``, ``logits_prim``,
    ``logits_fine``, ``bottleneck_prim``, ``bottleneck_fine``, ``feature_map`` (B, C, H/16, W/16).
    """

    def __init__(
        self,
        num_classes: int,
        depth: Union[int, str] = 50,
        last_stride: int = 1,
        parts: int = 4,
        bottleneck_dim: int = 512,
        dropout_prim: float = 0.5,
        dropout_fine: float = 0.75,
        bn_norm: str = "BN",
        pretrain: bool = False,
        pretrain_path: str = "",
        detach_appearance: bool = True,
        torchvision_stem: bool = True,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        key = resnet_depth_key(depth)
        self.backbone = build_resnet(key, last_stride, bn_norm, torchvision_stem)
        if pretrain:
            load_imagenet_resnet(self.backbone, imagenet_weights_path(key, pretrain_path))
        self.checkpoint = bool(checkpoint)
        self.out_channels = resnet_out_channels(key)
        self.parts = parts
        self.appearance_dim = self.out_channels * parts
        self.detach_appearance = detach_appearance
        self.part_pool = nn.AdaptiveMaxPool2d((parts, 1))
        self.global_pool = nn.AdaptiveMaxPool2d((1, 1))
        self.head_prim = ClassifierHead(self.out_channels, num_classes, bottleneck_dim, dropout_prim)
        self.head_fine = ClassifierHead(self.out_channels, num_classes, bottleneck_dim, dropout_fine)

    def features(self, images: Tensor, frozen: bool = False) -> Tensor:
        """The backbone's layer4 map (B, C, H/16, W/16) (H/32 with last_stride 2).

        ``frozen``: run with detached parameters and cloned BatchNorm buffers, so that gradients reach ``images``
        only and the running statistics stay as they are: the published code's per-iteration deep copy of E_a.
        """
        return run_segments(self._segments(), images, checkpoint=self.checkpoint, frozen=frozen)

    def _segments(self) -> List[nn.Module]:
        return resnet_segments(self.backbone)

    def forward(self, images: Tensor) -> Dict[str, Tensor]:  # noqa: D102
        fmap = self.features(images)
        appearance = self.part_pool(fmap).flatten(1)  # (B, C, parts, 1) -> index c * parts + p
        if self.detach_appearance:
            appearance = appearance.detach()
        pooled = self.global_pool(fmap).flatten(1)
        bottleneck_prim, logits_prim = self.head_prim(pooled)
        bottleneck_fine, logits_fine = self.head_fine(pooled)
        return {
            "appearance": appearance,
            "pooled": pooled,
            "logits_prim": logits_prim,
            "logits_fine": logits_fine,
            "bottleneck_prim": bottleneck_prim,
            "bottleneck_fine": bottleneck_fine,
            "feature_map": fmap,
        }

"""DG-Net's test-time network as fastreid parts, so that fastreid's own ``Baseline`` serves it.

- ``build_dgnet_appearance_backbone`` (``BACKBONE_REGISTRY``): E_a's ResNet (torchvision stem unless
  ``MODEL.DGNET.APPEARANCE.TORCHVISION_STEM False``, layer4 stride ``MODEL.BACKBONE.LAST_STRIDE``): images ->
  layer4 map, what ``TEST.LMP`` pools.
- :class:`DGNetFeatureHead` (``REID_HEADS_REGISTRY``): the global max pool and the f_prim / f_fine bottlenecks
  (Linear + BatchNorm1d, without the identity classifiers) -> ``[f_prim / |f_prim|, w * f_fine / |f_fine|]``,
  ``w = MODEL.DGNET.TEST_FINE_WEIGHT``: :meth:`dgnet.DGNet.forward`'s feature.

``MODEL.META_ARCHITECTURE Baseline MODEL.BACKBONE.NAME build_dgnet_appearance_backbone MODEL.HEADS.NAME
DGNetFeatureHead`` on a DG-Net config builds it; ``tools/export.py --format fastreid`` writes that config and the
re-keyed checkpoint (:data:`DEPLOYMENT`). A deployment imports ``dgnet`` (or ``fastreid_gan``) first.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.heads import REID_HEADS_REGISTRY

from fastreid_gan.export.fastreid_format import FastreidDeployment, register_fastreid_deployment
from fastreid_gan.layers.resnet import build_resnet, imagenet_weights_path, load_imagenet_resnet, resnet_out_channels

__all__ = ["build_dgnet_appearance_backbone", "DGNetFeatureHead", "DEPLOYMENT"]


@BACKBONE_REGISTRY.register()
def build_dgnet_appearance_backbone(cfg: Any) -> nn.Module:
    """E_a's ResNet from ``MODEL.BACKBONE.{DEPTH, LAST_STRIDE, NORM}`` (ImageNet weights with ``PRETRAIN``)."""
    b = cfg.MODEL.BACKBONE
    backbone = build_resnet(b.DEPTH, b.LAST_STRIDE, b.NORM, cfg.MODEL.DGNET.APPEARANCE.TORCHVISION_STEM)
    if b.PRETRAIN:
        load_imagenet_resnet(backbone, imagenet_weights_path(b.DEPTH, b.PRETRAIN_PATH))
    return backbone


class _Bottleneck(nn.Module):
    """f_prim or f_fine up to its BatchNorm (the published ``ClassBlock`` without dropout and classifier)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.bn(self.fc(x))


@REID_HEADS_REGISTRY.register()
class DGNetFeatureHead(nn.Module):
    """DG-Net's test feature from E_a's layer4 map: (B, C, H, W) -> (B, 2 x bottleneck_dim). Test time only: the
    identity classifiers are not part of it (train DG-Net with ``MODEL.META_ARCHITECTURE DGNet``)."""

    @configurable
    def __init__(self, *, feat_dim: int, bottleneck_dim: int = 512, fine_weight: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head_prim = _Bottleneck(feat_dim, bottleneck_dim)
        self.head_fine = _Bottleneck(feat_dim, bottleneck_dim)
        self.fine_weight = float(fine_weight)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        return {"feat_dim": resnet_out_channels(cfg.MODEL.BACKBONE.DEPTH),
                "bottleneck_dim": cfg.MODEL.DGNET.APPEARANCE.BOTTLENECK_DIM,
                "fine_weight": cfg.MODEL.DGNET.TEST_FINE_WEIGHT}

    def forward(self, features: Tensor, targets: Optional[Tensor] = None) -> Tensor:  # noqa: D102
        if self.training:
            raise RuntimeError("DGNetFeatureHead is DG-Net's test-time head and cannot train: call model.eval(), "
                               "or train with MODEL.META_ARCHITECTURE DGNet")
        pooled = self.pool(features).flatten(1)
        prim = F.normalize(self.head_prim(pooled), dim=1)
        fine = F.normalize(self.head_fine(pooled), dim=1) * self.fine_weight
        return torch.cat([prim, fine], dim=1)


DEPLOYMENT = register_fastreid_deployment(FastreidDeployment(
    "DGNet",
    prefixes={"id.backbone.": "backbone.",
              "id.head_prim.fc.": "heads.head_prim.fc.", "id.head_prim.bn.": "heads.head_prim.bn.",
              "id.head_fine.fc.": "heads.head_fine.fc.", "id.head_fine.bn.": "heads.head_fine.bn."},
    backbone="build_dgnet_appearance_backbone",
    head="DGNetFeatureHead",
    keep=("MODEL.DGNET.APPEARANCE.TORCHVISION_STEM", "MODEL.DGNET.APPEARANCE.BOTTLENECK_DIM",
          "MODEL.DGNET.TEST_FINE_WEIGHT"),
))

"""eSPGAN's test-time network (the feature learner C's pool5 feature) as fastreid parts, so that fastreid's own
``Baseline`` serves it.

C's test feature is its ResNet's global average pool, nothing after it: the head is fastreid's stock
``EmbeddingHead`` (``POOL_LAYER GlobalAvgPool``, ``EMBEDDING_DIM 0``, ``WITH_BNNECK False``); the IDE bottleneck
and classifier are training-only and are not exported.  The ResNet has torchvision's stem max-pool (padding 1;
fastreid's ``build_resnet_backbone`` has none, with ceil mode: numerically different), so the deployment names the
core's ``build_torchvision_stem_resnet_backbone`` (``BACKBONE_REGISTRY``), and a deployment imports ``fastreid_gan``
(which registers it) first.  SPGAN's own re-id model, IDE+ on its translations, is fastreid's ``Baseline`` with stock
parts: its export needs nothing of this project.
"""
from __future__ import annotations

from fastreid_gan.export.fastreid_format import POOL_FEATURE_HEAD, FastreidDeployment, register_fastreid_deployment
from fastreid_gan.layers.resnet import build_torchvision_stem_resnet_backbone

__all__ = ["DEPLOYMENT"]

DEPLOYMENT = register_fastreid_deployment(FastreidDeployment(
    "ESPGAN",
    prefixes={"ide.backbone.": "backbone."},
    backbone=build_torchvision_stem_resnet_backbone.__name__,
    head="EmbeddingHead",
    heads=POOL_FEATURE_HEAD,
))

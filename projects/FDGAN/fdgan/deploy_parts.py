"""FD-GAN's test-time network (E, the Siamese encoder) as fastreid parts, so that fastreid's own ``Baseline``
serves it.

E is a ResNet and a global average pool with nothing after it: the head is fastreid's stock ``EmbeddingHead``
(``POOL_LAYER GlobalAvgPool``, ``EMBEDDING_DIM 0``, ``WITH_BNNECK False``: the plain pool).  The ResNet is not
fastreid's ``build_resnet_backbone``: its stem max-pool is torchvision's (3x3, stride 2, padding 1; fastreid's has
no padding and ceil mode, numerically different), as the published model and the ImageNet weights have it.  So the
deployment names the core's ``build_torchvision_stem_resnet_backbone`` (``BACKBONE_REGISTRY``), and a deployment imports
``fastreid_gan`` (which registers it) first.  ``tools/export.py --format fastreid`` writes the config and the
re-keyed checkpoint (:data:`DEPLOYMENT`); V (the verification head) is not part of the feature and is not exported.
"""
from __future__ import annotations

from fastreid_gan.export.fastreid_format import POOL_FEATURE_HEAD, FastreidDeployment, register_fastreid_deployment
from fastreid_gan.layers.resnet import build_torchvision_stem_resnet_backbone

__all__ = ["DEPLOYMENT"]

DEPLOYMENT = register_fastreid_deployment(FastreidDeployment(
    "FDGAN",
    prefixes={"reid.encoder.backbone.": "backbone."},
    backbone=build_torchvision_stem_resnet_backbone.__name__,
    head="EmbeddingHead",
    heads=POOL_FEATURE_HEAD,
))

"""The ``ESPGAN`` meta-architecture (TPAMI Sec. 3.3, Eq. 9-11): the translators and discriminators of SPGAN, no
SiaNet, and the feature learner C (IDE+, :class:`~spgan.feature_learner.IDEFeatureLearner`) trained with them.

Sub-networks: those of :class:`~spgan.translator.CycleTranslator` and ``ide`` (C). The eval forward is C's
2048-d pool5 feature, the re-id feature of the published test (flip-summed and L2-normalised by the evaluator:
``TEST.FLIP``, cosine metric). Training is still to come (:meth:`phases` says so).
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import loss_weights_from_config
from fastreid_gan.layers.resnet import imagenet_weights_path

from .config import espgan_optimizers
from .discriminator import SPGANDiscriminator
from .feature_learner import IDEFeatureLearner
from .generator import ResnetGenerator
from .translator import CycleTranslator, build_translators

__all__ = ["ESPGAN"]


@META_ARCH_REGISTRY.register()
class ESPGAN(CycleTranslator):
    """eSPGAN: see the module docstring. Built from a config (``build_model(cfg)``) or from its parts."""

    method = "eSPGAN"

    @configurable
    def __init__(self, *, gen_st: ResnetGenerator, gen_ts: ResnetGenerator, dis_s: SPGANDiscriminator,
                 dis_t: SPGANDiscriminator, ide: IDEFeatureLearner, **kwargs: Any) -> None:
        super().__init__(gen_st=gen_st, gen_ts=gen_ts, dis_s=dis_s, dis_t=dis_t, **kwargs)
        self.ide = ide

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        s, backbone = cfg.MODEL.SPGAN, cfg.MODEL.BACKBONE
        num_classes = int(cfg.MODEL.HEADS.NUM_CLASSES)
        if num_classes < 1:
            raise ValueError("eSPGAN's feature learner needs MODEL.HEADS.NUM_CLASSES (the source's identities, 751 "
                             "for Market-1501); the trainer fills it in from DATASETS.NAMES, set it by hand when "
                             "building the model yourself")
        pretrain = imagenet_weights_path(backbone.DEPTH, backbone.PRETRAIN_PATH) if backbone.PRETRAIN else ""
        f = s.FEATURE_LEARNER
        ide = IDEFeatureLearner(num_classes, backbone.DEPTH, backbone.LAST_STRIDE, backbone.NORM, f.BOTTLENECK_DIM,
                                f.DROPOUT, f.NEGATIVE_SLOPE, pretrain, f.CHECKPOINT)
        return {**build_translators(cfg), "ide": ide,
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD,
                "image_size": tuple(cfg.INPUT.SIZE_TRAIN), "pool_size": s.POOL_SIZE,
                "loss_weights": loss_weights_from_config(s.LOSS_WEIGHTS)}

    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return espgan_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {**super().sub_networks(), "ide": self.ide}

    def identity_classifier_prefixes(self) -> Sequence[str]:
        return ("ide.classifier.",)

    def identify(self, images: Tensor) -> Dict[str, Tensor]:
        """The feature learner on 0..255 images: ``pool`` (B, 2048), ``bottleneck`` (B, 512), ``logits``."""
        return self.ide.features(self.normalize(images))

    def forward(self, batched_inputs: Any) -> Tensor:
        """C's pool5 feature (B, 2048) of a dict with "images" or a (B, 3, H, W) tensor in 0..255."""
        return self.ide.pool(self.normalize(self.inference_images(batched_inputs)))

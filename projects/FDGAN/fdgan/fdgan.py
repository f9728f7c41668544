"""The ``FDGAN`` meta-architecture (Ge et al., NeurIPS 2018): E + V, G, D_id and D_pd in one module.

Sub-networks (each with its optimizer node ``SOLVER.GAN.OPTIMIZERS.<NET>``):

* ``reid``: E + V (:class:`~fdgan.siamese.SiameseNet`, V with 2 logits, class 1 = same identity);
* ``gen``: G (:class:`~fdgan.generator.PoseGuidedGenerator`);
* ``dis_id``: D_id, its own Siamese ResNet + a 1-logit head (never shared with E);
* ``dis_pose``: D_pd, a PatchGAN on ``cat(pose maps, image)`` (18 + 3 channels).

Images: :meth:`encode` and the eval :meth:`forward` take 0..255 RGB batches and normalise them with
``MODEL.PIXEL_MEAN/STD`` (ImageNet's, as published); :meth:`generate`, :meth:`discriminate_identity` and
:meth:`discriminate_pose` work in that normalised space, where the published G's tanh output lives too
(:meth:`normalize` and :meth:`to_pixels` convert).

Training (the three stages of Sec. 3.4) is not implemented yet: ``phases()`` raises a ``NotImplementedError``
that says so; evaluation, the published checkpoints and generation work.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import GANMetaArch, Phase
from fastreid_gan.layers import PatchDiscriminator
from fastreid_gan.layers.resnet import imagenet_weights_path

from .config import fdgan_optimizers
from .generator import PoseGuidedGenerator
from .siamese import SiameseEncoder, SiameseNet, SquaredDifferenceHead

__all__ = ["FDGAN"]

TRAINING_NOT_READY = ("FD-GAN training (stages I-III, paper Sec. 3.4) is not implemented yet: this version "
                      "evaluates and generates with FD-GAN weights (tools/convert_official.py fdgan, then "
                      "--eval-only MODEL.WEIGHTS <file>).")


@META_ARCH_REGISTRY.register()
class FDGAN(GANMetaArch):
    """FD-GAN: see the module docstring.  Built from a config (``build_model(cfg)``) or from its parts."""

    @configurable
    def __init__(self, *, reid: SiameseNet, gen: PoseGuidedGenerator, dis_id: SiameseNet,
                 dis_pose: PatchDiscriminator, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
        super().__init__()
        self.reid, self.gen, self.dis_id, self.dis_pose = reid, gen, dis_id, dis_pose
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        f, backbone = cfg.MODEL.FDGAN, cfg.MODEL.BACKBONE
        size = tuple(cfg.INPUT.SIZE_TRAIN)
        if tuple(cfg.INPUT.SIZE_TEST) != size:
            raise ValueError(f"FD-GAN generates images of one size: INPUT.SIZE_TEST {list(cfg.INPUT.SIZE_TEST)} must "
                             f"equal INPUT.SIZE_TRAIN {list(size)}")
        pretrain = imagenet_weights_path(backbone.DEPTH, backbone.PRETRAIN_PATH) if backbone.PRETRAIN else ""

        def siamese(out_dim: int, pretrain_path: str) -> SiameseNet:
            encoder = SiameseEncoder(backbone.DEPTH, backbone.LAST_STRIDE, backbone.NORM, pretrain_path)
            return SiameseNet(encoder, SquaredDifferenceHead(encoder.out_dim, out_dim))

        reid = siamese(2, pretrain)
        gen = PoseGuidedGenerator(f.POSE.NUM_JOINTS, reid.encoder.out_dim, f.GENERATOR.POSE_DIM,
                                  f.GENERATOR.NOISE_DIM, f.GENERATOR.NGF, f.GENERATOR.DROPOUT, size)
        dis_pose = PatchDiscriminator.patchgan70(f.POSE.NUM_JOINTS + 3, f.POSE_DISCRIMINATOR.NDF, "bn",
                                                 f.POSE_DISCRIMINATOR.N_LAYERS)
        return {"reid": reid, "gen": gen, "dis_id": siamese(1, ""), "dis_pose": dis_pose,
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD}

    # ------------------------------------------------------------------ GANMetaArch interface
    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return fdgan_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {"reid": self.reid, "gen": self.gen, "dis_id": self.dis_id, "dis_pose": self.dis_pose}

    def phases(self) -> Sequence[Phase]:
        raise NotImplementedError(TRAINING_NOT_READY)

    def forward_train(self, batch: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
        raise NotImplementedError(TRAINING_NOT_READY)

    # ------------------------------------------------------------------ images
    def normalize(self, images: Tensor) -> Tensor:
        """0..255 RGB -> the networks' input space (never in place)."""
        return (images - self.pixel_mean) / self.pixel_std

    def to_pixels(self, images: Tensor) -> Tensor:
        """The networks' space (e.g. G's output) -> 0..255 RGB, clamped."""
        return (images * self.pixel_std + self.pixel_mean).clamp(0, 255)

    # ------------------------------------------------------------------ public methods
    def encode(self, images: Tensor) -> Tensor:
        """E's re-id feature (B, 2048) of 0..255 images: the test-time feature (raw average pool)."""
        return self.reid.encoder(self.normalize(images))

    def verify(self, f1: Tensor, f2: Tensor) -> Tensor:
        """V's logits (B, 2) for pairs of E features; index 1 = same identity (Eq. 1)."""
        return self.reid.head(f1, f2)

    def pair_distance(self, query_feats: Tensor, gallery_feats: Tensor, batch_size: int = 4096) -> Tensor:
        """V's probability "different" for aligned pairs of E features (N, D): the distance of the published
        test's re-ranking (``TEST.PAIR_RERANK``)."""
        device = self.pixel_mean.device
        with torch.no_grad():
            out = [torch.softmax(self.verify(q.to(device), g.to(device)), dim=1)[:, 0]
                   for q, g in zip(query_feats.split(batch_size), gallery_feats.split(batch_size))]
        return torch.cat(out).cpu()

    def encode_pose(self, posemaps: Tensor) -> Tensor:
        """G's pose code (B, 128, 1, 1) of heat-maps (B, 18, H, W)."""
        return self.gen.encode_pose(posemaps)

    def generate(self, posemaps: Tensor, features: Tensor, noise: Tensor) -> Tensor:
        """G(pose, feature, noise): (B, 3, H, W) in the normalised space (tanh-bounded, as published)."""
        return self.gen(posemaps, features, noise)

    def discriminate_identity(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """D_id on normalised images: (features of x, features of y, (B, 1) logit "same person")."""
        return self.dis_id(x, y)

    def discriminate_pose(self, posemaps: Tensor, images: Tensor) -> Tensor:
        """D_pd's patch logits (B, 1, h, w) for normalised images and their pose maps (pose channels first)."""
        return self.dis_pose(torch.cat([posemaps, images], dim=1))

    # ------------------------------------------------------------------ inference
    def forward(self, batched_inputs: Any) -> Tensor:
        """E's feature (B, 2048) for a dict with "images" or a (B, 3, H, W) tensor in 0..255: what the evaluator,
        ``DefaultPredictor`` and export use."""
        return self.encode(self.inference_images(batched_inputs))

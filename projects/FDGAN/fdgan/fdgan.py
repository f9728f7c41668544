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

Training (Sec. 3.4), one stage per run (``MODEL.FDGAN.STAGE``; ``tools/train_net.py`` runs a recipe's stages in
order, ``docs/fdgan.md``):

* stage 1, the Siamese baseline: phase ``reid`` (E + V) with the verification loss (Eq. 1);
* stage 2: E and V frozen (no gradients, BatchNorm in eval mode); phases ``dis_id`` (Eq. 2), ``dis_pose``
  (Eq. 3) on the detached generations, then ``gen`` (G) with Eq. 6's generator terms; D_id starts as a copy of
  E and of V's "same" row (:meth:`start_from_weights`);
* stage 3: as stage 2 with E + V trained in the ``gen`` phase (and ``loss_verif`` on), E's BatchNorm frozen.

D_id's BatchNorm always uses its running statistics (as published); G and D_pd train with batch statistics.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import GANMetaArch, LossWeight, Phase, StepContext, TrainingStage, loss_weights_from_config
from fastreid_gan.layers import LocalPooling, PatchDiscriminator, checkpointed, freeze_batchnorm
from fastreid_gan.layers.resnet import imagenet_weights_path
from fastreid_gan.losses import bce_d_loss, bce_g_loss

from .config import fdgan_optimizers
from .generator import PoseGuidedGenerator
from .pairs import build_pair_loader
from .siamese import SiameseEncoder, SiameseNet, SquaredDifferenceHead

__all__ = ["FDGAN", "STAGES"]

logger = logging.getLogger(__name__)

STAGES = (1, 2, 3)


@META_ARCH_REGISTRY.register()
class FDGAN(GANMetaArch):
    """FD-GAN: see the module docstring.  Built from a config (``build_model(cfg)``) or from its parts."""

    @configurable
    def __init__(self, *, reid: SiameseNet, gen: PoseGuidedGenerator, dis_id: SiameseNet,
                 dis_pose: PatchDiscriminator, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 stage: int = 0, loss_weights: Mapping[str, Any] = (),
                 label_smoothing: Sequence[float] = (0.7, 1.0, 0.0, 0.3), label_flip_prob: float = 0.0,
                 checkpoint: bool = False, local_pooling: Optional[LocalPooling] = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        if stage not in (0, *STAGES):
            raise ValueError(f"MODEL.FDGAN.STAGE must be 1, 2 or 3 (0: a recipe config whose STAGE_CONFIGS "
                             f"tools/train_net.py runs), got {stage}")
        self.reid, self.gen, self.dis_id, self.dis_pose = reid, gen, dis_id, dis_pose
        self.stage = int(stage)
        self._loss_weights = {name: LossWeight.from_spec(spec) for name, spec in dict(loss_weights).items()}
        self.label_smoothing = tuple(float(v) for v in label_smoothing)
        self.label_flip_prob = float(label_flip_prob)
        self.checkpoint = checkpoint
        self.local_pooling = local_pooling  # TEST.LMP: the eval feature is LMP's of E's last map (no weights)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), persistent=False)
        # MODEL.FDGAN.CHANNELS_LAST: weights NHWC now, every image batch NHWC from normalize() on
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        f, backbone = cfg.MODEL.FDGAN, cfg.MODEL.BACKBONE
        size = tuple(cfg.INPUT.SIZE_TRAIN)
        if tuple(cfg.INPUT.SIZE_TEST) != size:
            raise ValueError(f"FD-GAN generates images of one size: INPUT.SIZE_TEST {list(cfg.INPUT.SIZE_TEST)} must "
                             f"equal INPUT.SIZE_TRAIN {list(size)}")
        pretrain = imagenet_weights_path(backbone.DEPTH, backbone.PRETRAIN_PATH) if backbone.PRETRAIN else ""

        def siamese(out_dim: int, pretrain_path: str) -> SiameseNet:
            encoder = SiameseEncoder(backbone.DEPTH, backbone.LAST_STRIDE, backbone.NORM, pretrain_path,
                                     checkpoint=f.CHECKPOINT)
            return SiameseNet(encoder, SquaredDifferenceHead(encoder.out_dim, out_dim))

        reid = siamese(2, pretrain)
        gen = PoseGuidedGenerator(f.POSE.NUM_JOINTS, reid.encoder.out_dim, f.GENERATOR.POSE_DIM,
                                  f.GENERATOR.NOISE_DIM, f.GENERATOR.NGF, f.GENERATOR.DROPOUT, size)
        dis_pose = PatchDiscriminator.patchgan70(f.POSE.NUM_JOINTS + 3, f.POSE_DISCRIMINATOR.NDF, "bn",
                                                 f.POSE_DISCRIMINATOR.N_LAYERS)
        return {"reid": reid, "gen": gen, "dis_id": siamese(1, ""), "dis_pose": dis_pose,
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD, "stage": int(f.STAGE),
                "loss_weights": loss_weights_from_config(f.LOSS_WEIGHTS),
                "label_smoothing": f.LABEL_SMOOTHING, "label_flip_prob": f.LABEL_FLIP_PROB,
                "checkpoint": f.CHECKPOINT, "local_pooling": LocalPooling.from_config(cfg),
                "channels_last": f.CHANNELS_LAST}

    # ------------------------------------------------------------------ GANMetaArch interface
    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return fdgan_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {"reid": self.reid, "gen": self.gen, "dis_id": self.dis_id, "dis_pose": self.dis_pose}

    @classmethod
    def training_stages(cls, cfg: Any) -> Sequence[TrainingStage]:
        """A recipe config (``MODEL.FDGAN.STAGE 0``) trains its three ``STAGE_CONFIGS`` in order: ``stage1`` ..
        ``stage3``, each from the previous one's weights."""
        f = cfg.MODEL.FDGAN
        if int(f.STAGE) != 0 or not f.STAGE_CONFIGS:
            return ()
        if len(f.STAGE_CONFIGS) != len(STAGES):
            raise ValueError(f"MODEL.FDGAN.STAGE_CONFIGS names the configs of the {len(STAGES)} stages, got "
                             f"{list(f.STAGE_CONFIGS)}")
        return tuple(TrainingStage(f"stage{k}", path, ("MODEL.FDGAN.STAGE", str(k)))
                     for k, path in zip(STAGES, f.STAGE_CONFIGS))

    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """Verification pairs (``fdgan.pairs``); stage 1 reads no target images or keypoints."""
        return build_pair_loader(cfg, with_targets=int(cfg.MODEL.FDGAN.STAGE) != 1)

    def _require_stage(self) -> int:
        if self.stage == 0:
            raise ValueError("MODEL.FDGAN.STAGE is 0: this config describes the whole recipe, whose stages "
                             "(MODEL.FDGAN.STAGE_CONFIGS) tools/train_net.py runs in order; to train one stage "
                             "with GANTrainer, set MODEL.FDGAN.STAGE to 1, 2 or 3")
        return self.stage

    def phases(self) -> Sequence[Phase]:
        if self._require_stage() == 1:
            return (Phase("reid", ("reid",)),)
        generator_side = ("gen",) if self.stage == 2 else ("gen", "reid")
        # published order: D_id, then D_pd, on the generations made before G's update, then G (+ E, V)
        return (Phase("dis_id", ("dis_id",)), Phase("dis_pose", ("dis_pose",)), Phase("gen", generator_side))

    def loss_weights(self) -> Dict[str, LossWeight]:
        return dict(self._loss_weights)

    def start_from_weights(self, weights: str) -> None:
        """Stages 2 and 3 start from the previous stage's weights; stage 2 also initialises D_id from E and its
        logit from V's "same" row (Sec. 3.4), as the published code does."""
        if self._require_stage() == 1:
            return
        if not weights:
            raise FileNotFoundError(
                f"FD-GAN stage {self.stage} starts from stage {self.stage - 1}'s weights, but MODEL.WEIGHTS is empty. "
                f"Make them with 'tools/train_net.py --config-file <recipe config> SOLVER.GAN.RUN_STAGES "
                f"\"({self.stage - 1},)\"' (written to <OUTPUT_DIR>/stage{self.stage - 1}/model_final.pth) and pass "
                f"that file as MODEL.WEIGHTS, or run the recipe's stages in order with one command")
        if self.stage == 2:
            with torch.no_grad():
                self.dis_id.encoder.load_state_dict(self.reid.encoder.state_dict())
                self.dis_id.head.bn.load_state_dict(self.reid.head.bn.state_dict())
                self.dis_id.head.classifier.weight.copy_(self.reid.head.classifier.weight[1:2])
                self.dis_id.head.classifier.bias.copy_(self.reid.head.classifier.bias[1:2])
            logger.info("FD-GAN stage 2: D_id initialised from E and V's 'same' logit")

    def train(self, mode: bool = True) -> "FDGAN":
        """Training mode with the stage's frozen parts kept in eval mode: D_id's BatchNorm always, E + V entirely
        in stage 2, E's and V's BatchNorm in stage 3 (published ``set_bn_fix``)."""
        super().train(mode)
        if mode and self.stage in (2, 3):
            freeze_batchnorm(self.dis_id)
            if self.stage == 2:
                self.reid.eval()
            else:
                freeze_batchnorm(self.reid)
        return self

    # ------------------------------------------------------------------ training
    @staticmethod
    def _branches(pairs: Tensor) -> Tensor:
        """(P, 2, ...) pairs -> (2P, ...): all first branches, then all second branches."""
        return pairs.transpose(0, 1).flatten(0, 1)

    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        stage = self._require_stage()
        pairs = batch["images"]
        num_pairs = pairs.shape[0]
        x = self.normalize(self._branches(pairs).float())
        same = batch["same"].long()
        state: Dict[str, Any] = {"num_pairs": num_pairs, "x": x, "same": same}
        with torch.set_grad_enabled(stage != 2 and torch.is_grad_enabled()):
            features = self.reid.encoder(x)  # stage 2: E is frozen, its graph would be waste (published: not)
            if stage != 2 and ctx.weight("loss_verif") != 0:
                state["verif_logits"] = self.reid.head(features[:num_pairs], features[num_pairs:])
        if stage == 1:
            return state
        noise = torch.randn(num_pairs, self.gen.noise_dim, device=x.device).repeat(2, 1)  # shared by both branches
        poses = self._branches(batch["target_poses"]).float()
        if self.checkpoint:
            fake = checkpointed(self.gen, poses, features, noise, module=self.gen)
        else:
            fake = self.gen(poses, features, noise)
        state.update(poses=poses, fake=fake, target=self.normalize(self._branches(batch["target_images"]).float()))
        return state

    def _dis_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return bce_d_loss(real, fake, smoothing=self.label_smoothing, flip_prob=self.label_flip_prob)

    def phase_losses(self, phase: str, batch: Dict[str, Any], state: Dict[str, Any],
                     ctx: StepContext) -> Dict[str, Tensor]:
        if phase == "reid":
            return {"loss_verif": F.cross_entropy(state["verif_logits"], state["same"])}
        x, fake, target, poses = state["x"], state["fake"], state["target"], state["poses"]
        n = x.shape[0]
        if phase == "dis_id":  # Eq. 2: (origin, target) is real, (origin, generation) fake
            feats = self.dis_id.encoder(torch.cat([x, target, fake.detach()]))  # eval-mode BN: one batch
            fx, fy, ff = feats[:n], feats[n:2 * n], feats[2 * n:]
            return {"loss_dis_id": self._dis_loss(self.dis_id.head(fx, fy), self.dis_id.head(fx, ff))}
        if phase == "dis_pose":  # Eq. 3; real and fake apart, as D_pd's BatchNorm uses batch statistics
            return {"loss_dis_pose": self._dis_loss(self.discriminate_pose(poses, target),
                                                    self.discriminate_pose(poses, fake.detach()))}
        if phase != "gen":
            raise ValueError(f"FDGAN has no phase {phase!r}")
        losses: Dict[str, Tensor] = {}
        if ctx.weight("loss_gan_id") != 0:
            with torch.no_grad():  # the origin's features: D_id is not trained here and x is data
                fx = self.dis_id.encoder(x)
            losses["loss_gan_id"] = bce_g_loss(self.dis_id.head(fx, self.dis_id.encoder(fake)))
        if ctx.weight("loss_gan_pose") != 0:
            losses["loss_gan_pose"] = bce_g_loss(self.discriminate_pose(poses, fake))
        losses["loss_recon"] = F.l1_loss(fake, target)  # Eq. 4
        losses["loss_same_pose"] = self.same_pose_loss(fake, state["same"])
        if "verif_logits" in state:
            losses["loss_verif"] = F.cross_entropy(state["verif_logits"], state["same"])
        return losses

    @staticmethod
    def same_pose_loss(fake: Tensor, same: Tensor) -> Tensor:
        """Eq. 5: L1 between the two branches' generations of the positive pairs (same person, same target pose,
        same noise); 0 for a batch without a positive pair (the published loss is NaN there)."""
        num_pairs = same.shape[0]
        positive = same.bool()
        if not bool(positive.any()):
            return fake.sum() * 0.0
        return F.l1_loss(fake[:num_pairs][positive], fake[num_pairs:][positive])

    def visualize(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Rows: origin images, target poses (joint maximum), targets, generations (stages 2 and 3)."""
        with torch.no_grad():
            pairs = batch["images"].to(self.device)
            x = self._branches(pairs).float()
            rows = {"origin": x / 255.0}
            if "target_poses" not in batch or self.stage == 1:
                return rows
            poses = self._branches(batch["target_poses"].to(self.device)).float()
            target = self._branches(batch["target_images"].to(self.device)).float()
            features = self.encode(x)
            noise = torch.randn(x.shape[0], self.gen.noise_dim, device=x.device)
            fake = self.to_pixels(self.generate(poses, features, noise))
            rows.update(pose=poses.amax(dim=1, keepdim=True).expand(-1, 3, -1, -1), target=target / 255.0,
                        generated=fake / 255.0)
        return rows

    # ------------------------------------------------------------------ images
    def normalize(self, images: Tensor) -> Tensor:
        """0..255 RGB -> the networks' input space (never in place), in the model's memory format."""
        return ((images - self.pixel_mean) / self.pixel_std).contiguous(memory_format=self.memory_format)

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
        test's re-ranking (``TEST.PAIR_RERANK``).  V runs in eval mode whatever the model's mode (the evaluator
        scores pairs after fastreid's inference context has put the model back in training mode): its BatchNorm
        uses, and never moves, the running statistics."""
        device = self.pixel_mean.device
        head = self.reid.head
        was_training = head.training
        head.eval()
        try:
            with torch.no_grad():
                out = [torch.softmax(self.verify(q.to(device), g.to(device)), dim=1)[:, 0]
                       for q, g in zip(query_feats.split(batch_size), gallery_feats.split(batch_size))]
        finally:
            head.train(was_training)
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
    def reid_feature_map(self, images: Tensor) -> Tensor:
        """E's last feature map (B, 2048, H/32, W/32) of 0..255 images (what ``TEST.LMP`` pools)."""
        return self.reid.encoder.feature_map(self.normalize(images))

    def forward(self, batched_inputs: Any) -> Tensor:
        """E's feature (B, 2048) for a dict with "images" or a (B, 3, H, W) tensor in 0..255: what the evaluator,
        ``DefaultPredictor`` and export use.  With ``TEST.LMP.ENABLED``: LMP's feature of E's last map,
        (B, 2048 x PARTS), flip-summed and L2-normalised (:mod:`fastreid_gan.layers.local_pooling`)."""
        images = self.inference_images(batched_inputs)
        if self.local_pooling is not None:
            return self.local_pooling(self.reid_feature_map, images)
        return self.encode(images)

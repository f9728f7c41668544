"""The ``ESPGAN`` meta-architecture (TPAMI Sec. 3.3, Eq. 9-11): the translators and discriminators of SPGAN, no
SiaNet, and the feature learner C (IDE+, :class:`~spgan.feature_learner.IDEFeatureLearner`) trained with them.

Sub-networks: those of :class:`~spgan.translator.CycleTranslator` and ``ide`` (C). The eval forward is C's
pool feature (2048-d for ResNet-50), the re-id feature of the published test (flip-summed and L2-normalised by
the evaluator: ``TEST.FLIP``, cosine metric); with ``TEST.LMP.ENABLED``, LMP's feature of C's last map.

Training, ``MODEL.SPGAN.ESPGAN.STAGE`` (``docs/spgan.md``, "Training eSPGAN"):

* ``pretrain`` (Sec. 3.3.2 (i)): C alone, ``loss_feature_learner`` = cross-entropy on labelled source images in
  the translators' normalisation (mean 0.5 / std 0.5; ImageNet's costs about 8 R1 points, eSPGAN issue #10);
* ``joint`` (Eq. 10-11, the published ``espgan.py``), phases in this order on a two-domain batch (x_s, y_s),
  x_t and a fresh source batch (x'_s, y'_s):

  - ``gen`` (G and F, every ``SCHEDULE.GEN_EVERY``-th iteration, 3 as published): ``loss_gan`` + 10
    ``loss_cycle`` + 5 ``loss_identity`` (Eq. 1-5) + lambda ``loss_ide``, lambda = 5: C's cross-entropy of
    G(x_s) (Eq. 9) and, as published (``ESPGAN.CE_ON_RECONSTRUCTION``), of F(G(x_s)), labels y_s, C in eval
    mode and not updated;
  - ``ide`` (C, every iteration; absent for the "naive eSPGAN" of Table 2, ``ESPGAN.TRAIN_FEATURE_LEARNER
    False``): ``loss_feature_learner`` = cross-entropy of [x'_s, G(x_s) detached] (the real-data regularisation
    of Sec. 3.3.2 (ii); ``ESPGAN.FRESH_SOURCE_BATCH False``: x_s itself), labels [y'_s, y_s];
  - ``dis`` (D_S and D_T, every iteration): ``loss_dis_s``, ``loss_dis_t`` on the translations made before the G
    update, through the image pools;

* ``recipe``: ``ESPGAN.STAGE_CONFIGS`` (pretrain, then joint from its weights), one ``tools/train_net.py`` run.

C's backbone BatchNorm is frozen in every stage (IDE+: running statistics kept, affine trained); its head's
BatchNorm and dropout train.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import LossWeight, Phase, StepContext, TrainingStage, loss_weights_from_config
from fastreid_gan.layers import LocalPooling, freeze_batchnorm
from fastreid_gan.layers.resnet import imagenet_weights_path
from fastreid_gan.model_loading import checkpoint_num_classes

from .config import espgan_optimizers
from .data import build_two_domain_loader
from .discriminator import SPGANDiscriminator
from .feature_learner import IDEFeatureLearner
from .generator import ResnetGenerator
from .translator import CycleTranslator, build_translators

__all__ = ["ESPGAN", "ESPGAN_LOSSES", "ESPGAN_STAGES"]

logger = logging.getLogger(__name__)

#: the losses eSPGAN's phases return (their weights: MODEL.SPGAN.LOSS_WEIGHTS)
ESPGAN_LOSSES = ("loss_gan", "loss_cycle", "loss_identity", "loss_ide", "loss_feature_learner", "loss_dis_s",
                 "loss_dis_t")
#: MODEL.SPGAN.ESPGAN.STAGE values: the two trainings, and the recipe that runs them in order
ESPGAN_STAGES = ("pretrain", "joint", "recipe")


@META_ARCH_REGISTRY.register()
class ESPGAN(CycleTranslator):
    """eSPGAN: see the module docstring. Built from a config (``build_model(cfg)``) or from its parts."""

    method = "eSPGAN"

    @configurable
    def __init__(self, *, gen_st: ResnetGenerator, gen_ts: ResnetGenerator, dis_s: SPGANDiscriminator,
                 dis_t: SPGANDiscriminator, ide: IDEFeatureLearner, stage: str = "joint", gen_every: int = 3,
                 train_feature_learner: bool = True, ce_on_reconstruction: bool = True,
                 fresh_source: bool = True, local_pooling: Optional[LocalPooling] = None, **kwargs: Any) -> None:
        """The training arguments: ``MODEL.SPGAN.ESPGAN`` and ``MODEL.SPGAN.SCHEDULE.GEN_EVERY``
        (``spgan/config.py``)."""
        super().__init__(gen_st=gen_st, gen_ts=gen_ts, dis_s=dis_s, dis_t=dis_t, **kwargs)
        if stage not in ESPGAN_STAGES:
            raise ValueError(f"MODEL.SPGAN.ESPGAN.STAGE must be one of {ESPGAN_STAGES}, got {stage!r}")
        if int(gen_every) < 1:
            raise ValueError(f"MODEL.SPGAN.SCHEDULE.GEN_EVERY must be >= 1, got {gen_every}")
        self.ide = ide
        self.stage = stage
        self.gen_every = int(gen_every)
        self.train_feature_learner = bool(train_feature_learner)
        self.ce_on_reconstruction = bool(ce_on_reconstruction)
        self.fresh_source = bool(fresh_source)
        self.local_pooling = local_pooling  # TEST.LMP: the eval feature is LMP's of C's last map (no weights)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        s, backbone = cfg.MODEL.SPGAN, cfg.MODEL.BACKBONE
        num_classes = int(cfg.MODEL.HEADS.NUM_CLASSES)
        if num_classes < 1 and cfg.MODEL.WEIGHTS:  # a dataset config with trained weights (DefaultPredictor)
            num_classes = checkpoint_num_classes(cfg.MODEL.WEIGHTS, "ide.classifier.weight")
        if num_classes < 1:
            raise ValueError("eSPGAN's feature learner needs MODEL.HEADS.NUM_CLASSES (the source's identities, 751 "
                             "for Market-1501); the trainer fills it in from DATASETS.NAMES, set it by hand when "
                             "building the model yourself (or set MODEL.WEIGHTS)")
        # trained weights replace every backbone tensor: the ImageNet initialisation is neither needed nor read
        pretrain = (imagenet_weights_path(backbone.DEPTH, backbone.PRETRAIN_PATH)
                    if backbone.PRETRAIN and not cfg.MODEL.WEIGHTS else "")
        f = s.FEATURE_LEARNER
        ide = IDEFeatureLearner(num_classes, backbone.DEPTH, backbone.LAST_STRIDE, backbone.NORM, f.BOTTLENECK_DIM,
                                f.DROPOUT, f.NEGATIVE_SLOPE, pretrain, f.CHECKPOINT)
        e = s.ESPGAN
        weights = {k: v for k, v in loss_weights_from_config(s.LOSS_WEIGHTS).items() if k in ESPGAN_LOSSES}
        return {**build_translators(cfg), "ide": ide,
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD,
                "image_size": tuple(cfg.INPUT.SIZE_TRAIN), "pool_size": s.POOL_SIZE, "loss_weights": weights,
                "stage": str(e.STAGE), "gen_every": s.SCHEDULE.GEN_EVERY,
                "train_feature_learner": e.TRAIN_FEATURE_LEARNER, "ce_on_reconstruction": e.CE_ON_RECONSTRUCTION,
                "fresh_source": e.FRESH_SOURCE_BATCH, "local_pooling": LocalPooling.from_config(cfg)}

    # ------------------------------------------------------------------ GANMetaArch interface
    @classmethod
    def training_stages(cls, cfg: Any) -> Sequence[TrainingStage]:
        """A recipe config (``MODEL.SPGAN.ESPGAN.STAGE recipe``) trains its two ``STAGE_CONFIGS`` in order:
        ``pretrain`` (from the config's backbone initialisation), then ``joint`` from its weights."""
        e = cfg.MODEL.SPGAN.ESPGAN
        if str(e.STAGE) != "recipe":
            return ()
        if len(e.STAGE_CONFIGS) != 2:
            raise ValueError(f"MODEL.SPGAN.ESPGAN.STAGE is 'recipe': STAGE_CONFIGS must name the configs of the "
                             f"pretrain and joint stages, got {list(e.STAGE_CONFIGS)}")
        return (TrainingStage("pretrain", e.STAGE_CONFIGS[0], ("MODEL.SPGAN.ESPGAN.STAGE", "pretrain"),
                              from_previous=False),
                TrainingStage("joint", e.STAGE_CONFIGS[1], ("MODEL.SPGAN.ESPGAN.STAGE", "joint")))

    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """Pretraining: the labelled source (the engine's loader); joint: source and target batches, unaligned,
        with a fresh source batch for C's step (:mod:`spgan.data`)."""
        e = cfg.MODEL.SPGAN.ESPGAN
        if str(e.STAGE) == "pretrain":
            return super().build_train_loader(cfg)
        return build_two_domain_loader(cfg, fresh_source=bool(e.FRESH_SOURCE_BATCH and e.TRAIN_FEATURE_LEARNER))

    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return espgan_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {**super().sub_networks(), "ide": self.ide}

    def identity_classifier_prefixes(self) -> Sequence[str]:
        return ("ide.classifier.",)

    def _require_stage(self) -> str:
        if self.stage == "recipe":
            raise ValueError("MODEL.SPGAN.ESPGAN.STAGE is 'recipe': this config describes the whole recipe, whose "
                             "stages (MODEL.SPGAN.ESPGAN.STAGE_CONFIGS) tools/train_net.py runs in order; to train "
                             "one stage with GANTrainer, set MODEL.SPGAN.ESPGAN.STAGE to pretrain or joint")
        return self.stage

    def phases(self) -> Sequence[Phase]:
        """Pretraining: C. Joint: G and F every ``gen_every``-th iteration, C every iteration (unless naive), then
        D_S and D_T (the published order)."""
        if self._require_stage() == "pretrain":
            return (Phase("ide", ("ide",)),)
        phases = [Phase("gen", ("gen_st", "gen_ts"), every=self.gen_every)]
        if self.train_feature_learner:
            phases.append(Phase("ide", ("ide",)))
        phases.append(Phase("dis", ("dis_s", "dis_t")))
        return tuple(phases)

    def loss_weights(self) -> Dict[str, LossWeight]:
        return dict(self._loss_weights)

    def start_from_weights(self, weights: str) -> None:
        """The joint stage starts from a pretrained feature learner (Sec. 3.3.2 (i)): refused without weights."""
        if self._require_stage() == "joint" and not weights:
            raise FileNotFoundError(
                "eSPGAN's joint stage starts from a feature learner pre-trained on the source (TPAMI Sec. 3.3.2), "
                "but MODEL.WEIGHTS is empty. Train it with MODEL.SPGAN.ESPGAN.STAGE pretrain (or run a recipe "
                "config, MODEL.SPGAN.ESPGAN.STAGE recipe, whose stages tools/train_net.py runs in order) and pass "
                "its model_final.pth as MODEL.WEIGHTS, or convert the published IDE with "
                "'tools/convert_official.py espgan --ide IDE_market.pth --output model.pth'")

    def train(self, mode: bool = True) -> "ESPGAN":
        """Training mode with C's backbone BatchNorm kept in eval mode (IDE+)."""
        super().train(mode)
        if mode:
            freeze_batchnorm(self.ide.backbone)
        return self

    @contextlib.contextmanager
    def _feature_learner_eval(self) -> Iterator[None]:
        """C in eval mode (no dropout, running statistics) while it judges the translations, as published."""
        was_training = self.ide.training
        self.ide.eval()
        try:
            yield
        finally:
            if was_training:
                self.ide.train()
                freeze_batchnorm(self.ide.backbone)

    # ------------------------------------------------------------------ training
    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        """Pretraining: the normalised source images and labels. Joint: G(x_s) and F(x_t) once per iteration (the
        G phase backpropagates through them; C and D see them detached, as made before the G update)."""
        targets = batch["targets"].long()
        if self._require_stage() == "pretrain":
            return {"real_s": self.normalize(batch["images"].float()), "targets": targets}
        state = self.translate_batch(batch)
        state["targets"] = targets
        if self.train_feature_learner and self.fresh_source:
            if "fresh_images" not in batch:
                raise KeyError("eSPGAN's feature learner step takes a fresh source batch ('fresh_images': "
                               "spgan.data.build_two_domain_loader(cfg, fresh_source=True)); got keys "
                               f"{sorted(batch)}")
            state["fresh_s"] = self.normalize(batch["fresh_images"].float())
            state["fresh_targets"] = batch["fresh_targets"].long()
        return state

    def phase_losses(self, phase: str, batch: Dict[str, Any], state: Dict[str, Any],
                     ctx: StepContext) -> Mapping[str, Tensor]:
        stage = self._require_stage()
        if phase == "ide":
            if stage == "pretrain":
                return {"loss_feature_learner": F.cross_entropy(self.ide(state["real_s"]), state["targets"])}
            if self.fresh_source:
                images = torch.cat([state["fresh_s"], state["fake_t"].detach()])
                labels = torch.cat([state["fresh_targets"], state["targets"]])
            else:
                images = torch.cat([state["real_s"], state["fake_t"].detach()])
                labels = state["targets"].repeat(2)
            return {"loss_feature_learner": F.cross_entropy(self.ide(images), labels)}
        if stage == "pretrain":
            raise ValueError(f"eSPGAN's pretrain stage has no phase {phase!r}")
        if phase == "gen":
            passes = self.cycle_passes(state, ctx.weight("loss_identity") != 0)
            losses = self.cycle_gan_losses(state, ctx, passes)
            if ctx.weight("loss_ide") != 0:  # Eq. 9: C guides G; C is fixed (its parameters need no grad now)
                judged = [state["fake_t"]] + ([passes["rec_s"]] if self.ce_on_reconstruction else [])
                with self._feature_learner_eval():
                    logits = self.ide(torch.cat(judged))
                losses["loss_ide"] = F.cross_entropy(logits, state["targets"].repeat(len(judged)))
            return losses
        if phase == "dis":
            return self.discriminator_losses(state)
        raise ValueError(f"eSPGAN has no phase {phase!r}")

    # ------------------------------------------------------------------ inference
    def identify(self, images: Tensor) -> Dict[str, Tensor]:
        """The feature learner on 0..255 images: ``pool`` (B, 2048), ``bottleneck`` (B, 512), ``logits``."""
        return self.ide.features(self.normalize(images))

    def reid_feature_map(self, images: Tensor) -> Tensor:
        """C's last feature map (B, 2048, H/32, W/32) of 0..255 images (what ``TEST.LMP`` pools)."""
        return self.ide.feature_map(self.normalize(images))

    def forward(self, batched_inputs: Any) -> Tensor:
        """C's pool feature (B, 2048) of a dict with "images" or a (B, 3, H, W) tensor in 0..255; with
        ``TEST.LMP.ENABLED``, LMP's feature of C's last map (B, 2048 x PARTS, flip-summed and L2-normalised)."""
        images = self.inference_images(batched_inputs)
        if self.local_pooling is not None:
            return self.local_pooling(self.reid_feature_map, images)
        return self.ide.pool(self.normalize(images))

"""The ``SPGAN`` meta-architecture (Deng et al., CVPR 2018 / TPAMI Sec. 3.2): CycleGAN's G, F, D_S, D_T and the
SiaNet M of the similarity-preserving loss (Eq. 6-8).

Sub-networks: those of :class:`~spgan.translator.CycleTranslator` and ``sianet`` (M). The eval forward is M's
64-d unit-norm embedding: SPGAN's own re-id model is trained afterwards on the translated images (the feature
learning step, Sec. 3.2.3).

Training (Eq. 1-8), as the authors' ``train_spgan.py`` schedules it, one iteration on a two-domain batch
(source x_s = a, target x_t = b; :mod:`spgan.data`), phases in this order:

* ``gen`` (G and F, every ``SCHEDULE.GEN_EVERY``-th iteration): ``loss_gan`` + 10 ``loss_cycle`` + 5
  ``loss_identity`` + 2 ``loss_contrastive``, the last from epoch ``SCHEDULE.CONTRASTIVE_START_EPOCH`` on, on G's
  pairs: [c(a, G(a), +) + c(b, F(b), +) + 1/2 (c(G(a), b, -) + c(F(b), a, -))] / 4;
* ``sianet`` (M, every iteration from epoch ``SCHEDULE.METRIC_START_EPOCH`` on): ``loss_sianet`` on M's own pairs,
  the translations detached: [c(a, G(a), +) + c(b, F(b), +) + 2 c(a, b, -)] / 3 (its negative is a real-real pair);
* ``dis`` (D_S and D_T, every iteration): ``loss_dis_s``, ``loss_dis_t`` on the translations made before the G
  update, through the image pools (part of the checkpoint).

c is Eq. 6's contrastive loss on M's unit-norm embeddings, margin ``METRIC.MARGIN`` (2).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import LossWeight, Phase, StepContext, loss_weights_from_config

from .config import spgan_optimizers
from .data import build_two_domain_loader, default_epoch_iters, domain_sizes
from .discriminator import SPGANDiscriminator
from .generator import ResnetGenerator
from .metric_net import SiaNet
from .translator import CycleTranslator, build_translators

__all__ = ["SPGAN", "SPGAN_LOSSES", "contrastive_loss"]

#: the losses SPGAN's phases return (their weights: MODEL.SPGAN.LOSS_WEIGHTS)
SPGAN_LOSSES = ("loss_gan", "loss_cycle", "loss_identity", "loss_contrastive", "loss_sianet", "loss_dis_s",
                "loss_dis_t")


def contrastive_loss(e1: Tensor, e2: Tensor, positive: bool, margin: float = 2.0) -> Tensor:
    """Eq. 6 over a batch of pairs: mean d^2 for positive pairs, mean max(0, m - d)^2 for negative ones, d the
    Euclidean distance of the embeddings (``F.pairwise_distance``, as the published code)."""
    d = F.pairwise_distance(e1, e2)
    return (d.pow(2) if positive else (margin - d).clamp(min=0).pow(2)).mean()


def _config_epoch_iters(cfg: Any) -> int:
    return default_epoch_iters(*domain_sizes(cfg), cfg.SOLVER.IMS_PER_BATCH)


@META_ARCH_REGISTRY.register()
class SPGAN(CycleTranslator):
    """SPGAN: see the module docstring. Built from a config (``build_model(cfg)``) or from its parts."""

    method = "SPGAN"

    @configurable
    def __init__(self, *, gen_st: ResnetGenerator, gen_ts: ResnetGenerator, dis_s: SPGANDiscriminator,
                 dis_t: SPGANDiscriminator, sianet: SiaNet, margin: float = 2.0,
                 epoch_iters: Union[int, Callable[[], int]] = 0, gen_every: int = 2, metric_start_epoch: int = 1,
                 contrastive_start_epoch: int = 2, **kwargs: Any) -> None:
        """``epoch_iters``: iterations per "epoch" of the schedule, or a function giving it (called once, when a
        trainer first reads :meth:`phases`: the config's default reads both domains' sizes, which inference never
        needs); 0 starts SiaNet and G's contrastive term at iteration 0. The schedule arguments:
        ``MODEL.SPGAN.SCHEDULE`` (``spgan/config.py``)."""
        super().__init__(gen_st=gen_st, gen_ts=gen_ts, dis_s=dis_s, dis_t=dis_t, **kwargs)
        self.sianet = sianet
        self.margin = float(margin)
        if int(gen_every) < 1 or int(metric_start_epoch) < 0 or int(contrastive_start_epoch) < 0:
            raise ValueError(f"MODEL.SPGAN.SCHEDULE: GEN_EVERY must be >= 1 and the start epochs >= 0, got "
                             f"{gen_every}, {metric_start_epoch}, {contrastive_start_epoch}")
        if not callable(epoch_iters) and int(epoch_iters) < 0:
            raise ValueError(f"MODEL.SPGAN.SCHEDULE.EPOCH_ITERS must be >= 0 (0: from the data), got {epoch_iters}")
        self._epoch_iters = epoch_iters
        self.gen_every = int(gen_every)
        self.metric_start_epoch = int(metric_start_epoch)
        self.contrastive_start_epoch = int(contrastive_start_epoch)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        s = cfg.MODEL.SPGAN
        size = tuple(cfg.INPUT.SIZE_TRAIN)
        if tuple(cfg.INPUT.SIZE_TEST) != size:
            raise ValueError(f"SPGAN's SiaNet takes images of one size (its fc1 is sized by it): INPUT.SIZE_TEST "
                             f"{list(cfg.INPUT.SIZE_TEST)} must equal INPUT.SIZE_TRAIN {list(size)}")
        m = s.METRIC
        sianet = SiaNet(size, m.CHANNELS, m.HIDDEN, m.EMBED_DIM, m.DROPOUT)
        weights = {k: v for k, v in loss_weights_from_config(s.LOSS_WEIGHTS).items() if k in SPGAN_LOSSES}
        sched = s.SCHEDULE
        epoch_iters = int(sched.EPOCH_ITERS) or functools.partial(_config_epoch_iters, cfg.clone())
        return {**build_translators(cfg), "sianet": sianet, "margin": m.MARGIN,
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD, "image_size": size,
                "pool_size": s.POOL_SIZE, "loss_weights": weights, "epoch_iters": epoch_iters,
                "gen_every": sched.GEN_EVERY, "metric_start_epoch": sched.METRIC_START_EPOCH,
                "contrastive_start_epoch": sched.CONTRASTIVE_START_EPOCH}

    @classmethod
    def build_train_loader(cls, cfg: Any) -> torch.utils.data.DataLoader:
        """Source and target batches, unaligned (:mod:`spgan.data`)."""
        return build_two_domain_loader(cfg)

    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return spgan_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {**super().sub_networks(), "sianet": self.sianet}

    # ------------------------------------------------------------------ schedule
    @property
    def epoch_iters(self) -> int:
        """Iterations per "epoch" of the schedule (resolved once)."""
        if callable(self._epoch_iters):
            self._epoch_iters = int(self._epoch_iters())
        return int(self._epoch_iters)

    def phases(self) -> Sequence[Phase]:
        """G and F every ``gen_every``-th iteration, then SiaNet from epoch ``metric_start_epoch`` on, then D_S and
        D_T every iteration (``train_spgan.py``'s order)."""
        return (Phase("gen", ("gen_st", "gen_ts"), every=self.gen_every),
                Phase("sianet", ("sianet",), start_iter=self.metric_start_epoch * self.epoch_iters),
                Phase("dis", ("dis_s", "dis_t")))

    def loss_weights(self) -> Dict[str, LossWeight]:
        """The configured weights; G's contrastive weight, when constant, is 0 before epoch
        ``contrastive_start_epoch`` (a 4-value spec is used as given, in iterations)."""
        weights = dict(self._loss_weights)
        gamma = weights.get("loss_contrastive", LossWeight.constant(1.0))
        start = self.contrastive_start_epoch * self.epoch_iters
        if gamma.is_constant and start > 0:
            weights["loss_contrastive"] = LossWeight.ramp(0.0, gamma.end_value, start, 0)
        return weights

    # ------------------------------------------------------------------ training
    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        """G(x_s) and F(x_t) once per iteration (the G phase backpropagates through them; SiaNet and D see them
        detached, as made before the G update)."""
        return self.translate_batch(batch)

    def _pair_embeddings(self, state: Mapping[str, Tensor], detach: bool) -> Sequence[Tensor]:
        """M's embeddings of a = x_s, b = x_t, G(a), F(b) (one pass; dropout draws per image either way)."""
        fake_t, fake_s = state["fake_t"], state["fake_s"]
        if detach:
            fake_t, fake_s = fake_t.detach(), fake_s.detach()
        return self.sianet(torch.cat([state["real_s"], state["real_t"], fake_t, fake_s])).chunk(4)

    def phase_losses(self, phase: str, batch: Dict[str, Any], state: Dict[str, Any],
                     ctx: StepContext) -> Mapping[str, Tensor]:
        m = self.margin
        if phase == "gen":
            losses = self.cycle_gan_losses(state, ctx)
            if ctx.weight("loss_contrastive") != 0:  # Eq. 6-7 on G's pairs (the translated image is x1 or x2)
                e_a, e_b, e_ga, e_fb = self._pair_embeddings(state, detach=False)
                losses["loss_contrastive"] = (
                    contrastive_loss(e_a, e_ga, True, m) + contrastive_loss(e_b, e_fb, True, m)
                    + 0.5 * (contrastive_loss(e_ga, e_b, False, m) + contrastive_loss(e_fb, e_a, False, m))) / 4.0
            return losses
        if phase == "sianet":  # M's own pairs: self-similarity positives, a real-real negative
            e_a, e_b, e_ga, e_fb = self._pair_embeddings(state, detach=True)
            return {"loss_sianet": (contrastive_loss(e_a, e_ga, True, m) + contrastive_loss(e_b, e_fb, True, m)
                                    + 2.0 * contrastive_loss(e_a, e_b, False, m)) / 3.0}
        if phase == "dis":
            return self.discriminator_losses(state)
        raise ValueError(f"SPGAN has no phase {phase!r}")

    def embed(self, images: Tensor) -> Tensor:
        """SiaNet's (B, 64) unit-norm embedding of 0..255 images (Eq. 6's d is the distance between two)."""
        return self.sianet(self.normalize(images))

    def forward(self, batched_inputs: Any) -> Tensor:
        """SiaNet's embedding (B, 64) of a dict with "images" or a (B, 3, H, W) tensor in 0..255."""
        return self.embed(self.inference_images(batched_inputs))

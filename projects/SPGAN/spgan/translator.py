"""What SPGAN and eSPGAN share: two translators and two discriminators between a source and a target domain
(CycleGAN, TPAMI Sec. 3.2.1, Eq. 1-5), images in and out in 0..255, the image pools (part of the training
checkpoint), and the CycleGAN losses of training (:meth:`CycleTranslator.cycle_gan_losses`,
:meth:`CycleTranslator.discriminator_losses`).

Sub-networks (each with its optimizer node ``SOLVER.GAN.OPTIMIZERS.<NET>``): ``gen_st`` = G (source -> target),
``gen_ts`` = F (target -> source), ``dis_s`` = D_S (judges source-domain images), ``dis_t`` = D_T (target).
The networks work in the mean 0.5 / std 0.5 space of the official codes; the public methods take and return
0..255 RGB batches, as the rest of the project, and normalise with ``MODEL.PIXEL_MEAN/STD`` (127.5 in
``Base-SPGAN.yml``).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.engine import GANMetaArch, LossWeight, Phase, StepContext
from fastreid_gan.layers import ImagePool
from fastreid_gan.losses import lsgan_d_loss, lsgan_g_loss

from .discriminator import SPGANDiscriminator
from .generator import ResnetGenerator

__all__ = ["DIRECTIONS", "DOMAINS", "CycleTranslator", "build_translators"]

DIRECTIONS = ("source_to_target", "target_to_source")
DOMAINS = ("source", "target")


def build_translators(cfg: Any) -> Dict[str, nn.Module]:
    """``gen_st``, ``gen_ts``, ``dis_s``, ``dis_t`` as ``MODEL.SPGAN.GENERATOR`` / ``DISCRIMINATOR`` describe them."""
    g, d = cfg.MODEL.SPGAN.GENERATOR, cfg.MODEL.SPGAN.DISCRIMINATOR

    def gen() -> ResnetGenerator:
        return ResnetGenerator(3, 3, g.NGF, g.N_BLOCKS, g.N_DOWNSAMPLING, g.INIT, g.CHECKPOINT)

    def dis() -> SPGANDiscriminator:
        return SPGANDiscriminator.build(d.NDF, d.N_LAYERS, d.PADDING, 3, d.INIT, d.CHECKPOINT)

    return {"gen_st": gen(), "gen_ts": gen(), "dis_s": dis(), "dis_t": dis()}


class CycleTranslator(GANMetaArch):
    """Base of :class:`~spgan.spgan.SPGAN` and :class:`~spgan.espgan.ESPGAN` (see the module docstring)."""

    #: what a subclass calls itself in messages
    method = "SPGAN"

    def __init__(self, *, gen_st: ResnetGenerator, gen_ts: ResnetGenerator, dis_s: SPGANDiscriminator,
                 dis_t: SPGANDiscriminator, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 image_size: Sequence[int] = (256, 128), pool_size: int = 50,
                 loss_weights: Mapping[str, Any] = ()) -> None:
        super().__init__()
        self.gen_st, self.gen_ts, self.dis_s, self.dis_t = gen_st, gen_ts, dis_s, dis_t
        self.image_size: Tuple[int, int] = (int(image_size[0]), int(image_size[1]))
        self.pool_size = int(pool_size)
        # CycleGAN's history of translations (per image): pool_t holds G(x_s), judged by D_T; pool_s holds F(x_t)
        self.pool_s, self.pool_t = ImagePool(self.pool_size), ImagePool(self.pool_size)
        self._loss_weights = {name: LossWeight.from_spec(spec) for name, spec in dict(loss_weights).items()}
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)

    # ------------------------------------------------------------------ images
    def normalize(self, images: Tensor) -> Tensor:
        """0..255 RGB -> the networks' space (mean 0.5 / std 0.5: [-1, 1]); never in place."""
        return (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def to_pixels(self, images: Tensor) -> Tensor:
        """The networks' space (a translator's tanh output) -> 0..255 RGB, clamped."""
        return (images * self.pixel_std + self.pixel_mean).clamp(0, 255)

    # ------------------------------------------------------------------ public methods
    def generator(self, direction: str = "source_to_target") -> ResnetGenerator:
        """G (``"source_to_target"``) or F (``"target_to_source"``)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return self.gen_st if direction == DIRECTIONS[0] else self.gen_ts

    def discriminator(self, domain: str = "source") -> SPGANDiscriminator:
        """D_S (``"source"``) or D_T (``"target"``)."""
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        return self.dis_s if domain == DOMAINS[0] else self.dis_t

    def translate(self, images: Tensor, direction: str = "source_to_target") -> Tensor:
        """G(x) or F(x) (Eq. 1-2) of (B, 3, H, W) 0..255 images -> 0..255 images of the same size."""
        return self.to_pixels(self.generator(direction)(self.normalize(images)))

    def discriminate(self, images: Tensor, domain: str = "source") -> Tensor:
        """D_S or D_T of 0..255 images: raw LSGAN scores (B, 1, h, w), no sigmoid (32x16 at 256x128 for the
        ``pyspgan`` padding, 30x14 for ``openunreid``)."""
        return self.discriminator(domain)(self.normalize(images))

    # ------------------------------------------------------------------ GANMetaArch interface
    def sub_networks(self) -> Dict[str, nn.Module]:
        return {"gen_st": self.gen_st, "gen_ts": self.gen_ts, "dis_s": self.dis_s, "dis_t": self.dis_t}

    def loss_weights(self) -> Dict[str, LossWeight]:
        return dict(self._loss_weights)

    def training_state_dict(self) -> Dict[str, Any]:
        """The two image pools: saved in the training checkpoint (``"method_state"``), so a resumed run shows the
        discriminators the same history as an uninterrupted one (``docs/engine.md`` §7)."""
        return {"pool_s": self.pool_s.state_dict(), "pool_t": self.pool_t.state_dict()}

    def load_training_state_dict(self, state: Dict[str, Any]) -> None:
        self.pool_s.load_state_dict(state["pool_s"], device=self.device)
        self.pool_t.load_state_dict(state["pool_t"], device=self.device)

    # ------------------------------------------------------------------ training (CycleGAN part)
    def translate_batch(self, batch: Mapping[str, Any]) -> Dict[str, Tensor]:
        """A two-domain batch (``images`` source, ``target_images`` target, 0..255) -> the normalised reals and
        their translations ``fake_t`` = G(x_s), ``fake_s`` = F(x_t) (with a graph only when G's parameters
        require grad, i.e. on an iteration that updates the generators)."""
        if "target_images" not in batch:
            raise KeyError(f"{self.method} trains on two-domain batches with 'target_images' (spgan/data.py, "
                           f"MODEL.SPGAN.TARGET_DATASET); got keys {sorted(batch)}")
        real_s = self.normalize(batch["images"].float())
        real_t = self.normalize(batch["target_images"].float())
        return {"real_s": real_s, "real_t": real_t, "fake_t": self.gen_st(real_s), "fake_s": self.gen_ts(real_t)}

    def cycle_passes(self, state: Mapping[str, Tensor], with_identity: bool) -> Dict[str, Tensor]:
        """The generators' second passes: ``rec_s`` = F(G(x_s)), ``rec_t`` = G(F(x_t)) and, ``with_identity``,
        ``idt_s`` = F(x_s), ``idt_t`` = G(x_t)."""
        real_s, real_t, fake_t, fake_s = state["real_s"], state["real_t"], state["fake_t"], state["fake_s"]
        n = real_s.shape[0]
        # one pass per generator: instance norm treats every image alone, so batching the cycle and identity
        # inputs changes nothing
        out_ts = self.gen_ts(torch.cat([fake_t, real_s]) if with_identity else fake_t)
        out_st = self.gen_st(torch.cat([fake_s, real_t]) if with_identity else fake_s)
        passes = {"rec_s": out_ts[:n], "rec_t": out_st[:n]}
        if with_identity:
            passes.update(idt_s=out_ts[n:], idt_t=out_st[n:])
        return passes

    def cycle_gan_losses(self, state: Mapping[str, Tensor], ctx: StepContext,
                         passes: Optional[Mapping[str, Tensor]] = None) -> Dict[str, Tensor]:
        """The generators' CycleGAN terms, unweighted: ``loss_gan`` (Eq. 1-2, LSGAN: mean (D_T(G(x_s)) - 1)^2 +
        mean (D_S(F(x_t)) - 1)^2), ``loss_cycle`` (Eq. 3: L1 of F(G(x_s)) to x_s plus of G(F(x_t)) to x_t) and
        ``loss_identity`` (Eq. 5: L1 of F(x_s) to x_s plus of G(x_t) to x_t; skipped when its weight is 0).
        ``passes``: :meth:`cycle_passes` already run (made here when not given)."""
        real_s, real_t, fake_t, fake_s = state["real_s"], state["real_t"], state["fake_t"], state["fake_s"]
        identity = ctx.weight("loss_identity") != 0
        if passes is None:
            passes = self.cycle_passes(state, identity)
        losses = {"loss_gan": lsgan_g_loss(self.dis_t(fake_t)) + lsgan_g_loss(self.dis_s(fake_s)),
                  "loss_cycle": F.l1_loss(passes["rec_s"], real_s) + F.l1_loss(passes["rec_t"], real_t)}
        if identity:
            losses["loss_identity"] = F.l1_loss(passes["idt_s"], real_s) + F.l1_loss(passes["idt_t"], real_t)
        return losses

    def discriminator_losses(self, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """``loss_dis_s``, ``loss_dis_t``: 1/2 [mean (D(real) - 1)^2 + mean D(fake)^2] (LSGAN form of Eq. 1-2's
        max over D), the fakes being the translations made before this iteration's G update, through the pools."""
        real_s, real_t = state["real_s"], state["real_t"]
        fake_s, fake_t = self.pool_s(state["fake_s"].detach()), self.pool_t(state["fake_t"].detach())
        n = real_s.shape[0]
        out_s = self.dis_s(torch.cat([real_s, fake_s]))  # instance norm: one pass is two passes
        out_t = self.dis_t(torch.cat([real_t, fake_t]))
        return {"loss_dis_s": lsgan_d_loss(out_s[:n], out_s[n:], factor=0.5),
                "loss_dis_t": lsgan_d_loss(out_t[:n], out_t[n:], factor=0.5)}

    def visualize(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Rows: source, G(source), F(G(source)), target, F(target), G(F(target)), in 0..1."""
        with torch.no_grad():
            source = batch["images"].to(self.device).float()
            rows = {"source": source / 255.0}
            fake_t = self.gen_st(self.normalize(source))
            rows["source_to_target"] = self.to_pixels(fake_t) / 255.0
            rows["source_cycle"] = self.to_pixels(self.gen_ts(fake_t)) / 255.0
            if "target_images" in batch:
                target = batch["target_images"].to(self.device).float()
                fake_s = self.gen_ts(self.normalize(target))
                rows.update(target=target / 255.0, target_to_source=self.to_pixels(fake_s) / 255.0,
                            target_cycle=self.to_pixels(self.gen_st(fake_s)) / 255.0)
        return rows

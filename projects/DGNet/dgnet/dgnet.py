"""DG-Net (Zheng et al., "Joint Discriminative and Generative Learning for Person Re-identification", CVPR 2019)
as a :class:`~fastreid_gan.engine.GANMetaArch`.

Sub-networks (each with its own optimizer): ``gen`` = E_s + G (:class:`~dgnet.generator.DGNetGenerator`),
``dis`` = D (multi-scale PatchGAN), ``id`` = E_a + the f_prim / f_fine heads
(:class:`~dgnet.appearance_encoder.AppearanceEncoder`).  The teacher (Eq. 8) is a frozen fastreid model that
is *not* a sub-network: it is not in ``state_dict()`` (checkpoints stay deployable without it), never in
training mode, and it is built when training starts if the loss weights use it (``prepare_training``; inference
never does).

Notation (paper Sec. 3): a batch of 2n images is split into x_a = images[:n] and x_b = images[n:], each with
a same-identity positive (x_ap, x_bp).  Generated images are kept in one tensor ``fake`` of 2n images,
``fake[k] = G(s_{perm[k]}, a_k)`` with ``perm`` swapping the halves, i.e. fake = [x_ba, x_ab]: row k keeps the
appearance (and identity label) of image k and the structure of image perm[k].

Every loss is the published SUM of its x_a and x_b terms (2 x the mean over the 2n rows), so the published
weights (``MODEL.DGNET.LOSS_WEIGHTS``) apply unchanged.

Cost.  Each iteration computes what its phases need once: E_a runs once with gradients on the (randomly
erased) 4n ID inputs and the appearance codes of the samples erasing left alone come from that same pass (only
the erased ones get a gradient-free clean pass; the published code runs E_a on all clean inputs and again on
all erased ones); the "frozen copy" of E_a for Eq. 4 / Eq. 6 is E_a run with detached parameters and cloned
BatchNorm buffers (``AppearanceEncoder.features(frozen=True)``; the published code deep-copies E_a every
iteration); the six first-level decoder outputs are one decoder pass of 6n images, the cycle reconstructions one
more, and D sees real and fake images in one pass.  Terms whose weight is 0 at this iteration (the warm-up terms
before 30K) are not computed.  Time, memory and FLOPs per iteration against the published code:
``benchmarks/train_step.py`` and ``BENCHMARKS.md``.

Memory.  Every sub-network can recompute its activations in backward instead of storing them
(``MODEL.DGNET.{APPEARANCE,STRUCTURE,DECODER,DISCRIMINATOR}.CHECKPOINT``, on in the full-size configs;
:mod:`fastreid_gan.layers.checkpoint`): the same gradients and BatchNorm statistics for some more FLOPs and a
much lower peak (``BENCHMARKS.md``).

Deliberate differences from the published code (NVlabs/DG-Net trainer.py):

* E_a's BatchNorm sees x_a, x_b and both positives in one batch of 4n (published: four calls of n each).
* The clean appearance codes of erased samples come from a gradient-free pass over those samples only
  (published: a full clean pass whose logits are thrown away).
* The test feature weighs the fine half of *every* feature by ``TEST_FINE_WEIGHT`` (published: only the
  query's, at evaluation time), so one (B, 1024) feature per image serves fastreid's evaluator, predictor and
  export.
* Eq. 4 trains G: the code re-encoded from x_ba keeps its gradient (published: E_a detaches every code it
  returns, so its recon_f term is inert; ``MODEL.DGNET.DETACH_RECON_CODE True`` reproduces that).
* The teacher resizes generated images to its own input size (published ``scale2``: nearest x2 below 128 rows).
* ``MODEL.DGNET.STRUCTURE.INPUT edge`` (published ``single: edge``, Canny in numpy) is a saturating Sobel map
  (:func:`dgnet.generator.soft_edges`): differentiable, so Eq. 5 trains G through E_s as in gray mode, and
  it runs on the GPU.  Its noise is added in training only.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_gan.engine import GANMetaArch, LossWeight, Phase, StepContext, loss_weights_from_config
from fastreid_gan.layers import LocalPooling
from fastreid_gan.losses import lsgan_d_loss, lsgan_g_loss, r1_penalty, soft_label_kl
from fastreid_gan.model_loading import checkpoint_num_classes

from .appearance_encoder import AppearanceEncoder
from .augment import random_erasing
from .config import dgnet_optimizers
from .discriminator import build_dgnet_discriminator
from .generator import STRUCTURE_INPUTS, DGNetGenerator
from .teacher import TEACHER_HELP, Teacher, build_teacher

__all__ = ["DGNet"]

logger = logging.getLogger(__name__)

# The published D loss uses an LSGAN generator term of 2 * mean((D(x) - 1)^2) per scale (calc_gen_loss).
_GAN_G_FACTOR = 2.0


def _pair_sum_l1(x: Tensor, y: Tensor) -> Tensor:
    """Published ``recon_criterion(x_a..) + recon_criterion(x_b..)``: 2 x the mean |x - y| over both halves."""
    return 2.0 * (x - y).abs().mean()


def _pair_sum_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Published ``CE(a) + CE(b)`` (each averaged over its half): 2 x the mean CE over both halves."""
    return 2.0 * F.cross_entropy(logits.float(), labels)


@META_ARCH_REGISTRY.register()
class DGNet(GANMetaArch):
    """DG-Net meta-architecture; phases "dis" (D) then "gen" (E_s, G and E_a, one backward as published)."""

    @configurable
    def __init__(
        self,
        *,
        gen: DGNetGenerator,
        dis: nn.Module,
        id_net: AppearanceEncoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        loss_weights: Mapping[str, Any],
        erasing_prob: float = 0.5,
        encoder_again_prob: float = 0.5,
        test_fine_weight: float = 0.5,
        teacher_loader: Optional[Callable[[], Teacher]] = None,
        channels_last: bool = False,
        detach_recon_code: bool = False,
        local_pooling: Optional[LocalPooling] = None,
    ) -> None:
        """
        Args:
            gen: E_s + G. dis: multi-scale D (forward -> list of score maps). id_net: E_a + heads.
            pixel_mean, pixel_std: fastreid's normalisation (0..255 inputs).
            loss_weights: loss name -> LossWeight spec (``[v]`` or ``[v0, v1, start, ramp]``).
            erasing_prob: random erasing on the ID-path inputs.
            encoder_again_prob: probability that Eq. 5 re-encodes the detached generated image with the live
                E_s (else the frozen E_s on the live image), the published ``use_encoder_again``.
            test_fine_weight: weight of the L2-normalised f_fine half of the test feature.
            teacher_loader: builds the frozen teacher (called once, lazily); None = no teacher.
            channels_last: keep conv weights and activations in NHWC (faster oneDNN/cuDNN convolutions).
            detach_recon_code: detach the appearance code re-encoded from generated images, as the published
                code does (its E_a detaches every code it returns): Eq. 4 then trains nothing and the cycle
                term reaches x_ba through E_s only.  Default False: Eq. 4 trains G, as the paper states.
            local_pooling: ``TEST.LMP``: the eval feature is LMP's of E_a's layer4 map (no weights); None = off.
        """
        super().__init__()
        self.gen = gen
        self.dis = dis
        self.id = id_net
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self._loss_weights = {name: LossWeight.from_spec(spec) for name, spec in loss_weights.items()}
        self.erasing_prob = float(erasing_prob)
        self.encoder_again_prob = float(encoder_again_prob)
        self.test_fine_weight = float(test_fine_weight)
        self._teacher_loader = teacher_loader
        self.detach_recon_code = bool(detach_recon_code)
        self.local_pooling = local_pooling
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # kept out of the module tree on purpose: not in state_dict(), not switched by .train(), not trained
        self.__dict__["_teacher"] = None
        prim = self._loss_weights.get("loss_prim")
        self.needs_teacher = prim is not None and max(abs(prim.start_value), abs(prim.end_value)) > 0

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        d = cfg.MODEL.DGNET
        num_classes = int(cfg.MODEL.HEADS.NUM_CLASSES)
        if num_classes < 1 and cfg.MODEL.WEIGHTS:  # a dataset config with trained weights (DefaultPredictor)
            num_classes = checkpoint_num_classes(cfg.MODEL.WEIGHTS, "id.head_prim.classifier.weight")
        if num_classes < 1:
            raise ValueError(
                "DG-Net needs MODEL.HEADS.NUM_CLASSES (the training set's identities); the trainer fills it in "
                "from DATASETS.NAMES, set it by hand when building the model yourself (or set MODEL.WEIGHTS)."
            )
        if d.STRUCTURE.INPUT not in STRUCTURE_INPUTS:
            raise ValueError(f"MODEL.DGNET.STRUCTURE.INPUT must be one of {', '.join(STRUCTURE_INPUTS)}; "
                             f"got {d.STRUCTURE.INPUT!r}")
        enc_stride = 1
        for s in d.STRUCTURE.STRIDES:
            enc_stride *= int(s)
        if enc_stride != 2 ** int(d.DECODER.N_UPSAMPLE):
            raise ValueError(
                f"MODEL.DGNET.STRUCTURE.STRIDES {list(d.STRUCTURE.STRIDES)} downsample by {enc_stride} but "
                f"MODEL.DGNET.DECODER.N_UPSAMPLE={d.DECODER.N_UPSAMPLE} upsamples by {2 ** d.DECODER.N_UPSAMPLE}"
            )
        id_net = AppearanceEncoder(
            num_classes,
            depth=cfg.MODEL.BACKBONE.DEPTH,
            last_stride=cfg.MODEL.BACKBONE.LAST_STRIDE,
            parts=d.APPEARANCE.PARTS,
            bottleneck_dim=d.APPEARANCE.BOTTLENECK_DIM,
            dropout_prim=d.APPEARANCE.DROPOUT_PRIM,
            dropout_fine=d.APPEARANCE.DROPOUT_FINE,
            bn_norm=cfg.MODEL.BACKBONE.NORM,
            pretrain=cfg.MODEL.BACKBONE.PRETRAIN,
            pretrain_path=cfg.MODEL.BACKBONE.PRETRAIN_PATH,
            detach_appearance=True,
            torchvision_stem=d.APPEARANCE.TORCHVISION_STEM,
            checkpoint=d.APPEARANCE.CHECKPOINT,
        )
        gen = DGNetGenerator(
            in_channels=1,
            enc_widths=tuple(d.STRUCTURE.WIDTHS),
            enc_strides=tuple(d.STRUCTURE.STRIDES),
            enc_n_res=d.STRUCTURE.N_RES,
            structure_dim=d.STRUCTURE.DIM,
            aspp=d.STRUCTURE.ASPP,
            dilations=tuple(d.STRUCTURE.DILATIONS),
            dec_n_res=d.DECODER.N_RES,
            n_upsample=d.DECODER.N_UPSAMPLE,
            out_channels=3,
            appearance_dim=id_net.appearance_dim,
            n_chunks=d.DECODER.N_CHUNKS,
            mlp_dim=d.DECODER.MLP_DIM,
            mlp_layers=d.DECODER.MLP_LAYERS,
            dropout=d.DECODER.DROPOUT,
            init=d.GEN_INIT,
            structure_input=d.STRUCTURE.INPUT,
            edge_scale=d.STRUCTURE.EDGE_SCALE,
            edge_noise=d.STRUCTURE.EDGE_NOISE,
            enc_checkpoint=d.STRUCTURE.CHECKPOINT,
            dec_checkpoint=d.DECODER.CHECKPOINT,
        )
        dis = build_dgnet_discriminator(
            in_channels=3,
            n_scales=d.DISCRIMINATOR.N_SCALES,
            dim=d.DISCRIMINATOR.DIM,
            n_layer=d.DISCRIMINATOR.N_LAYER,
            n_res=d.DISCRIMINATOR.N_RES,
            norm=d.DISCRIMINATOR.NORM,
            init=d.DISCRIMINATOR.INIT,
            checkpoint=d.DISCRIMINATOR.CHECKPOINT,
        )
        weights = loss_weights_from_config(d.LOSS_WEIGHTS)
        frozen_cfg = cfg.clone()
        return {
            "gen": gen,
            "dis": dis,
            "id_net": id_net,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "loss_weights": weights,
            "erasing_prob": d.ERASING_PROB,
            "encoder_again_prob": d.ENCODER_AGAIN_PROB,
            "test_fine_weight": d.TEST_FINE_WEIGHT,
            "teacher_loader": functools.partial(build_teacher, frozen_cfg, num_classes),
            "channels_last": d.CHANNELS_LAST,
            "detach_recon_code": d.DETACH_RECON_CODE,
            "local_pooling": LocalPooling.from_config(cfg),
        }

    # ------------------------------------------------------------------ GANMetaArch interface
    @classmethod
    def default_optimizers(cls) -> Dict[str, Any]:
        return dgnet_optimizers()

    def sub_networks(self) -> Dict[str, nn.Module]:
        return {"gen": self.gen, "dis": self.dis, "id": self.id}

    def phases(self) -> Sequence[Phase]:
        # published order: dis_update on the detached fakes, then gen_update (one backward, gen_opt + id_opt)
        return (Phase("dis", ("dis",)), Phase("gen", ("gen", "id")))

    def loss_weights(self) -> Dict[str, LossWeight]:
        return dict(self._loss_weights)

    def identity_classifier_prefixes(self) -> Sequence[str]:
        return ("id.head_prim.classifier.", "id.head_fine.classifier.")

    # ------------------------------------------------------------------ teacher
    def prepare_training(self) -> None:
        """Build the teacher when the loss weights use it: its random initialisation (before its weights are
        loaded) draws from the RNGs, which must happen before a resumed run restores them."""
        if self.needs_teacher:
            self.load_teacher()

    def load_teacher(self) -> Teacher:
        """Build the teacher now (FileNotFoundError / ValueError with the config key to fix if it cannot be)."""
        teacher = self.__dict__["_teacher"]
        if teacher is None:
            if self._teacher_loader is None:
                raise FileNotFoundError(f"DG-Net was built without a teacher. {TEACHER_HELP}")
            teacher = self._teacher_loader()
            self.__dict__["_teacher"] = teacher
        if teacher.scale.device != self.device:
            teacher.to(self.device)
        return teacher

    def set_teacher(self, teacher: Optional[Teacher]) -> None:
        """Use ``teacher`` (e.g. one built in a test or shared between models) instead of the configured one."""
        self.__dict__["_teacher"] = teacher

    # ------------------------------------------------------------------ public helpers (0..255 images)
    def normalize(self, images: Tensor) -> Tensor:
        """0..255 RGB -> normalised; a new tensor (the caller's batch is never modified)."""
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=self.memory_format)

    def denormalize(self, images: Tensor) -> Tensor:
        """Normalised -> 0..255 (not clamped)."""
        return images * self.pixel_std + self.pixel_mean

    def encode_appearance(self, images: Tensor) -> Tensor:
        """Appearance codes a = E_a(x): (B, appearance_dim) for 0..255 images."""
        return self._appearance_code(self.normalize(images))

    def encode_structure(self, images: Tensor) -> Tensor:
        """Structure codes s = E_s(gray(x)) (or of its edges): (B, STRUCTURE.DIM, H/4, W/4) for 0..255 images."""
        return self.gen.encode(self.gen.to_structure_input(self.normalize(images)))

    def decode(self, structure: Tensor, appearance: Tensor) -> Tensor:
        """G(s, a): images in 0..255 (not clamped)."""
        return self.denormalize(self.gen.decode(structure, appearance))

    def discriminate(self, images: Tensor) -> List[Tensor]:
        """D's score maps (one per scale, finest first) for 0..255 images."""
        return list(self.dis(self.normalize(images)))

    # ------------------------------------------------------------------ inference
    def reid_feature_map(self, images: Tensor) -> Tensor:
        """E_a's layer4 map (B, C, H/16, W/16) of 0..255 images (what ``TEST.LMP`` pools)."""
        return self.id.features(self.normalize(images))

    def forward(self, batched_inputs: Any) -> Tensor:
        """Test feature (Sec. 4.1 (vi)): [f_prim / |f_prim|, w * f_fine / |f_fine|], (B, 2 x 512).

        ``batched_inputs``: a dict with "images" or a raw (B, 3, H, W) tensor in 0..255.  w is
        ``MODEL.DGNET.TEST_FINE_WEIGHT``.  Differs from the published evaluation, which scales only the
        query's fine half by 0.5: scaling both halves by w weighs the fine similarity by w^2 (w = 0.707
        reproduces the published ranking), but keeps one feature per image, as fastreid's evaluator,
        DefaultPredictor and ONNX export expect.

        With ``TEST.LMP.ENABLED``: LMP's feature of E_a's layer4 map instead, (B, C x PARTS), flip-summed and
        L2-normalised (:mod:`fastreid_gan.layers.local_pooling`); the heads are not used.
        """
        images = self.inference_images(batched_inputs)
        if self.local_pooling is not None:
            return self.local_pooling(self.reid_feature_map, images)
        out = self.id(self.normalize(images))
        prim = F.normalize(out["bottleneck_prim"], dim=1)
        fine = F.normalize(out["bottleneck_fine"], dim=1) * self.test_fine_weight
        return torch.cat([prim, fine], dim=1)

    # ------------------------------------------------------------------ training
    def _appearance_code(self, x: Tensor) -> Tensor:
        """E_a's appearance code without the heads (their BatchNorm1d cannot run on one sample in training)."""
        return self.id.part_pool(self.id.features(x)).flatten(1)

    def _frozen_id(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(appearance code, primary logits) of E_a with its parameters detached: gradients reach ``x`` only.

        The published code deep-copies E_a every iteration, puts the copy in eval mode and its BN layers back
        in training mode (batch statistics, running statistics of the copy thrown away).  Same here: BN
        buffers are cloned so the real running statistics are untouched, and the head is applied without
        dropout, as the copy's eval mode does.
        """
        fmap = self.id.features(x, frozen=True)
        code = self.id.part_pool(fmap).flatten(1)
        if self.detach_recon_code:
            code = code.detach()
        pooled = self.id.global_pool(fmap).flatten(1)
        head = self.id.head_prim
        h = F.linear(pooled, head.fc.weight.detach(), head.fc.bias.detach())
        h = F.batch_norm(h, None, None, head.bn.weight.detach(), head.bn.bias.detach(), True, 0.0, head.bn.eps)
        logits = F.linear(h, head.classifier.weight.detach(), head.classifier.bias.detach())
        return code, logits

    def _frozen_structure(self, gray: Tensor) -> Tensor:
        """E_s with detached parameters (gradients reach the input only); E_s has no buffers."""
        return self.gen.enc_structure(gray, frozen=True)

    def forward_train(self, batch: Dict[str, Any], ctx: StepContext) -> Dict[str, Any]:
        """Encode, generate every image the phases need (one decoder pass), and run the ID branch once."""
        if "pos_images" not in batch:
            raise KeyError("DG-Net needs same-identity positives: set DATALOADER.POSITIVES True")
        images, pos = batch["images"], batch["pos_images"]
        if images.shape[0] < 2 or images.shape[0] % 2:
            raise ValueError(f"DG-Net splits each batch into x_a and x_b: SOLVER.IMS_PER_BATCH must be even, "
                             f"got {images.shape[0]} images")
        if self.needs_teacher:
            self.load_teacher()  # built by prepare_training; here for a trainer that did not call it
        n = images.shape[0] // 2
        x = self.normalize(images)
        xp = self.normalize(pos)
        y = batch["targets"].long()
        perm = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(x.device)

        # ID branch: E_a with gradients on erased real images + positives (Eq. 3), once
        id_in = torch.cat([x, xp], dim=0)
        if self.erasing_prob > 0:
            id_in_erased, erased = random_erasing(id_in, self.erasing_prob)
        else:
            id_in_erased, erased = id_in, torch.zeros(id_in.shape[0], dtype=torch.bool, device=x.device)
        out = self.id(id_in_erased)
        codes = out["appearance"].detach()  # E_a is not trained by generation losses (published ft_netAB)
        if bool(erased.any()):
            with torch.no_grad():
                clean = self._appearance_code(id_in[erased])
            codes = codes.clone()
            codes[erased] = clean.to(codes.dtype)
        a, a_pos = codes[: 2 * n], codes[2 * n :]

        # generation: one decoder pass for fake = [x_ba, x_ab], recon = [x_aa, x_bb], recon_p = [x_a_p, x_b_p]
        s = self.gen.encode(self.gen.to_structure_input(x))
        parts_s, parts_a = [s[perm], s], [a, a]
        if ctx.weight("loss_recon_xp") != 0:
            parts_s.append(s)
            parts_a.append(a_pos)
        decoded = self.gen.decode(torch.cat(parts_s), torch.cat(parts_a))
        fake, recon = decoded[: 2 * n], decoded[2 * n : 4 * n]
        recon_p = decoded[4 * n :] if len(parts_s) == 3 else None
        return {
            "n": n,
            "x": x,
            "y": y,
            "perm": perm,
            "s": s,
            "a": a,
            "logits_prim": out["logits_prim"],
            "logits_fine": out["logits_fine"],
            "fake": fake,
            "recon": recon,
            "recon_p": recon_p,
        }

    def phase_losses(self, phase: str, batch: Dict[str, Any], state: Dict[str, Any],
                     ctx: StepContext) -> Dict[str, Tensor]:
        if phase == "dis":
            return self._dis_losses(state, ctx)
        if phase == "gen":
            return self._gen_losses(state, ctx)
        raise KeyError(f"DG-Net has no phase {phase!r}")

    def _dis_losses(self, state: Dict[str, Any], ctx: StepContext) -> Dict[str, Tensor]:
        """Eq. 7 for D (LSGAN on real vs. detached fakes) and the R1 penalty on reals, one D pass."""
        n2 = 2 * state["n"]
        need_r1 = ctx.weight("loss_r1") != 0
        real = state["x"].detach().requires_grad_(need_r1)
        outs = self.dis(torch.cat([real, state["fake"].detach()], dim=0))
        real_outs, fake_outs = [o[:n2] for o in outs], [o[n2:] for o in outs]
        # published: calc_dis_loss(x_ba, x_a) + calc_dis_loss(x_ab, x_b), each a mean over its half
        losses = {"loss_gan_d": 2.0 * lsgan_d_loss(real_outs, fake_outs)}
        if need_r1:
            losses["loss_r1"] = 2.0 * r1_penalty(real_outs, real)
        return losses

    def _gen_losses(self, state: Dict[str, Any], ctx: StepContext) -> Dict[str, Tensor]:
        """Eq. 1-9 (+ the published cycle term) for E_s, G and E_a, as one sum the engine backpropagates once."""
        n = state["n"]
        x, y, perm, s, a, fake = state["x"], state["y"], state["perm"], state["s"], state["a"], state["fake"]
        w = ctx.weight
        losses: Dict[str, Tensor] = {}

        # self-identity generation (Eq. 1, 2) and identification on real images (Eq. 3)
        losses["loss_recon_x"] = _pair_sum_l1(state["recon"], x)
        if state["recon_p"] is not None:
            losses["loss_recon_xp"] = _pair_sum_l1(state["recon_p"], x)
        losses["loss_id"] = _pair_sum_ce(state["logits_prim"][: 2 * n], y)
        if w("loss_pid") != 0:
            losses["loss_pid"] = _pair_sum_ce(state["logits_prim"][2 * n :], y)
        if w("loss_id_fine") != 0:
            losses["loss_id_fine"] = _pair_sum_ce(state["logits_fine"][: 2 * n], y)

        # cross-identity generation: E_a frozen on fake (Eq. 4, 6), E_s on fake (Eq. 5), cycle, adversarial (Eq. 7)
        need_code = w("loss_recon_f") != 0 or w("loss_recon_x_cyc") != 0
        if w("loss_id_cross") != 0 or need_code:
            code_rec, logits_rec = self._frozen_id(fake)
            if w("loss_id_cross") != 0:
                losses["loss_id_cross"] = _pair_sum_ce(logits_rec, y)  # label of the appearance provider
            if w("loss_recon_f") != 0:
                losses["loss_recon_f"] = _pair_sum_l1(code_rec, a)
        if w("loss_recon_s") != 0 or w("loss_recon_x_cyc") != 0:
            if float(torch.rand(())) < self.encoder_again_prob:
                s_rec = self.gen.encode(self.gen.to_structure_input(fake.detach()))  # trains E_s, input fixed
            else:
                s_rec = self._frozen_structure(self.gen.to_structure_input(fake))  # trains G through a fixed E_s
            if w("loss_recon_s") != 0:
                losses["loss_recon_s"] = _pair_sum_l1(s_rec, s[perm])
            if w("loss_recon_x_cyc") != 0:
                # x_aba = G(E_s(x_ab), E_a(x_ba)): row k takes the structure recovered from fake[perm[k]]
                cyc = self.gen.decode(s_rec[perm], code_rec)
                losses["loss_recon_x_cyc"] = _pair_sum_l1(cyc, x)
        if w("loss_gan_g") != 0:
            losses["loss_gan_g"] = 2.0 * lsgan_g_loss(self.dis(fake), factor=_GAN_G_FACTOR)

        # discriminative module on generated images (Eq. 8, 9): trains E_a only (input detached)
        if w("loss_prim") != 0 or w("loss_fine") != 0:
            fake_in = fake.detach()
            student = self.id(fake_in)
            if w("loss_prim") != 0:
                q = self.load_teacher().soft_label(fake_in)
                # published: (KL_ba + KL_ab) / 2, i.e. the batch mean over both halves
                losses["loss_prim"] = soft_label_kl(student["logits_prim"], q)
            if w("loss_fine") != 0:
                losses["loss_fine"] = _pair_sum_ce(student["logits_fine"], y[perm])  # label of the STRUCTURE
        return losses

    # ------------------------------------------------------------------ visualisation
    @torch.no_grad()
    def visualize(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Grids for the image hook: inputs, self-reconstructions, and cross-identity swaps where image k keeps
        its appearance and takes the structure of image k + 1 (0..1 images)."""
        images = batch["images"][:8]
        s = self.encode_structure(images)
        a = self.encode_appearance(images)
        nxt = torch.roll(torch.arange(images.shape[0], device=images.device), -1)
        out = self.decode(torch.cat([s, s[nxt]]), torch.cat([a, a]))
        k = images.shape[0]
        unit = lambda t: (t / 255.0).clamp(0, 1)  # noqa: E731
        return {"inputs": unit(images), "self_recon": unit(out[:k]), "cross_id": unit(out[k:])}

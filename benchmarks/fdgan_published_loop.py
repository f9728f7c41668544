"""The published FD-GAN training iteration (yxgeee/FD-GAN ``fdgan/model.py``, ``FDGANModel.optimize_parameters``),
written with THIS project's sub-networks, so that it and the project's ``FDGAN`` meta-architecture under
``GANTrainer`` compute the same architecture and differ only in how the iteration is organised.

``benchmarks/train_step.py --method fdgan`` times both on the same data; this module holds no timing code.

One iteration, as published (``shared/reference/fdgan-spgan-official.md``, "Stages II and III"), P pairs, 2P images:

1. ``f1, f2, score = E(x[:P], x[P:])`` (E encodes the two halves in two calls); ``fake = G(pose, cat(f1, f2), z)``.
   Stage III: E's features are not detached (G's loss trains E). Stage II: E runs without gradients (the
   published code backpropagates G's loss into the frozen E and throws the gradients away; the benchmark's
   brief allows the cheaper no-grad E for this baseline).
2. D_id step: ``1/2 [BCE(Di(x, y'), real) + BCE(Di(x, fake.detach()), fake)]``; ``Di`` is a Siamese net, so x
   is encoded twice (once per call) and y' and the fake once each: 8P ResNet forwards, all with D_id's graph.
3. D_pd step: the same on ``cat(pose, y')`` and ``cat(pose, fake.detach())`` (two calls, batch statistics).
4. G step (+ E and V in stage III): ``GAN(Di(x, fake)) + GAN(Dp(cat(pose, fake))) + 100 L1(fake, y')
   + 10 CE(score) (III) + 10 L_sp``; D_id and D_pd keep ``requires_grad`` (as published: their parameter grads
   are computed and thrown away at their next ``zero_grad``) and D_id encodes x a third time, with its graph.

D-side targets: one smoothed scalar per call (real U(0.7, 1), fake U(0, 0.3), python's RNG), real and fake
swapped with probability 1/10001; G side hard labels; ``sigmoid`` then ``binary_cross_entropy`` (published
``GANLoss``). The same-pose loss over a batch without a positive pair is guarded (published: NaN) as ours is.

Optimizers (published): stage II G Adam 1e-4 (0.5, 0.999), D_id SGD 1e-5, D_pd SGD 1e-3 (momentum 0.9, weight
decay 1e-4), E in none; stage III one Adam 1e-5 over E (base and V) and G, D_id and D_pd SGD 1e-4.
BatchNorm: E and D_id with running statistics (E wholly in eval mode in II), G and D_pd with batch statistics:
what ``FDGAN.train()`` sets (published ``reset_model_status`` / ``set_bn_fix``).

Mixed precision (not in the published code, for GPU figures at equal settings with ours): the forwards and
losses under ``torch.autocast``, one ``GradScaler`` per optimizer step for fp16.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PublishedFDGANLoop", "published_optimizers"]

#: published lambdas (fdgan/options.py defaults with the README's commands): recon, verification (III), same pose
LAMBDA_RECON, LAMBDA_VERIF, LAMBDA_SP = 100.0, 10.0, 10.0
#: published GANLoss(smooth=True): rand_list = [True] * 1 + [False] * 10000
FLIP_PROB = 1.0 / 10001


def published_optimizers(model: Any, stage: int) -> Dict[str, torch.optim.Optimizer]:
    """``FDGANModel._init_optimizers`` for the README's commands (stage II ``--lr 1e-3``, stage III ``--lr 1e-4``)."""
    if stage == 2:
        lr = 1e-3
        gen = torch.optim.Adam(model.gen.parameters(), lr=lr * 0.1, betas=(0.5, 0.999))
        dis_id = torch.optim.SGD(model.dis_id.parameters(), lr=lr * 0.01, momentum=0.9, weight_decay=1e-4)
    elif stage == 3:
        lr = 1e-4
        # the published lr_mult keys are ignored by torch's Adam: every group runs at lr * 0.1
        groups = [{"params": list(model.reid.encoder.parameters()), "lr_mult": 0.1},
                  {"params": list(model.reid.head.parameters()), "lr_mult": 1.0},
                  {"params": list(model.gen.parameters()), "lr_mult": 0.1}]
        gen = torch.optim.Adam(groups, lr=lr * 0.1, betas=(0.5, 0.999))
        dis_id = torch.optim.SGD(model.dis_id.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    else:
        raise ValueError(f"the published GAN loop is stage 2 or 3, got {stage}")
    dis_pose = torch.optim.SGD(model.dis_pose.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    return {"gen": gen, "dis_id": dis_id, "dis_pose": dis_pose}


def _gan_loss(logits: Tensor, real: bool, smooth: bool) -> Tensor:
    """Published ``GANLoss``: a constant target (smoothed: one draw per call), sigmoid, then BCE."""
    target = (random.uniform(0.7, 1.0) if real else random.uniform(0.0, 0.3)) if smooth else float(real)
    return F.binary_cross_entropy(torch.sigmoid(logits.float()), torch.full_like(logits.float(), target))


class PublishedFDGANLoop:
    """``loop.step(batch)``: one published iteration on a pair batch of ``fdgan.pairs`` (CPU or device tensors).

    ``model`` is an ``FDGAN`` (its ``reid``, ``gen``, ``dis_id``, ``dis_pose`` and ``normalize`` are used; its
    ``forward_train`` / ``phase_losses`` are not). ``amp``: ``None``, ``torch.float16`` or ``torch.bfloat16``.
    """

    def __init__(self, model: Any, stage: int, amp: Optional[torch.dtype] = None) -> None:
        if stage not in (2, 3):
            raise ValueError(f"the published GAN loop is stage 2 or 3, got {stage}")
        self.model, self.stage, self.amp = model, stage, amp
        self.device = next(model.parameters()).device
        self.optimizers = published_optimizers(model, stage)
        enabled = amp == torch.float16
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=enabled) for name in self.optimizers}
        model.train()  # BN: E (II: all of E) and D_id frozen, G and D_pd batch statistics (published set_bn_fix)
        if stage == 2:
            for p in model.reid.parameters():
                p.requires_grad_(False)

    def _autocast(self):
        return contextlib.nullcontext() if self.amp is None else torch.autocast(self.device.type, dtype=self.amp)

    def _backward_step(self, name: str, loss: Tensor) -> None:
        scaler = self.scalers[name]
        scaler.scale(loss).backward()
        scaler.step(self.optimizers[name])
        scaler.update()

    def step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        m = self.model
        dev = self.device

        def branches(t: Tensor) -> Tensor:  # (P, 2, ...) -> (2P, ...): first branches, then second (set_input)
            return t.to(dev, non_blocking=True).transpose(0, 1).flatten(0, 1).float()

        origin = m.normalize(branches(batch["images"]))
        target = m.normalize(branches(batch["target_images"]))
        posemap = branches(batch["target_poses"])
        labels = batch["same"].to(dev).long().view(-1)
        pairs = labels.shape[0]
        noise = torch.randn(pairs, m.gen.noise_dim, device=dev).repeat(2, 1)

        # 1. forward: E on both halves, G on E's features (not detached; stage II: E without grad)
        with self._autocast():
            with torch.set_grad_enabled(self.stage == 3):
                f1, f2, id_score = m.reid(origin[:pairs], origin[pairs:])
            fake = m.gen(posemap, torch.cat((f1, f2)), noise)

        # 2. D_id: Di(origin, target) and Di(origin, fake.detach()): the origin encoded twice
        self.optimizers["dis_id"].zero_grad()
        with self._autocast():
            _, _, pred_real = m.dis_id(origin, target)
            _, _, pred_fake = m.dis_id(origin, fake.detach())
            flip = random.random() < FLIP_PROB
            loss_di = 0.5 * (_gan_loss(pred_fake if flip else pred_real, True, True)
                             + _gan_loss(pred_real if flip else pred_fake, False, True))
        self._backward_step("dis_id", loss_di)

        # 3. D_pd on cat(pose, image), real and fake apart
        self.optimizers["dis_pose"].zero_grad()
        with self._autocast():
            pred_real = m.dis_pose(torch.cat((posemap, target), dim=1))
            pred_fake = m.dis_pose(torch.cat((posemap, fake.detach()), dim=1))
            flip = random.random() < FLIP_PROB
            loss_dp = 0.5 * (_gan_loss(pred_fake if flip else pred_real, True, True)
                             + _gan_loss(pred_real if flip else pred_fake, False, True))
        self._backward_step("dis_pose", loss_dp)

        # 4. G (+ E and V in stage III): D_id encodes the origin a third time, with D_id's graph
        self.optimizers["gen"].zero_grad()
        with self._autocast():
            loss_r = F.l1_loss(fake.float(), target)
            positive = labels.bool()
            if bool(positive.any()):
                loss_sp = F.l1_loss(fake[:pairs][positive].float(), fake[pairs:][positive].float())
            else:  # published: NaN
                loss_sp = fake.float().sum() * 0.0
            _, _, pred_fake_di = m.dis_id(origin, fake)
            pred_fake_dp = m.dis_pose(torch.cat((posemap, fake), dim=1))
            loss_g = (_gan_loss(pred_fake_di, True, False) + _gan_loss(pred_fake_dp, True, False)
                      + LAMBDA_RECON * loss_r + LAMBDA_SP * loss_sp)
            if self.stage == 3:
                loss_g = loss_g + LAMBDA_VERIF * F.cross_entropy(id_score.float(), labels)
        self._backward_step("gen", loss_g)
        # published: loss.data[0] for each (a host sync, as ours has when it checks and logs its losses)
        return {"loss_di": loss_di.item(), "loss_dp": loss_dp.item(), "loss_g": loss_g.item()}

"""The published SPGAN and eSPGAN training iterations (Simon4Yan/eSPGAN ``py-spgan/train_spgan.py`` and
``py-spgan/espgan.py``), written with THIS project's sub-networks, so that they and the project's ``SPGAN`` /
``ESPGAN`` meta-architectures under ``GANTrainer`` compute the same networks and differ only in how the iteration
is organised.

``benchmarks/train_step.py --method spgan`` / ``--method espgan`` time both on the same data; this module holds no
timing code. Names as published: a = source batch, b = target batch, ``Gb`` = ``gen_st`` (A -> B, source ->
target), ``Ga`` = ``gen_ts``, ``Da`` = ``dis_s`` (judges domain A), ``Db`` = ``dis_t``, ``Me`` = ``sianet``,
``IDE`` = ``ide`` (``shared/reference/fdgan-spgan-official.md``, "SPGAN", "eSPGAN").

SPGAN, one iteration ``i`` (``train_spgan.py``; every module's parameters require grad throughout, as published):

1. ``a_fake = Ga(b)``, ``b_fake = Gb(a)``, ``a_rec = Ga(b_fake)``, ``b_rec = Gb(a_fake)``: four generator calls
   with their graphs on EVERY iteration (the reconstructions are used only on G iterations);
2. when ``i % 2 == 0`` (G step): ``Me`` on a, b_fake, b, a_fake (four calls), ``m_loss_G``; identity ``Gb(b)``,
   ``Ga(a)`` (two more calls); ``MSE(Da(a_fake), 1) + MSE(Db(b_fake), 1)`` + 10 rec L1 + 5 idt L1 (+ 2 ``m_loss_G``
   from epoch 2 on); ``Ga.zero_grad(); Gb.zero_grad(); g_loss.backward()`` (which also computes Da's, Db's and
   Me's weight gradients, zeroed before their own steps) and the two Adam steps;
3. from epoch 1 on, the SiaNet step: ``Me`` on a, b_fake.detach(), b, a_fake.detach() (four calls),
   ``m_loss_M = (pos0 + pos1 + 2 neg(a, b)) / 3``;
4. the D step on the fakes of step 1 (made before the G update) through py-spgan's ``ItemPool`` (whole batches,
   50, through numpy): ``Da(a)``, ``Da(pool(a_fake))``, ``Db(b)``, ``Db(pool(b_fake))`` (four calls),
   ``0.5 (MSE(real, 1) + MSE(fake, 0))`` each, two backward calls, two Adam steps.

eSPGAN, one iteration ``i`` (``espgan.py``): step 1 as SPGAN's; when ``i % 3 == 0`` the G step: identity and
LSGAN and rec losses as above plus ``5 CE(IDE([b_fake, a_rec]), [y_a, y_a])`` with the IDE in eval mode (its
weight gradients computed and thrown away); then the IDE step every iteration: backbone BN frozen
(``IDE.eval(); IDE.model.fc.train(True)``: the bottleneck in train mode), on a FRESH real source batch (the next
batch of the source loader) and ``b_fake.detach()``, CE, SGD (Nesterov, momentum 0.9, wd 5e-4; lr 1e-3 backbone,
1e-2 bottleneck and classifier); then the D step as SPGAN's. g_loss = gen + 10 rec + 5 IDE + 5 idt.

Optimizers: Adam 2e-4, betas (0.5, 0.999), one per network. Contrastive loss: py-spgan's ``ContrastiveLoss``,
``mean((1 - y) d^2 + y clamp(m - d, 0)^2)``, d = ``F.pairwise_distance``, m = 2, y = 0 for a positive pair.

Mixed precision (not in the published code, for GPU figures at equal settings with ours): the forwards and
losses under ``torch.autocast``, one ``GradScaler`` per loss's optimizer step for fp16.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ItemPool", "PublishedSPGANLoop", "PublishedESPGANLoop", "published_contrastive"]

#: published lambdas (train_spgan.py / espgan.py): rec, idt, m_G (SPGAN), IDE (eSPGAN); margin
LAMBDA_REC, LAMBDA_IDT, LAMBDA_M, LAMBDA_IDE, MARGIN = 10.0, 5.0, 2.0, 5.0, 2.0
LR, BETAS = 2e-4, (0.5, 0.999)


class ItemPool:
    """py-spgan ``utils.ItemPool``: a history of whole items (batches), 50 by default, numpy's RNG."""

    def __init__(self, max_num: int = 50) -> None:
        self.max_num, self.num, self.items = max_num, 0, []  # type: int, int, List[Any]

    def __call__(self, in_items: List[Any]) -> List[Any]:
        if self.max_num <= 0:
            return in_items
        out = []
        for item in in_items:
            if self.num < self.max_num:
                self.items.append(item)
                self.num += 1
                out.append(item)
            elif np.random.ranf() > 0.5:
                idx = np.random.randint(0, self.max_num)
                out.append(copy.copy(self.items[idx]))
                self.items[idx] = item
            else:
                out.append(item)
        return out


def published_contrastive(x1: Tensor, x2: Tensor, label: int, margin: float = MARGIN) -> Tensor:
    """py-spgan ``models.ContrastiveLoss``: label 0 = a positive pair, 1 = a negative one."""
    d = F.pairwise_distance(x1.float(), x2.float())
    return torch.mean((1 - label) * d.pow(2) + label * torch.clamp(margin - d, min=0.0).pow(2))


def _pooled(pool: ItemPool, fake: Tensor) -> Tensor:
    """``torch.Tensor(pool([fake.cpu().data.numpy()])[0]).to(device)``, as published (a host round trip)."""
    return torch.from_numpy(np.array(pool([fake.detach().float().cpu().numpy()])[0])).to(fake.device)


class _PublishedCycleLoop:
    """What the two published loops share: the translators' forward, the D step, optimizers and AMP."""

    def __init__(self, model: Any, amp: Optional[torch.dtype] = None) -> None:
        self.model, self.amp = model, amp
        self.device = next(model.parameters()).device
        self.optimizers: Dict[str, torch.optim.Optimizer] = {
            net: torch.optim.Adam(getattr(model, net).parameters(), lr=LR, betas=BETAS)
            for net in ("dis_s", "dis_t", "gen_ts", "gen_st")}
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=amp == torch.float16)
                        for name in ("gen", "dis_s", "dis_t", "sianet", "ide")}
        self.a_fake_pool, self.b_fake_pool = ItemPool(), ItemPool()
        for p in model.parameters():  # nothing is ever frozen in the published code
            p.requires_grad_(True)
        model.train()

    def _autocast(self):
        return contextlib.nullcontext() if self.amp is None else torch.autocast(self.device.type, dtype=self.amp)

    def _backward(self, scaler: str, loss: Tensor) -> None:
        self.scalers[scaler].scale(loss).backward()

    def _step(self, scaler: str, *optimizers: str) -> None:
        s = self.scalers[scaler]
        for name in optimizers:
            s.step(self.optimizers[name])
        s.update()

    def _reals(self, batch: Dict[str, Any]):
        m = self.model
        a_real = m.normalize(batch["images"].to(self.device, non_blocking=True).float())
        b_real = m.normalize(batch["target_images"].to(self.device, non_blocking=True).float())
        return a_real, b_real

    def _translate(self, a_real: Tensor, b_real: Tensor):
        """Step 1: a_fake, b_fake, a_rec, b_rec, four generator calls with their graphs."""
        m = self.model
        with self._autocast():
            a_fake = m.gen_ts(b_real)
            b_fake = m.gen_st(a_real)
            a_rec = m.gen_ts(b_fake)
            b_rec = m.gen_st(a_fake)
        return a_fake, b_fake, a_rec, b_rec

    def _gan_terms(self, a_real, b_real, a_fake, b_fake, a_rec, b_rec) -> Tensor:
        """Identity (two more generator calls), LSGAN and rec terms of the G loss, with the published weights."""
        m = self.model
        b2b = m.gen_st(b_real)
        a2a = m.gen_ts(a_real)
        idt_loss = F.l1_loss(a2a.float(), a_real) + F.l1_loss(b2b.float(), b_real)
        a_f_dis = m.dis_s(a_fake).float()
        b_f_dis = m.dis_t(b_fake).float()
        r_label = torch.ones(a_f_dis.size(), device=self.device)
        gen_loss = F.mse_loss(a_f_dis, r_label) + F.mse_loss(b_f_dis, r_label)
        rec_loss = F.l1_loss(a_rec.float(), a_real) + F.l1_loss(b_rec.float(), b_real)
        return gen_loss + LAMBDA_REC * rec_loss + LAMBDA_IDT * idt_loss

    def _d_step(self, a_real: Tensor, b_real: Tensor, a_fake: Tensor, b_fake: Tensor) -> Dict[str, float]:
        m = self.model
        a_fake = _pooled(self.a_fake_pool, a_fake)
        b_fake = _pooled(self.b_fake_pool, b_fake)
        with self._autocast():
            a_r_dis = m.dis_s(a_real).float()
            a_f_dis = m.dis_s(a_fake).float()
            b_r_dis = m.dis_t(b_real).float()
            b_f_dis = m.dis_t(b_fake).float()
            r_label = torch.ones(a_f_dis.size(), device=self.device)
            f_label = torch.zeros(a_f_dis.size(), device=self.device)
            a_d_loss = (F.mse_loss(a_r_dis, r_label) + F.mse_loss(a_f_dis, f_label)) * 0.5
            b_d_loss = (F.mse_loss(b_r_dis, r_label) + F.mse_loss(b_f_dis, f_label)) * 0.5
        m.dis_s.zero_grad()
        m.dis_t.zero_grad()
        self._backward("dis_s", a_d_loss)
        self._backward("dis_t", b_d_loss)
        self._step("dis_s", "dis_s")
        self._step("dis_t", "dis_t")
        return {"a_d_loss": a_d_loss.item(), "b_d_loss": b_d_loss.item()}


class PublishedSPGANLoop(_PublishedCycleLoop):
    """``loop.step(batch, i)``: one ``train_spgan.py`` iteration on a two-domain batch (``images`` = a,
    ``target_images`` = b, 0..255). ``model`` is an ``SPGAN`` (its networks and ``normalize`` are used, its
    ``forward_train`` / ``phase_losses`` are not). ``metric``: SiaNet's step on (published: epoch > 0);
    ``contrastive``: G's ``m_loss_G`` term on (epoch > 1). ``gen_every``: the G step when ``i % gen_every == 0``."""

    def __init__(self, model: Any, amp: Optional[torch.dtype] = None, metric: bool = True,
                 contrastive: bool = True, gen_every: int = 2) -> None:
        super().__init__(model, amp)
        self.optimizers["sianet"] = torch.optim.Adam(model.sianet.parameters(), lr=LR, betas=BETAS)
        self.metric, self.contrastive, self.gen_every = metric, contrastive, int(gen_every)

    def step(self, batch: Dict[str, Any], i: int) -> Dict[str, float]:
        m = self.model
        me = m.sianet
        a_real, b_real = self._reals(batch)
        a_fake, b_fake, a_rec, b_rec = self._translate(a_real, b_real)
        loss: Dict[str, float] = {}
        if i % self.gen_every == 0:  # 1. G (Ga and Gb)
            with self._autocast():
                a_metric, a2b_metric, b_metric, b2a_metric = me(a_real), me(b_fake), me(b_real), me(a_fake)
                loss_pos0 = published_contrastive(a_metric, a2b_metric, 0)
                loss_pos1 = published_contrastive(b_metric, b2a_metric, 0)
                loss_neg0 = published_contrastive(a2b_metric, b_metric, 1)
                loss_neg1 = published_contrastive(b2a_metric, a_metric, 1)
                m_loss_g = (loss_pos0 + loss_pos1 + 0.5 * (loss_neg0 + loss_neg1)) / 4.0
                g_loss = self._gan_terms(a_real, b_real, a_fake, b_fake, a_rec, b_rec)
                if self.contrastive:
                    g_loss = g_loss + LAMBDA_M * m_loss_g
            m.gen_ts.zero_grad()
            m.gen_st.zero_grad()
            self._backward("gen", g_loss)
            self._step("gen", "gen_ts", "gen_st")
            loss["g_loss"] = g_loss.item()
            del a_metric, a2b_metric, b_metric, b2a_metric, m_loss_g, g_loss
        del a_rec, b_rec
        if self.metric:  # 2. the Siamese network, on the detached translations
            with self._autocast():
                a_metric, a2b_metric = me(a_real), me(b_fake.detach())
                b_metric, b2a_metric = me(b_real), me(a_fake.detach())
                loss_pos0 = published_contrastive(a_metric, a2b_metric, 0)
                loss_pos1 = published_contrastive(b_metric, b2a_metric, 0)
                loss_neg = published_contrastive(a_metric, b_metric, 1)
                m_loss_m = (loss_pos0 + loss_pos1 + 2 * loss_neg) / 3.0
            me.zero_grad()
            self._backward("sianet", m_loss_m)
            self._step("sianet", "sianet")
            loss["m_loss_M"] = m_loss_m.item()
        loss.update(self._d_step(a_real, b_real, a_fake, b_fake))  # 3. D, on the fakes made before the G update
        return loss


def published_ide_optimizer(ide: Any) -> torch.optim.Optimizer:
    """espgan.py's ``IDE_optimizer``: SGD Nesterov, momentum 0.9, wd 5e-4; 1e-3 for the backbone, 1e-2 for the
    bottleneck (published ``model.fc``) and the classifier."""
    heads = {id(p) for p in list(ide.bottleneck.parameters()) + list(ide.classifier.parameters())}
    base = [p for p in ide.parameters() if id(p) not in heads]
    return torch.optim.SGD([{"params": base, "lr": 0.001},
                            {"params": list(ide.bottleneck.parameters()), "lr": 0.01},
                            {"params": list(ide.classifier.parameters()), "lr": 0.01}],
                           momentum=0.9, weight_decay=5e-4, nesterov=True)


class PublishedESPGANLoop(_PublishedCycleLoop):
    """``loop.step(batch, i)``: one ``espgan.py`` iteration; the IDE step's fresh real source batch is the batch's
    ``fresh_images`` / ``fresh_targets`` (``ESPGAN.build_train_loader``: a third stream over the source, as the
    published ``next(data_iter_source)``), or ``fresh`` (``images``, ``targets``) when given. ``model`` is an
    ``ESPGAN``. The G step when ``i % gen_every == 0`` (published 3)."""

    def __init__(self, model: Any, amp: Optional[torch.dtype] = None, gen_every: int = 3) -> None:
        super().__init__(model, amp)
        self.optimizers["ide"] = published_ide_optimizer(model.ide)
        self.gen_every = int(gen_every)

    def step(self, batch: Dict[str, Any], i: int, fresh: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
        if fresh is None:
            fresh = {"images": batch["fresh_images"], "targets": batch["fresh_targets"]}
        m = self.model
        ide = m.ide
        label_a = batch["targets"].to(self.device).long()
        a_real, b_real = self._reals(batch)
        a_fake, b_fake, a_rec, b_rec = self._translate(a_real, b_real)
        loss: Dict[str, float] = {}
        if i % self.gen_every == 0:  # 1. G, with the IDE loss on [Gb(a), Ga(Gb(a))]
            ide.eval()
            with self._autocast():
                g_loss = self._gan_terms(a_real, b_real, a_fake, b_fake, a_rec, b_rec)
                outputs = ide(torch.cat((b_fake, a_rec), dim=0)).float()
                g_ide_loss = F.cross_entropy(outputs, torch.cat((label_a, label_a), dim=0))
                g_loss = g_loss + LAMBDA_IDE * g_ide_loss
            m.gen_ts.zero_grad()
            m.gen_st.zero_grad()
            self._backward("gen", g_loss)
            self._step("gen", "gen_ts", "gen_st")
            loss["g_loss"] = g_loss.item()
            del outputs, g_ide_loss, g_loss
        del a_rec, b_rec
        # 2. the IDE: backbone BN frozen, the bottleneck in train mode; a fresh real source batch + Gb(a).detach()
        ide.eval()
        ide.bottleneck.train(True)
        x_real_ide = m.normalize(fresh["images"].to(self.device).float())
        label = torch.cat((fresh["targets"].to(self.device).long(), label_a), dim=0)
        with self._autocast():
            outputs = ide(torch.cat((x_real_ide, b_fake.detach()), dim=0)).float()
            ide_loss = F.cross_entropy(outputs, label)
        self.optimizers["ide"].zero_grad()
        self._backward("ide", ide_loss)
        self._step("ide", "ide")
        loss["ide_loss_cls"] = ide_loss.item()  # the IDE stays as the step left it (eval, bottleneck train)
        loss.update(self._d_step(a_real, b_real, a_fake, b_fake))  # 3. D
        return loss

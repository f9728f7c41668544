"""Tests of the shared GAN losses (fastreid_gan.losses)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastreid_gan  # noqa: F401
from fastreid_gan.losses import bce_d_loss, bce_g_loss, lsgan_d_loss, lsgan_g_loss, r1_penalty, soft_label_kl

torch.set_num_threads(1)


def test_lsgan_known_values():
    half = torch.full((2, 1, 4, 2), 0.5)
    assert float(lsgan_d_loss(half, half)) == pytest.approx(0.5)  # 0.25 + 0.25
    assert float(lsgan_d_loss([half] * 3, [half] * 3)) == pytest.approx(1.5)  # summed over scales
    assert float(lsgan_d_loss(torch.ones(3), torch.zeros(3))) == 0.0
    assert float(lsgan_d_loss(torch.ones(3), torch.zeros(3) + 2, factor=0.5)) == pytest.approx(2.0)
    zeros = [torch.zeros(2, 1, 8, 4), torch.zeros(2, 1, 4, 2)]
    assert float(lsgan_g_loss(zeros)) == pytest.approx(2.0)
    # published DG-Net generator term: 2 * mean((D - 1)^2) per scale
    assert float(lsgan_g_loss(zeros, factor=2.0)) == pytest.approx(4.0)
    assert float(lsgan_g_loss(torch.tensor([0.0, 2.0, 1.0]))) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        lsgan_d_loss([half, half], [half])


def test_bce_hard_labels_match_manual():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    manual = 0.5 * (F.binary_cross_entropy(torch.sigmoid(real), torch.ones_like(real))
                    + F.binary_cross_entropy(torch.sigmoid(fake), torch.zeros_like(fake)))
    torch.testing.assert_close(bce_d_loss(real, fake, smoothing=None), manual)
    torch.testing.assert_close(bce_g_loss(fake), F.binary_cross_entropy(torch.sigmoid(fake), torch.ones_like(fake)))
    torch.testing.assert_close(bce_g_loss([fake, fake]), 2 * bce_g_loss(fake))


def test_bce_label_smoothing_ranges_and_determinism():
    # With logits 0 the loss is independent of the target: use large logits to read the target back.
    real, fake = torch.full((5,), 20.0), torch.full((5,), -20.0)

    def implied_targets(seed):
        loss_r = bce_d_loss(real, torch.full((5,), 0.0), factor=1.0, generator=torch.Generator().manual_seed(seed))
        # BCE(logit=20, t) ~= 20 * (1 - t) + log(2) (fake term with logit 0)
        return 1 - (float(loss_r) - math.log(2)) / 20

    t = implied_targets(0)
    assert 0.7 <= t <= 1.0
    assert implied_targets(0) == pytest.approx(t)
    values = {round(implied_targets(s), 4) for s in range(10)}
    assert len(values) > 5 and all(0.7 - 1e-3 <= v <= 1.0 + 1e-3 for v in values)
    # fake target in [0, 0.3]: BCE(logit=-20, t) ~= 20 t
    for s in range(5):
        loss = bce_d_loss(torch.zeros(5), fake, factor=1.0, generator=torch.Generator().manual_seed(s))
        t_fake = (float(loss) - math.log(2)) / 20
        assert -1e-3 <= t_fake <= 0.3 + 1e-3
    # flip_prob 1: real gets the fake target and vice versa
    flipped = bce_d_loss(real, fake, smoothing=None, flip_prob=1.0)
    assert float(flipped) > 19.0


def test_r1_penalty_value_and_gradient_to_discriminator():
    torch.manual_seed(0)
    d = nn.Conv2d(3, 1, 1)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    outs = [d(x), d(F.avg_pool2d(x, 2))]
    pen = r1_penalty(outs, x)
    # scale 0: d sum(conv1x1(x)) / dx = w at each of the 16 pixels -> 16 ||w||^2 per sample;
    # scale 1 (2x2 average pool): w / 4 at each of the 16 pixels -> 16 ||w||^2 / 16 = ||w||^2
    w2 = float(d.weight.detach().pow(2).sum())
    assert float(pen.detach()) == pytest.approx(16 * w2 + w2, rel=1e-5)
    pen.backward()
    assert d.weight.grad is not None and float(d.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        r1_penalty(d(torch.randn(1, 3, 2, 2)), torch.randn(1, 3, 2, 2))


def test_r1_penalty_matches_published_loop():
    torch.manual_seed(1)
    d = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1))
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    outs = [d(x), d(x * 2)]
    expected = 0
    for out in outs:
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        expected = expected + g.pow(2).view(3, -1).sum(1).mean()
    torch.testing.assert_close(r1_penalty(outs, x), expected)


def test_soft_label_kl_eq8():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, generator=g)
    q = torch.softmax(torch.randn(4, 7, generator=g), 1)
    q[0, 3] = 0.0
    q = q / q.sum(1, keepdim=True)
    p = torch.softmax(logits, 1)
    manual = sum(float(sum(qi * math.log(qi / pi) for qi, pi in zip(qr.tolist(), pr.tolist()) if qi > 0))
                 for qr, pr in zip(q, p)) / 4
    assert float(soft_label_kl(logits, q)) == pytest.approx(manual, rel=1e-5)
    assert float(soft_label_kl(logits, p)) == pytest.approx(0.0, abs=1e-6)
    logits.requires_grad_(True)
    soft_label_kl(logits, q).backward()
    assert logits.grad is not None
    with pytest.raises(ValueError):
        soft_label_kl(torch.randn(2, 3), torch.rand(2, 4))

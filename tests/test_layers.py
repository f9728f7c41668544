"""Tests of the shared GAN building blocks (fastreid_gan.layers)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastreid_gan  # noqa: F401
from fastreid_gan.layers import (
    AdaIN2d,
    Conv2dBlock,
    ConvSpec,
    ImagePool,
    LayerNorm2d,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    ResBlock,
    ResBlocks,
    adaptive_instance_norm,
    checkpointed,
    init_weights,
    run_segments,
)
from fastreid_gan.losses import r1_penalty

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------ AdaIN
def test_adain_equals_manual_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, 6, generator=g) * 3 + 1
    scale, shift = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    manual = (x - mean) / torch.sqrt(var + 1e-5) * scale[:, :, None, None] + shift[:, :, None, None]
    torch.testing.assert_close(adaptive_instance_norm(x, scale, shift), manual, rtol=1e-5, atol=1e-5)


def test_adain_equals_published_batchnorm_formulation():
    # The published AdaptiveInstanceNorm2d: F.batch_norm in training mode on a (1, B*C, H, W) view.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 4, generator=g)
    scale, shift = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    published = F.batch_norm(x.reshape(1, 8, 8, 4), torch.zeros(8), torch.ones(8), scale.reshape(-1),
                             shift.reshape(-1), True, 0.1, 1e-5).view_as(x)
    torch.testing.assert_close(adaptive_instance_norm(x, scale, shift), published, rtol=1e-5, atol=1e-5)


def test_adain_shared_params_and_shape_errors():
    x = torch.randn(2, 3, 4, 4)
    a = adaptive_instance_norm(x, torch.ones(3), torch.zeros(3))
    torch.testing.assert_close(a, F.instance_norm(x, eps=1e-5))
    with pytest.raises(ValueError):
        adaptive_instance_norm(x, torch.ones(2, 4), torch.zeros(2, 4))


def test_adain_block_is_stateless():
    block = Conv2dBlock(4, 4, 3, 1, 1, norm="adain")
    assert isinstance(block.norm, AdaIN2d)
    assert list(block.norm.parameters()) == [] and list(block.norm.buffers()) == []
    before = {k: v.clone() for k, v in block.state_dict().items()}
    attrs = set(vars(block.norm))
    x = torch.randn(2, 4, 6, 6)
    p1 = (torch.randn(2, 4), torch.randn(2, 4))
    p2 = (torch.randn(2, 4), torch.randn(2, 4))
    y1, y2, y1b = block(x, p1), block(x, p2), block(x, p1)
    torch.testing.assert_close(y1, y1b)  # no leftover state from the p2 call
    assert not torch.allclose(y1, y2)
    assert set(vars(block.norm)) == attrs
    for k, v in block.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError):
        block(x)


# ------------------------------------------------------------------------------------------------ LayerNorm2d
def _published_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.view(x.size(0), -1).mean(1).view(-1, 1, 1, 1)
    std = x.view(x.size(0), -1).std(1).view(-1, 1, 1, 1)
    return (x - mean) / (std + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def test_layer_norm_matches_published_definition():
    g = torch.Generator().manual_seed(2)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.gamma.copy_(torch.randn(6, generator=g))
        ln.beta.copy_(torch.randn(6, generator=g))
    x = torch.randn(3, 6, 5, 4, generator=g) * 2 + 0.5
    torch.testing.assert_close(ln(x), _published_layer_norm(x, ln.gamma, ln.beta), rtol=1e-5, atol=1e-5)
    # per sample: scaling one sample does not change the others
    x2 = x.clone()
    x2[0] *= 10
    torch.testing.assert_close(ln(x2)[1:], ln(x)[1:])


def test_layer_norm_init_and_low_precision():
    ln = LayerNorm2d(8)
    assert set(dict(ln.named_parameters())) == {"gamma", "beta"}
    assert bool((ln.gamma >= 0).all() and (ln.gamma <= 1).all()) and bool((ln.beta == 0).all())
    x = torch.randn(2, 8, 4, 4)
    y = ln(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ln(x), rtol=0.05, atol=0.05)


# ------------------------------------------------------------------------------------------------ Conv2dBlock
@pytest.mark.parametrize("pad_type,mode", [("reflect", "reflect"), ("replicate", "replicate"), ("zero", "constant")])
def test_conv_block_padding(pad_type, mode):
    torch.manual_seed(0)
    block = Conv2dBlock(3, 4, 3, 1, 1, pad_type=pad_type, activation="none")
    x = torch.randn(1, 3, 8, 6)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), block.conv.weight, block.conv.bias)
    torch.testing.assert_close(block(x), expected)


def test_conv_block_order_norm_activation_and_pairs():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    b = Conv2dBlock(3, 4, 3, 1, 1, norm="in", activation="lrelu")
    torch.testing.assert_close(b(x), F.leaky_relu(F.instance_norm(b.conv(b.pad(x))), 0.2))
    pre = Conv2dBlock(3, 4, 4, 2, 1, norm="bn", activation="lrelu", pad_type="zero", bias=False,
                      activation_first=True)
    pre.eval()
    torch.testing.assert_close(pre(x), pre.norm(pre.conv(F.leaky_relu(x, 0.2))))
    assert pre.conv.bias is None
    asym = Conv2dBlock(3, 2, 4, 1, (1, 2), pad_type="zero")
    assert asym(torch.randn(1, 3, 32, 16)).shape == (1, 2, 31, 17)
    up = Conv2dBlock(3, 2, 3, 2, 1, transposed=True, output_padding=1, pad_type="zero", norm="in",
                     activation="relu")
    assert up(x).shape == (2, 2, 16, 16)
    for act, fn in (("relu", F.relu), ("tanh", torch.tanh)):
        blk = Conv2dBlock(3, 4, 1, activation=act)
        torch.testing.assert_close(blk(x), fn(blk.conv(x)))
    with pytest.raises(ValueError):
        Conv2dBlock(3, 4, 3, norm="group")
    with pytest.raises(ValueError):
        Conv2dBlock(3, 4, 3, activation="gelu")
    with pytest.raises(ValueError):
        Conv2dBlock(3, 4, 3, pad_type="circular")
    with pytest.raises(ValueError):
        Conv2dBlock(3, 4, 3, transposed=True, pad_type="reflect")


def test_conv_block_layer_norm_and_dilation():
    b = Conv2dBlock(4, 6, 3, 1, 3, dilation=3, norm="ln")
    assert isinstance(b.norm, LayerNorm2d)
    assert b(torch.randn(2, 4, 10, 9)).shape == (2, 6, 10, 9)


# ------------------------------------------------------------------------------------------------ ResBlocks
def test_res_block_is_residual():
    block = ResBlock(4, norm="none")
    for p in block.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), x)
    torch.manual_seed(0)
    block = ResBlock(4, norm="in")
    c1, c2 = block.convs
    torch.testing.assert_close(block(x), x + c2(c1(x)))
    assert c1.activation is not None and c2.activation is None


def test_res_blocks_adain_routing():
    torch.manual_seed(0)
    blocks = ResBlocks(2, 4, norm="adain")
    assert blocks.num_adain_layers == 4
    x = torch.randn(2, 4, 6, 6)
    params = [(torch.randn(2, 4), torch.randn(2, 4)) for _ in range(4)]
    expected = x
    for i, blk in enumerate(blocks.blocks):
        h = blk.convs[0](expected, params[2 * i])
        expected = expected + blk.convs[1](h, params[2 * i + 1])
    torch.testing.assert_close(blocks(x, params), expected)
    with pytest.raises(ValueError):
        blocks(x, params[:3])
    with pytest.raises(ValueError):
        ResBlocks(1, 4, norm="in")(x, params[:2])


# ------------------------------------------------------------------------------------------------ discriminators
def _dgnet_convs():
    return [(32, 1, 1, 0), (32, 3, 1, 1), (32, 3, 2, 1), (32, 3, 1, 1), (64, 3, 2, 1)]


def test_multiscale_discriminator_shapes_256x128():
    torch.manual_seed(0)
    dis = MultiScaleDiscriminator(n_scales=3, in_channels=3, convs=_dgnet_convs(), n_res=4)
    outs = dis(torch.randn(1, 3, 256, 128))
    assert [tuple(o.shape) for o in outs] == [(1, 1, 64, 32), (1, 1, 32, 16), (1, 1, 16, 8)]
    assert len(dis.scales) == 3 and isinstance(dis.scales[0], PatchDiscriminator)


def test_multiscale_discriminator_downsamples_between_scales():
    torch.manual_seed(0)
    dis = MultiScaleDiscriminator(n_scales=2, in_channels=3, convs=[(8, 3, 1, 1)], n_res=0)
    x = torch.randn(2, 3, 16, 8)
    outs = dis(x)
    pooled = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(outs[1], dis.scales[1](pooled))
    torch.testing.assert_close(outs[0], dis.scales[0](x))


def test_discriminator_init_and_spec_formats():
    d = PatchDiscriminator(3, [ConvSpec(16, 3, 2, 1), {"out_channels": 16, "kernel_size": 3, "padding": 1},
                               [16, 1]], n_res=1)
    assert d(torch.randn(1, 3, 32, 16)).shape == (1, 1, 16, 8)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(float(c.bias.detach().abs().max()) == 0 for c in convs)
    w = torch.cat([c.weight.detach().flatten() for c in convs])
    assert 0.015 < float(w.std()) < 0.025
    with pytest.raises(ValueError):
        PatchDiscriminator(3, [])


@pytest.mark.parametrize("paddings,size", [(None, (30, 14)), (((1, 2), (2, 1)), (32, 16))])
def test_patchgan70_for_spgan(paddings, size):
    d = PatchDiscriminator.patchgan70(3, 64, "in", paddings=paddings)
    assert d(torch.randn(1, 3, 256, 128)).shape[2:] == size
    # same tensors, in the same order, as SPGAN's published PatchGAN (spgan_official/*_D_keys.tsv)
    shapes = [tuple(v.shape) for v in d.state_dict().values()]
    assert shapes == [(64, 3, 4, 4), (64,), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4),
                      (1, 512, 4, 4), (1,)]


def test_init_weights_kaiming():
    m = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Linear(100, 50))
    init_weights(m, "kaiming")
    assert float(m[1].bias.detach().abs().max()) == 0
    assert abs(float(m[0].weight.detach().std()) - (2 / (64 * 9)) ** 0.5) < 0.01
    with pytest.raises(ValueError):
        init_weights(m, "uniform")


# ------------------------------------------------------------------------------------------------ ImagePool
def _stream(pool, n_batches=20, batch=4):
    torch.manual_seed(123)
    feed = [torch.randn(batch, 3, 4, 2) for _ in range(n_batches)]
    return feed, [pool.query(b) for b in feed]


def test_image_pool_fills_then_mixes_deterministically():
    feed, out1 = _stream(ImagePool(6, seed=0))
    _, out2 = _stream(ImagePool(6, seed=0))
    for a, b in zip(out1, out2):
        assert torch.equal(a, b)
    # the first 6 images fill the pool and come back unchanged
    assert torch.equal(out1[0], feed[0]) and torch.equal(out1[1][:2], feed[1][:2])
    seen = torch.cat(feed).flatten(1)
    swapped = 0
    total = 0
    for inp, out in zip(feed[2:], out1[2:]):
        for i in range(inp.shape[0]):
            total += 1
            if torch.equal(out[i], inp[i]):
                continue
            swapped += 1
            # a returned stored image is one of the images fed earlier
            assert bool((seen == out[i].flatten()).all(dim=1).any())
    assert 0.3 < swapped / total < 0.7  # p = 0.5
    _, out3 = _stream(ImagePool(6, seed=1))
    assert any(not torch.equal(a, b) for a, b in zip(out1, out3))


def test_image_pool_global_rng_and_size_zero():
    torch.manual_seed(5)
    _, a = _stream(ImagePool(3))
    torch.manual_seed(5)
    _, b = _stream(ImagePool(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = ImagePool(0)(x)
    assert torch.equal(out, x) and not out.requires_grad
    with pytest.raises(ValueError):
        ImagePool(-1)


def test_image_pool_state_dict_round_trip():
    torch.manual_seed(0)
    feed = [torch.randn(2, 3, 4, 2) for _ in range(8)]
    pool = ImagePool(3, seed=4)
    for batch in feed[:3]:
        pool.query(batch)
    state = pool.state_dict()
    assert state["images"].shape == (3, 3, 4, 2) and state["size"] == 3 and state["generator"] is not None
    restored = ImagePool(3, seed=99)
    restored.load_state_dict(torch.load(_saved(state), weights_only=True))
    for batch in feed[3:]:  # the same stored images and the same random stream: the same outputs
        assert torch.equal(pool.query(batch), restored.query(batch))
    empty = ImagePool(3).state_dict()
    assert empty["images"].numel() == 0 and empty["generator"] is None
    fresh = ImagePool(3)
    fresh.load_state_dict(empty)
    assert len(fresh) == 0
    with pytest.raises(ValueError, match="saved pool has size 3, this one 5"):
        ImagePool(5, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="private generator"):
        ImagePool(3).load_state_dict(state)


def _saved(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


# ------------------------------------------------------------------------------------------------ checkpointing
def _bn_segments() -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList([nn.Sequential(nn.Conv2d(c, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
                          for c in (3, 6, 6)])


def _run(segments: nn.ModuleList, x: torch.Tensor, **kwargs):
    x = x.clone().requires_grad_(True)
    out = run_segments(list(segments), x, **kwargs)
    out.square().mean().backward()
    grads = {k: p.grad for k, p in segments.named_parameters()}
    stats = {k: b.clone() for k, b in segments.named_buffers()}
    return out.detach(), x.grad, grads, stats


def test_checkpointed_segments_same_gradients_and_batchnorm_statistics():
    x = torch.randn(4, 3, 8, 6)
    plain, ck = _bn_segments(), _bn_segments()
    out, gx, grads, stats = _run(plain, x)
    out_ck, gx_ck, grads_ck, stats_ck = _run(ck, x, checkpoint=True)
    torch.testing.assert_close(out_ck, out)
    torch.testing.assert_close(gx_ck, gx)
    for k in grads:
        torch.testing.assert_close(grads_ck[k], grads[k])
    # the recomputation in backward did not move the running statistics a second time
    for k in stats:
        torch.testing.assert_close(stats_ck[k], stats[k])
    assert int(stats_ck["0.1.num_batches_tracked"]) == 1


def test_frozen_segments_leave_parameters_and_statistics_alone():
    x = torch.randn(4, 3, 8, 6)
    live, frozen = _bn_segments(), _bn_segments()
    before = {k: b.clone() for k, b in frozen.named_buffers()}
    with torch.no_grad():
        frozen_ref = _bn_segments()
    for checkpoint in (False, True):
        out, gx, grads, stats = _run(frozen, x, frozen=True, checkpoint=checkpoint)
        assert all(g is None for g in grads.values())  # even when recomputed after the call returned
        for k in stats:
            assert torch.equal(stats[k], before[k]), k
        # the input gradient is that of the live network in training mode
        out_live, gx_live, _, _ = _run(live, x)
        torch.testing.assert_close(out, out_live)
        torch.testing.assert_close(gx, gx_live)
        live.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(frozen.parameters(), frozen_ref.parameters()))


def test_checkpointed_runs_plainly_without_gradients():
    calls = []
    net = nn.Linear(3, 2)

    def fn(t):
        calls.append(torch.is_grad_enabled())
        return net(t)

    with torch.no_grad():
        checkpointed(fn, torch.randn(2, 3), module=net)
    assert calls == [False]


@pytest.mark.parametrize("build", [
    lambda ck: MultiScaleDiscriminator(n_scales=2, checkpoint=ck, in_channels=3, convs=[(8, 3, 2, 1)], n_res=1),
    lambda ck: PatchDiscriminator.patchgan70(3, 8, "in", checkpoint=ck),
], ids=["multiscale", "patchgan70"])
def test_discriminator_checkpoint_with_r1_double_backward(build):
    def d_grads(checkpoint: bool):
        torch.manual_seed(0)
        net = build(checkpoint)
        assert all(m.checkpoint == checkpoint for m in net.modules() if isinstance(m, PatchDiscriminator))
        real = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        outs = net(real)
        outs = outs if isinstance(outs, list) else [outs]
        loss = sum(o.mean() for o in outs) + r1_penalty(outs, real)
        loss.backward()
        return {k: p.grad for k, p in net.named_parameters()}

    plain, ck = d_grads(False), d_grads(True)
    for k in plain:
        torch.testing.assert_close(ck[k], plain[k], rtol=1e-5, atol=1e-7)

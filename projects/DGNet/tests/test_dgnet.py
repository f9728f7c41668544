"""DG-Net meta-architecture (projects/DGNet/dgnet): fast model-level tests with tiny widths at 64x32."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch

import fastreid_gan  # noqa: F401  (compat fixes before fastreid)
from fastreid.data.data_utils import read_image
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANMetaArch, LossWeight, StepContext

from dgnet import DGNet
from dgnet.augment import random_erasing
from dgnet.generator import soft_edges
from dgnet.swap_accuracy import swap_accuracy
from dgnet.teacher import Teacher, build_teacher
from dgnet.visualize import interpolation_grid, save_png, swap_grid

NUM_CLASSES = 5
H, W = 64, 32
ALL_LOSSES = (
    "loss_recon_x", "loss_recon_xp", "loss_id", "loss_pid", "loss_id_cross", "loss_id_fine", "loss_recon_f",
    "loss_recon_s", "loss_recon_x_cyc", "loss_gan_g", "loss_prim", "loss_fine",
)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def tiny_cfg(teacher: Tuple[str, str] = ("", "")):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DGNet"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    d = cfg.MODEL.DGNET
    d.STRUCTURE.WIDTHS = [4, 8, 8, 16]
    d.STRUCTURE.DIM = 16
    d.STRUCTURE.N_RES = 1
    d.STRUCTURE.DILATIONS = [1, 2, 3]
    d.DECODER.N_RES = 1
    d.DECODER.MLP_DIM = 16
    d.DISCRIMINATOR.DIM = 8
    d.DISCRIMINATOR.N_RES = 1
    d.DISCRIMINATOR.N_SCALES = 2
    d.TEACHER.CONFIG, d.TEACHER.WEIGHTS = teacher
    return cfg


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory) -> Tuple[str, str]:
    """A random-init ResNet-18 fastreid baseline (config + checkpoint) with NUM_CLASSES identities."""
    d = tmp_path_factory.mktemp("teacher")
    yml = d / "teacher.yml"
    yml.write_text(
        "MODEL:\n  META_ARCHITECTURE: Baseline\n  DEVICE: cpu\n"
        "  BACKBONE: {NAME: build_resnet_backbone, DEPTH: 18x, FEAT_DIM: 512, PRETRAIN: False, LAST_STRIDE: 1}\n"
        "  HEADS: {NAME: EmbeddingHead, WITH_BNNECK: True, POOL_LAYER: GlobalAvgPool, CLS_LAYER: Linear}\n"
        f"INPUT: {{SIZE_TRAIN: [{H}, {W}], SIZE_TEST: [{H}, {W}]}}\n"
    )
    cfg = get_cfg()
    cfg.merge_from_file(str(yml))
    cfg.MODEL.HEADS.NUM_CLASSES = NUM_CLASSES
    weights = d / "teacher.pth"
    torch.save({"model": build_model(cfg).state_dict()}, str(weights))
    return str(yml), str(weights)


@pytest.fixture
def model(teacher_files) -> DGNet:
    m = build_model(tiny_cfg(teacher_files))
    m.train()
    return m


def make_batch(n: int = 2) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "images": torch.rand(2 * n, 3, H, W, generator=g) * 255,
        "pos_images": torch.rand(2 * n, 3, H, W, generator=g) * 255,
        "targets": torch.arange(2 * n) % NUM_CLASSES,
    }


def ctx_with(model: DGNet, weights: Dict[str, float] = None, iteration: int = 50000) -> StepContext:
    w = {name: lw(iteration) for name, lw in model.loss_weights().items()}
    if weights is not None:
        w = {name: weights.get(name, 0.0) for name in w}
    return StepContext(iteration=iteration, weights=w, device=torch.device("cpu"), active_phases=("dis", "gen"))


def set_requires_grad(model: DGNet, networks) -> None:
    """What the engine does before each phase."""
    for name, net in model.sub_networks().items():
        for p in net.parameters():
            p.requires_grad_(name in networks)


def grads_of(net: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)


def run_phase(model: DGNet, phase: str, batch, state, ctx) -> Dict[str, torch.Tensor]:
    networks = {p.name: p.networks for p in model.phases()}[phase]
    set_requires_grad(model, networks)
    for p in model.parameters():
        p.grad = None
    losses = model.phase_losses(phase, batch, state, ctx)
    total = sum(ctx.weight(k) * v for k, v in losses.items() if ctx.weight(k) != 0)
    total.backward()
    return losses


# ----------------------------------------------------------------------------- structure and config
def test_registered_and_sub_networks(model):
    assert isinstance(model, GANMetaArch)
    assert set(model.sub_networks()) == {"gen", "dis", "id"}
    assert [(p.name, p.networks) for p in model.phases()] == [("dis", ("dis",)), ("gen", ("gen", "id"))]
    # the teacher is never part of the checkpoint
    model.load_teacher()
    assert not any(k.startswith("teacher") or "_teacher" in k for k in model.state_dict())
    assert isinstance(model.load_teacher(), Teacher) and not model.load_teacher().training


def test_loss_weights_follow_the_published_schedule():
    weights = {k: LossWeight.from_spec(v) for k, v in DGNet.from_config(tiny_cfg())["loss_weights"].items()}
    prim, fine = weights["loss_prim"], weights["loss_fine"]
    assert prim(0) == 0 and prim(29999) == 0 and prim(30000) == 0
    assert prim(32000) == pytest.approx(1.0) and prim(34000) == 2.0 and prim(100000) == 2.0
    for it in (0, 30000, 31000, 33000, 34000, 90000):
        assert fine(it) == pytest.approx(0.2 * prim(it))
        assert weights["loss_id_fine"](it) == pytest.approx(fine(it))
    assert weights["loss_recon_f"](32000) == 1.0 and weights["loss_recon_s"](31000) == pytest.approx(0.5)
    assert weights["loss_recon_x_cyc"](34000) == 2.0 and weights["loss_recon_x_cyc"](29000) == 0.0
    assert weights["loss_recon_x"](0) == 5 and weights["loss_id_cross"](0) == 0.5 and weights["loss_r1"](0) == 0.01


def test_optimizer_nodes_are_the_published_ones():
    assert len(get_cfg().SOLVER.GAN.OPTIMIZERS) == 0  # DG-Net's nodes reach DG-Net configs only
    config = Path(__file__).resolve().parents[1] / "configs" / "market.yml"
    opt = merge_config(get_cfg(), str(config)).SOLVER.GAN.OPTIMIZERS
    assert sorted(opt) == ["DIS", "GEN", "ID"]
    for net in ("GEN", "DIS"):
        assert opt[net].NAME == "Adam" and opt[net].BASE_LR == 1e-4 and tuple(opt[net].BETAS) == (0.0, 0.999)
        assert opt[net].WEIGHT_DECAY == 5e-4
    assert opt.ID.NAME == "SGD" and opt.ID.NESTEROV and opt.ID.MOMENTUM == 0.9 and opt.ID.BASE_LR == 0.002
    assert sorted(opt.ID.LR_FACTORS) == ["head_fine=10", "head_prim=10"]
    assert tuple(opt.ID.STEPS) == (60000, 90000, 105000) and opt.ID.GAMMA == 0.1


# ----------------------------------------------------------------------------- training step
def test_every_loss_term_present_and_finite(model):
    batch = make_batch()
    ctx = ctx_with(model)  # iteration 50K: every warm-up term switched on
    state = model.forward_train(batch, ctx)
    d_losses = run_phase(model, "dis", batch, state, ctx)
    g_losses = run_phase(model, "gen", batch, state, ctx)
    assert set(d_losses) == {"loss_gan_d", "loss_r1"}
    assert set(g_losses) == set(ALL_LOSSES)
    for name, value in {**d_losses, **g_losses}.items():
        assert value.dim() == 0 and torch.isfinite(value), name


def test_zero_weight_terms_are_skipped(model):
    batch = make_batch()
    ctx = ctx_with(model, iteration=0)  # before 30K: no Eq. 4/5/8/9 or cycle term
    state = model.forward_train(batch, ctx)
    losses = model.phase_losses("gen", batch, state, ctx)
    for name in ("loss_prim", "loss_fine", "loss_id_fine", "loss_recon_f", "loss_recon_s", "loss_recon_x_cyc"):
        assert name not in losses


def test_phases_step_the_right_networks(model):
    batch = make_batch()
    ctx = ctx_with(model)
    state = model.forward_train(batch, ctx)
    run_phase(model, "dis", batch, state, ctx)
    assert grads_of(model.dis) > 0 and grads_of(model.gen) == 0 and grads_of(model.id) == 0
    run_phase(model, "gen", batch, state, ctx)
    assert grads_of(model.dis) == 0 and grads_of(model.gen) > 0 and grads_of(model.id) > 0


@pytest.mark.parametrize(
    "loss, gen_grad, id_grad",
    [
        ("loss_recon_x", True, False),  # appearance codes are detached: generation never trains E_a
        ("loss_id_cross", True, False),  # frozen copy of E_a on x_ba: only the generator learns
        ("loss_recon_f", True, False),
        ("loss_gan_g", True, False),
        ("loss_id", False, True),
        ("loss_prim", False, True),  # generated images are detached for the student
        ("loss_fine", False, True),
    ],
)
def test_gradient_routing_of_each_loss(model, loss, gen_grad, id_grad):
    batch = make_batch()
    ctx = ctx_with(model, {loss: 1.0})
    state = model.forward_train(batch, ctx)
    run_phase(model, "gen", batch, state, ctx)
    assert (grads_of(model.gen) > 0) == gen_grad
    assert (grads_of(model.id) > 0) == id_grad


def test_published_detached_code_reconstruction(teacher_files):
    cfg = tiny_cfg(teacher_files)
    cfg.MODEL.DGNET.DETACH_RECON_CODE = True
    model = build_model(cfg)
    model.train()
    batch = make_batch()
    ctx = ctx_with(model, {"loss_recon_f": 1.0, "loss_recon_x": 1.0})
    state = model.forward_train(batch, ctx)
    losses = model.phase_losses("gen", batch, state, ctx)
    assert not losses["loss_recon_f"].requires_grad  # inert, as in the published code


def test_soft_edges_ignore_brightness_and_carry_gradients():
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 1, 16, 8)
    flat[..., 8:, :] = 1.0  # one horizontal step
    step = soft_edges(flat, scale=0.17)
    assert step.min() >= -0.5 and step.max() <= 0.5
    assert torch.allclose(step[0, 0, 2], torch.full((8,), -0.5), atol=1e-4)  # flat region: no edge
    assert float(step[..., 7:9, 3].min()) > 0.4  # the step saturates
    # how bright a region is does not matter once it stands out from its surroundings
    assert torch.allclose(soft_edges(flat * 2.0, 0.17), step, atol=0.01)
    gray = torch.randn(2, 1, 16, 8, generator=g, requires_grad=True)
    assert torch.allclose(soft_edges(gray + 0.8, 0.17), soft_edges(gray, 0.17), atol=1e-6)
    soft_edges(gray, 0.17).sum().backward()  # differentiable, so Eq. 5 still trains G through E_s
    assert float(gray.grad.abs().sum()) > 0


def test_edge_structure_input(teacher_files):
    cfg = tiny_cfg(teacher_files)
    cfg.MODEL.DGNET.STRUCTURE.INPUT = "edge"
    model = build_model(cfg)
    images = make_batch()["images"]
    model.eval()
    with torch.no_grad():
        s1, s2 = model.encode_structure(images), model.encode_structure(images)
    assert torch.equal(s1, s2)  # no noise at inference
    # a figure on a dark background (trousers 100) in a light (150) and a lighter (230) shirt; E_s's instance
    # norm already removes the affine part of brightness, so the test needs three levels
    light = torch.full((1, 3, H, W), 40.0)
    light[..., 12:32, 8:24] = 150.0
    light[..., 32:56, 10:22] = 100.0
    lighter = light.clone()
    lighter[..., 12:32, 8:24] = 230.0
    gray_model = build_model(tiny_cfg(teacher_files))
    gray_model.load_state_dict(model.state_dict())
    gray_model.eval()
    with torch.no_grad():
        edge_change = (model.encode_structure(lighter) - model.encode_structure(light)).abs().mean()
        gray_change = (gray_model.encode_structure(lighter) - gray_model.encode_structure(light)).abs().mean()
    # same weights: the gray code carries the shirt's brightness, the edge code hardly
    assert edge_change < 0.1 * gray_change
    model.train()
    ctx = ctx_with(model)
    state = model.forward_train(make_batch(), ctx)
    losses = run_phase(model, "gen", make_batch(), state, ctx)
    assert torch.isfinite(losses["loss_recon_s"]) and grads_of(model.gen) > 0
    cfg.MODEL.DGNET.STRUCTURE.INPUT = "canny"
    with pytest.raises(ValueError, match="MODEL.DGNET.STRUCTURE.INPUT must be one of gray, edge"):
        build_model(cfg)


@pytest.mark.parametrize("structure_input", ["gray", "edge"])
def test_generator_learns_to_reconstruct(teacher_files, structure_input):
    cfg = tiny_cfg(teacher_files)
    cfg.MODEL.DGNET.STRUCTURE.INPUT = structure_input
    model = build_model(cfg)
    model.train()
    g = torch.Generator().manual_seed(2)
    # smooth images (a 4x2 colour layout), as a photo is, rather than pixel noise
    small = torch.rand(4, 3, 4, 2, generator=g) * 255
    images = torch.nn.functional.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
    batch = {"images": images, "pos_images": images.flip(-1), "targets": torch.arange(4) % NUM_CLASSES}
    ctx = ctx_with(model, {"loss_recon_x": 1.0})
    opt = torch.optim.Adam(model.gen.parameters(), lr=2e-3)
    history = []
    for _ in range(40):
        state = model.forward_train(batch, ctx)
        opt.zero_grad()
        history.append(run_phase(model, "gen", batch, state, ctx)["loss_recon_x"].item())
        opt.step()
    assert history[-1] < 0.6 * history[0], history


def test_frozen_copy_leaves_running_statistics_alone(model):
    x = torch.randn(4, 3, H, W)
    before = {k: v.clone() for k, v in model.id.state_dict().items()}
    code, logits = model._frozen_id(x)
    assert code.shape == (4, model.id.appearance_dim) and logits.shape == (4, NUM_CLASSES)
    for k, v in model.id.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_batch_is_not_modified_and_needs_positives(model):
    batch = make_batch()
    copy = {k: v.clone() for k, v in batch.items()}
    model.forward_train(batch, ctx_with(model))
    for k in batch:
        assert torch.equal(batch[k], copy[k])
    with pytest.raises(KeyError, match="POSITIVES"):
        model.forward_train({k: v for k, v in batch.items() if k != "pos_images"}, ctx_with(model))


# ----------------------------------------------------------------------------- inference
def test_eval_forward_feature(model):
    model.eval()
    images = make_batch()["images"]
    with torch.no_grad():
        feat = model(images)
        feat_dict = model({"images": images})
    assert feat.shape == (4, 1024)
    assert torch.allclose(feat, feat_dict)
    assert torch.allclose(feat[:, :512].norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(feat[:, 512:].norm(dim=1), torch.full((4,), 0.5), atol=1e-5)
    with torch.no_grad():
        out = model.id(model.normalize(images))
    fine = torch.nn.functional.normalize(out["bottleneck_fine"], dim=1)
    assert torch.allclose(feat[:, 512:], 0.5 * fine, atol=1e-6)


def test_eval_forward_changes_no_state(model):
    model.eval()
    images = make_batch()["images"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = images.clone()
    with torch.no_grad():
        model(images)
    assert torch.equal(images, copy)  # normalised out of place
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_default_predictor_loads_a_checkpoint(model, tmp_path):
    from fastreid.engine.defaults import DefaultPredictor

    model.eval()
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, str(weights))
    cfg = tiny_cfg()
    cfg.MODEL.WEIGHTS = str(weights)
    predictor = DefaultPredictor(cfg)  # no teacher needed for inference
    images = make_batch()["images"]
    with torch.no_grad():
        expected = model(images)
    assert torch.allclose(predictor(images), expected, atol=1e-5)


def test_channels_last_gives_the_same_model(model):
    cfg = tiny_cfg()
    cfg.MODEL.DGNET.CHANNELS_LAST = True
    nhwc = build_model(cfg)
    nhwc.load_state_dict(model.state_dict())
    conv = nhwc.id.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    model.eval()
    nhwc.eval()
    images = make_batch()["images"]
    with torch.no_grad():
        assert torch.allclose(nhwc(images), model(images), atol=1e-4)
        s, a = model.encode_structure(images), model.encode_appearance(images)
        assert torch.allclose(nhwc.decode(s, a), model.decode(s, a), atol=1e-2)  # 0..255 scale


CHECKPOINT_NODES = {"structure": "STRUCTURE", "decoder": "DECODER", "appearance": "APPEARANCE",
                    "discriminator": "DISCRIMINATOR"}


def _train_step_saved_bytes(model: DGNet, batch, ctx) -> Tuple[int, Dict[str, torch.Tensor]]:
    """Run forward_train, the D phase (R1 on) and the generator phase as the engine does; return the bytes of
    activations autograd kept for backward (each storage once, weights excluded) and every gradient."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: Dict[int, torch.Tensor] = {}  # held until the end, so that no address is reused and counted twice

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved[ptr] = t
        return t

    torch.manual_seed(3)  # random erasing and the E_s/G choice of Eq. 5 draw from the global generator
    grads: Dict[str, torch.Tensor] = {}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        state = model.forward_train(batch, ctx)
        for phase in model.phases():
            run_phase(model, phase.name, batch, state, ctx)
            grads.update({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    return sum(t.untyped_storage().nbytes() for t in saved.values()), grads


@pytest.mark.parametrize("parts, max_ratio", [
    (("structure",), 0.97), (("decoder",), 0.85), (("appearance",), 0.8), (("discriminator",), 0.98),
    (tuple(CHECKPOINT_NODES), 0.45),
])
def test_activation_checkpointing_same_step_less_memory(model, teacher_files, parts, max_ratio):
    cfg = tiny_cfg(teacher_files)
    for part in parts:
        cfg.MODEL.DGNET[CHECKPOINT_NODES[part]].CHECKPOINT = True
    recompute = build_model(cfg)
    recompute.load_state_dict(model.state_dict())
    recompute.train()
    batch, ctx = make_batch(), ctx_with(model)  # iteration 50K: every term on, teacher and R1 included
    kept, grads = _train_step_saved_bytes(model, batch, ctx)
    kept_ck, grads_ck = _train_step_saved_bytes(recompute, batch, ctx)
    assert grads.keys() == grads_ck.keys()
    assert {k.split(".")[0] for k in grads} == {"gen", "dis", "id"}
    for k in grads:
        torch.testing.assert_close(grads_ck[k], grads[k], rtol=1e-4, atol=1e-6, msg=k)
    # BatchNorm running statistics moved exactly as without recomputation (once per E_a pass, not twice)
    buffers, buffers_ck = dict(model.named_buffers()), dict(recompute.named_buffers())
    assert any("running_mean" in k for k in buffers)
    for k in buffers:
        torch.testing.assert_close(buffers_ck[k], buffers[k], rtol=1e-5, atol=1e-6, msg=k)
    assert kept_ck < max_ratio * kept, (kept_ck / kept, parts)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_appearance_features_follow_fastreid_resnet(checkpoint):
    # E_a runs its backbone block by block (to checkpoint it); that must be fastreid's ResNet.forward exactly
    from dgnet.appearance_encoder import AppearanceEncoder

    enc = AppearanceEncoder(num_classes=3, depth=18, last_stride=1, checkpoint=checkpoint)
    x = torch.randn(3, 3, H, W, requires_grad=True)
    for train in (True, False):
        enc.train(train)
        with torch.no_grad():
            stats = {k: v.clone() for k, v in enc.backbone.named_buffers()}
            expected = enc.backbone(x)
            reference_stats = {k: v.clone() for k, v in enc.backbone.named_buffers()}
            for k, v in enc.backbone.named_buffers():
                v.copy_(stats[k])
        got = enc.features(x)
        got.sum().backward()
        torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-5)
        for k, v in enc.backbone.named_buffers():  # running statistics moved once, as in fastreid's forward
            torch.testing.assert_close(v, reference_stats[k], msg=k)
    assert x.grad is not None and enc.backbone.conv1.weight.grad is not None


def test_public_methods_shapes(model):
    model.eval()
    images = make_batch()["images"]
    with torch.no_grad():
        a = model.encode_appearance(images)
        s = model.encode_structure(images)
        x = model.decode(s, a)
        d = model.discriminate(images)
    assert a.shape == (4, 512 * 4)
    assert s.shape == (4, 16, H // 4, W // 4)
    assert x.shape == images.shape
    assert [o.shape[0] for o in d] == [4, 4] and d[0].shape[1] == 1
    vis = model.visualize(make_batch())
    assert set(vis) == {"inputs", "self_recon", "cross_id"}
    for v in vis.values():
        assert v.shape == (4, 3, H, W) and v.min() >= 0 and v.max() <= 1


def test_swap_and_interpolation_grids(model, tmp_path):
    model.eval()
    images = make_batch()["images"]
    grid = swap_grid(model, images[:3])
    assert grid.shape == (16, 3, H, W)  # (1 + 3) x (1 + 3)
    assert torch.equal(grid[0], torch.ones(3, H, W))  # blank corner
    # cell (row i, column j) = G(s_j, a_i)
    with torch.no_grad():
        expected = model.decode(model.encode_structure(images[2:3]), model.encode_appearance(images[1:2]))
    assert torch.allclose(grid[(1 + 1) * 4 + 1 + 2], (expected[0] / 255).clamp(0, 1), atol=1e-5)
    interp = interpolation_grid(model, images[:2], images[2:4], steps=5)
    assert interp.shape == (2 * 7, 3, H, W)
    path = save_png(interp, str(tmp_path / "sub" / "interp.png"), nrow=7)
    assert os.path.getsize(path) > 0


# ----------------------------------------------------------------------------- teacher
def test_teacher_missing_is_a_clear_error(tmp_path):
    model = build_model(tiny_cfg(("", str(tmp_path / "missing.pth"))))
    with pytest.raises(FileNotFoundError, match="MODEL.DGNET.TEACHER.CONFIG"):
        model.forward_train(make_batch(), ctx_with(model))
    cfg = tiny_cfg((str(tmp_path / "t.yml"), str(tmp_path / "missing.pth")))
    (tmp_path / "t.yml").write_text("MODEL:\n  META_ARCHITECTURE: Baseline\n")
    with pytest.raises(FileNotFoundError, match="MODEL.DGNET.TEACHER.WEIGHTS.*baseline"):
        build_teacher(cfg, NUM_CLASSES)


def test_teacher_that_does_not_match_is_a_clear_error(teacher_files):
    with pytest.raises(ValueError, match="MODEL.DGNET.TEACHER.WEIGHTS.*identities"):
        build_teacher(tiny_cfg(teacher_files), NUM_CLASSES + 1)


def test_no_teacher_needed_without_eq8(tmp_path):
    cfg = tiny_cfg()
    cfg.MODEL.DGNET.LOSS_WEIGHTS.PRIM = [0.0]
    model = build_model(cfg)
    model.train()
    ctx = ctx_with(model)
    state = model.forward_train(make_batch(), ctx)
    assert "loss_prim" not in model.phase_losses("gen", make_batch(), state, ctx)


def test_teacher_soft_label(teacher_files):
    teacher = build_teacher(tiny_cfg(teacher_files), NUM_CLASSES)
    teacher.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(3, 3, H, W)
    q = teacher.soft_label(x)
    assert q.shape == (3, NUM_CLASSES) and torch.allclose(q.sum(1), torch.ones(3))
    assert torch.allclose(q, teacher.soft_label(x.flip(dims=[3])), atol=1e-6)  # x and its mirror: same label
    # other sizes are resized to the teacher's input size (published scale2)
    assert teacher.soft_label(torch.randn(2, 3, H // 2, W // 2)).shape == (2, NUM_CLASSES)


# ----------------------------------------------------------------------------- augmentation
def test_random_erasing_is_functional():
    x = torch.randn(16, 3, H, W)
    copy = x.clone()
    out, chosen = random_erasing(x, probability=1.0)
    assert torch.equal(x, copy)
    assert chosen.all()
    changed = (out != x).flatten(1).any(dim=1)
    assert changed.all()
    assert (out[out != x] == 0).all()  # filled with 0: the mean colour in normalised space
    same, none = random_erasing(x, probability=0.0)
    assert torch.equal(same, x) and not none.any()
    frac = (out != x).flatten(1).float().mean(1)
    assert (frac > 0.01).all() and (frac < 0.45).all()  # area 2% .. 40%


# ----------------------------------------------------------------------------- swap accuracy
class _CopyStructure:
    """A 'generator' that ignores the appearance code: G(s_j, a_i) = x_j."""

    device = torch.device("cpu")

    def encode_structure(self, images):
        return images

    def encode_appearance(self, images):
        return images.flatten(1)

    def decode(self, structure, appearance):
        return structure


class _CopyAppearance(_CopyStructure):
    """A 'generator' that ignores the structure code: G(s_j, a_i) = x_i (blurred, as generated images are)."""

    def encode_appearance(self, images):
        return images

    def decode(self, structure, appearance):
        return torch.nn.functional.avg_pool2d(appearance, 3, stride=1, padding=1, count_include_pad=False)


def _swap_scores(generator, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    data = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(tmp_path))
    def load(path):
        return torch.from_numpy(np.asarray(read_image(path), dtype=np.float32)).permute(2, 0, 1)

    return swap_accuracy(generator, [item[0] for item in data.gallery], load, num_pairs=60)


def test_swap_accuracy_of_a_generator_that_ignores_appearance(tmp_path, monkeypatch):
    result = _swap_scores(_CopyStructure(), tmp_path, monkeypatch)
    assert result.pairs > 10
    assert result.real > 0.8  # the colour measurement itself works on real images
    assert result.accuracy < 0.3  # x_j wears j's clothes: far below chance (0.5)
    assert result.structure == 1.0  # and has j's structure
    assert "swap accuracy" in str(result) and "structure kept" in str(result)


def test_swap_accuracy_sees_a_generator_that_ignores_structure(tmp_path, monkeypatch):
    result = _swap_scores(_CopyAppearance(), tmp_path, monkeypatch)
    assert result.accuracy > 0.7  # i's colours land on j's torso: colour alone would call this a swap
    assert result.structure < 0.2  # but the layout is i's


def test_generate_tool(model, tmp_path, monkeypatch, capsys):
    import importlib.util

    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "datasets"))
    spec = importlib.util.spec_from_file_location(
        "generate_tool", str(Path(__file__).resolve().parents[3] / "tools" / "generate.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = tiny_cfg()
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.DATASETS.TESTS = ("SyntheticMarketTiny",)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cfg.dump())
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, str(weights))
    common = ["--config-file", str(config_file), "--weights", str(weights)]
    out_dir = str(tmp_path / "out")
    assert tool.main(common + ["--num", "3", "--interp-pairs", "2", "--steps", "3", "--output-dir", out_dir]) == 0
    assert (tmp_path / "out" / "swap_grid.png").stat().st_size > 0
    assert (tmp_path / "out" / "interpolation.png").stat().st_size > 0
    assert tool.main(common + ["--swap-accuracy", "--pairs", "20", "--split", "gallery"]) == 0
    assert "swap accuracy" in capsys.readouterr().out

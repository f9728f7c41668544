"""The GAN engine (fastreid_gan.engine) and its loader, on the toy GAN and toy dataset of tests/toy_gan.py."""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import pytest
import torch
from torch import nn

import fastreid_gan  # noqa: F401  (compat fixes before fastreid)
from fastreid.config import CfgNode, get_cfg
from fastreid.engine.defaults import DefaultPredictor
from fastreid.evaluation.evaluator import DatasetEvaluator
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.utils.checkpoint import Checkpointer
from fastreid.utils.env import seed_all_rng

from fastreid_gan.data import build_gan_train_loader
from fastreid_gan.data.build import SeededInfiniteBatchSampler
from fastreid_gan.data.build import build_test_loader
from fastreid_gan.engine import (
    GANMetaArch,
    GANTrainer,
    LossWeight,
    Phase,
    SimpleGANTrainer,
    StepContext,
    add_gan_engine_config,
    loss_weights_from_config,
    optimizer_node,
)
from fastreid_gan.engine.config import complete_optimizer_nodes
from fastreid_gan.engine.optim import build_optimizer
from fastreid_gan.engine.schedules import IterationLRScheduler, LRFactor, build_lr_scheduler
from toy_gan import EngineToyGAN, add_engine_toy_config, generate_engine_toy_images, toy_optimizers


# ----------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("datasets"))
    generate_engine_toy_images(root)
    return root


@pytest.fixture(autouse=True)
def _datasets_env(toy_root, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", toy_root)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def make_cfg(output_dir, max_iter: int = 30, **toy):
    cfg = get_cfg()
    add_gan_engine_config(cfg)
    add_engine_toy_config(cfg)
    cfg.SEED = 0
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.META_ARCHITECTURE = "EngineToyGAN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.NAMES = ("EngineToyReID",)
    cfg.DATASETS.TESTS = ("EngineToyReID",)
    cfg.INPUT.SIZE_TRAIN = [32, 16]
    cfg.INPUT.SIZE_TEST = [32, 16]
    cfg.INPUT.FLIP.ENABLED = True  # random augmentation: the data stream must be reproduced on resume
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.TEST.IMS_PER_BATCH = 8
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.GAN.MAX_ITER = max_iter
    cfg.SOLVER.GAN.LOG_PERIOD = 0
    cfg.SOLVER.GAN.VIS_PERIOD = 0
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 0
    cfg.SOLVER.GAN.EVAL_PERIOD = 0
    for key, value in toy.items():
        cfg.MODEL.ENGINE_TOY[key] = value
    complete_optimizer_nodes(cfg)  # what merge_config does once the config names its meta-architecture
    return cfg


class TinyReidEvaluator(DatasetEvaluator):
    """Rank-1 by cosine similarity, excluding same-camera matches (no Cython, no faiss)."""

    def __init__(self, num_query: int) -> None:
        self.num_query = num_query
        self.reset()

    def reset(self) -> None:
        self.feats, self.pids, self.camids = [], [], []

    def process(self, inputs, outputs) -> None:
        self.feats.append(outputs.float().cpu())
        self.pids.append(inputs["targets"])
        self.camids.append(inputs["camids"])

    def evaluate(self):
        feats = torch.nn.functional.normalize(torch.cat(self.feats), dim=1)
        pids, camids = torch.cat(self.pids), torch.cat(self.camids)
        q, g = slice(0, self.num_query), slice(self.num_query, None)
        sim = feats[q] @ feats[g].T
        sim[camids[q, None] == camids[None, g]] = -2
        top1 = pids[g][sim.argmax(dim=1)]
        return OrderedDict([("Rank-1", float((top1 == pids[q]).float().mean() * 100)), ("num_query", self.num_query)])


class ToyTrainer(GANTrainer):
    """GANTrainer with a dependency-free evaluator; counts evaluations."""

    evaluations = 0

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        loader, num_query = build_test_loader(cfg, dataset_name)
        return loader, TinyReidEvaluator(num_query)

    @classmethod
    def test(cls, cfg, model):
        cls.evaluations += 1
        return super().test(cfg, model)


def train(cfg, trainer_cls=ToyTrainer, resume: bool = False) -> GANTrainer:
    seed_all_rng(0)  # what the runner does with cfg.SEED before building the trainer
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def snapshot(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def params_changed(before: Dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[name], p) for name, p in module.named_parameters())


def history(trainer: GANTrainer, key: str) -> List[float]:
    return [v for v, _ in trainer.storage.history(key).values()]


# ----------------------------------------------------------------------------- schedules
def _lrs(factor: LRFactor, iterations: List[int], base_lr: float = 1.0) -> List[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = IterationLRScheduler(opt, factor)
    seen = {}
    for it in range(max(iterations) + 1):
        seen[it] = opt.param_groups[0]["lr"]  # the LR used while running iteration `it`
        opt.step()
        sched.step()
    return [seen[i] for i in iterations]


def test_multistep_schedule_values():
    f = LRFactor("multistep", steps=(10, 20), gamma=0.1)
    assert _lrs(f, [0, 9, 10, 19, 20, 30]) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_schedule_values():
    f = LRFactor("multistep", steps=(10,), gamma=0.5, warmup_iters=4, warmup_factor=0.2)
    assert _lrs(f, [0, 1, 2, 3, 4, 10], base_lr=2.0) == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0, 1.0])


def test_linear_decay_schedule_values():
    f = LRFactor("linear", decay_start_iter=6, max_iter=10)
    assert _lrs(f, [0, 6, 7, 8, 9, 10]) == pytest.approx([1, 1, 0.75, 0.5, 0.25, 0.0])
    assert _lrs(LRFactor("constant"), [0, 50]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="DECAY_START_ITER"):
        LRFactor("linear", decay_start_iter=10, max_iter=10)
    with pytest.raises(ValueError, match="Unknown LR schedule"):
        LRFactor("cosine")


def test_scheduler_from_node_and_state_roundtrip():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    node = optimizer_node(name="SGD", base_lr=1.0, sched="multistep", steps=(3,), gamma=0.5)
    sched = build_lr_scheduler(opt, node, max_iter=10)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["last_epoch"] == 4 and state["lr_lambdas"] == [None]
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_lr_scheduler(opt2, node, max_iter=10)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5)
    assert sched2.last_epoch == 5


def test_loss_weight_values():
    const = LossWeight.from_spec([2.5])
    assert const(0) == const(10**6) == 2.5 and const.is_constant
    ramp = LossWeight.from_spec([0.0, 2.0, 10, 4])
    assert [ramp(i) for i in (0, 9, 10, 11, 12, 13, 14, 100)] == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5, 2.0, 2.0])
    step = LossWeight.ramp(1.0, 0.0, 5, 0)
    assert (step(4), step(5)) == (1.0, 0.0)
    with pytest.raises(ValueError, match="start_value, end_value"):
        LossWeight.from_spec([1.0, 2.0])
    ctx = StepContext(iteration=3, weights={"loss_a": 0.0}, device=torch.device("cpu"))
    assert ctx.weight("loss_a") == 0.0 and ctx.weight("loss_undeclared") == 1.0


def test_phase_validation():
    assert Phase("gen", ("gen",), every=2).is_active(0) and not Phase("gen", ("gen",), every=2).is_active(1)
    late = Phase("sia", ("sia",), every=1, start_iter=5)
    assert not late.is_active(4) and late.is_active(5)
    with pytest.raises(TypeError, match="tuple of names"):
        Phase("gen", "gen")
    with pytest.raises(ValueError, match="every"):
        Phase("gen", ("gen",), every=0)


# ----------------------------------------------------------------------------- optimizers
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)
        self.head_bn = nn.BatchNorm1d(2)


def test_adam_betas_from_node():
    opt = build_optimizer(optimizer_node(name="Adam", base_lr=1e-4, betas=(0.0, 0.99), weight_decay=5e-4), _Net())
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["betas"] == (0.0, 0.99)
    assert opt.param_groups[0]["weight_decay"] == 5e-4 and opt.param_groups[0]["lr"] == 1e-4


def test_sgd_nesterov_and_lr_factors_by_prefix():
    net = _Net()
    node = optimizer_node(name="SGD", base_lr=0.02, momentum=0.9, nesterov=True,
                          lr_factors=("backbone=0.1", "head=1.0", "head_bn=0.5"))
    opt = build_optimizer(node, net)
    assert isinstance(opt, torch.optim.SGD)
    groups = {g["prefix"]: g for g in opt.param_groups}
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    assert groups["backbone"]["lr"] == pytest.approx(0.002)
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in net.backbone.parameters()}
    # the longest matching prefix wins: head_bn.* is not in the "head" group
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in net.head.parameters()}
    assert {id(p) for p in groups["head_bn"]["params"]} == {id(p) for p in net.head_bn.parameters()}
    assert groups["head_bn"]["lr"] == pytest.approx(0.01)
    assert "" not in groups  # every parameter matched a prefix: no empty default group


def test_optimizer_node_errors():
    with pytest.raises(ValueError, match="match no trainable parameter"):
        build_optimizer(optimizer_node(lr_factors=("neck=0.1",)), _Net())
    with pytest.raises(ValueError, match="NAME"):
        build_optimizer(optimizer_node(name="Adagrad"), _Net(), key="SOLVER.GAN.OPTIMIZERS.X")
    with pytest.raises(KeyError, match="BETA"):
        build_optimizer({"NAME": "Adam", "BETA": (0.5, 0.9)}, _Net())
    # a partial node (e.g. added by a YAML file) gets the defaults
    opt = build_optimizer({"NAME": "SGD", "BASE_LR": 0.5}, _Net())
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9


def test_missing_optimizer_node_names_the_key(tmp_path, monkeypatch):
    # a method that declares no default for "dis", and a config without the node
    monkeypatch.setattr(EngineToyGAN, "default_optimizers",
                        classmethod(lambda cls: {k: v for k, v in toy_optimizers().items() if k != "dis"}))
    cfg = make_cfg(tmp_path)
    assert "DIS" not in cfg.SOLVER.GAN.OPTIMIZERS and "GEN" in cfg.SOLVER.GAN.OPTIMIZERS
    with pytest.raises(KeyError, match=r"SOLVER\.GAN\.OPTIMIZERS\.DIS"):
        ToyTrainer(cfg)


def test_optimizer_node_of_no_sub_network_is_an_error(tmp_path):
    cfg = make_cfg(tmp_path)
    cfg.SOLVER.GAN.OPTIMIZERS.GENN = optimizer_node()
    with pytest.raises(ValueError, match=r"GENN.*\['dis', 'gen', 'id'\]"):
        ToyTrainer(cfg)


def test_partial_optimizer_nodes_train(tmp_path, monkeypatch):
    """Nodes that list only some keys and that no method default completes: the optimizer, the LR schedule
    and clipping all read the completed node (the defaults of optimizer_node for the missing keys)."""
    monkeypatch.setattr(EngineToyGAN, "default_optimizers", classmethod(lambda cls: {}))
    cfg = make_cfg(tmp_path, max_iter=6)
    cfg.SOLVER.GAN.OPTIMIZERS = CfgNode(new_allowed=True)
    cfg.SOLVER.GAN.OPTIMIZERS.GEN = CfgNode({"NAME": "Adam", "BASE_LR": 1e-3})
    cfg.SOLVER.GAN.OPTIMIZERS.DIS = CfgNode({"NAME": "SGD", "BASE_LR": 0.01, "SCHED": "multistep", "STEPS": (3,)})
    cfg.SOLVER.GAN.OPTIMIZERS.ID = CfgNode({"BASE_LR": 0.02, "GRAD_CLIP": 0.5})
    trainer = ToyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = {net: snapshot(m) for net, m in trainer.sub_nets.items()}
    trainer.train()
    for net, module in trainer.sub_nets.items():
        assert params_changed(initial[net], module), f"{net} did not train"
    gen, dis, ident = (trainer.optimizers[n].param_groups[0] for n in ("gen", "dis", "id"))
    assert gen["lr"] == pytest.approx(1e-3) and gen["betas"] == (0.5, 0.999)  # constant schedule, default betas
    assert isinstance(trainer.optimizers["dis"], torch.optim.SGD) and dis["momentum"] == 0.9
    assert dis["lr"] == pytest.approx(0.001)  # multistep: x0.1 from iteration 3
    assert isinstance(trainer.optimizers["id"], torch.optim.Adam) and ident["lr"] == pytest.approx(0.02)
    assert trainer.grad_clip == {"gen": 0.0, "dis": 0.0, "id": 0.5}


def test_one_iteration_run_and_no_iteration_is_an_error(tmp_path):
    cfg = make_cfg(tmp_path / "one", max_iter=1)
    cfg.SOLVER.GAN.LOG_PERIOD = 1
    trainer = train(cfg)
    assert trainer.iter == 1 and (tmp_path / "one" / "model_final.pth").is_file()
    assert 0 <= trainer.final_results["EngineToyReID"]["Rank-1"] <= 100
    for max_iter in (0, -5):
        with pytest.raises(ValueError, match=f"SOLVER.GAN.MAX_ITER is {max_iter}"):
            ToyTrainer(make_cfg(tmp_path / "none", max_iter=max_iter))
    assert not (tmp_path / "none" / "model_final.pth").exists()


def test_simple_trainer_runs_without_a_config():
    """The config-free step: a model, a plain iterable of batches and optimizers are enough."""
    torch.manual_seed(0)
    model = EngineToyGAN(feat_dim=8, num_classes=3, pixel_mean=[0.0] * 3, pixel_std=[255.0] * 3,
                         phases=["dis", "gen"], gen_every=1, nan_iter=-1,
                         loss_weights=loss_weights_from_config({"RECON": [5.0], "GAN": [0.0, 1.0, 2, 2]}))
    assert set(model.loss_weights()) == {"loss_recon", "loss_gan"}
    batches = [{"images": torch.rand(4, 3, 16, 8) * 255, "targets": torch.tensor([0, 1, 2, 0])} for _ in range(6)]
    optimizers = {net: torch.optim.Adam(m.parameters(), lr=1e-2) for net, m in model.sub_networks().items()}
    initial = {net: snapshot(m) for net, m in model.sub_networks().items()}
    trainer = SimpleGANTrainer(model, batches, optimizers)
    trainer.train(0, 6)
    assert trainer.iter == 6
    for net, module in model.sub_networks().items():
        assert params_changed(initial[net], module), f"{net} did not train"
    recon = history(trainer, "gen/loss_recon")
    assert len(recon) == 6 and recon[-1] < recon[0]
    assert history(trainer, "weight_gan") == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="unknown sub-network"):
        SimpleGANTrainer(model, batches, {"encoder": optimizers["gen"]})


@META_ARCH_REGISTRY.register()
class EngineTestPlainNet(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


def test_non_gan_meta_arch_is_a_type_error(tmp_path):
    cfg = make_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE = "EngineTestPlainNet"
    with pytest.raises(TypeError, match="EngineTestPlainNet"):
        ToyTrainer(cfg)


# ----------------------------------------------------------------------------- data
def test_train_loader_positives_no_erasing_and_seeded_stream(tmp_path):
    cfg = make_cfg(tmp_path)
    cfg.DATALOADER.POSITIVES = True
    cfg.INPUT.REA.ENABLED = True
    cfg.INPUT.REA.PROB = 1.0
    loader = build_gan_train_loader(cfg)
    transform_names = [type(t).__name__ for t in loader.dataset.dataset.transform.transforms]
    assert "RandomErasing" not in transform_names
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 32, 16) and batch["images"].max() > 1.0  # 0..255 floats
    assert set(batch) >= {"images", "targets", "camids", "img_paths", "pos_images", "pos_targets"}
    assert torch.equal(batch["pos_targets"], batch["targets"])
    assert not torch.equal(batch["pos_images"], batch["images"])  # another image of the same person
    # the stream is a pure function of (seed, batch index): a fresh loader started at batch 2 agrees
    it = iter(loader)
    batches = [next(it) for _ in range(3)]
    loader.batch_sampler.start_batch = 2
    assert torch.equal(next(iter(loader))["images"], batches[2]["images"])
    # ranks of a 2-process run get different samples
    rank0 = SeededInfiniteBatchSampler(24, 4, seed=0, rank=0, world_size=2).keys(0)
    rank1 = SeededInfiniteBatchSampler(24, 4, seed=0, rank=1, world_size=2).keys(0)
    assert not {k[0] for k in rank0} & {k[0] for k in rank1}


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_root):
    """One 30-iteration run with every periodic hook on."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTREID_DATASETS", toy_root)
    out = tmp_path_factory.mktemp("trained")
    cfg = make_cfg(out, max_iter=30)
    cfg.SOLVER.GAN.LOG_PERIOD = 10
    cfg.SOLVER.GAN.VIS_PERIOD = 15
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 10
    seed_all_rng(0)
    ToyTrainer.evaluations = 0
    trainer = ToyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = {net: snapshot(m) for net, m in trainer.sub_nets.items()}
    results = trainer.train()
    yield trainer, initial, results, out
    mp.undo()


def test_training_changes_every_network_and_lowers_losses(trained):
    trainer, initial, _, _ = trained
    for net, module in trainer.sub_nets.items():
        assert params_changed(initial[net], module), f"{net} did not train"
    for key in ("gen/loss_recon", "dis/loss_dis", "gen/total_loss"):
        values = history(trainer, key)
        assert len(values) == 30
        assert np.mean(values[-5:]) < np.mean(values[:5]), key
    # loss_gan has weight 0 up to iteration 4 (ramp start): not computed nor logged there, then ramped in
    gan_iters = [it for _, it in trainer.storage.history("gen/loss_gan").values()]
    assert gan_iters[0] == 5
    assert history(trainer, "weight_gan")[:6] == pytest.approx([0, 0, 0, 0, 0, 0.125])


def test_final_eval_metrics_json_images_and_writers(trained):
    trainer, _, results, out = trained
    assert ToyTrainer.evaluations == 1  # EVAL_PERIOD 0: the final evaluation only
    assert list(results) == ["EngineToyReID"] and "Rank-1" in results["EngineToyReID"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"EngineToyReID": pytest.approx(dict(results["EngineToyReID"]))}
    pngs = sorted(os.listdir(out / "images"))
    assert pngs == ["iter_0000015.png", "iter_0000030.png"]
    from PIL import Image

    grid = Image.open(out / "images" / pngs[0])
    assert grid.size[0] > grid.size[1] > 32  # two rows ("real", "fake") of 4 images
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out))
    events = [json.loads(line) for line in (out / "events.json").read_text().splitlines()]
    assert any("gen/loss_recon" in e and "lr_gen" in e for e in events)


def test_checkpoint_layout_and_fastreid_loaders(trained, tmp_path):
    trainer, _, _, out = trained
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert {"model_0000009.pth", "model_0000019.pth", "model_final.pth"} <= set(os.listdir(out))
    path = str(out / "model_final.pth")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and numbers only
    assert set(ckpt) >= {"model", "optimizers", "schedulers", "scalers", "iteration"}
    assert ckpt["iteration"] == 29
    assert set(ckpt["optimizers"]) == {"gen", "dis", "id"} == set(ckpt["schedulers"])
    assert set(ckpt["scalers"]) == {"dis", "gen"}
    assert {k.split(".")[0] for k in ckpt["model"]} == {"gen", "dis", "id_net"}

    # fastreid's Checkpointer loads the "model" entry into a fresh meta-arch
    cfg = trainer.cfg.clone()
    fresh = EngineToyGAN(cfg)
    extra = Checkpointer(fresh).load(path)
    assert "optimizers" in extra
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

    # and so does DefaultPredictor (features equal to the trained model's in eval mode)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = path
    predictor = DefaultPredictor(cfg)
    images = torch.rand(2, 3, 32, 16) * 255
    trainer.model.eval()
    try:
        with torch.no_grad():
            expected = trainer.model(images)
    finally:
        trainer.model.train()
    assert torch.allclose(predictor(images), expected)


class RecordingToyGAN(EngineToyGAN):
    """Records, per call, which sub-networks require grad (into a module-level list, not on self)."""

    def _flags(self) -> Dict[str, bool]:
        return {n: any(p.requires_grad for p in m.parameters()) for n, m in self.sub_networks().items()}

    def forward_train(self, batch, ctx):
        RECORDS.append(("forward_train", ctx.iteration, self._flags()))
        return super().forward_train(batch, ctx)

    def phase_losses(self, phase, batch, state, ctx):
        RECORDS.append((phase, ctx.iteration, self._flags()))
        return super().phase_losses(phase, batch, state, ctx)


RECORDS: List[tuple] = []
META_ARCH_REGISTRY.register(RecordingToyGAN)


def test_requires_grad_toggled_per_phase(tmp_path):
    RECORDS.clear()
    cfg = make_cfg(tmp_path, max_iter=2)
    cfg.MODEL.META_ARCHITECTURE = "RecordingToyGAN"
    trainer = train(cfg)
    assert RECORDS[:3] == [
        ("forward_train", 0, {"gen": True, "dis": True, "id": True}),
        ("dis", 0, {"gen": False, "dis": True, "id": False}),
        ("gen", 0, {"gen": True, "dis": False, "id": True}),
    ]
    # after training every trainable parameter requires grad again
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_dis_phase_does_not_change_other_networks(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=5, PHASES=["dis"])
    seed_all_rng(0)
    trainer = ToyTrainer(cfg)
    before = {net: snapshot(m) for net, m in trainer.sub_nets.items()}
    trainer.train()
    assert params_changed(before["dis"], trainer.sub_nets["dis"])
    for net in ("gen", "id"):
        for name, p in trainer.sub_nets[net].named_parameters():
            assert torch.equal(before[net][name], p), f"{net}.{name} changed in the dis phase"


def test_phase_every_two_iterations(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=7, GEN_EVERY=2)
    trainer = train(cfg)
    assert [it for _, it in trainer.storage.history("gen/loss_recon").values()] == [0, 2, 4, 6]
    assert [it for _, it in trainer.storage.history("dis/loss_dis").values()] == list(range(7))
    # LR schedules still count every iteration
    assert trainer.schedulers["gen"].last_epoch == 7


class Interrupt(Exception):
    """Raised by :func:`interrupted_at`'s trainer: a run that stops without finishing."""


def interrupted_at(iteration: int) -> type:
    """A ToyTrainer class whose run stops (raises :class:`Interrupt`) before ``iteration``."""
    from fastreid.engine.hooks import CallbackHook

    class InterruptedTrainer(ToyTrainer):
        def build_hooks(self):
            def stop(trainer):
                if trainer.iter == iteration:
                    raise Interrupt()

            return super().build_hooks() + [CallbackHook(before_step=stop)]

    return InterruptedTrainer


def test_exact_resume(tmp_path):
    straight = train(make_cfg(tmp_path / "straight", max_iter=10))

    cfg = make_cfg(tmp_path / "resumed", max_iter=10)
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 5
    with pytest.raises(Interrupt):
        train(cfg, interrupted_at(5))
    assert not (tmp_path / "resumed" / "metrics.json").exists()  # no final evaluation after a crash
    resumed_cfg = cfg.clone()
    resumed_cfg.DATALOADER.NUM_WORKERS = 1  # the stream does not depend on worker processes
    torch.manual_seed(1234)  # whatever the RNGs hold before resuming is overwritten by the checkpoint's
    np.random.seed(1234)
    resumed = train(resumed_cfg, resume=True)
    assert resumed.start_iter == 5
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    for net, opt in straight.optimizers.items():
        ref = opt.state_dict()["state"]
        got = resumed.optimizers[net].state_dict()["state"]
        for idx in ref:
            for k in ref[idx]:
                assert torch.equal(torch.as_tensor(ref[idx][k]), torch.as_tensor(got[idx][k])), (net, idx, k)
    assert history(resumed, "gen/loss_recon") == history(straight, "gen/loss_recon")[5:]


def test_resume_past_a_truncated_last_checkpoint_is_exact(tmp_path, caplog):
    """The last checkpoint was cut off (a full disk, a copy interrupted): --resume says so, continues from the
    newest complete one, and still ends with the uninterrupted run's weights."""
    import logging

    straight = train(make_cfg(tmp_path / "straight", max_iter=8))

    cfg = make_cfg(tmp_path / "resumed", max_iter=8)
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 1
    with pytest.raises(Interrupt):
        train(cfg, interrupted_at(6))
    out = tmp_path / "resumed"
    last = out / (out / "last_checkpoint").read_text()
    assert last.name == "model_0000005.pth"
    last.write_bytes(last.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="fastreid_gan"):
        resumed = train(cfg, resume=True)
    assert resumed.start_iter == 5  # from model_0000004.pth
    assert "model_0000005.pth" in caplog.text and "model_0000004.pth" in caplog.text
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_nan_loss_stops_training_with_its_name(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=10, NAN_ITER=3)
    with pytest.raises(FloatingPointError, match=r"'loss_recon'.*iteration 3"):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_amp_is_off_on_cpu_with_an_info_log(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=1)
    cfg.SOLVER.AMP.ENABLED = True
    records: List[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    engine_logger = logging.getLogger("fastreid_gan.engine.gan_trainer")
    engine_logger.addHandler(handler)
    try:
        trainer = train(cfg)
    finally:
        engine_logger.removeHandler(handler)
    assert trainer.amp_dtype is None
    assert not any(s.is_enabled() for s in trainer.scalers.values())
    assert any("CUDA-only" in r.getMessage() and r.levelno == logging.INFO for r in records)


def test_eval_period_counts_iterations(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=10)
    cfg.SOLVER.GAN.EVAL_PERIOD = 4
    cfg.SOLVER.GAN.VIS_PERIOD = 3
    ToyTrainer.evaluations = 0
    trainer = train(cfg)
    assert ToyTrainer.evaluations == 3  # after iterations 4 and 8, and the final one
    assert "EngineToyReID/Rank-1" in trainer.storage.latest()
    # evaluations and image grids never change training
    quiet = train(make_cfg(tmp_path / "quiet", max_iter=10))
    for key, value in quiet.model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key


def test_gan_meta_arch_defaults():
    class Bare(GANMetaArch):
        pass

    bare = Bare()
    assert bare.loss_weights() == {} and bare.visualize({}) == {} and Bare.default_optimizers() == {}
    assert bare.device == torch.device("cpu")
    with pytest.raises(NotImplementedError):
        bare.sub_networks()


def test_grad_clip_per_optimizer(tmp_path, monkeypatch):
    calls = []
    original = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        original(params, max_norm, *args, **kwargs)
        norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        calls.append((len(params), max_norm, float(norm)))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    cfg = make_cfg(tmp_path, max_iter=3)
    cfg.SOLVER.GAN.OPTIMIZERS.GEN.GRAD_CLIP = 1e-3
    trainer = train(cfg)
    n_gen = len(list(trainer.sub_nets["gen"].parameters()))
    assert [(n, m) for n, m, _ in calls] == [(n_gen, 1e-3)] * 3  # only gen's optimizer clips, every iteration
    assert all(norm <= 1e-3 * 1.01 for _, _, norm in calls)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision is CUDA-only")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(tmp_path, dtype):
    cfg = make_cfg(tmp_path, max_iter=6)
    cfg.MODEL.DEVICE = "cuda"
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = dtype
    cfg.SOLVER.GAN.OPTIMIZERS.GEN.GRAD_CLIP = 10.0
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 3
    seed_all_rng(0)
    trainer = ToyTrainer(cfg)
    before = {net: snapshot(m) for net, m in trainer.sub_nets.items()}
    trainer.train()
    assert trainer.amp_dtype == (torch.float16 if dtype == "fp16" else torch.bfloat16)
    assert all(s.is_enabled() == (dtype == "fp16") for s in trainer.scalers.values())
    for net, module in trainer.sub_nets.items():
        assert params_changed(before[net], module), net
    ckpt = torch.load(str(tmp_path / "model_final.pth"), map_location="cpu", weights_only=True)
    assert set(ckpt["scalers"]) == {"dis", "gen"}


def _add_path_length(sample, rng):
    sample["path_length"] = len(sample["img_paths"])
    sample["draw"] = rng.random()  # seeded per sample: identical for identical streams


@META_ARCH_REGISTRY.register()
class HookedLoaderToyGAN(EngineToyGAN):
    @classmethod
    def build_train_loader(cls, cfg):
        return build_gan_train_loader(cfg, sample_hook=_add_path_length)

    def forward_train(self, batch, ctx):
        assert torch.equal(batch["path_length"], torch.tensor([len(p) for p in batch["img_paths"]]))
        return super().forward_train(batch, ctx)


def test_meta_arch_builds_its_loader_with_a_sample_hook(tmp_path):
    cfg = make_cfg(tmp_path, max_iter=2)
    cfg.MODEL.META_ARCHITECTURE = "HookedLoaderToyGAN"
    cfg.DATALOADER.POSITIVES = True
    trainer = train(cfg)
    batch = trainer.last_batch
    assert batch["draw"].dtype == torch.float64 and batch["draw"].shape == (4,)
    assert len(batch["pos_img_paths"]) == 4 and batch["pos_img_paths"] != batch["img_paths"]

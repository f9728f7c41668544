"""eSPGAN training at CPU size (``configs/espgan_synthetic.yml`` shrunk further: SyntheticDukeTiny ->
SyntheticMarketTiny, 4-filter translators, ResNet-18 feature learner, batch 2): the two stages and the recipe,
the published schedule, what each phase trains and freezes, the feature learner's guidance of G (Eq. 9-10), the
naive ablation, the fresh source stream, exact resume, LMP on the feature learner, and one full-size iteration."""
import argparse
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model
from fastreid_gan.checkpointer import RunCheckpointer
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANTrainer, StepContext
from fastreid_gan.layers import local_pool
from fastreid_gan.runner import main
from spgan.data import build_two_domain_loader

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", "('SyntheticDukeTiny',)", "DATASETS.TESTS", "()",
        "MODEL.SPGAN.TARGET_DATASET", "SyntheticMarketTiny", "MODEL.SPGAN.GENERATOR.NGF", "4",
        "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1", "MODEL.SPGAN.DISCRIMINATOR.NDF", "4",
        "MODEL.SPGAN.FEATURE_LEARNER.BOTTLENECK_DIM", "16", "MODEL.SPGAN.POOL_SIZE", "3", "SOLVER.IMS_PER_BATCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "3", "SOLVER.GAN.LOG_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0",
        "SOLVER.GAN.CHECKPOINT_PERIOD", "0", "SOLVER.GAN.MAX_ITER", "4"]
GANS = ("gen_st", "gen_ts", "dis_s", "dis_t")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _cfg(tmp_path, *opts, stage="joint"):
    return merge_config(get_cfg(), str(CONFIGS / "espgan_synthetic.yml"),
                        TINY + ["MODEL.SPGAN.ESPGAN.STAGE", stage, "OUTPUT_DIR", str(tmp_path)] + list(opts))


def _trainer(tmp_path, *opts, stage="joint", resume=False):
    if not resume:
        torch.manual_seed(0)  # as the runner seeds a run (SEED): the same initial weights
    trainer = GANTrainer(_cfg(tmp_path, *opts, stage=stage))
    trainer.resume_or_load(resume=resume)
    return trainer


def _iterations(trainer, key):
    return [int(it) for _, it in trainer.storage.history(key).values()] if key in trainer.storage.histories() else []


def _changed(before, after, prefix):
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A feature learner pre-trained for 6 iterations (the joint stage's MODEL.WEIGHTS), made once per module in
    the session's datasets folder (conftest's ``datasets_root``, which is per test)."""
    import fastreid.data.build as data_build

    root = tmp_path_factory.getbasetemp() / "datasets"
    root.mkdir(exist_ok=True)
    old_env, old_root = os.environ.get("FASTREID_DATASETS"), data_build._root
    os.environ["FASTREID_DATASETS"], data_build._root = str(root), str(root)
    try:
        out = tmp_path_factory.mktemp("espgan_pretrain")
        _trainer(out, "SOLVER.GAN.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "4", stage="pretrain").train()
    finally:
        data_build._root = old_root
        if old_env is None:
            os.environ.pop("FASTREID_DATASETS", None)
        else:
            os.environ["FASTREID_DATASETS"] = old_env
    return out / "model_final.pth"


# ------------------------------------------------------------------------------------------------ stages
def test_pretraining_trains_the_feature_learner_alone_in_the_translators_normalisation(datasets_root, tmp_path):
    trainer = _trainer(tmp_path, "SOLVER.GAN.MAX_ITER", "12", "SOLVER.IMS_PER_BATCH", "8",
                       "SOLVER.GAN.OPTIMIZERS.IDE.BASE_LR", "0.01", stage="pretrain")
    model = trainer.model
    assert [(p.name, p.networks) for p in model.phases()] == [("ide", ("ide",))]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    after = model.state_dict()
    assert _changed(before, after, "ide.backbone.") and _changed(before, after, "ide.classifier.")
    assert not any(_changed(before, after, net + ".") for net in GANS)
    # IDE+: the backbone's BatchNorm statistics are frozen, the bottleneck's follow the data
    stats = [k for k in before if k.startswith("ide.backbone.") and k.endswith("running_mean")]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["ide.bottleneck.1.running_mean"], after["ide.bottleneck.1.running_mean"])
    values = [v for v, _ in trainer.storage.history("ide/loss_feature_learner").values()]
    assert len(values) == 12 and sum(values[-4:]) < sum(values[:4]), values
    # the network sees mean 0.5 / std 0.5 images, as the translators' outputs: 0..255 -> [-1, 1]
    assert float(model.normalize(torch.full((1, 3, 2, 2), 255.0)).max()) == 1.0


def test_joint_schedule_and_what_each_phase_trains(datasets_root, tmp_path, pretrained):
    trainer = _trainer(tmp_path, "SOLVER.GAN.MAX_ITER", "1", "MODEL.WEIGHTS", str(pretrained))
    model = trainer.model
    assert [(p.name, p.networks, p.every) for p in model.phases()] == [
        ("gen", ("gen_st", "gen_ts"), 3), ("ide", ("ide",), 1), ("dis", ("dis_s", "dis_t"), 1)]
    start = torch.load(pretrained, map_location="cpu", weights_only=True)["model"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in start.items() if k.startswith("ide."))  # starts pretrained
    trainer.train()
    after_first = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(_changed(start, after_first, net + ".") for net in GANS + ("ide",))  # iteration 0: every phase

    again = _trainer(tmp_path / "seven", "SOLVER.GAN.MAX_ITER", "7", "MODEL.WEIGHTS", str(pretrained))
    again.train()
    assert _iterations(again, "gen/loss_ide") == _iterations(again, "gen/loss_cycle") == [0, 3, 6]
    assert _iterations(again, "ide/loss_feature_learner") == list(range(7))
    assert _iterations(again, "dis/loss_dis_t") == list(range(7))
    assert "gen/loss_contrastive" not in again.storage.histories()  # no SiaNet in eSPGAN
    assert len(again.model.pool_t) == 3


def test_the_feature_learner_guides_G_and_judges_in_eval_mode(datasets_root, tmp_path, pretrained):
    trainer = _trainer(tmp_path, "MODEL.WEIGHTS", str(pretrained))
    model = trainer.model.train()
    batch = next(iter(trainer.data_loader))
    ctx = StepContext(iteration=0, weights={"loss_identity": 5.0, "loss_ide": 5.0}, device=torch.device("cpu"),
                      active_phases=("gen",), max_iter=1)
    for p in model.ide.parameters():
        p.requires_grad_(False)  # as the engine holds C during G's phase
    state = model.forward_train(batch, ctx)
    first = model.phase_losses("gen", batch, state, ctx)
    second = model.phase_losses("gen", batch, state, ctx)
    # eval mode: no dropout, running statistics, so the same translations get the same cross-entropy
    assert torch.equal(first["loss_ide"], second["loss_ide"])
    assert model.ide.training and not model.ide.backbone.bn1.training  # restored, the backbone BN still frozen
    with torch.no_grad():
        model.ide.eval()
        rec = model.gen_ts(state["fake_t"])
        expected = F.cross_entropy(model.ide(torch.cat([state["fake_t"], rec])), state["targets"].repeat(2))
        model.train()
    assert torch.allclose(first["loss_ide"], expected, atol=1e-6)  # on G(x_s) and F(G(x_s)), as published
    first["loss_ide"].backward()  # Eq. 9's gradient reaches the translators through C's input pixels
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gen_st.head.parameters())
    assert all(p.grad is None for p in model.ide.parameters())


def test_ce_on_translations_only_is_eq_9(datasets_root, tmp_path, pretrained):
    trainer = _trainer(tmp_path, "MODEL.WEIGHTS", str(pretrained), "MODEL.SPGAN.ESPGAN.CE_ON_RECONSTRUCTION", "False")
    model = trainer.model.train()
    batch = next(iter(trainer.data_loader))
    ctx = StepContext(iteration=0, weights={"loss_ide": 5.0, "loss_identity": 0.0}, device=torch.device("cpu"),
                      active_phases=("gen",), max_iter=1)
    with torch.no_grad():
        state = model.forward_train(batch, ctx)
        losses = model.phase_losses("gen", batch, state, ctx)
        model.ide.eval()
        expected = F.cross_entropy(model.ide(state["fake_t"]), state["targets"])
    assert torch.allclose(losses["loss_ide"], expected, atol=1e-6) and "loss_identity" not in losses


def test_the_feature_learner_step_takes_a_fresh_source_batch(datasets_root, tmp_path):
    cfg = _cfg(tmp_path)
    loader = build_two_domain_loader(cfg, fresh_source=True)
    batches = [b for _, b in zip(range(3), loader)]
    for b in batches:
        assert b["fresh_images"].shape == b["images"].shape and b["fresh_targets"].shape == b["targets"].shape
        assert all("synthetic-duke-tiny" in p for p in b["fresh_img_paths"])
    # an independent stream: not the iteration's own source images
    assert any(b["fresh_img_paths"] != b["img_paths"] for b in batches)
    keys = [k for b in range(20) for k in loader.batch_sampler.keys(b)]
    assert all(len(k) == 4 for k in keys) and any(k[0] != k[3] for k in keys)
    # the first three entries are SPGAN's stream, unchanged
    plain = build_two_domain_loader(cfg)
    assert [k[:3] for k in keys] == [k for b in range(20) for k in plain.batch_sampler.keys(b)]
    again = next(iter(build_two_domain_loader(cfg, fresh_source=True)))
    assert torch.equal(again["fresh_images"], batches[0]["fresh_images"])  # deterministic per seed


def test_naive_espgan_keeps_the_feature_learner_frozen(datasets_root, tmp_path, pretrained):
    trainer = _trainer(tmp_path, "SOLVER.GAN.MAX_ITER", "2", "MODEL.WEIGHTS", str(pretrained),
                       "MODEL.SPGAN.ESPGAN.TRAIN_FEATURE_LEARNER", "False")
    assert [p.name for p in trainer.model.phases()] == ["gen", "dis"]
    assert "fresh_images" not in next(iter(trainer.data_loader))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert not _changed(before, after, "ide.")  # parameters and statistics alike
    assert _changed(before, after, "gen_st.") and "gen/loss_ide" in trainer.storage.histories()


def test_joint_stage_without_weights_and_a_recipe_stage_are_refused(datasets_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="pre-trained on the source .* MODEL.WEIGHTS is empty"):
        _trainer(tmp_path)
    model = build_model(_cfg(tmp_path, "MODEL.HEADS.NUM_CLASSES", "3", stage="recipe"))
    with pytest.raises(ValueError, match="STAGE is 'recipe'.*set MODEL.SPGAN.ESPGAN.STAGE to pretrain or joint"):
        model.phases()
    with pytest.raises(ValueError, match="STAGE must be one of"):
        build_model(_cfg(tmp_path, "MODEL.HEADS.NUM_CLASSES", "3", stage="finetune"))


# ------------------------------------------------------------------------------------------------ resume, recipe
def test_joint_resume_is_exact(datasets_root, tmp_path, pretrained):
    opts = ["MODEL.WEIGHTS", str(pretrained)]
    straight = _trainer(tmp_path / "straight", *opts)
    straight.train()
    expected = straight.model.state_dict()
    _trainer(tmp_path / "resumed", *opts, "SOLVER.GAN.MAX_ITER", "2").train()
    torch.manual_seed(999)  # whatever the RNGs hold before resuming must not matter
    resumed = _trainer(tmp_path / "resumed", *opts, resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_the_recipe_runs_both_stages_in_order(datasets_root, tmp_path):
    out = tmp_path / "recipe"
    opts = TINY + ["SOLVER.GAN.MAX_ITER", "2", "OUTPUT_DIR", str(out)]
    main(argparse.Namespace(config_file=str(CONFIGS / "espgan_synthetic.yml"), opts=opts, eval_only=False,
                            resume=False, num_gpus=1))
    assert set(json.loads((out / "stages.json").read_text())["done"]) == {"pretrain", "joint"}
    pre = torch.load(out / "pretrain" / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    joint = torch.load(out / "joint" / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert _changed(pre, joint, "ide.") and _changed(pre, joint, "gen_st.")
    joint_cfg = (out / "joint" / "config.yaml").read_text()
    assert str(out / "pretrain" / "model_final.pth") in joint_cfg and "STAGE: joint" in joint_cfg


# ------------------------------------------------------------------------------------------------ inference
def test_the_feature_learner_is_the_eval_model_with_and_without_lmp(tmp_path):
    off = build_model(_cfg(tmp_path, "MODEL.HEADS.NUM_CLASSES", "3")).eval()
    on = build_model(_cfg(tmp_path, "MODEL.HEADS.NUM_CLASSES", "3", "TEST.LMP.ENABLED", "True")).eval()
    on.load_state_dict(off.state_dict())
    images = torch.rand(3, 3, 64, 32) * 255
    with torch.no_grad():
        feat = off({"images": images})
        assert feat.shape == (3, 512) and torch.equal(feat, off.identify(images)["pool"])
        fmap = off.reid_feature_map(images)
        assert fmap.shape == (3, 512, 4, 2) and torch.allclose(fmap.mean(dim=(2, 3)), feat, atol=1e-6)
        expected = F.normalize(local_pool(fmap, 4) + local_pool(off.reid_feature_map(images.flip(3)), 4), dim=1)
        assert torch.allclose(on(images), expected, atol=1e-6) and on(images).shape == (3, 512 * 4)
    weights = tmp_path / "w.pth"
    RunCheckpointer(off, str(tmp_path), meta_architecture="ESPGAN").save("w")
    from fastreid.utils.checkpoint import Checkpointer  # DefaultPredictor's loader reads it as it is

    plain = build_model(_cfg(tmp_path, "MODEL.HEADS.NUM_CLASSES", "3")).eval()
    Checkpointer(plain).load(str(weights))
    with torch.no_grad():
        assert torch.equal(plain(images), feat)


# ------------------------------------------------------------------------------------------------ full size
@pytest.mark.timeout(400)
def test_one_full_size_joint_iteration(datasets_root, tmp_path, cpu_share):
    """espgan_market2duke.yml as published (9-block generators, 64-wide PatchGANs, ResNet-50 feature learner,
    256x128), random init, batch 1, one joint iteration with every phase, through tools/train_net.py's code."""
    out = tmp_path / "full"
    base = ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", "('SyntheticDukeTiny',)", "MODEL.SPGAN.TARGET_DATASET",
            "SyntheticMarketTiny", "DATASETS.TESTS", "()", "DATALOADER.NUM_WORKERS", "0", "SEED", "0"]
    cfg = merge_config(get_cfg(), str(CONFIGS / "espgan_market2duke.yml"), base + ["MODEL.HEADS.NUM_CLASSES", "6"])
    start = tmp_path / "start"
    RunCheckpointer(build_model(cfg), str(start), meta_architecture="ESPGAN").save("model_final")
    opts = base + ["SOLVER.IMS_PER_BATCH", "1", "SOLVER.GAN.MAX_ITER", "1", "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
                   "SOLVER.GAN.VIS_PERIOD", "0", "SOLVER.GAN.LOG_PERIOD", "1", "SOLVER.GAN.RUN_STAGES", "(2,)",
                   "MODEL.WEIGHTS", str(start / "model_final.pth"), "OUTPUT_DIR", str(out)]
    torch.set_num_threads(cpu_share)  # conftest.py: 2 cores, or this xdist worker's share
    main(argparse.Namespace(config_file=str(CONFIGS / "espgan_market2duke.yml"), opts=opts, eval_only=False,
                            resume=False, num_gpus=1))
    events = [json.loads(line) for line in (out / "joint" / "events.json").read_text().splitlines() if line.strip()]
    logged = {k for e in events for k in e}
    for key in ("gen/loss_gan", "gen/loss_cycle", "gen/loss_identity", "gen/loss_ide", "ide/loss_feature_learner",
                "dis/loss_dis_s", "dis/loss_dis_t"):
        assert key in logged, key
    saved = torch.load(out / "joint" / "model_final.pth", map_location="cpu", weights_only=True)
    assert saved["method_state"][0]["pool_t"]["images"].shape == (1, 3, 256, 128)
    assert sum(p.numel() for k, p in saved["model"].items() if k.startswith("ide.backbone.")) > 23_000_000

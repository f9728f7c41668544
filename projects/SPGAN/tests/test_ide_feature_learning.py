"""IDE+ feature learning on SPGAN's translated images (TPAMI Sec. 3.2.3 / 4.2; configs ``ide_*.yml``):

* the CPU-sized recipe of ``make demo-spgan``: a source model (``ide_synthetic_duke.yml``) trains on the tiny
  SyntheticDuke, ``tools/translate.py`` writes the translated dataset (a small random-init SPGAN), and
  ``ide_synthetic.yml`` fine-tunes the source model on it (``TranslatedMarket``) with the backbone's BatchNorm frozen;
* FrozenBN loaded from a BatchNorm checkpoint computes the same features as the BatchNorm model;
* the full-size ``ide_market2duke.yml`` (ResNet-50, 256x128, SGD, 512-d bottleneck, FrozenBN) builds and runs one
  training iteration on a tiny translated dataset.
"""
import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.layers.batch_norm import FrozenBatchNorm
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import inference_config, load_model_for_inference
from fastreid_gan.runner import main
from spgan.translate_dataset import main as translate_main

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "projects" / "SPGAN" / "configs"
pytestmark = pytest.mark.timeout(300)

SOURCE, TARGET = "SyntheticDukeTiny", "SyntheticMarketTiny"
#: ResNet-18 at 64x32 on the tiny presets: a few seconds per run
TINY = ["DATASETS.TESTS", f'("{TARGET}",)', "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "2",
        "SOLVER.STEPS", "[100]", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "100",
        "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32", "SEED", "0"]
#: a 4-filter SPGAN at 64x64 (SiaNet's smallest size): the translator tools/translate.py runs
SMALL_SPGAN = ["MODEL.DEVICE", "cpu", "MODEL.SPGAN.GENERATOR.NGF", "4", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "1",
               "MODEL.SPGAN.DISCRIMINATOR.NDF", "4", "INPUT.SIZE_TRAIN", "[64, 64]", "INPUT.SIZE_TEST", "[64, 64]",
               "DATASETS.NAMES", f'("{SOURCE}",)', "MODEL.SPGAN.TARGET_DATASET", TARGET,
               "DATALOADER.NUM_WORKERS", "0"]


def _train(config: Path, opts):
    args = argparse.Namespace(config_file=str(config), opts=list(opts), eval_only=False, resume=False, num_gpus=1)
    return main(args)


def _translated_dataset(tmp_path: Path) -> Path:
    """``tools/translate.py`` (its ``main``) on the tiny SyntheticDuke's training split, random-init small SPGAN."""
    cfg = merge_config(get_cfg(), str(CONFIGS / "synthetic.yml"), SMALL_SPGAN)
    torch.manual_seed(0)
    model = build_model(inference_config(cfg)).eval()
    run = tmp_path / "spgan"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump())
    torch.save({"model": model.state_dict(), "meta_architecture": "SPGAN"}, str(run / "model_final.pth"))
    out = tmp_path / "translated"
    assert translate_main(["--config-file", str(run / "config.yaml"), "--weights", str(run / "model_final.pth"),
                           "--splits", "train", "--output", str(out)]) in (0, None)
    assert json.loads((out / "translation.json").read_text())["splits"]["train"]["images"] > 0
    return out


def test_configs_merge_with_the_ide_plus_settings():
    full = merge_config(get_cfg(), str(CONFIGS / "ide_market2duke.yml"))
    assert (full.MODEL.META_ARCHITECTURE, full.MODEL.BACKBONE.DEPTH, full.MODEL.BACKBONE.NORM) == \
        ("Baseline", "50x", "FrozenBN")
    assert full.MODEL.HEADS.EMBEDDING_DIM == 512 and full.MODEL.BACKBONE.LAST_STRIDE == 2
    assert (full.SOLVER.OPT, full.SOLVER.BASE_LR, full.SOLVER.BASE_LR * full.SOLVER.HEADS_LR_FACTOR) == \
        ("SGD", 1e-3, pytest.approx(1e-2))
    assert (full.SOLVER.MAX_EPOCH, list(full.SOLVER.STEPS), full.SOLVER.IMS_PER_BATCH) == (60, [40], 16)
    assert list(full.INPUT.SIZE_TRAIN) == [256, 128] and not full.INPUT.REA.ENABLED
    assert full.DATASETS.NAMES == ("TranslatedMarket",) and full.DATASETS.TESTS == ("DukeMTMC",)
    synthetic = merge_config(get_cfg(), str(CONFIGS / "ide_synthetic.yml"))
    source = merge_config(get_cfg(), str(CONFIGS / "ide_synthetic_duke.yml"))
    assert synthetic.MODEL.BACKBONE.NORM == "FrozenBN" and source.MODEL.BACKBONE.NORM == "BN"
    assert synthetic.DATASETS.NAMES == ("TranslatedMarket",) and source.DATASETS.NAMES == ("SyntheticDuke",)
    assert synthetic.DATASETS.TESTS == source.DATASETS.TESTS == ("SyntheticMarket",)
    assert synthetic.MODEL.BACKBONE.DEPTH == "18x" and synthetic.MODEL.HEADS.EMBEDDING_DIM == 512


def test_fine_tuning_on_a_translated_dataset_keeps_the_backbone_batchnorm(datasets_root, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    source_dir = tmp_path / "source"
    _train(CONFIGS / "ide_synthetic_duke.yml", TINY + ["DATASETS.NAMES", f'("{SOURCE}",)',
                                                        "OUTPUT_DIR", str(source_dir)])
    source_weights = source_dir / "model_final.pth"
    source_state = torch.load(source_weights, map_location="cpu", weights_only=True)["model"]

    # FrozenBN loaded from the BatchNorm checkpoint: the same eval features as the BatchNorm model (fastreid's
    # FrozenBatchNorm would subtract eps from running_var on load; fastreid_gan.compat stops it)
    base = ["MODEL.DEVICE", "cpu", "DATASETS.TESTS", f'("{TARGET}",)']
    bn_cfg = merge_config(get_cfg(), str(source_dir / "config.yaml"), base)
    frozen_cfg = merge_config(get_cfg(), str(CONFIGS / "ide_synthetic.yml"),
                              base + ["MODEL.HEADS.NUM_CLASSES", str(bn_cfg.MODEL.HEADS.NUM_CLASSES)])
    bn_model = load_model_for_inference(bn_cfg, str(source_weights))
    frozen_model = load_model_for_inference(frozen_cfg, str(source_weights))
    assert any(isinstance(m, FrozenBatchNorm) for m in frozen_model.backbone.modules())
    images = torch.rand(4, 3, 64, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(frozen_model(images), bn_model(images), rtol=1e-5, atol=1e-5)

    # tools/translate.py's output, read as TranslatedMarket; the source model fine-tuned on it
    translated = _translated_dataset(tmp_path)
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", str(translated))
    ide_dir = tmp_path / "ide"
    results = _train(CONFIGS / "ide_synthetic.yml", TINY + ["MODEL.WEIGHTS", str(source_weights),
                                                           "OUTPUT_DIR", str(ide_dir)])
    metrics = json.loads((ide_dir / "metrics.json").read_text())[TARGET]
    assert math.isfinite(metrics["mAP"]) and metrics["mAP"] == pytest.approx(float(results[TARGET]["mAP"]))
    events = [json.loads(line) for line in (ide_dir / "events.json").read_text().splitlines()]
    assert all(math.isfinite(e["total_loss"]) for e in events if "total_loss" in e)
    log = (ide_dir / "log.txt").read_text()
    assert "spgan_translated" in log or "TranslatedMarket" in log
    tuned = torch.load(ide_dir / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    # the classifier came from the source (same identities) and trained on
    assert tuned["heads.weight"].shape == source_state["heads.weight"].shape
    assert not torch.equal(tuned["heads.weight"], source_state["heads.weight"])
    # the backbone's BatchNorm statistics and affine parameters are the source model's, its convolutions trained
    for key in ("backbone.bn1.weight", "backbone.bn1.bias", "backbone.layer4.1.bn2.running_mean",
                "backbone.layer4.1.bn2.running_var"):
        torch.testing.assert_close(tuned[key], source_state[key], rtol=0, atol=0)
    assert not torch.equal(tuned["backbone.layer4.1.conv2.weight"], source_state["backbone.layer4.1.conv2.weight"])
    # the head's BatchNorm trains
    assert not torch.equal(tuned["heads.bottleneck.1.running_mean"], source_state["heads.bottleneck.1.running_mean"])


def test_one_full_size_ide_plus_iteration(datasets_root, tmp_path, monkeypatch, cpu_share):
    """ide_market2duke.yml as published (ResNet-50, layer4 stride 2, 256x128, FrozenBN, SGD), random weights,
    batch 2, on the tiny translated dataset resized to 256x128 by the config: one step of the trainer
    tools/train_net.py builds (the trainer is epoch-based: an epoch of the tiny set is 38 ResNet-50 steps)."""
    from fastreid_gan.baseline_trainer import BaselineTrainer

    torch.set_num_threads(cpu_share)  # conftest.py: 2 cores, or this xdist worker's share
    monkeypatch.setenv("SPGAN_TRANSLATED_DIR", str(_translated_dataset(tmp_path)))
    cfg = merge_config(get_cfg(), str(CONFIGS / "ide_market2duke.yml"), [
        "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "DATASETS.TESTS", f'("{TARGET}",)',
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "OUTPUT_DIR", str(tmp_path / "ide")])
    cfg.freeze()
    (tmp_path / "ide").mkdir()
    (tmp_path / "ide" / "config.yaml").write_text(cfg.dump())  # what tools/train_net.py's setup writes first
    trainer = BaselineTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    assert model.backbone.layer4[0].conv1.weight.shape == (512, 1024, 1, 1)  # ResNet-50
    assert model.heads.bottleneck[0].weight.shape == (512, 2048, 1, 1)  # the 512-d bottleneck
    assert model.heads.weight.shape[0] == trainer.cfg.MODEL.HEADS.NUM_CLASSES == 12  # the tiny set's identities
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    groups = {g["lr"] for g in trainer.optimizer.param_groups}
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.defaults["nesterov"]
    assert sorted(groups) == [pytest.approx(1e-3), pytest.approx(1e-2)]  # backbone, head
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with EventStorage(0) as storage:  # the trainer's own step, without the epoch loop and its hooks
        trainer.iter = 0
        trainer.run_step()
    after = model.state_dict()
    assert not torch.equal(after["heads.weight"], before["heads.weight"])
    assert not torch.equal(after["backbone.conv1.weight"], before["backbone.conv1.weight"])
    assert torch.equal(after["backbone.bn1.running_var"], before["backbone.bn1.running_var"])
    losses = {k: h.latest() for k, h in storage.histories().items() if "loss" in k}
    assert "total_loss" in losses and all(math.isfinite(v) for v in losses.values()), losses

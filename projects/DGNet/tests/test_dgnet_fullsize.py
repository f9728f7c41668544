"""One full-size DG-Net iteration (projects/DGNet/configs/market.yml: 256x128, ResNet-50 E_a stride 1, the
published sub-network sizes) through the real GAN engine, with every warm-up loss switched on, then the final
evaluation.  Random initialisation and a random-init ResNet-50 teacher; the tiny synthetic dataset is resized to
256x128 by the config's transforms.  Runs in CI: about a minute on 2 CPU cores (batch 2 + 2 positives).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401  (compat fixes before fastreid)
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANTrainer

REPO = str(Path(__file__).resolve().parents[3])
TINY_TRAIN_IDS = 12  # SyntheticMarketTiny

pytestmark = pytest.mark.timeout(600)

WARM_UP_ON = {  # the published end values, from iteration 0
    "RECON_F": [1.0], "RECON_S": [1.0], "RECON_X_CYC": [2.0], "PRIM": [2.0], "FINE": [0.4], "ID_FINE": [0.4],
}
GEN_LOSSES = {
    "loss_recon_x", "loss_recon_xp", "loss_id", "loss_pid", "loss_id_cross", "loss_id_fine", "loss_recon_f",
    "loss_recon_s", "loss_recon_x_cyc", "loss_gan_g", "loss_prim", "loss_fine",
}


@pytest.fixture
def fullsize_cfg(tmp_path, monkeypatch, cpu_share):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "datasets"))
    torch.set_num_threads(cpu_share)  # conftest.py: 2 cores, or this xdist worker's share
    # random-init full-size teacher: the baseline config DG-Net's market.yml points at
    tcfg = get_cfg()
    merge_config(tcfg, os.path.join(REPO, "configs/Market1501/baseline_R50.yml"))
    tcfg.MODEL.BACKBONE.PRETRAIN = False
    tcfg.MODEL.DEVICE = "cpu"
    tcfg.MODEL.HEADS.NUM_CLASSES = TINY_TRAIN_IDS
    teacher_weights = str(tmp_path / "teacher.pth")
    torch.save({"model": build_model(tcfg).state_dict()}, teacher_weights)

    cfg = get_cfg()
    merge_config(cfg, os.path.join(REPO, "projects/DGNet/configs/market.yml"), [
        "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.PRETRAIN", "False",
        "MODEL.DGNET.TEACHER.CONFIG", os.path.join(REPO, "configs/Market1501/baseline_R50.yml"),
        "MODEL.DGNET.TEACHER.WEIGHTS", teacher_weights,
        "DATASETS.NAMES", "('SyntheticMarketTiny',)",
        "DATASETS.TESTS", "('SyntheticMarketTiny',)",
        "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.GAN.MAX_ITER", "1",
        "SOLVER.GAN.EVAL_PERIOD", "0",
        "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
        "SOLVER.GAN.VIS_PERIOD", "1",
        "SOLVER.GAN.LOG_PERIOD", "1",
        "TEST.IMS_PER_BATCH", "32",
        "TEST.FLIP.ENABLED", "False",
        "SEED", "0",
        "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    for key, spec in WARM_UP_ON.items():
        cfg.MODEL.DGNET.LOSS_WEIGHTS[key] = spec
    return cfg


def test_market_config_one_iteration_at_full_size(fullsize_cfg):
    trainer = GANTrainer(fullsize_cfg)
    model = trainer.model
    # the published sizes
    assert model.id.appearance_dim == 2048 * 4
    assert sum(p.numel() for p in model.id.backbone.parameters()) > 23_000_000  # ResNet-50

    seen = {}
    phase_losses = model.phase_losses

    def recording(phase, batch, state, ctx):
        losses = phase_losses(phase, batch, state, ctx)
        seen[phase] = {k: float(v.detach()) for k, v in losses.items()}
        assert state["fake"].shape == (2, 3, 256, 128)
        return losses

    model.phase_losses = recording
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.resume_or_load(resume=False)
    results = trainer.train()

    assert set(seen["dis"]) == {"loss_gan_d", "loss_r1"}
    assert set(seen["gen"]) == GEN_LOSSES
    for phase, losses in seen.items():
        for name, value in losses.items():
            assert math.isfinite(value), (phase, name)
    after = model.state_dict()
    for net in ("gen.", "dis.", "id."):  # every sub-network was stepped
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(net)), net
    metrics = results["SyntheticMarketTiny"]
    assert 0.0 <= metrics["mAP"] <= 100.0

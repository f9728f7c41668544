"""One full-size iteration of each FD-GAN stage (projects/FDGAN/configs/market.yml: 256x128, ResNet-50 E and D_id,
the published G and D_pd, the published stage configs) through ``tools/train_net.py``'s code path, in one command,
2 pairs, random initialisation; the tiny synthetic dataset is resized to 256x128 by the config.  The paper-recipe
config (market_paper.yml) and duke.yml's stage configs are checked to merge."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.runner import main
from fastreid_gan.training_stages import stage_config, training_stages_of

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "projects" / "FDGAN" / "configs"
pytestmark = pytest.mark.timeout(900)

STAGE_LOSSES = {
    "stage1": {"reid/loss_verif"},
    "stage2": {"dis_id/loss_dis_id", "dis_pose/loss_dis_pose", "gen/loss_gan_id", "gen/loss_gan_pose",
               "gen/loss_recon", "gen/loss_same_pose"},
    "stage3": {"dis_id/loss_dis_id", "dis_pose/loss_dis_pose", "gen/loss_gan_id", "gen/loss_gan_pose",
               "gen/loss_recon", "gen/loss_same_pose", "gen/loss_verif"},
}
# the stage configs' linear decays start after one iteration's run would end: start them at 0
SHORT = [item for net in ("GEN", "DIS_ID", "DIS_POSE", "REID")
         for item in (f"SOLVER.GAN.OPTIMIZERS.{net}.DECAY_START_ITER", "0")]


def _calibrate_batchnorm(weights: Path, cfg_opts) -> None:
    """Running BatchNorm statistics of E over a few real images, written back into ``weights``.

    Stages II and III run E and D_id with frozen BatchNorm statistics; after ONE stage I iteration those are
    still near their initialisation, and 50 layers of un-normalised random-init ResNet overflow to inf. A real
    stage I sets them; this stands in for it."""
    from fastreid.modeling import build_model
    from fastreid_gan.model_loading import inference_config
    from fdgan.pairs import build_pair_loader

    cfg = merge_config(get_cfg(), str(CONFIGS / "market.yml"), cfg_opts + ["MODEL.FDGAN.STAGE", "1"])
    model = build_model(inference_config(cfg.clone()))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    bns = [m for m in model.reid.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    loader = iter(build_pair_loader(cfg, with_targets=False))
    model.reid.train()
    with torch.no_grad():
        for _ in range(2):
            pairs = next(loader)["images"]
            x = model.normalize(pairs.flatten(0, 1).float())
            features = model.reid.encoder(x)
            model.reid.head(features[0::2], features[1::2])
    state["model"] = model.state_dict()
    torch.save(state, weights)


def test_one_iteration_of_each_full_size_stage(datasets_root, tmp_path, cpu_share):
    torch.set_num_threads(cpu_share)  # conftest.py: 2 cores, or this xdist worker's share
    out = tmp_path / "fdgan"
    data = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "DATASETS.NAMES", "('SyntheticMarketTiny',)",
            "DATASETS.TESTS", "()", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]
    opts = data + ["SOLVER.GAN.MAX_ITER", "1", "SOLVER.GAN.CHECKPOINT_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0",
            "SOLVER.GAN.LOG_PERIOD", "1", "SEED", "0", "OUTPUT_DIR", str(out)] + SHORT
    def train(stages):
        main(argparse.Namespace(config_file=str(CONFIGS / "market.yml"), opts=opts + ["SOLVER.GAN.RUN_STAGES", stages],
                                eval_only=False, resume=False, num_gpus=1))

    train("(1,)")
    _calibrate_batchnorm(out / "stage1" / "model_final.pth", data)
    train("(2, 3)")  # stage II continues from stage I's output in OUTPUT_DIR
    for stage, losses in STAGE_LOSSES.items():
        events = [json.loads(line) for line in (out / stage / "events.json").read_text().splitlines()]
        logged = {k: v for k, v in events[0].items() if "loss_" in k and not k.endswith("total_loss")}
        assert set(logged) == losses, stage
        assert all(math.isfinite(v) for v in logged.values()), logged
        state = torch.load(out / stage / "model_final.pth", map_location="cpu", weights_only=True)["model"]
        assert state["reid.encoder.backbone.layer4.0.conv1.weight"].shape == (512, 1024, 1, 1)  # ResNet-50
        assert state["gen.de_conv1.1.weight"].shape[0] == 64  # ngf 64


@pytest.mark.parametrize("config", ["market_paper.yml", "duke.yml"])
def test_other_recipes_merge(config):
    path = str(CONFIGS / config)
    stages = training_stages_of(merge_config(get_cfg(), path))
    cfgs = [stage_config(path, [], stage, "/tmp/unused", None) for stage in stages]
    assert [c.MODEL.FDGAN.STAGE for c in cfgs] == [1, 2, 3]
    assert all(c.SOLVER.GAN.MAX_ITER > 1000 for c in cfgs)

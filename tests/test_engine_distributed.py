"""Two gloo CPU processes train the toy GAN through fastreid_gan.engine.launch: replicas must stay identical."""
from __future__ import annotations

import json
import os

import torch

import fastreid_gan  # noqa: F401  (compat fixes before fastreid)
from fastreid.config import get_cfg
from fastreid.engine.hooks import CallbackHook
from fastreid.utils import comm

from fastreid_gan.engine import GANTrainer, add_gan_engine_config, launch
from toy_gan import add_engine_toy_config, generate_engine_toy_images

ITERATIONS = 4


class _RecordingTrainer(GANTrainer):
    """Writes each rank's consumed image paths; no test sets (the evaluation is not under test here)."""

    def build_hooks(self):
        self.seen_paths = []
        record = CallbackHook(after_step=lambda t: t.seen_paths.append(list(t.last_batch["img_paths"])))
        return super().build_hooks() + [record]


def _worker(out_dir: str, data_root: str) -> None:
    os.environ["FASTREID_DATASETS"] = data_root
    rank = comm.get_rank()
    # each rank initialises its model from a different seed, as the runner does (SEED + rank):
    # the engine must broadcast rank 0's weights before training
    torch.manual_seed(100 + rank)
    cfg = get_cfg()
    add_gan_engine_config(cfg)
    add_engine_toy_config(cfg)
    cfg.SEED = 0
    cfg.OUTPUT_DIR = out_dir
    cfg.MODEL.META_ARCHITECTURE = "EngineToyGAN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.NAMES = ("EngineToyReID",)
    cfg.DATASETS.TESTS = ()
    cfg.INPUT.SIZE_TRAIN = [32, 16]
    cfg.INPUT.SIZE_TEST = [32, 16]
    cfg.INPUT.FLIP.ENABLED = True
    cfg.SOLVER.IMS_PER_BATCH = 8  # 4 per process
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.GAN.MAX_ITER = ITERATIONS
    cfg.SOLVER.GAN.LOG_PERIOD = 0
    cfg.SOLVER.GAN.VIS_PERIOD = 0
    cfg.SOLVER.GAN.CHECKPOINT_PERIOD = 0
    trainer = _RecordingTrainer(cfg)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    torch.save(
        {"initial": initial, "final": trainer.model.state_dict(), "paths": trainer.seen_paths},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


def test_two_gloo_processes_keep_identical_replicas(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data_root = str(tmp_path / "datasets")
    generate_engine_toy_images(data_root)  # before spawning: ranks would otherwise race to write it
    out_dir = str(tmp_path / "out")
    os.makedirs(out_dir)
    launch(_worker, 2, dist_url="auto", args=(out_dir, data_root))

    rank0 = torch.load(os.path.join(out_dir, "rank0.pt"), weights_only=True)
    rank1 = torch.load(os.path.join(out_dir, "rank1.pt"), weights_only=True)
    # the ranks started from different random weights ...
    assert any(not torch.equal(rank0["initial"][k], rank1["initial"][k]) for k in rank0["initial"])
    # ... and end identical, parameters and BN buffers alike, and trained away from rank 0's start
    for key, value in rank0["final"].items():
        assert torch.equal(value, rank1["final"][key]), key
    for prefix in ("gen.", "dis.", "id_net."):
        assert any(
            not torch.equal(rank0["final"][k], rank0["initial"][k]) for k in rank0["final"] if k.startswith(prefix)
        ), f"{prefix} did not train"
    # each rank got its own share of every global batch
    assert len(rank0["paths"]) == len(rank1["paths"]) == ITERATIONS
    for paths0, paths1 in zip(rank0["paths"], rank1["paths"]):
        assert paths0 != paths1
    # rank 0 wrote the final checkpoint (with both ranks' RNG states) and the (empty) metrics
    ckpt = torch.load(os.path.join(out_dir, "model_final.pth"), weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["iteration"] == ITERATIONS - 1
    assert json.loads(open(os.path.join(out_dir, "metrics.json")).read()) == {}

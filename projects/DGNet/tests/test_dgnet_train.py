"""DG-Net trained end to end through tools/train_net.py's entry point with the shipped synthetic.yml.

60 iterations from scratch are too few for G's losses to move much (tests/test_dgnet.py shows G learning to
reconstruct); this checks the whole pipeline: every phase and warm-up term runs, every network learns, outputs."""
import argparse
import json
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "DGNet" / "configs" / "synthetic.yml"

# synthetic.yml as shipped (widths, 64x32 input, optimizers), on the tiny dataset, without a teacher (no Eq. 8)
# and with every warm-up term switched on by iteration 25 of 60
SHORT = [
    "DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
    "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DGNET.LOSS_WEIGHTS.PRIM", "[0.0]",
    "MODEL.DGNET.LOSS_WEIGHTS.FINE", "[0.0, 0.4, 20, 5]", "MODEL.DGNET.LOSS_WEIGHTS.ID_FINE", "[0.0, 0.4, 20, 5]",
    "MODEL.DGNET.LOSS_WEIGHTS.RECON_F", "[0.0, 1.0, 20, 5]", "MODEL.DGNET.LOSS_WEIGHTS.RECON_S", "[0.0, 1.0, 20, 5]",
    "MODEL.DGNET.LOSS_WEIGHTS.RECON_X_CYC", "[0.0, 2.0, 20, 5]", "MODEL.DGNET.LOSS_WEIGHTS.GAN_G", "[0.0, 1.0, 10, 5]",
    "MODEL.DGNET.LOSS_WEIGHTS.ID_CROSS", "[0.0, 0.5, 10, 5]",
    "SOLVER.GAN.MAX_ITER", "60", "SOLVER.GAN.CHECKPOINT_PERIOD", "30", "SOLVER.GAN.VIS_PERIOD", "30",
    "SOLVER.GAN.LOG_PERIOD", "5", "SOLVER.GAN.OPTIMIZERS.GEN.STEPS", "(1000,)",
    "SOLVER.GAN.OPTIMIZERS.DIS.STEPS", "(1000,)", "SOLVER.GAN.OPTIMIZERS.ID.STEPS", "(1000,)",
    "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32",
]
# every term (but the teacher's) at full weight from the first iteration, for short exactness runs
ALL_TERMS_ON = [
    "MODEL.DGNET.LOSS_WEIGHTS.RECON_X_CYC", "[2.0]", "MODEL.DGNET.LOSS_WEIGHTS.RECON_S", "[1.0]",
    "MODEL.DGNET.LOSS_WEIGHTS.RECON_F", "[1.0]", "MODEL.DGNET.LOSS_WEIGHTS.FINE", "[0.4]",
    "MODEL.DGNET.LOSS_WEIGHTS.GAN_G", "[1.0]", "MODEL.DGNET.LOSS_WEIGHTS.ID_CROSS", "[0.5]",
]


def _history(events_file: Path, key: str):
    rows = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return [row[key] for row in rows if key in row]


def test_synthetic_config_trains_every_phase(datasets_root, tmp_path):
    from fastreid_gan.runner import main

    torch.manual_seed(0)
    out = tmp_path / "dgnet"
    args = argparse.Namespace(config_file=str(CONFIG), opts=SHORT + ["OUTPUT_DIR", str(out)], eval_only=False,
                              resume=False, num_gpus=1)
    main(args)
    for name in ("log.txt", "config.yaml", "model_final.pth", "metrics.json", "events.json"):
        assert (out / name).is_file(), name
    assert list((out / "images").glob("*.png")), "the image hook wrote no grid"
    metrics = json.loads((out / "metrics.json").read_text())["SyntheticMarketTiny"]
    assert 0.0 < metrics["mAP"] <= 100.0 and 0.0 < metrics["Rank-1"] <= 100.0

    events = out / "events.json"
    gan_d = _history(events, "dis/loss_gan_d")
    assert len(gan_d) >= 10 and gan_d[-1] < 0.5 * gan_d[0], gan_d  # D learns to tell real from generated
    for late in ("gen/loss_gan_g", "gen/loss_id_cross", "gen/loss_recon_s", "gen/loss_recon_f", "gen/loss_recon_x_cyc",
                 "gen/loss_fine", "dis/loss_r1"):
        assert _history(events, late), f"{late} never ran"  # every phase and warm-up term took part

    # every sub-network kept learning between the two checkpoints
    middle = torch.load(str(out / "model_0000029.pth"), map_location="cpu", weights_only=False)["model"]
    final = torch.load(str(out / "model_final.pth"), map_location="cpu", weights_only=False)["model"]
    for net in ("gen.", "dis.", "id."):
        moved = [k for k, v in middle.items() if k.startswith(net) and v.is_floating_point()
                 and not torch.equal(v, final[k])]
        assert moved, f"{net} weights did not change"


def _random_teacher(root: Path, out: Path) -> list:
    """Overrides that give DG-Net a teacher (a randomly initialised baseline for the tiny set) and Eq. 8 on."""
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.modeling import build_model

    from fastreid_gan.config import get_cfg, merge_config

    baseline = REPO / "configs" / "Synthetic" / "baseline_market.yml"
    ids = len({item[1] for item in DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(root)).train})
    tcfg = merge_config(get_cfg(), str(baseline), ["MODEL.HEADS.NUM_CLASSES", str(ids), "MODEL.BACKBONE.PRETRAIN",
                                                   "False"])
    weights = out / "teacher.pth"
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": build_model(tcfg).state_dict()}, str(weights))
    return ["MODEL.DGNET.TEACHER.CONFIG", str(baseline), "MODEL.DGNET.TEACHER.WEIGHTS", str(weights),
            "MODEL.DGNET.LOSS_WEIGHTS.PRIM", "[2.0]"]


@pytest.mark.parametrize("teacher", [False, True], ids=["no-teacher", "teacher"])
def test_resume_is_exact(datasets_root, tmp_path, teacher):
    """N iterations straight == N/2, a crash, --resume, N/2 more: bit-identical weights (CPU, fixed seed).

    DG-Net draws random numbers every iteration (random erasing, the Eq. 5 encoder choice, the edge noise,
    the data order and augmentation): the checkpoint must restore all of them. With Eq. 8 on, the teacher is
    built (a random initialisation, then its weights) before the checkpoint restores the RNGs, so building it
    does not shift the resumed run's random streams."""
    from fastreid.engine.hooks import CallbackHook

    from fastreid_gan.engine import GANTrainer
    from fastreid_gan.runner import seed_everything, setup_cfg

    class Crash(Exception):
        pass

    class CrashingTrainer(GANTrainer):
        def build_hooks(self):
            def crash(trainer):
                if trainer.iter == 4:
                    raise Crash()

            return super().build_hooks() + [CallbackHook(before_step=crash)]

    extra = _random_teacher(datasets_root, tmp_path / "teacher") if teacher else []

    def run(out, trainer_cls=GANTrainer, resume=False):
        opts = (SHORT + ["OUTPUT_DIR", str(out), "SOLVER.GAN.MAX_ITER", "8", "SOLVER.GAN.CHECKPOINT_PERIOD", "4"]
                + ALL_TERMS_ON + extra)
        cfg = setup_cfg(argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False))
        seed_everything(cfg.SEED)
        trainer = trainer_cls(cfg)
        trainer.resume_or_load(resume=resume)
        trainer.train()
        return trainer

    straight = run(tmp_path / "straight")
    with pytest.raises(Crash):
        run(tmp_path / "resumed", CrashingTrainer)
    torch.manual_seed(99)  # whatever the RNGs hold before resuming is replaced by the checkpoint's
    resumed = run(tmp_path / "resumed", resume=True)
    assert resumed.start_iter == 4
    ref, got = straight.model.state_dict(), resumed.model.state_dict()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key


def test_activation_checkpointing_trains_identically(datasets_root, tmp_path):
    """Recomputing every sub-network's activations in backward (MODEL.DGNET.*.CHECKPOINT, on in the full-size
    configs) changes nothing in training: the same weights and BN statistics after 6 iterations, bit for bit on
    CPU (random erasing, dropout and the Eq. 5 choice are replayed, BN statistics move once)."""
    from fastreid_gan.engine import GANTrainer
    from fastreid_gan.runner import seed_everything, setup_cfg

    def train(out, checkpoint: bool):
        opts = SHORT + ["OUTPUT_DIR", str(out), "SOLVER.GAN.MAX_ITER", "6", "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
                        "SOLVER.GAN.VIS_PERIOD", "0"] + ALL_TERMS_ON
        for node in ("APPEARANCE", "STRUCTURE", "DECODER", "DISCRIMINATOR"):
            opts += [f"MODEL.DGNET.{node}.CHECKPOINT", str(checkpoint)]
        cfg = setup_cfg(argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False))
        seed_everything(cfg.SEED)
        trainer = GANTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        return trainer.model

    stored, recomputed = train(tmp_path / "stored", False), train(tmp_path / "recomputed", True)
    assert recomputed.id.checkpoint and recomputed.dis.scales[0].checkpoint and not stored.gen.dec.checkpoint
    ref, got = stored.state_dict(), recomputed.state_dict()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key


def _two_process_worker(out_dir: str, data_root: str) -> None:
    import os

    from fastreid.utils import comm

    from fastreid_gan.engine import GANTrainer
    from fastreid_gan.runner import seed_everything, setup_cfg

    os.environ["FASTREID_DATASETS"] = data_root
    opts = SHORT + ["OUTPUT_DIR", out_dir, "SOLVER.GAN.MAX_ITER", "4", "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
                    "SOLVER.GAN.VIS_PERIOD", "0", "SOLVER.IMS_PER_BATCH", "8", "DATASETS.TESTS", "()",
                    "MODEL.DGNET.LOSS_WEIGHTS.RECON_X_CYC", "[2.0]", "MODEL.DGNET.LOSS_WEIGHTS.RECON_S", "[1.0]",
                    "MODEL.DGNET.LOSS_WEIGHTS.GAN_G", "[1.0]", "MODEL.DGNET.LOSS_WEIGHTS.ID_CROSS", "[0.5]"]
    cfg = setup_cfg(argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False))
    seed_everything(cfg.SEED)  # SEED + rank: the replicas start from different weights
    trainer = GANTrainer(cfg)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    torch.save({"initial": initial, "final": trainer.model.state_dict()},
               os.path.join(out_dir, f"rank{comm.get_rank()}.pt"))


def test_two_gloo_processes_keep_identical_replicas(datasets_root, tmp_path, monkeypatch):
    from fastreid.data.datasets import DATASET_REGISTRY

    from fastreid_gan.engine import launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(datasets_root))  # generated before the ranks start
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    launch(_two_process_worker, 2, dist_url="auto", args=(str(out_dir), str(datasets_root)))
    rank0 = torch.load(str(out_dir / "rank0.pt"), weights_only=True)
    rank1 = torch.load(str(out_dir / "rank1.pt"), weights_only=True)
    assert any(not torch.equal(rank0["initial"][k], rank1["initial"][k]) for k in rank0["initial"])
    for key, value in rank0["final"].items():
        assert torch.equal(value, rank1["final"][key]), key
    for net in ("gen.", "dis.", "id."):
        assert any(not torch.equal(v, rank0["initial"][k]) for k, v in rank0["final"].items() if k.startswith(net))


def test_killed_run_resumes_to_the_uninterrupted_weights(datasets_root, tmp_path):
    """tools/train_net.py killed (SIGKILL, no clean-up) at a random point, then ``--resume``: the final weights
    are bit-identical to an uninterrupted run's. Every component the shipped configs use is on: the teacher
    (Eq. 8), every loss term, activation checkpointing, channels-last, flip/padding augmentation, positives,
    image grids; a checkpoint after every iteration, so the kill may also land inside a save."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from fastreid.data.datasets import DATASET_REGISTRY

    DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(datasets_root))  # generated before the runs start
    max_iter = 8
    opts = SHORT + ALL_TERMS_ON + _random_teacher(datasets_root, tmp_path / "teacher") + [
        "SOLVER.GAN.MAX_ITER", str(max_iter), "SOLVER.GAN.CHECKPOINT_PERIOD", "1", "SOLVER.GAN.VIS_PERIOD", "3",
        "SOLVER.GAN.LOG_PERIOD", "1", "MODEL.DGNET.CHANNELS_LAST", "True"]
    for node in ("APPEARANCE", "STRUCTURE", "DECODER", "DISCRIMINATOR"):
        opts += [f"MODEL.DGNET.{node}.CHECKPOINT", "True"]
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTREID_DATASETS=str(datasets_root))

    def command(out, *flags):
        return [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(CONFIG), *flags,
                *opts, "OUTPUT_DIR", str(out)]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(command(straight), env=env, check=True, capture_output=True, timeout=600)

    rng = random.Random()
    after = rng.randint(1, max_iter - 3)  # kill after this iteration's checkpoint, partway into the next ones
    delay = rng.uniform(0.0, 1.5)
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not (killed / f"model_{after:07d}.pth").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    where = f"killed {delay:.2f} s after the checkpoint of iteration {after}"
    assert not (killed / "model_final.pth").exists(), f"the run finished before it was {where}"

    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, f"{where}: {resumed.stderr[-3000:]}"
    assert not list(killed.glob("*.tmp")), "a partial save was left behind"
    ref = torch.load(str(straight / "model_final.pth"), map_location="cpu", weights_only=True)
    got = torch.load(str(killed / "model_final.pth"), map_location="cpu", weights_only=True)
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), f"{key} differs ({where})"
    for net, state in ref["optimizers"].items():
        for idx, slots in state["state"].items():
            for slot, value in slots.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(got["optimizers"][net]["state"][idx][slot])), \
                    f"optimizer {net} state {idx}/{slot} differs ({where})"

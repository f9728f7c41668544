"""FD-GAN's ``tools/generate.py`` part on the tiny synthetic dataset with a small random-init FDGAN: the pose
transfer grid, the three generation scores (finite, reproducible, reacting where they must) and a dataset
without keypoint files named at the top level."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.evaluation import evaluate_on_test_datasets
from fastreid_gan.model_loading import inference_config
from fdgan.generation_metrics import (PoseInputs, generate, generation_scores, identity_preservation, pair_l1,
                                      pose_fidelity, query_and_gallery)

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects" / "FDGAN" / "configs" / "market.yml"
DATASET = "SyntheticMarketTiny"
H, W = 64, 32
# ResNet-18 E, narrow G, 64x32 images: milliseconds per image; the evaluation as the tests compare it
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", "False",
         "MODEL.FDGAN.GENERATOR.NGF", "8", "MODEL.FDGAN.GENERATOR.POSE_DIM", "16",
         "MODEL.FDGAN.GENERATOR.NOISE_DIM", "8",
         "MODEL.FDGAN.POSE_DISCRIMINATOR.NDF", "8", "INPUT.SIZE_TRAIN", f"[{H}, {W}]", "INPUT.SIZE_TEST", f"[{H}, {W}]",
         "DATASETS.NAMES", f'("{DATASET}",)', "DATASETS.TESTS", f'("{DATASET}",)',
         "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "32", "TEST.PAIR_RERANK.ENABLED", "False"]


@pytest.fixture(scope="module")
def cfg():
    return merge_config(get_cfg(), str(CONFIG), SMALL)


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return build_model(inference_config(cfg)).eval()


@pytest.fixture()
def checkpoint(cfg, model, tmp_path):
    """(config file, weights file) of the small model, as tools/generate.py takes them."""
    config_file, weights = tmp_path / "config.yaml", tmp_path / "model.pth"
    config_file.write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, str(weights))
    return str(config_file), str(weights)


def _generate_main():
    spec = importlib.util.spec_from_file_location("generate_entry", str(REPO / "tools" / "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_pose_transfer_grid_has_a_cell_per_person_and_pose(datasets_root, checkpoint, tmp_path):
    config_file, weights = checkpoint
    out = tmp_path / "out"
    args = ["--config-file", config_file, "--weights", weights, "--output-dir", str(out), "--num", "3",
            "--poses", "4"]
    assert _generate_main()(args) == 0
    grid = Image.open(out / "pose_transfer.png")
    rows, cols, pad = 1 + 3, 1 + 4, 2  # header row / source column; torchvision's 2-pixel padding
    assert grid.size == (cols * (W + pad) + pad, rows * (H + pad) + pad)
    pixels = np.asarray(grid.convert("RGB"))
    assert bool((pixels[pad : pad + H, pad : pad + W] == 255).all())  # the blank corner
    # the same seed draws the same grid
    assert _generate_main()(args + ["--output-dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "pose_transfer.png").read_bytes() == (out / "pose_transfer.png").read_bytes()


def test_scores_are_finite_and_reproducible_with_a_seed(datasets_root, cfg, model):
    first = generation_scores(model, cfg, DATASET, pairs=16, seed=3, max_queries=8, dropout=True).as_dict()
    again = generation_scores(model, cfg, DATASET, pairs=16, seed=3, max_queries=8, dropout=True).as_dict()
    assert first == again
    numbers = [v for part in ("identity_preservation", "pose_fidelity", "same_pose_consistency")
               for v in first[part].values() if isinstance(v, (int, float))]
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert first["pose_fidelity"]["keypoints"] == "annotations.json"
    assert first["same_pose_consistency"]["pairs"] == first["pose_fidelity"]["pairs"] == 16
    # another seed draws other pairs
    inputs = PoseInputs(cfg)
    query, gallery = query_and_gallery(DATASET)
    other = pose_fidelity(model, inputs, [p for p in query + gallery if p.pid > 0], pairs=24, seed=4, dropout=True)
    assert other.real_correlation != first["pose_fidelity"]["real_correlation"]
    # model left in eval mode, dropout included
    assert not any(m.training for m in model.modules())


def test_generation_is_seeded_and_dropout_is_optional(datasets_root, cfg, model):
    inputs = PoseInputs(cfg)
    query, _ = query_and_gallery(DATASET)
    images, maps = inputs.images([q.path for q in query[:4]]), inputs.posemaps([q.path for q in query[4:8]])
    with_dropout = generate(model, images, maps, seed=5, dropout=True)
    assert torch.equal(with_dropout, generate(model, images, maps, seed=5, dropout=True))
    assert not torch.equal(with_dropout, generate(model, images, maps, seed=5, dropout=False))
    assert with_dropout.shape == (4, 3, H, W) and 0 <= float(with_dropout.min()) <= float(with_dropout.max()) <= 255
    # identical inputs with one pose, noise and dropout mask: exactly the same image
    assert torch.equal(pair_l1(model, images, images.clone(), maps, seed=5, dropout=True), torch.zeros(4))
    assert bool((pair_l1(model, images, images.flip(0), maps, seed=5) > 0).all())


@pytest.mark.parametrize("flip", [False, True])
def test_identity_reference_is_the_evaluators_ranking(datasets_root, cfg, model, flip):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.FLIP.ENABLED = flip
    inputs = PoseInputs(cfg)
    query, gallery = query_and_gallery(DATASET)
    result = identity_preservation(model, inputs, query, gallery, seed=0, metric=cfg.TEST.METRIC, flip=flip)
    evaluated = evaluate_on_test_datasets(cfg, model)[DATASET]
    assert result.real_rank1 == pytest.approx(evaluated["Rank-1"])
    assert result.real_mAP == pytest.approx(evaluated["mAP"])
    assert result.identities == 8 and 0 < result.chance_rank1 < result.real_rank1
    assert 0 <= result.rank1 <= 100 and 0 < result.mAP <= 100


def test_pose_fidelity_tells_a_generator_that_draws_the_pose_from_one_that_does_not(datasets_root, cfg, model,
                                                                                   monkeypatch):
    inputs = PoseInputs(cfg)
    query, gallery = query_and_gallery(DATASET)
    persons = [p for p in query + gallery if p.pid > 0]
    random_init = pose_fidelity(model, inputs, persons, pairs=40, seed=0)
    # the measurement works on the real images that show the target poses
    assert random_init.real_accuracy > 0.8 and random_init.real_correlation > random_init.real_mismatched + 0.1

    def draw_the_pose(posemaps, features, noise):  # an oracle G: bright dots on the target joints
        return (posemaps > 0.8).any(dim=1, keepdim=True).float().expand(-1, 3, -1, -1) * 2 - 1

    monkeypatch.setattr(model, "generate", draw_the_pose)
    oracle = pose_fidelity(model, inputs, persons, pairs=40, seed=0)
    assert oracle.accuracy > 0.85 and oracle.correlation > oracle.mismatched + 0.1
    assert oracle.accuracy > random_init.accuracy
    assert (oracle.real_correlation, oracle.pairs) == (random_init.real_correlation, random_init.pairs)


def test_a_dataset_without_keypoint_files_is_named(datasets_root, checkpoint, tmp_path, capsys):
    config_file, weights = checkpoint
    empty = tmp_path / "no_poses"
    empty.mkdir()
    code = _generate_main()(["--config-file", config_file, "--weights", weights, "--output-dir",
                             str(tmp_path / "out"), "MODEL.FDGAN.POSE.DIR", str(empty)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {DATASET}: Keypoint file not found: {empty}{os.sep}" in err and "MODEL.FDGAN.POSE.DIR" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "pose_transfer.png").exists()


def test_tools_generate_end_to_end_with_metrics(datasets_root, checkpoint, tmp_path):
    config_file, weights = checkpoint
    out = tmp_path / "e2e"
    env = dict(os.environ, FASTREID_DATASETS=str(datasets_root))
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "generate.py"), "--config-file", config_file,
                           "--weights", weights, "--output-dir", str(out), "--metrics", "--pairs", "12", "--num", "2",
                           "--poses", "2"], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "identity preservation" in proc.stdout and "pose fidelity" in proc.stdout
    assert "same-pose consistency" in proc.stdout
    scores = json.loads((out / "generation_metrics.json").read_text())
    assert scores["dataset"] == DATASET and scores["pose_fidelity"]["pairs"] == 12
    assert Image.open(out / "pose_transfer.png").size == (3 * (W + 2) + 2, 3 * (H + 2) + 2)

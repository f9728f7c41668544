"""Checkpoint files: refused when they are no checkpoint or do not fit the model, retention, stale partial saves,
and resuming past an unreadable last checkpoint (fastreid_gan.checkpoint_io, fastreid_gan.checkpointer)."""
import argparse
import logging
import os
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

from fastreid_gan.checkpoint_io import CheckpointFileError, WeightsMismatchError, read_checkpoint
from fastreid_gan.checkpointer import NoResumableCheckpointError, RunCheckpointer
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import inference_config, load_model_for_inference

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"
TINY = ["DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
        "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "DATALOADER.NUM_WORKERS", "0",
        "TEST.IMS_PER_BATCH", "32", "SEED", "0"]


def _cfg(*opts):
    return merge_config(get_cfg(), str(CONFIG), TINY + list(opts))


def _baseline_checkpoint(path: Path, *opts, num_classes: int = 5, meta_architecture: str = "Baseline") -> dict:
    """A baseline model's weights written as training writes them; returns its state dict."""
    cfg = inference_config(_cfg("MODEL.HEADS.NUM_CLASSES", str(num_classes), *opts))
    model = build_model(cfg)
    RunCheckpointer(model, str(path.parent), meta_architecture=meta_architecture).save(path.stem)
    return model.state_dict()


# ----------------------------------------------------------------------------- files that are no checkpoint
@pytest.mark.parametrize("kind", ["empty", "text", "prose", "truncated", "list", "bare-state-dict", "no-model"])
def test_a_file_that_is_no_checkpoint_is_named(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("MODEL:\n  META_ARCHITECTURE: Baseline\n")
    elif kind == "prose":  # torch's legacy reader fails on it with a bare KeyError
        path.write_text("hello, these are not weights\n")
    elif kind == "truncated":
        torch.save({"model": {"w": torch.randn(256, 256)}}, str(path))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "list":
        torch.save([torch.zeros(1)], str(path))
    elif kind == "bare-state-dict":
        torch.save({"w": torch.zeros(1)}, str(path))
    else:
        torch.save({"state_dict": {"w": torch.zeros(1)}}, str(path))
    with pytest.raises(CheckpointFileError, match=str(path)) as info:
        read_checkpoint(str(path))
    assert "is not a checkpoint" in str(info.value)
    # fastreid's own Checkpointer (MODEL.WEIGHTS in fastreid's tools) gets the same error
    with pytest.raises(CheckpointFileError, match=str(path)):
        Checkpointer(torch.nn.Linear(1, 1)).load(str(path))


def test_eval_only_with_a_file_that_is_no_checkpoint(datasets_root, tmp_path):
    from fastreid_gan.runner import main

    bad = tmp_path / "model_final.pth"
    bad.write_bytes(b"")
    args = argparse.Namespace(config_file=str(CONFIG), eval_only=True, resume=False, num_gpus=1,
                              opts=TINY + ["OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS", str(bad)])
    with pytest.raises(CheckpointFileError, match="MODEL.WEIGHTS = .*model_final.pth.* is empty"):
        main(args)
    assert not (tmp_path / "eval" / "metrics.json").exists()


# ----------------------------------------------------------------------------- weights that do not fit
def test_a_checkpoint_of_another_method_is_refused_naming_the_mix_up(tmp_path):
    cfg = _cfg()
    gan_like = {"model": {"gen.conv.weight": torch.zeros(4, 3, 3, 3), "dis.fc.weight": torch.zeros(1, 4)},
                "meta_architecture": "DGNet"}
    path = tmp_path / "dgnet.pth"
    torch.save(gan_like, str(path))
    with pytest.raises(WeightsMismatchError) as info:
        load_model_for_inference(cfg, str(path))
    message = str(info.value)
    n_tensors = len(build_model(inference_config(cfg)).state_dict())
    assert str(path) in message and "'Baseline'" in message
    assert f"it would set 0 of the model's {n_tensors} tensors" in message
    assert "This is a DGNet checkpoint (saved by a DGNet run) and the config builds a Baseline" in message
    # without the recorded meta-architecture (a file from elsewhere) the prefixes tell
    del gan_like["meta_architecture"]
    torch.save(gan_like, str(path))
    with pytest.raises(WeightsMismatchError, match="shares no tensor with the model: its tensors are under dis., gen."):
        load_model_for_inference(cfg, str(path))


def test_another_depth_or_width_is_refused(tmp_path):
    path = tmp_path / "r18.pth"
    _baseline_checkpoint(path)
    with pytest.raises(WeightsMismatchError, match="missing from the file"):
        load_model_for_inference(_cfg("MODEL.BACKBONE.DEPTH", "34x"), str(path))
    with pytest.raises(WeightsMismatchError, match=r"of another shape, e.g. heads.bottleneck"):
        load_model_for_inference(_cfg("MODEL.HEADS.EMBEDDING_DIM", "256"), str(path))


def test_classifier_of_another_size_is_a_named_partial_load(tmp_path, caplog):
    path = tmp_path / "five_ids.pth"
    saved = _baseline_checkpoint(path, num_classes=5)
    with caplog.at_level(logging.INFO, logger="fastreid_gan"):
        model = load_model_for_inference(_cfg("MODEL.HEADS.NUM_CLASSES", "7"), str(path))
    for key, value in model.state_dict().items():
        if key != "heads.weight":
            assert torch.equal(value, saved[key]), key
    assert "identity classifier (heads.weight) keeps its initialisation: the file's is sized for 5 identities" \
        in caplog.text


def test_backbone_only_weights_need_weights_keep_init(tmp_path, caplog):
    path = tmp_path / "backbone.pth"
    saved = _baseline_checkpoint(path)
    data = torch.load(str(path), weights_only=True)
    data["model"] = {k: v for k, v in data["model"].items() if k.startswith("backbone.")}
    del data["meta_architecture"]
    torch.save(data, str(path))
    with pytest.raises(WeightsMismatchError, match="It holds only part of the model.*MODEL.WEIGHTS_KEEP_INIT"):
        load_model_for_inference(_cfg(), str(path))
    with caplog.at_level(logging.INFO, logger="fastreid_gan"):
        model = load_model_for_inference(_cfg("MODEL.WEIGHTS_KEEP_INIT", "['heads.']"), str(path))
    assert torch.equal(model.state_dict()["backbone.conv1.weight"], saved["backbone.conv1.weight"])
    assert "keep their initialisation as MODEL.WEIGHTS_KEEP_INIT ['heads.'] asks" in caplog.text


def test_training_from_weights_checks_the_fit_and_resuming_needs_the_same_classifier(datasets_root, tmp_path):
    from fastreid_gan.baseline_trainer import BaselineTrainer

    (tmp_path / "run").mkdir()
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"gen.conv.weight": torch.zeros(1)}}, str(foreign))
    cfg = _cfg("OUTPUT_DIR", str(tmp_path / "run"), "MODEL.WEIGHTS", str(foreign), "SOLVER.MAX_EPOCH", "1")
    trainer = BaselineTrainer(cfg)
    with pytest.raises(WeightsMismatchError, match="MODEL.WEIGHTS = .*foreign.pth"):
        trainer.resume_or_load(resume=False)

    # fine-tuning from weights with another number of identities is the intended partial load ...
    other_ids = tmp_path / "other_ids.pth"
    _baseline_checkpoint(other_ids, num_classes=3)
    cfg = _cfg("OUTPUT_DIR", str(tmp_path / "run"), "MODEL.WEIGHTS", str(other_ids), "SOLVER.MAX_EPOCH", "1")
    BaselineTrainer(cfg).resume_or_load(resume=False)
    # ... but resuming needs the run's own classifier (an OUTPUT_DIR of another dataset is refused)
    run = tmp_path / "run"
    _baseline_checkpoint(run / "model_0000.pth", num_classes=3)
    (run / "last_checkpoint").write_text("model_0000.pth")
    with pytest.raises(WeightsMismatchError, match=r"the checkpoint to resume from = .*model_0000.pth.*heads.weight"):
        BaselineTrainer(cfg).resume_or_load(resume=True)


# ----------------------------------------------------------------------------- retention and partial saves
def test_keep_prunes_old_periodic_checkpoints_only(tmp_path):
    checkpointer = RunCheckpointer(torch.nn.Linear(2, 2), str(tmp_path), keep=2)
    checkpointer.save("model_best")
    for iteration in (9, 19, 29, 39):
        checkpointer.save(f"model_{iteration:07d}")
    checkpointer.save("model_final")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000029.pth", "model_0000039.pth",
                                            "model_best.pth", "model_final.pth"]
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_KEEP is -1"):
        RunCheckpointer(torch.nn.Linear(2, 2), str(tmp_path), keep=-1)


def test_baseline_run_keeps_the_newest_checkpoints_and_removes_stale_partial_saves(datasets_root, tmp_path):
    from fastreid_gan.runner import main

    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / "model_0001.pth.4242.tmp"
    stale.write_bytes(b"partial")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("mine")
    opts = TINY + ["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCH", "4", "SOLVER.IMS_PER_BATCH", "32",
                   "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.CHECKPOINT_KEEP", "2", "TEST.EVAL_PERIOD", "100"]
    main(argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False, resume=False, num_gpus=1))
    assert not stale.exists() and unrelated.exists()
    # epochs 0-2 save model_000<epoch>.pth, the last one model_final.pth
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_0001.pth", "model_0002.pth",
                                                                    "model_final.pth"]


# ----------------------------------------------------------------------------- resuming past a broken file
def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path, caplog):
    model = torch.nn.Linear(2, 2)
    checkpointer = RunCheckpointer(model, str(tmp_path))
    for iteration in (4, 9):
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
        os.utime(tmp_path / f"model_{iteration:07d}.pth", (iteration, iteration))  # mtimes in saving order
    (tmp_path / "model_0000009.pth").write_bytes(b"")  # the last one was cut off
    with caplog.at_level(logging.WARNING, logger="fastreid_gan"):
        path, data = checkpointer.resumable()
    assert path == str(tmp_path / "model_0000004.pth") and data["iteration"] == 4
    assert "model_0000009.pth" in caplog.text and "Resuming from the newest complete checkpoint instead" in caplog.text

    (tmp_path / "model_0000004.pth").write_text("garbage")
    with pytest.raises(NoResumableCheckpointError, match="run without --resume to start over"):
        checkpointer.resumable()

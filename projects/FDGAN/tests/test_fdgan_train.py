"""FD-GAN training at CPU size: what each stage trains and freezes, the losses, D_id's initialisation, the three
stages in one command with exact resume across and within stages, and a clear error for stage II without
stage I's weights."""
import argparse
import json
import os
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANTrainer
from fastreid_gan.runner import main
from fdgan import FDGAN

from test_fdgan import SMALL

REPO = Path(__file__).resolve().parents[3]
SYNTHETIC = REPO / "projects" / "FDGAN" / "configs" / "synthetic.yml"
# the synthetic recipe at test size: tiny dataset, ResNet-18, 64x32, 8 pairs, a few iterations per stage
TINY = SMALL + ["SOLVER.IMS_PER_BATCH", "4", "SEED", "7", "SOLVER.GAN.LOG_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0",
                "MODEL.FDGAN.POSE.SIGMA", "1.5", "MODEL.FDGAN.POSE.AUG_SIGMA", "(1.0, 2.0)",
                "TEST.PAIR_RERANK.TOPK", "10", "INPUT.CROP.SIZE", "[64, 32]"] + [
    item for net in ("GEN", "DIS_ID", "DIS_POSE", "REID")
    for item in (f"SOLVER.GAN.OPTIMIZERS.{net}.DECAY_START_ITER", "0")]
NO_EVAL = ["DATASETS.TESTS", "()"]


def _stage_cfg(tmp_path, stage, *opts):
    from fastreid_gan.training_stages import stage_config, training_stages_of

    top = merge_config(get_cfg(), str(SYNTHETIC), TINY)
    stages = training_stages_of(top)
    return stage_config(str(SYNTHETIC), TINY + NO_EVAL + ["SOLVER.GAN.MAX_ITER", "2"] + list(opts), stages[stage - 1],
                        str(tmp_path), None)


def _snapshot(model, prefix):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def _changed(before, model):
    state = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, state[k])}


def _is_bn_stat(key):
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_stage_phases_and_frozen_parts(datasets_root, tmp_path):
    torch.manual_seed(0)
    stage1 = GANTrainer(_stage_cfg(tmp_path, 1))
    stage1.resume_or_load(resume=False)
    assert [p.name for p in stage1.model.phases()] == ["reid"]
    others = _snapshot(stage1.model, "gen.") | _snapshot(stage1.model, "dis_")
    reid = _snapshot(stage1.model, "reid.")
    stage1.train()
    assert _changed(reid, stage1.model)  # E + V train ...
    assert not _changed(others, stage1.model)  # ... nothing else
    weights = str(tmp_path / "stage1" / "model_final.pth")

    # stage II: D_id starts as E (and V's "same" logit); E and V never change, BatchNorm statistics included
    stage2 = GANTrainer(_stage_cfg(tmp_path, 2, "MODEL.WEIGHTS", weights))
    stage2.resume_or_load(resume=False)
    model = stage2.model
    assert [(p.name, p.networks) for p in model.phases()] == [
        ("dis_id", ("dis_id",)), ("dis_pose", ("dis_pose",)), ("gen", ("gen",))]
    for key, value in model.reid.encoder.state_dict().items():
        assert torch.equal(value, model.dis_id.encoder.state_dict()[key])
    assert torch.equal(model.dis_id.head.classifier.weight, model.reid.head.classifier.weight[1:2])
    reid, dis_id = _snapshot(model, "reid."), _snapshot(model, "dis_id.")
    gen, dis_pose = _snapshot(model, "gen."), _snapshot(model, "dis_pose.")
    stage2.train()
    assert not _changed(reid, model)
    changed_dis_id = _changed(dis_id, model)
    assert changed_dis_id and not any(_is_bn_stat(k) for k in changed_dis_id)  # D_id's BN frozen
    assert _changed(gen, model) and _changed(dis_pose, model)
    assert any(_is_bn_stat(k) for k in _changed(gen, model))  # G trains with batch statistics

    # stage III: E + V train with the generator, E's and D_id's BatchNorm statistics stay
    stage3 = GANTrainer(_stage_cfg(tmp_path, 3, "MODEL.WEIGHTS", str(tmp_path / "stage2" / "model_final.pth")))
    stage3.resume_or_load(resume=False)
    assert stage3.model.phases()[-1].networks == ("gen", "reid")
    reid, dis_id = _snapshot(stage3.model, "reid."), _snapshot(stage3.model, "dis_id.")
    stage3.train()
    changed = _changed(reid, stage3.model)
    assert changed and not any(_is_bn_stat(k) for k in changed)
    assert not any(_is_bn_stat(k) for k in _changed(dis_id, stage3.model))


def test_stage2_without_stage1_weights_names_the_command(datasets_root, tmp_path):
    trainer = GANTrainer(_stage_cfg(tmp_path, 2))
    with pytest.raises(FileNotFoundError, match=r"stage 1's weights.*MODEL.WEIGHTS is empty.*RUN_STAGES"):
        trainer.resume_or_load(resume=False)


def test_stage0_config_cannot_be_trained_directly(datasets_root, tmp_path):
    cfg = merge_config(get_cfg(), str(SYNTHETIC), TINY + ["OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(ValueError, match="STAGE is 0.*STAGE_CONFIGS"):
        GANTrainer(cfg)


def test_same_pose_loss_without_positive_pairs_is_zero_not_nan():
    fake = torch.randn(6, 3, 8, 4, requires_grad=True)
    none = FDGAN.same_pose_loss(fake, torch.tensor([0, 0, 0]))
    assert float(none.detach()) == 0.0
    none.backward()
    assert torch.equal(fake.grad, torch.zeros_like(fake))
    some = FDGAN.same_pose_loss(fake, torch.tensor([1, 0, 1]))
    expected = (torch.cat([fake[0:1], fake[2:3]]) - torch.cat([fake[3:4], fake[5:6]])).abs().mean()
    assert torch.allclose(some, expected)


def _run(tmp_path, out, *opts, resume=False):
    args = argparse.Namespace(config_file=str(SYNTHETIC), eval_only=False, resume=resume, num_gpus=1,
                              opts=TINY + ["OUTPUT_DIR", str(out), "SOLVER.GAN.MAX_ITER", "4",
                                           "SOLVER.GAN.CHECKPOINT_PERIOD", "2"] + list(opts))
    return main(args)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_one_command_runs_three_stages_and_resumes_exactly(datasets_root, tmp_path):
    straight = tmp_path / "straight"
    results = _run(tmp_path, straight)
    for k in (1, 2, 3):
        assert (straight / f"stage{k}" / "model_final.pth").is_file()
        assert json.loads((straight / f"stage{k}" / "metrics.json").read_text())
    record = json.loads((straight / "stages.json").read_text())["done"]
    assert list(record) == ["stage1", "stage2", "stage3"]
    assert json.loads((straight / "metrics.json").read_text()) == json.loads(
        (straight / "stage3" / "metrics.json").read_text())
    assert "verified/mAP" in results["SyntheticMarketTiny"]  # the published protocol, beside the raw ranking
    stage2_cfg = (straight / "stage2" / "config.yaml").read_text()
    assert "STAGE: 2" in stage2_cfg and str(straight / "stage1" / "model_final.pth") in stage2_cfg

    # the same run, interrupted inside stage II after its checkpoint at iteration 2: what is on disk then is
    # stage I complete, stage II's model_0000001.pth, and the record of stage I only (stage III never started:
    # not run here, as each stage is seeded on its own and stage III's files would be deleted anyway)
    resumed = tmp_path / "resumed"
    # evaluation draws nothing from the training RNGs: the weights are the same
    _run(tmp_path, resumed, *NO_EVAL, "SOLVER.GAN.RUN_STAGES", "(1, 2)")
    assert not (resumed / "stage3").exists()
    stage2 = resumed / "stage2"
    for name in ("model_final.pth", "metrics.json"):
        (stage2 / name).unlink()
    (stage2 / "last_checkpoint").write_text("model_0000001.pth")
    record_path = resumed / "stages.json"
    record = json.loads(record_path.read_text())
    record["done"] = {"stage1": record["done"]["stage1"]}
    record_path.write_text(json.dumps(record))
    stage1_final = (resumed / "stage1" / "model_final.pth").stat().st_mtime_ns

    torch.manual_seed(999)  # whatever the RNGs hold before resuming must not matter
    _run(tmp_path, resumed, *NO_EVAL, resume=True)
    assert (resumed / "stage1" / "model_final.pth").stat().st_mtime_ns == stage1_final  # finished: skipped
    for k in (2, 3):
        a, b = _weights(straight / f"stage{k}" / "model_final.pth"), _weights(resumed / f"stage{k}" / "model_final.pth")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"stage{k}: {key}"


def test_run_stages_selects_one_stage_and_continues_from_the_previous_output(datasets_root, tmp_path):
    out = tmp_path / "run"
    _run(tmp_path, out, *NO_EVAL, "SOLVER.GAN.RUN_STAGES", "(1,)")
    assert (out / "stage1" / "model_final.pth").is_file() and not (out / "stage2").exists()
    _run(tmp_path, out, *NO_EVAL, "SOLVER.GAN.RUN_STAGES", "(2,)")
    assert str(out / "stage1" / "model_final.pth") in (out / "stage2" / "config.yaml").read_text()
    assert not (out / "stage3").exists()
    with pytest.raises(ValueError, match="RUN_STAGES must be increasing numbers in 1..3"):
        _run(tmp_path, out, "SOLVER.GAN.RUN_STAGES", "(3, 2)")


def test_stage2_alone_in_a_fresh_folder_names_the_missing_weights(datasets_root, tmp_path):
    fresh = tmp_path / "fresh"
    with pytest.raises(FileNotFoundError, match=rf"stage1's weights, but {fresh}/stage1/model_final.pth does not "
                                                rf"exist.*RUN_STAGES \"\(1,\)\" OUTPUT_DIR {fresh}"):
        _run(tmp_path, fresh, *NO_EVAL, "SOLVER.GAN.RUN_STAGES", "(2,)")
    assert not (fresh / "stage2").exists()


def _distributed_worker(out_dir: str, weights: str, data_root: str) -> None:
    from fastreid.utils import comm

    os.environ["FASTREID_DATASETS"] = data_root
    rank = comm.get_rank()
    torch.manual_seed(100 + rank)  # different initial weights per rank: the engine broadcasts rank 0's
    cfg = _stage_cfg(Path(out_dir), 3, "MODEL.WEIGHTS", weights, "SOLVER.IMS_PER_BATCH", "8",
                     "SOLVER.GAN.CHECKPOINT_PERIOD", "0")
    trainer = GANTrainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    torch.save({"initial": initial, "final": trainer.model.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_gloo_processes_keep_stage3_replicas_identical(datasets_root, tmp_path, monkeypatch):
    from fastreid_gan.engine import launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stage1 = GANTrainer(_stage_cfg(tmp_path, 1))  # also generates the dataset before the workers start
    stage1.resume_or_load(resume=False)
    stage1.train()
    out = tmp_path / "dist"
    out.mkdir()
    launch(_distributed_worker, 2, dist_url="auto",
           args=(str(out), str(tmp_path / "stage1" / "model_final.pth"), str(datasets_root)))
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    for key, value in rank0["final"].items():  # parameters and BatchNorm statistics alike
        assert torch.equal(value, rank1["final"][key]), key
    for prefix in ("reid.", "gen.", "dis_id.", "dis_pose."):
        assert any(not torch.equal(rank0["final"][k], rank0["initial"][k])
                   for k in rank0["final"] if k.startswith(prefix)), f"{prefix} did not train"

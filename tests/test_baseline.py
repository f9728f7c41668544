"""The ResNet ID-loss baseline through fastreid's own trainer, this project's trainer, the CLI and DDP on CPU."""
import argparse
import json
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.config import get_cfg, merge_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"

# a few seconds per run: tiny dataset, 64x32 inputs, ResNet-18
TINY = [
    "DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
    "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "INPUT.PADDING.SIZE", "2",
    "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "4", "SOLVER.WARMUP_ITERS", "0", "SOLVER.BASE_LR", "0.003",
    "SOLVER.STEPS", "[100]", "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS", "0",
    "TEST.IMS_PER_BATCH", "32", "SEED", "0",
]


def _cfg(output_dir, extra=()):
    cfg = merge_config(get_cfg(), str(CONFIG), TINY + ["OUTPUT_DIR", str(output_dir)] + list(extra))
    return cfg


def _trainable_snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_fastreids_own_default_trainer_changes_weights_and_lowers_the_loss(datasets_root, tmp_path):
    from fastreid.engine import DefaultTrainer

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, ["TEST.EVAL_PERIOD", "100"])
    trainer = DefaultTrainer(cfg)
    before = _trainable_snapshot(trainer.model)
    trainer.train()
    after = _trainable_snapshot(trainer.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.9 * len(before), "fastreid's trainer left most weights untouched"
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_train_net_writes_every_output(datasets_root, tmp_path):
    from fastreid_gan.runner import main

    args = argparse.Namespace(config_file=str(CONFIG), opts=TINY + ["OUTPUT_DIR", str(tmp_path)], eval_only=False,
                              resume=False, num_gpus=1)
    results = main(args)
    for name in ("log.txt", "config.yaml", "model_final.pth", "metrics.json"):
        assert (tmp_path / name).is_file(), name
    assert list(tmp_path.glob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"SyntheticMarketTiny"}
    for key in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
        assert 0.0 <= metrics["SyntheticMarketTiny"][key] <= 100.0
    assert metrics["SyntheticMarketTiny"]["mAP"] == pytest.approx(float(results["SyntheticMarketTiny"]["mAP"]), abs=1e-4)

    # --eval-only on the checkpoint reproduces the numbers
    eval_dir = tmp_path / "eval"
    args = argparse.Namespace(config_file=str(CONFIG), eval_only=True, resume=False, num_gpus=1,
                              opts=TINY + ["OUTPUT_DIR", str(eval_dir), "MODEL.WEIGHTS", str(tmp_path / "model_final.pth")])
    main(args)
    again = json.loads((eval_dir / "metrics.json").read_text())
    assert again["SyntheticMarketTiny"]["mAP"] == pytest.approx(metrics["SyntheticMarketTiny"]["mAP"], abs=1e-4)


def test_eval_only_without_weights_is_a_clear_error(tmp_path):
    from fastreid_gan.runner import main

    args = argparse.Namespace(config_file=str(CONFIG), eval_only=True, resume=False, num_gpus=1,
                              opts=TINY + ["OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(ValueError, match="MODEL.WEIGHTS"):
        main(args)


@pytest.mark.parametrize("batch", [64, 32], ids=["1-iteration", "2-iterations"])
def test_a_run_of_one_or_two_iterations_finishes(datasets_root, tmp_path, batch):
    """One epoch of the tiny set's 76 images: fastreid's metric printer writes twice on the last iteration."""
    from fastreid_gan.runner import main

    opts = TINY + ["SOLVER.MAX_EPOCH", "1", "SOLVER.IMS_PER_BATCH", str(batch), "OUTPUT_DIR", str(tmp_path)]
    args = argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False, resume=False, num_gpus=1)
    results = main(args)
    assert (tmp_path / "model_final.pth").is_file()
    written = json.loads((tmp_path / "metrics.json").read_text())["SyntheticMarketTiny"]
    assert written["mAP"] == pytest.approx(float(results["SyntheticMarketTiny"]["mAP"]))


def test_untrained_evaluation_is_reproducible_and_needs_eval_only(datasets_root, tmp_path):
    from fastreid_gan.runner import argument_parser, main

    args = argument_parser().parse_args(["--config-file", str(CONFIG), "--eval-only", "--untrained", *TINY,
                                         "OUTPUT_DIR", str(tmp_path / "a")])
    first = main(args)["SyntheticMarketTiny"]
    args.opts = TINY + ["OUTPUT_DIR", str(tmp_path / "b")]
    again = main(args)["SyntheticMarketTiny"]
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["SyntheticMarketTiny"]["mAP"] == first["mAP"]
    assert again["mAP"] == first["mAP"] and 0.0 < first["mAP"] < 100.0  # random weights, drawn from SEED
    args.eval_only = False
    with pytest.raises(ValueError, match="--untrained.*--eval-only"):
        main(args)


def _distributed_worker(config, opts, out_dir):
    from fastreid.utils import comm
    from fastreid_gan.baseline_trainer import BaselineTrainer
    from fastreid_gan.runner import setup_cfg

    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=opts, eval_only=False))
    trainer = BaselineTrainer(cfg)
    model = trainer.model.module  # DDP-wrapped by fastreid's trainer
    torch.save(_trainable_snapshot(model), f"{out_dir}/init_rank{comm.get_rank()}.pt")
    trainer.train()
    torch.save(_trainable_snapshot(model), f"{out_dir}/final_rank{comm.get_rank()}.pt")


def test_two_process_cpu_training_keeps_replicas_identical(datasets_root, tmp_path):
    from fastreid_gan.data.synthetic import ensure_dataset
    from fastreid_gan.engine import launch

    ensure_dataset(str(datasets_root), domain="market", preset="tiny")  # generate before the workers start
    opts = TINY + ["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCH", "2", "TEST.EVAL_PERIOD", "100"]
    launch(_distributed_worker, 2, dist_url="auto", args=(str(CONFIG), opts, str(tmp_path)))
    init0, init1 = torch.load(tmp_path / "init_rank0.pt"), torch.load(tmp_path / "init_rank1.pt")
    final0, final1 = torch.load(tmp_path / "final_rank0.pt"), torch.load(tmp_path / "final_rank1.pt")
    # parameters, not BN running statistics: fastreid's trainer keeps those per replica (broadcast_buffers=False)
    for key in final0:
        assert torch.equal(init0[key], init1[key]), f"{key}: DDP did not broadcast the initial weights"
        assert torch.allclose(final0[key], final1[key], atol=1e-6), f"{key} differs between replicas"
    assert any(not torch.equal(init0[k], final0[k]) for k in final0)

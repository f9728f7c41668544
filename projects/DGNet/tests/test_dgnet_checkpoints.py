"""A baseline checkpoint given to DG-Net (and the other way round) is refused on every path that loads weights:
--eval-only, training from MODEL.WEIGHTS, --resume and tools/generate.py."""
import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid.modeling import build_model

from fastreid_gan.checkpoint_io import WeightsMismatchError
from fastreid_gan.checkpointer import RunCheckpointer
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.model_loading import inference_config

REPO = Path(__file__).resolve().parents[3]
DGNET = REPO / "projects" / "DGNet" / "configs" / "synthetic.yml"
BASELINE = REPO / "configs" / "Synthetic" / "baseline_market.yml"
TINY = ["DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
        "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DGNET.LOSS_WEIGHTS.PRIM", "[0.0]", "DATALOADER.NUM_WORKERS", "0"]
BASELINE_TINY = ["DATASETS.NAMES", '("SyntheticMarketTiny",)', "DATASETS.TESTS", '("SyntheticMarketTiny",)',
                 "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "DATALOADER.NUM_WORKERS", "0"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A Baseline and a DG-Net checkpoint as their training runs write them (random weights)."""
    out = tmp_path_factory.mktemp("checkpoints")
    files = {}
    for name, config, opts in (("Baseline", BASELINE, BASELINE_TINY), ("DGNet", DGNET, TINY)):
        cfg = inference_config(merge_config(get_cfg(), str(config), opts + ["MODEL.HEADS.NUM_CLASSES", "12"]))
        RunCheckpointer(build_model(cfg), str(out / name), meta_architecture=name).save("model_final")
        files[name] = out / name / "model_final.pth"
    return files


@pytest.mark.parametrize("config, opts, wrong, builds", [(DGNET, TINY, "Baseline", "DGNet"),
                                                        (BASELINE, BASELINE_TINY, "DGNet", "Baseline")],
                         ids=["dgnet-config", "baseline-config"])
def test_eval_only_refuses_the_other_methods_checkpoint(datasets_root, tmp_path, checkpoints, config, opts, wrong,
                                                        builds):
    from fastreid_gan.runner import main

    weights = checkpoints[wrong]
    args = argparse.Namespace(config_file=str(config), eval_only=True, resume=False, num_gpus=1,
                              opts=opts + ["OUTPUT_DIR", str(tmp_path), "MODEL.WEIGHTS", str(weights)])
    with pytest.raises(WeightsMismatchError) as info:
        main(args)
    message = str(info.value)
    assert f"MODEL.WEIGHTS = '{weights}'" in message and f"MODEL.META_ARCHITECTURE '{builds}'" in message
    assert "it would set 0 of the model's" in message and f"This is a {wrong} checkpoint" in message
    assert not (tmp_path / "metrics.json").exists()


def test_a_stock_baseline_checkpoint_is_recognised(tmp_path, checkpoints):
    """A file without the recorded meta-architecture (fastreid's own training) is told apart by its keys."""
    from fastreid_gan.model_loading import load_model_for_inference

    stock = torch.load(str(checkpoints["Baseline"]), weights_only=True)
    del stock["meta_architecture"]
    path = tmp_path / "fastreid_model_final.pth"
    torch.save(stock, str(path))
    cfg = merge_config(get_cfg(), str(DGNET), TINY)
    with pytest.raises(WeightsMismatchError, match="This looks like a Baseline checkpoint"):
        load_model_for_inference(cfg, str(path))


def test_generate_tool_refuses_a_baseline_checkpoint(datasets_root, tmp_path, checkpoints):
    spec = importlib.util.spec_from_file_location("generate_tool", str(REPO / "tools" / "generate.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    weights = checkpoints["Baseline"]
    with pytest.raises(WeightsMismatchError, match=f"--weights = '{weights}' does not fit .*'DGNet'"):
        tool.main(["--config-file", str(DGNET), "--weights", str(weights), "--output-dir", str(tmp_path)] + TINY)
    assert not list(tmp_path.iterdir())  # no grid of noise


def test_training_and_resuming_refuse_a_baseline_checkpoint(datasets_root, tmp_path, checkpoints):
    from fastreid_gan.engine import GANTrainer

    out = tmp_path / "run"
    cfg = merge_config(get_cfg(), str(DGNET), TINY + ["OUTPUT_DIR", str(out), "SOLVER.GAN.MAX_ITER", "2",
                                                      "MODEL.WEIGHTS", str(checkpoints["Baseline"])])
    trainer = GANTrainer(cfg)
    with pytest.raises(WeightsMismatchError, match="MODEL.WEIGHTS = .*This is a Baseline checkpoint"):
        trainer.resume_or_load(resume=False)

    # an OUTPUT_DIR whose last checkpoint is another method's: --resume says so instead of a KeyError
    (out / "model_0000009.pth").write_bytes(checkpoints["Baseline"].read_bytes())
    (out / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(WeightsMismatchError, match="the checkpoint to resume from .*OUTPUT_DIR holds the checkpoints "
                                                   "of a run with another config"):
        trainer.resume_or_load(resume=True)

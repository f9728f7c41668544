"""What ``tools/train_net.py`` does, importable so that tests and other tools run the same code path.

One entry point for every method: the config's meta-architecture decides the trainer (a
:class:`~fastreid_gan.engine.GANMetaArch` gets the GAN engine, anything else fastreid's trainer).
"""
from __future__ import annotations

import argparse
import logging
import os
import random
from typing import Any, Optional

import numpy as np
import torch

import fastreid_gan  # noqa: F401  (applies the compat fixes before fastreid is used)
from fastreid.config import CfgNode
from fastreid.engine import default_argument_parser, default_setup
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger

from fastreid_gan.config import get_cfg, merge_config, project_packages
from fastreid_gan.engine.config import gan_meta_arch_class
from fastreid_gan.evaluation import evaluate_on_test_datasets
from fastreid_gan.model_loading import load_model_for_inference
from fastreid_gan.run_outputs import mark_config_yaml, write_metrics_json
from fastreid_gan.training_stages import run_training_stages, training_stages_of

logger = logging.getLogger("fastreid_gan")


def resolve_device(cfg: CfgNode) -> None:
    """``MODEL.DEVICE cuda`` without CUDA falls back to CPU (one warning); AMP is CUDA-only."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("fastreid_gan").warning(
            "MODEL.DEVICE is '%s' but CUDA is not available: running on CPU.", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu" and cfg.SOLVER.AMP.ENABLED:
        logging.getLogger("fastreid_gan").warning("SOLVER.AMP.ENABLED needs CUDA: mixed precision is off on CPU.")
        cfg.SOLVER.AMP.ENABLED = False


def check_pretrained_weights(cfg: CfgNode) -> None:
    """``PRETRAIN True`` must point at a local file: fastreid would try to download and fail deep inside."""
    backbone = cfg.MODEL.BACKBONE
    if not backbone.PRETRAIN:
        return
    path = backbone.PRETRAIN_PATH
    if not path or not os.path.isfile(path):
        where = f"'{path}' does not exist" if path else "MODEL.BACKBONE.PRETRAIN_PATH is empty"
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PRETRAIN is True but {where}. Nothing is downloaded: put ImageNet weights for "
            f"{backbone.NAME} depth {backbone.DEPTH} (e.g. torchvision's resnet50-0676ba61.pth or "
            f"resnet50-19c8e357.pth) on this machine and add 'MODEL.BACKBONE.PRETRAIN_PATH /path/to/file.pth' "
            f"to the command line, or train from scratch with 'MODEL.BACKBONE.PRETRAIN False'."
        )


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Build the config from ``--config-file`` and trailing ``KEY VALUE`` overrides, then freeze it."""
    cfg = get_cfg()
    merge_config(cfg, args.config_file, args.opts)
    resolve_device(cfg)
    if not getattr(args, "eval_only", False):
        check_pretrained_weights(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and comm.get_world_size() > 1:
        cfg.MODEL.DEVICE = f"cuda:{comm.get_local_rank()}"
    cfg.freeze()
    return cfg


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (each rank gets ``seed + rank``)."""
    seed = seed + comm.get_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def is_gan_model(cfg: CfgNode) -> bool:
    return gan_meta_arch_class(cfg.MODEL.META_ARCHITECTURE) is not None


def build_trainer(cfg: CfgNode):
    """The GAN engine for a :class:`GANMetaArch`, fastreid's trainer (CPU-safe) for anything else."""
    if is_gan_model(cfg):
        from fastreid_gan.engine import GANTrainer

        return GANTrainer(cfg)
    from fastreid_gan.baseline_trainer import BaselineTrainer

    return BaselineTrainer(cfg)


def evaluate_only(cfg: CfgNode, untrained: bool = False) -> Any:
    """``--eval-only``: load ``MODEL.WEIGHTS`` and evaluate on ``DATASETS.TESTS``; writes ``metrics.json``.

    ``untrained=True`` (``--untrained``) evaluates the model with random weights instead: the floor that
    training must beat.
    """
    model = load_model_for_inference(cfg, None if untrained else cfg.MODEL.WEIGHTS)
    results = evaluate_on_test_datasets(cfg, model)
    if comm.is_main_process():
        write_metrics_json(cfg.OUTPUT_DIR, results)
    return results


def setup_logging_and_output(cfg: CfgNode, args: argparse.Namespace) -> None:
    """fastreid's setup (log.txt, config.yaml, environment info) plus this project's own loggers."""
    default_setup(cfg, args)
    if comm.is_main_process():
        mark_config_yaml(cfg.OUTPUT_DIR)
    for name in ["fastreid_gan"] + project_packages():  # every installed project's log lines reach log.txt
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)


def main(args: argparse.Namespace) -> Any:
    untrained = getattr(args, "untrained", False)
    if untrained and not args.eval_only:
        raise ValueError("--untrained evaluates a model with random weights: use it with --eval-only")
    cfg = setup_cfg(args)
    setup_logging_and_output(cfg, args)
    if cfg.SEED >= 0 or untrained:
        seed_everything(max(cfg.SEED, 0))  # random weights are drawn reproducibly
    if args.eval_only:
        return evaluate_only(cfg, untrained=untrained)
    stages = training_stages_of(cfg)
    if stages:
        return run_training_stages(args, cfg, stages)
    trainer = build_trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser() -> argparse.ArgumentParser:
    """fastreid's arguments (``--config-file --resume --eval-only --num-gpus ... KEY VALUE``)."""
    parser = default_argument_parser()
    parser.description = "Train or evaluate any fastreid-gan config (baseline, DG-Net, ...)."
    parser._option_string_actions["--num-gpus"].help = (
        "processes per machine: GPUs with CUDA (NCCL), else CPU processes (gloo)"
    )
    # fastreid's default is one fixed port per user: a second multi-process run on the machine would collide
    parser.set_defaults(dist_url="auto")
    parser._option_string_actions["--dist-url"].help = (
        "initialization URL for multi-process runs; default 'auto': a free local port (one machine). "
        "Several machines: tcp://<host of machine 0>:<port>"
    )
    parser.add_argument("--untrained", action="store_true",
                        help="with --eval-only: evaluate the model with random weights (the floor training must beat)")
    return parser


def launch_main(argv: Optional[list] = None) -> Any:
    from fastreid_gan.engine import launch

    args = argument_parser().parse_args(argv)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )

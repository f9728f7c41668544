"""The GAN engine's config keys and the per-sub-network optimizer node.

Methods add one node per sub-network in their ``add_<method>_config``::

    cfg.SOLVER.GAN.OPTIMIZERS.GEN = optimizer_node(name="Adam", base_lr=1e-4, betas=(0.0, 0.999),
                                                   weight_decay=5e-4, sched="multistep", steps=(60000, 90000))

and YAML files override single fields (``SOLVER.GAN.OPTIMIZERS.GEN.BASE_LR: 2e-4``).
"""
from __future__ import annotations

from typing import Sequence, Tuple

from fastreid.config import CfgNode as CN

__all__ = ["add_gan_engine_config", "optimizer_node", "OPTIMIZER_NAMES"]

OPTIMIZER_NAMES = ("Adam", "AdamW", "SGD")


def optimizer_node(
    name: str = "Adam",
    base_lr: float = 1e-4,
    betas: Tuple[float, float] = (0.5, 0.999),
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    lr_factors: Sequence[str] = (),
    sched: str = "constant",
    steps: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.1,
    decay_start_iter: int = 0,
    grad_clip: float = 0.0,
) -> CN:
    """A config node describing one sub-network's optimizer and LR schedule (all periods in iterations).

    Args:
        name: "Adam", "AdamW" or "SGD".
        base_lr: LR of parameters matched by no ``lr_factors`` prefix.
        betas: Adam/AdamW betas (GANs usually want (0.5, 0.999) or (0.0, 0.999)).
        momentum, nesterov: SGD only.
        weight_decay: applied to every parameter of the sub-network.
        lr_factors: ``"prefix=factor"`` strings: a parameter whose name (relative to the sub-network)
            starts with ``prefix`` gets ``base_lr * factor``; the longest matching prefix wins.
        sched: "multistep" (``steps``, ``gamma``), "linear" (constant until ``decay_start_iter``, then
            linearly to 0 at ``SOLVER.GAN.MAX_ITER``) or "constant".
        warmup_iters, warmup_factor: linear warm-up from ``warmup_factor * lr`` to ``lr`` (0 iters = off).
        grad_clip: max total gradient norm of the sub-network's parameters (0 = off).
    """
    return CN(
        {
            "NAME": name,
            "BASE_LR": float(base_lr),
            "BETAS": tuple(float(b) for b in betas),
            "MOMENTUM": float(momentum),
            "NESTEROV": bool(nesterov),
            "WEIGHT_DECAY": float(weight_decay),
            "LR_FACTORS": [str(f) for f in lr_factors],
            "SCHED": sched,
            "STEPS": tuple(int(s) for s in steps),
            "GAMMA": float(gamma),
            "WARMUP_ITERS": int(warmup_iters),
            "WARMUP_FACTOR": float(warmup_factor),
            "DECAY_START_ITER": int(decay_start_iter),
            "GRAD_CLIP": float(grad_clip),
        }
    )


def add_gan_engine_config(cfg: CN) -> None:
    """Add the engine's keys to a fastreid config (idempotent; existing values are kept)."""
    if "GAN" not in cfg.SOLVER:
        cfg.SOLVER.GAN = CN()
    gan = cfg.SOLVER.GAN
    defaults = {
        "MAX_ITER": 100000,
        # periods count iterations; 0 switches the periodic action off (a final evaluation always runs)
        "EVAL_PERIOD": 0,
        "CHECKPOINT_PERIOD": 10000,
        "VIS_PERIOD": 1000,
        "VIS_SAMPLES": 8,
        "LOG_PERIOD": 20,
    }
    for key, value in defaults.items():
        if key not in gan:
            gan[key] = value
    if "OPTIMIZERS" not in gan:
        # one node per sub-network, added by each method (new_allowed: a YAML file may add nodes too)
        gan.OPTIMIZERS = CN(new_allowed=True)
    if "DTYPE" not in cfg.SOLVER.AMP:
        cfg.SOLVER.AMP.DTYPE = "fp16"  # "fp16" (with GradScalers) or "bf16"; CUDA only
    if "POSITIVES" not in cfg.DATALOADER:
        # add "pos_images"/"pos_targets": another image of the same identity for each sample
        cfg.DATALOADER.POSITIVES = False

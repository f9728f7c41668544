"""The GAN engine's config keys and the per-sub-network optimizer nodes.

A method declares its optimizers' defaults with the method, not in the shared config: its meta-architecture's
:meth:`~fastreid_gan.engine.GANMetaArch.default_optimizers` returns one :func:`optimizer_node` per sub-network.
A config node ``SOLVER.GAN.OPTIMIZERS.<NET>`` (from a YAML file or the command line) may list only some keys;
:func:`resolve_optimizer_node` completes it, in this order of precedence::

    the config's keys  >  the method's default_optimizers()[net]  >  optimizer_node()'s defaults

:func:`complete_optimizer_nodes` writes the completed nodes into a config once its meta-architecture is known
(``fastreid_gan.config.merge_config`` calls it between the file and the command-line overrides, so that
``SOLVER.GAN.OPTIMIZERS.GEN.BASE_LR 2e-4`` works on the command line and ``config.yaml`` holds every value);
the trainer resolves the nodes again from whatever config it is given.  See ``docs/engine.md`` §3.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

from fastreid.config import CfgNode as CN

__all__ = [
    "add_gan_engine_config",
    "optimizer_node",
    "OPTIMIZER_NAMES",
    "resolve_optimizer_node",
    "complete_optimizer_nodes",
    "gan_meta_arch_class",
]

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


def _coerce(value: Any, like: Any, key: str) -> Any:
    """``value`` as the type of the default ``like`` (YAML gives ints for floats, lists for tuples; a node that a
    YAML file adds keeps its values as written, e.g. the string ``"(360, 540)"``, since yacs decodes only the
    values of keys it knows)."""
    if isinstance(value, str) and not isinstance(like, str):
        value = CN._decode_cfg_value(value)
    try:
        if isinstance(like, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(like, float):
            return float(value)
        if isinstance(like, int):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if isinstance(like, str):
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(like, tuple):
            kind = int if key.endswith(".STEPS") else float
            return tuple(kind(v) for v in value)
        if isinstance(like, list):
            if isinstance(value, str):
                raise TypeError  # "a=1" would become ['a', '=', '1']
            return [str(v) for v in value]
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{key} is {value!r}; expected a value like {like!r}")


def resolve_optimizer_node(given: Optional[Mapping[str, Any]], method_default: Optional[Mapping[str, Any]],
                           key: str) -> CN:
    """The complete node for one sub-network: ``given`` keys over ``method_default`` over :func:`optimizer_node`.

    Raises:
        KeyError: neither the config nor the method gives a node, or either names an unknown key
            (both messages name ``key``, e.g. ``SOLVER.GAN.OPTIMIZERS.GEN``).
        ValueError: a value of the wrong kind.
    """
    if given is None and method_default is None:
        raise KeyError(
            f"{key} is not set and the method declares no default for it: add {key} to the config, or "
            f"return optimizer_node(...) for it from the meta-architecture's default_optimizers()"
        )
    full = optimizer_node()
    for source, node in (("the method's default_optimizers()", method_default), ("the config", given)):
        if node is None:
            continue
        unknown = sorted(set(node) - set(full))
        if unknown:
            raise KeyError(f"Unknown optimizer key(s) {unknown} in {key} (from {source}); known: {sorted(full)}")
        for field, value in node.items():
            full[field] = _coerce(value, full[field], f"{key}.{field}")
    return full


def gan_meta_arch_class(name: str) -> Optional[type]:
    """The registered meta-architecture class ``name`` if it is a :class:`GANMetaArch`, else None."""
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    from .meta_arch import GANMetaArch

    try:
        cls = META_ARCH_REGISTRY.get(name)
    except KeyError:
        return None  # build_model reports an unknown meta-architecture with fastreid's list of names
    return cls if isinstance(cls, type) and issubclass(cls, GANMetaArch) else None


def complete_optimizer_nodes(cfg: CN, meta_arch: Optional[str] = None) -> None:
    """Write the complete optimizer node of every sub-network of ``meta_arch`` (default: the config's) into
    ``cfg.SOLVER.GAN.OPTIMIZERS``; nodes of other methods are never added.  Nothing happens for a meta-arch
    that is not a registered :class:`GANMetaArch`.  Idempotent."""
    cls = gan_meta_arch_class(meta_arch or cfg.MODEL.META_ARCHITECTURE)
    if cls is None:
        return
    nodes = cfg.SOLVER.GAN.OPTIMIZERS
    for net, default in cls.default_optimizers().items():
        key = net.upper()
        nodes[key] = resolve_optimizer_node(nodes.get(key), default, f"SOLVER.GAN.OPTIMIZERS.{key}")


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
        # a method trained in several runs (GANMetaArch.training_stages: FD-GAN's stages): the 1-based numbers
        # of the stages one command runs, in order; empty: all
        "RUN_STAGES": (),
    }
    for key, value in defaults.items():
        if key not in gan:
            gan[key] = value
    if "OPTIMIZERS" not in gan:
        # one node per sub-network: the method's defaults (GANMetaArch.default_optimizers) completed with
        # what a YAML file gives (new_allowed: a file may name a node with only some of its keys)
        gan.OPTIMIZERS = CN(new_allowed=True)
    if "SEED" not in cfg:
        # -1: fastreid's seed_all_rng(None) picks a random seed; >= 0 makes a run (and its data stream) reproducible
        cfg.SEED = -1
    if "DTYPE" not in cfg.SOLVER.AMP:
        cfg.SOLVER.AMP.DTYPE = "fp16"  # "fp16" (with GradScalers) or "bf16"; CUDA only
    if "POSITIVES" not in cfg.DATALOADER:
        # add "pos_images"/"pos_targets": another image of the same identity for each sample
        cfg.DATALOADER.POSITIVES = False
    # keys both trainers (baseline and GAN) read
    if "CHECKPOINT_KEEP" not in cfg.SOLVER:
        # periodic checkpoints (model_<n>.pth) kept on disk, the newest ones; 0 keeps all (fastreid's behaviour).
        # model_final.pth and model_best.pth are never removed.
        cfg.SOLVER.CHECKPOINT_KEEP = 0
    if "PAIR_RERANK" not in cfg.TEST:
        # re-score each query's TOPK nearest gallery items with the model's pair_distance (FD-GAN's published
        # protocol: V's probability "different"); the metrics are reported both ways (fastreid_gan.evaluation)
        cfg.TEST.PAIR_RERANK = CN({"ENABLED": False, "TOPK": 100})
    if "WEIGHTS_KEEP_INIT" not in cfg.MODEL:
        # key prefixes of the model that MODEL.WEIGHTS may leave at their initialisation (missing from the file or
        # of another shape), e.g. ["heads."] for a backbone-only initialisation; anything else must fit
        cfg.MODEL.WEIGHTS_KEEP_INIT = []

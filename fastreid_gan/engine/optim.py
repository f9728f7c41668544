"""Build one torch optimizer for one sub-network from its config node (see :func:`.config.optimizer_node`).

fastreid's ``build_optimizer`` is not used: it cannot set Adam's betas, and its ``ContiguousParams``
wrapper turns ``optimizer.step()`` into a no-op with torch 2's ``zero_grad(set_to_none=True)`` default.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import nn

from .config import OPTIMIZER_NAMES, resolve_optimizer_node

__all__ = ["parse_lr_factors", "build_param_groups", "build_optimizer"]


def parse_lr_factors(specs: Any) -> List[Tuple[str, float]]:
    """``["backbone=0.1", "heads.=10"]`` -> ``[("backbone", 0.1), ("heads.", 10.0)]``."""
    parsed = []
    for spec in specs:
        prefix, sep, value = str(spec).rpartition("=")
        if not sep or not prefix:
            raise ValueError(f"LR_FACTORS entries are 'param_name_prefix=factor', got {spec!r}")
        parsed.append((prefix.strip(), float(value)))
    return parsed


def build_param_groups(module: nn.Module, base_lr: float, lr_factors: Any) -> List[Dict[str, Any]]:
    """Trainable parameters grouped by LR factor: the longest matching prefix wins, unmatched get 1.0.

    Each group carries ``"lr_factor"`` and ``"prefix"`` ("" for the default group) for logging.
    """
    factors = parse_lr_factors(lr_factors)
    groups: Dict[str, Dict[str, Any]] = {"": {"params": [], "lr": base_lr, "lr_factor": 1.0, "prefix": ""}}
    for prefix, factor in factors:
        groups[prefix] = {"params": [], "lr": base_lr * factor, "lr_factor": factor, "prefix": prefix}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue  # frozen by the model itself: the engine never trains it
        matches = [prefix for prefix, _ in factors if name.startswith(prefix)]
        groups[max(matches, key=len) if matches else ""]["params"].append(param)
    unused = [prefix for prefix, _ in factors if not groups[prefix]["params"]]
    if unused:
        names = [n for n, p in module.named_parameters() if p.requires_grad][:8]
        raise ValueError(
            f"LR_FACTORS prefix(es) {unused} match no trainable parameter; parameter names look like {names}"
        )
    return [g for g in groups.values() if g["params"]]


def build_optimizer(node: Mapping[str, Any], module: nn.Module, key: str = "") -> torch.optim.Optimizer:
    """The optimizer described by ``node`` (keys it lacks get :func:`.config.optimizer_node`'s defaults) over
    ``module``'s trainable parameters.

    Raises:
        ValueError: unknown optimizer name, a stray LR factor prefix or no trainable parameter.
    """
    node = resolve_optimizer_node(node, None, key or "optimizer node")
    base_lr = float(node["BASE_LR"])
    groups = build_param_groups(module, base_lr, node["LR_FACTORS"])
    if not groups:
        raise ValueError(f"{key or 'optimizer'}: the sub-network has no trainable parameter")
    name = str(node["NAME"])
    weight_decay = float(node["WEIGHT_DECAY"])
    if name in ("Adam", "AdamW"):
        betas = tuple(float(b) for b in node["BETAS"])
        if len(betas) != 2:
            raise ValueError(f"{key}.BETAS must hold two values, got {node['BETAS']}")
        cls = torch.optim.Adam if name == "Adam" else torch.optim.AdamW
        return cls(groups, lr=base_lr, betas=betas, weight_decay=weight_decay)
    if name == "SGD":
        return torch.optim.SGD(
            groups,
            lr=base_lr,
            momentum=float(node["MOMENTUM"]),
            nesterov=bool(node["NESTEROV"]),
            weight_decay=weight_decay,
        )
    raise ValueError(f"{key}.NAME is {name!r}; expected one of {OPTIMIZER_NAMES}")

"""The project's config: fastreid's defaults + the GAN engine's keys + every installed project's keys.

Projects (DG-Net, FD-GAN, SPGAN ...) announce themselves through the entry-point group
``fastreid_gan.projects`` (``name = package:add_<method>_config``).  Loading a project imports its package,
which runs its registry decorators, and then adds its keys, so tools never list the methods by hand.
"""
from __future__ import annotations

import difflib
import logging
import os
from importlib import metadata
from typing import Callable, Dict, Iterable, List, Optional

from fastreid.config import CfgNode
from fastreid.config import get_cfg as fastreid_get_cfg

logger = logging.getLogger(__name__)

PROJECT_ENTRY_POINT_GROUP = "fastreid_gan.projects"


class ConfigKeyError(KeyError):
    """A config file or a command-line override names a key that does not exist."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def load_projects() -> Dict[str, Callable[[CfgNode], None]]:
    """Import every registered project and return its ``add_<method>_config`` function by project name."""
    adders: Dict[str, Callable[[CfgNode], None]] = {}
    for entry_point in sorted(metadata.entry_points(group=PROJECT_ENTRY_POINT_GROUP), key=lambda e: e.name):
        adders[entry_point.name] = entry_point.load()
    return adders


def get_cfg() -> CfgNode:
    """fastreid's default config extended with the engine's and every project's keys."""
    from fastreid_gan.engine.config import add_gan_engine_config

    cfg = fastreid_get_cfg()
    cfg.SEED = -1  # fastreid's seed_all_rng(None) picks a random seed; >= 0 makes a run reproducible
    add_gan_engine_config(cfg)
    for add_config in load_projects().values():
        add_config(cfg)
    return cfg


def _all_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    keys = []
    for key, value in cfg.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, CfgNode):
            keys.extend(_all_keys(value, full + "."))
    return keys


def _unknown_key_error(cfg: CfgNode, exc: KeyError, source: str) -> ConfigKeyError:
    text = str(exc.args[0]) if exc.args else str(exc)
    key = text.split(":")[-1].strip().strip("'\"") if "Non-existent" in text else text
    suggestions = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
    return ConfigKeyError(
        f"Unknown config key '{key}' in {source}.{hint} Keys come from fastreid's defaults, "
        f"fastreid_gan.engine.config and each project's add_<method>_config()."
    )


def merge_config(cfg: CfgNode, config_file: Optional[str] = None, opts: Optional[Iterable[str]] = None) -> CfgNode:
    """Merge a YAML file (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides, with clear errors."""
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"Config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as exc:
            raise _unknown_key_error(cfg, exc, config_file) from None
    opts = list(opts or [])
    if opts:
        if len(opts) % 2:
            raise ValueError(f"Command-line overrides must be KEY VALUE pairs, got an odd list: {opts}")
        try:
            cfg.merge_from_list(opts)
        except (KeyError, AssertionError) as exc:  # yacs asserts on unknown override keys
            if isinstance(exc, AssertionError) and "Non-existent" not in str(exc):
                raise
            raise _unknown_key_error(cfg, exc, "the command-line overrides") from None
    return cfg

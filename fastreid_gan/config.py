"""The project's config: fastreid's defaults + the core's test keys (``TEST.LMP``) + the GAN engine's keys + every
installed project's keys.

Projects (DG-Net, FD-GAN, SPGAN ...) announce themselves through the entry-point group
``fastreid_gan.projects`` (``name = package:add_<method>_config``).  Loading a project imports its package,
which runs its registry decorators, and then adds its keys, so tools never list the methods by hand.

A project only ADDS keys of its own (``MODEL.<METHOD>.*``): changing a key that exists already, or adding an
optimizer node to the shared ``SOLVER.GAN.OPTIMIZERS``, is an error, so nothing one project sets reaches a
config of another, whatever the order in which they load.  A method's optimizer defaults are declared by its
meta-architecture (``GANMetaArch.default_optimizers``) and written into a config by :func:`merge_config` once
the config names that meta-architecture.
"""
from __future__ import annotations

import difflib
import logging
import os
from importlib import metadata
from typing import Callable, Dict, Iterable, List, Optional

from fastreid.config import CfgNode

from fastreid_gan.compat import fastreid_default_config

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


def project_packages() -> List[str]:
    """The top-level package of every registered project (``dgnet``, ...): the names of their loggers."""
    packages = {e.value.split(":")[0].split(".")[0] for e in metadata.entry_points(group=PROJECT_ENTRY_POINT_GROUP)}
    return sorted(packages)


def _flat_items(cfg: CfgNode, prefix: str = "") -> Dict[str, object]:
    items: Dict[str, object] = {}
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            items.update(_flat_items(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def add_project_config(cfg: CfgNode, name: str, add_config: Callable[[CfgNode], None]) -> None:
    """Run project ``name``'s ``add_<method>_config(cfg)``, checking that it only adds keys of its own."""
    before = _flat_items(cfg)
    add_config(cfg)
    after = _flat_items(cfg)
    changed = sorted(k for k, v in before.items() if k not in after or after[k] != v)
    shared = sorted(k for k in set(after) - set(before) if k.startswith("SOLVER.GAN.OPTIMIZERS."))
    if changed or shared:
        raise ValueError(
            f"Project {name!r}: add_<method>_config changed keys that other methods see "
            f"({', '.join((changed + shared)[:5])}{' ...' if len(changed) + len(shared) > 5 else ''}). "
            f"A project adds only its own MODEL.<METHOD> keys; put its optimizer defaults in its meta-architecture's "
            f"default_optimizers() and its settings of shared keys in its Base-*.yml."
        )


def add_test_config(cfg: CfgNode) -> None:
    """The core's test-time keys that every re-id model of the project honours (its ``forward`` in eval mode).

    ``TEST.LMP``: local max pooling (SPGAN/eSPGAN TPAMI, Sec. 3.4; :mod:`fastreid_gan.layers.local_pooling`,
    ``docs/lmp.md``): the eval feature becomes the encoder's last map pooled in ``PARTS`` horizontal stripes
    (``POOL`` max or avg), concatenated, flip-summed and L2-normalised.  No weights: any checkpoint works with it.

    ``TEST.SEARCH``: how the evaluator ranks the gallery, exact (default) or through a faiss index's top-k
    (:mod:`fastreid_gan.evaluation.search`, ``docs/evaluation.md``); read by the evaluator, not by the model.
    """
    if "LMP" not in cfg.TEST:
        cfg.TEST.LMP = CfgNode({"ENABLED": False, "PARTS": 8, "POOL": "max"})
    if "SEARCH" not in cfg.TEST:
        # TEST.SEARCH (docs/evaluation.md): MODE exact ranks the whole gallery (exact CMC/mAP/mINP); MODE faiss
        # searches a faiss index (INDEX: an index_factory string; NPROBE for IVF, EF_SEARCH for HNSW, REFINE for a
        # refining ",RFlat" index) for each query's TOPK nearest items and reports CMC up to TOPK and mAP@TOPK;
        # RECALL adds recall@TOPK against the exact top-k (one more exact GEMM pass).
        cfg.TEST.SEARCH = CfgNode({"MODE": "exact", "TOPK": 100, "INDEX": "HNSW32", "NPROBE": 32, "EF_SEARCH": 256,
                                   "REFINE": 4, "RECALL": False})


def get_cfg() -> CfgNode:
    """fastreid's default config extended with the core's, the engine's and every project's keys.

    ``import fastreid_gan`` also makes ``fastreid.config.get_cfg`` return this (:mod:`fastreid_gan.compat`).
    """
    from fastreid_gan.engine.config import add_gan_engine_config

    cfg = fastreid_default_config()
    add_test_config(cfg)
    add_gan_engine_config(cfg)
    for name, add_config in load_projects().items():
        add_project_config(cfg, name, add_config)
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


def _meta_arch_named(cfg: CfgNode, opts: List[str]) -> str:
    """The meta-architecture the config will have once ``opts`` are merged."""
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "MODEL.META_ARCHITECTURE":
            return str(value)
    return str(cfg.MODEL.META_ARCHITECTURE)


def merge_config(cfg: CfgNode, config_file: Optional[str] = None, opts: Optional[Iterable[str]] = None) -> CfgNode:
    """Merge a YAML file (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides, with clear errors.

    Between the two, the optimizer nodes of the config's GAN meta-architecture are completed with the method's
    defaults (:func:`~fastreid_gan.engine.config.complete_optimizer_nodes`), so the command line can override
    any of their keys and the dumped config holds every value used.  The merged ``TEST.LMP`` keys are checked
    last (:func:`~fastreid_gan.layers.local_pooling.check_local_pooling_config`).
    """
    from fastreid_gan.engine.config import complete_optimizer_nodes
    from fastreid_gan.layers.local_pooling import check_local_pooling_config

    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"Config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as exc:
            raise _unknown_key_error(cfg, exc, config_file) from None
    opts = list(opts or [])
    flags = [o for o in opts if str(o).startswith("--")]
    if flags:
        raise ValueError(f"Command-line overrides are KEY VALUE pairs, but they hold {flags}: options such as "
                         f"--resume or --eval-only go before the first KEY VALUE pair")
    if len(opts) % 2:
        raise ValueError(f"Command-line overrides must be KEY VALUE pairs, got an odd list: {opts}")
    complete_optimizer_nodes(cfg, _meta_arch_named(cfg, opts))
    if opts:
        try:
            cfg.merge_from_list(opts)
        except (KeyError, AssertionError) as exc:  # yacs asserts on unknown override keys
            if isinstance(exc, AssertionError) and "Non-existent" not in str(exc):
                raise
            raise _unknown_key_error(cfg, exc, "the command-line overrides") from None
    check_local_pooling_config(cfg)  # TEST.LMP errors now, not when the first test batch arrives
    return cfg

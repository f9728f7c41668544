"""Methods trained in several runs (FD-GAN's stages I-III): ``tools/train_net.py`` runs a config's
:class:`~fastreid_gan.engine.TrainingStage` list in order, one :class:`~fastreid_gan.engine.GANTrainer` each.

Stage k's config is ``--config-file``, then the stage's YAML, then its overrides, then the command line; its
``OUTPUT_DIR`` is ``<OUTPUT_DIR>/<stage name>`` and, after the first stage, its ``MODEL.WEIGHTS`` the previous
stage's ``model_final.pth``.  ``<OUTPUT_DIR>/stages.json`` records the finished stages (and their evaluations), so
``--resume`` skips them and resumes the first unfinished one from its own last checkpoint, exactly (every stage
seeds the RNGs the way a single run does).  ``<OUTPUT_DIR>/metrics.json`` is the last stage's evaluation.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
from typing import Any, Dict, Mapping, Optional, Sequence

from fastreid.config import CfgNode
from fastreid.utils import comm

from .config import get_cfg, merge_config
from .engine import TrainingStage
from .engine.config import gan_meta_arch_class
from .run_outputs import mark_config_yaml, to_plain, write_metrics_json

__all__ = ["training_stages_of", "stage_config", "run_training_stages", "STAGES_FILE"]

logger = logging.getLogger(__name__)
STAGES_FILE = "stages.json"


def training_stages_of(cfg: CfgNode) -> Sequence[TrainingStage]:
    """The config's meta-architecture's stages (none for a single-run method or config)."""
    meta_arch = gan_meta_arch_class(cfg.MODEL.META_ARCHITECTURE)
    return tuple(meta_arch.training_stages(cfg)) if meta_arch is not None else ()


def _stage_file(stage: TrainingStage, config_file: str) -> str:
    path = stage.config_file
    if not osp.isabs(path):
        path = osp.join(osp.dirname(osp.abspath(config_file)), path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"Stage {stage.name!r}: its config {path} does not exist (stage configs are "
                                f"relative to the folder of --config-file {config_file})")
    return path


def stage_config(config_file: str, opts: Sequence[str], stage: TrainingStage, output_dir: str,
                 weights: Optional[str]) -> CfgNode:
    """The (unfrozen) config of one stage: file, stage file, stage overrides, command line; then its folder
    and, when ``weights`` is given, ``MODEL.WEIGHTS``."""
    cfg = get_cfg()
    merge_config(cfg, config_file)
    merge_config(cfg, _stage_file(stage, config_file), list(stage.overrides) + list(opts))
    cfg.OUTPUT_DIR = osp.join(output_dir, stage.name)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    return cfg


class _StageRecord:
    """``<OUTPUT_DIR>/stages.json``: ``{"done": {stage: evaluation}}``, written atomically by the main process."""

    def __init__(self, output_dir: str, fresh: bool) -> None:
        self.path = osp.join(output_dir, STAGES_FILE)
        self.done: Dict[str, Any] = {}
        if not fresh and osp.isfile(self.path):
            with open(self.path) as f:
                self.done = json.load(f).get("done", {})
        elif comm.is_main_process():
            self._write()

    def _write(self) -> None:
        os.makedirs(osp.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"done": to_plain(self.done)}, f, indent=2)
        os.replace(tmp, self.path)

    def mark_done(self, name: str, results: Optional[Mapping]) -> None:
        self.done[name] = dict(results or {})
        if comm.is_main_process():
            self._write()


def run_training_stages(args: argparse.Namespace, cfg: CfgNode, stages: Sequence[TrainingStage]) -> Optional[Mapping]:
    """Train ``stages`` in order (those of ``SOLVER.GAN.RUN_STAGES``, 1-based, default all); returns the last run
    stage's evaluation (main process).  ``args`` are ``tools/train_net.py``'s (``config_file``, ``opts``,
    ``resume``); ``cfg`` the merged config of ``--config-file`` and the command line."""
    from .runner import build_trainer, resolve_device, seed_everything

    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"Training stages need distinct names, got {names}")
    selected = [int(k) for k in cfg.SOLVER.GAN.RUN_STAGES]
    chosen = selected or list(range(1, len(stages) + 1))
    if any(not 1 <= k <= len(stages) for k in chosen) or chosen != sorted(set(chosen)):
        raise ValueError(f"SOLVER.GAN.RUN_STAGES must be increasing numbers in 1..{len(stages)} (the stages "
                         f"{names}), got {selected}")
    record = _StageRecord(cfg.OUTPUT_DIR, fresh=not args.resume)
    comm.synchronize()
    results: Optional[Mapping] = None
    for k in chosen:
        stage = stages[k - 1]
        previous = stages[k - 2] if k > 1 else None
        final = osp.join(cfg.OUTPUT_DIR, stage.name, "model_final.pth")
        if args.resume and stage.name in record.done and osp.isfile(final):
            logger.info("Stage %s finished before (%s): skipped", stage.name, final)
            results = record.done[stage.name]
            continue
        weights = None
        if previous is not None and stage.from_previous and k - 1 in chosen:
            weights = osp.join(cfg.OUTPUT_DIR, previous.name, "model_final.pth")
        elif previous is not None and stage.from_previous and not cfg.MODEL.WEIGHTS:
            # a stage run alone continues from the previous stage's output in this OUTPUT_DIR
            weights = osp.join(cfg.OUTPUT_DIR, previous.name, "model_final.pth")
            if not osp.isfile(weights):
                raise FileNotFoundError(
                    f"Stage {stage.name} starts from stage {previous.name}'s weights, but {weights} does not exist. "
                    f"Make them with 'tools/train_net.py --config-file {args.config_file} SOLVER.GAN.RUN_STAGES "
                    f"\"({k - 1},)\" OUTPUT_DIR {cfg.OUTPUT_DIR}', or give the file with MODEL.WEIGHTS")
        stage_cfg = stage_config(args.config_file, args.opts, stage, cfg.OUTPUT_DIR, weights)
        resolve_device(stage_cfg)
        stage_cfg.freeze()
        logger.info("=== Training stage %s (%d of %d): output %s, weights %s", stage.name, k, len(stages),
                    stage_cfg.OUTPUT_DIR, stage_cfg.MODEL.WEIGHTS or "none")
        if comm.is_main_process():
            os.makedirs(stage_cfg.OUTPUT_DIR, exist_ok=True)
            with open(osp.join(stage_cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                f.write(stage_cfg.dump())
            mark_config_yaml(stage_cfg.OUTPUT_DIR)
        if stage_cfg.SEED >= 0:
            seed_everything(stage_cfg.SEED)  # each stage starts as a single run would: a resumed chain is exact
        trainer = build_trainer(stage_cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
        record.mark_done(stage.name, results)
        comm.synchronize()
    if comm.is_main_process() and results is not None:
        write_metrics_json(cfg.OUTPUT_DIR, results)
    return results

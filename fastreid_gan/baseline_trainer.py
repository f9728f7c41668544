"""fastreid's ``DefaultTrainer`` for single-network models (the ResNet ID-loss baseline), made CPU-friendly.

It differs from fastreid's trainer only where this project needs it, with the same code as the GAN trainer:
the test loop and evaluator (:mod:`fastreid_gan.evaluation`: CPU-safe loaders, faiss/BLAS ranking, results
never flattened), the checkpointer (:class:`~fastreid_gan.checkpointer.RunCheckpointer`), the event writers and the final evaluation in ``<OUTPUT_DIR>/metrics.json``
(:mod:`fastreid_gan.run_outputs`), and a trainer that still runs when evaluation is switched off.  The compat
fixes (CPU loaders, CPU DDP, non-contiguous optimizer) come from :mod:`fastreid_gan.compat`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional

from torch import nn

from fastreid.engine import DefaultTrainer
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from fastreid.utils.events import EventWriter

from fastreid_gan.checkpointer import RunCheckpointer
from fastreid_gan.evaluation import build_evaluator, evaluate_on_test_datasets
from fastreid_gan.run_outputs import build_event_writers, mark_config_yaml, write_metrics_json

__all__ = ["BaselineTrainer"]


class BaselineTrainer(DefaultTrainer):
    """``DefaultTrainer`` with this project's evaluation loop, writers and ``metrics.json``."""

    @classmethod
    def auto_scale_hyperparams(cls, cfg: Any, num_classes: int) -> Any:
        cfg = super().auto_scale_hyperparams(cfg, num_classes)
        if comm.is_main_process():
            mark_config_yaml(cfg.OUTPUT_DIR)  # auto-scaling rewrote it
        return cfg

    @classmethod
    def build_evaluator(cls, cfg: Any, dataset_name: str, output_dir: Optional[str] = None):
        # fastreid's test loader always starts 4 workers and a CUDA prefetcher; ours follows the config
        return build_evaluator(cfg, dataset_name, output_dir)

    @classmethod
    def test(cls, cfg: Any, model: nn.Module) -> "OrderedDict[str, Dict[str, float]]":
        """``{dataset: {metric: value}}`` for every ``DATASETS.TESTS`` (never flattened, unlike fastreid's)."""
        return evaluate_on_test_datasets(cfg, model, cls.build_evaluator)

    def build_hooks(self) -> List[HookBase]:
        # DefaultTrainer.__init__ builds a plain Checkpointer just before calling build_hooks: swap in this
        # project's (atomic save, fit check, retention, resume fall-back) before the checkpoint hook takes it
        plain = self.checkpointer
        self.checkpointer = RunCheckpointer(
            plain.model, plain.save_dir, save_to_disk=plain.save_to_disk,
            meta_architecture=self.cfg.MODEL.META_ARCHITECTURE, keep=self.cfg.SOLVER.CHECKPOINT_KEEP,
            keep_init=self.cfg.MODEL.WEIGHTS_KEEP_INIT, **plain.checkpointables,
        )
        self.checkpointer.remove_stale_partial_saves()
        return super().build_hooks()

    def build_writers(self) -> List[EventWriter]:
        return build_event_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def train(self) -> "OrderedDict[str, Dict[str, float]]":
        super(DefaultTrainer, self).train(self.start_epoch, self.max_epoch, self.iters_per_epoch)
        # fastreid's EvalHook leaves the last evaluation in _last_eval_results; without one, evaluate now
        results = getattr(self, "_last_eval_results", None)
        if results is None:
            results = self.test(self.cfg, self.model)
        if comm.is_main_process():
            write_metrics_json(self.cfg.OUTPUT_DIR, results)
        return results

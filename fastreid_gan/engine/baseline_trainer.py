"""fastreid's ``DefaultTrainer`` for single-network models (the ResNet ID-loss baseline), made CPU-friendly.

It differs from fastreid's trainer only where this project needs it: the faiss evaluator, the final
evaluation written to ``<OUTPUT_DIR>/metrics.json`` (fastreid's per-iteration JSON goes to ``events.json``),
and a trainer that still runs when evaluation is switched off.  The compat fixes (CPU loaders, CPU DDP,
non-contiguous optimizer) come from :mod:`fastreid_gan.compat`.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Mapping

from fastreid.engine import DefaultTrainer
from fastreid.utils import comm
from fastreid.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item"):
        return value.item()
    return value


def write_metrics_json(output_dir: str, results: Mapping[str, Any], dataset_names=()) -> str:
    """Write the final evaluation to ``<output_dir>/metrics.json`` keyed by test dataset name."""
    results = dict(results)
    if dataset_names and len(dataset_names) == 1 and dataset_names[0] not in results:
        results = {dataset_names[0]: results}  # fastreid flattens a single dataset's results
    path = os.path.join(output_dir, "metrics.json")
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(_plain(results), f, indent=2)
    logger.info("Final evaluation written to %s", path)
    return path


class BaselineTrainer(DefaultTrainer):
    """``DefaultTrainer`` with the faiss evaluator and a ``metrics.json`` of the final evaluation."""

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # fastreid's test loader always starts 4 workers, whatever DATALOADER.NUM_WORKERS says
        from fastreid_gan.data.build import build_test_loader

        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        from fastreid_gan.evaluation import ReidEvaluator

        data_loader, num_query = cls.build_test_loader(cfg, dataset_name)
        return data_loader, ReidEvaluator(cfg, num_query, output_dir)

    def build_writers(self):
        return [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "events.json")),
            TensorboardXWriter(self.cfg.OUTPUT_DIR),
        ]

    def train(self) -> "OrderedDict[str, Any]":
        super(DefaultTrainer, self).train(self.start_epoch, self.max_epoch, self.iters_per_epoch)
        results = getattr(self, "_last_eval_results", None)
        if results is None:
            results = self.test(self.cfg, self.model)
        if comm.is_main_process():
            write_metrics_json(self.cfg.OUTPUT_DIR, results, self.cfg.DATASETS.TESTS)
        return results

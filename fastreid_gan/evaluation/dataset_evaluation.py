"""Evaluate a model on every ``DATASETS.TESTS`` with this project's evaluator: one loop for all trainers.

Used by the GAN trainer, the baseline trainer and ``--eval-only``.  Unlike fastreid's ``DefaultTrainer.test``,
the results of a single dataset are not flattened: the result is always ``{dataset: {metric: value}}``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from fastreid.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from fastreid.utils import comm

from fastreid_gan.data.build import build_test_loader

from .reid_evaluator import ReidEvaluator

__all__ = ["build_evaluator", "evaluate_on_test_datasets"]

logger = logging.getLogger(__name__)

EvaluatorBuilder = Callable[[Any, str], Tuple[Any, DatasetEvaluator]]


def build_evaluator(cfg: Any, dataset_name: str, output_dir: Optional[str] = None) -> Tuple[Any, DatasetEvaluator]:
    """``(test loader over query + gallery, ReidEvaluator)`` for one test dataset (CPU-safe loader)."""
    data_loader, num_query = build_test_loader(cfg, dataset_name)
    return data_loader, ReidEvaluator(cfg, num_query, output_dir, dataset_name=dataset_name)


def _pair_scorer(cfg: Any, model: nn.Module) -> Optional[Callable]:
    """The model's ``pair_distance`` when ``TEST.PAIR_RERANK.ENABLED`` (an error if it has none); None with
    ``TEST.LMP.ENABLED``, whose features a verification head was not trained on (a warning says so)."""
    if not cfg.TEST.PAIR_RERANK.ENABLED:
        return None
    if cfg.TEST.LMP.ENABLED:
        logger.warning("TEST.PAIR_RERANK is skipped with TEST.LMP.ENABLED: the verification head (FD-GAN's V) "
                       "scores the model's own features, not LMP's C x PARTS ones, so no verified/* metrics are "
                       "reported; evaluate with TEST.LMP.ENABLED False for them")
        return None
    net = getattr(model, "module", model)  # (Distributed)DataParallel
    scorer = getattr(net, "pair_distance", None)
    if not callable(scorer):
        raise ValueError(f"TEST.PAIR_RERANK.ENABLED re-scores pairs with the model's pair_distance(query_feats, "
                         f"gallery_feats), a verification head such as FD-GAN's V; {type(net).__name__} has none: "
                         f"set TEST.PAIR_RERANK.ENABLED False")
    return scorer


def evaluate_on_test_datasets(cfg: Any, model: nn.Module,
                              evaluator_builder: EvaluatorBuilder = build_evaluator
                              ) -> "OrderedDict[str, Dict[str, float]]":
    """``{dataset: {metric: value}}`` for every ``cfg.DATASETS.TESTS`` (main process; other ranks get empty dicts).

    ``TEST.FLIP.ENABLED`` adds the mirrored image's feature, as fastreid's ``inference_on_dataset`` does; not with
    ``TEST.LMP.ENABLED``, whose feature is flip-summed already (the same feature again, for twice the time).
    ``TEST.PAIR_RERANK.ENABLED`` re-scores each query's nearest gallery items with the model's ``pair_distance``
    (FD-GAN's V) and adds those metrics, prefixed ``verified/`` (:mod:`fastreid_gan.evaluation.pair_rerank`);
    not with ``TEST.LMP.ENABLED`` (skipped with a warning).
    """
    scorer = _pair_scorer(cfg, model)
    flip_test = bool(cfg.TEST.FLIP.ENABLED)
    if flip_test and cfg.TEST.LMP.ENABLED:
        logger.info("TEST.LMP already adds the mirrored image's feature: TEST.FLIP.ENABLED is skipped")
        flip_test = False
    results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
    for dataset_name in cfg.DATASETS.TESTS:
        logger.info("Evaluating on %s", dataset_name)
        data_loader, evaluator = evaluator_builder(cfg, dataset_name)
        if scorer is not None:
            if not hasattr(evaluator, "pair_scorer"):
                raise TypeError(f"TEST.PAIR_RERANK.ENABLED needs this project's ReidEvaluator; the evaluator "
                                f"builder gave a {type(evaluator).__name__}")
            evaluator.pair_scorer = scorer
        result = inference_on_dataset(model, data_loader, evaluator, flip_test=flip_test)
        results[dataset_name] = result
        if comm.is_main_process() and result:
            table = OrderedDict(result)
            table["dataset"] = dataset_name
            print_csv_format(table)
    return results

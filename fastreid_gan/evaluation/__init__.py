"""Evaluation: a faiss/BLAS drop-in for fastreid's ``ReidEvaluator`` with exact, bounded-memory ranking.

``FaissReidEvaluator(cfg, num_query, output_dir)`` (alias ``ReidEvaluator``) has fastreid's constructor,
``reset``/``process``/``evaluate`` and result keys; :func:`evaluate_on_test_datasets` runs it over every
``DATASETS.TESTS`` for all trainers. ``TEST.SEARCH.MODE faiss`` ranks through a faiss index's top-k
instead (:mod:`.search`: truncated CMC, ``mAP@k`` and ``recall@k``).
"""
from .distance import FeatureBlocks, FeatureDistance, MatrixDistance, TorchFeatureDistance
from .faiss_search import build_index, faiss_gpu_available, knn_search
from .query_expansion import aqe
from .ranking import EvaluationDataError, RankResult, evaluate_rank, evaluate_rank_features, rank_chunked
from .reid_evaluator import FaissReidEvaluator, ReidEvaluator
from .reranking import compute_jaccard_distance, re_ranking, rerank_distance
from .roc import FPR_TARGETS, evaluate_roc_tpr, tpr_at_fpr_chunked
from .search import (SearchIndex, SearchSettings, TruncatedResult, build_search_index, exact_topk, recall_at_k,
                     search_rank, search_settings, truncated_metrics)
from .dataset_evaluation import build_evaluator, evaluate_on_test_datasets

__all__ = [
    "FaissReidEvaluator",
    "ReidEvaluator",
    "EvaluationDataError",
    "RankResult",
    "evaluate_rank",
    "evaluate_rank_features",
    "rank_chunked",
    "evaluate_roc_tpr",
    "tpr_at_fpr_chunked",
    "FPR_TARGETS",
    "re_ranking",
    "compute_jaccard_distance",
    "rerank_distance",
    "aqe",
    "build_index",
    "knn_search",
    "faiss_gpu_available",
    "SearchSettings",
    "search_settings",
    "SearchIndex",
    "build_search_index",
    "search_rank",
    "truncated_metrics",
    "TruncatedResult",
    "exact_topk",
    "recall_at_k",
    "FeatureBlocks",
    "FeatureDistance",
    "TorchFeatureDistance",
    "MatrixDistance",
    "build_evaluator",
    "evaluate_on_test_datasets",
]

"""``FaissReidEvaluator``: a drop-in for ``fastreid.evaluation.ReidEvaluator`` that needs no runtime Cython
compile, runs on CPU (no hard-coded ``.cuda()`` for re-ranking), ranks in bounded memory and returns the same
numbers under the same keys.
"""
from __future__ import annotations

import copy
import itertools
import logging
import time
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

with warnings.catch_warnings():
    # Importing fastreid.evaluation warns that its Cython rankers are not compiled; they are not used here.
    warnings.filterwarnings("ignore", message="Cython (rank|roc) evaluation")
    from fastreid.evaluation.evaluator import DatasetEvaluator
from fastreid.utils import comm

from .distance import FeatureBlocks, FeatureDistance, MatrixDistance, TorchFeatureDistance, empty_f32
from .query_expansion import aqe
from .ranking import DEFAULT_MEMORY_BUDGET_MB, EvaluationDataError, _resolve_device, rank_chunked
from .pair_rerank import PAIR_RERANK_PREFIX, PairRerankDistance, PairScorer
from .reranking import rerank_distance
from .roc import FPR_TARGETS, roc_key, tpr_at_fpr_chunked
from .search import SearchSettings, TruncatedResult, search_rank, search_settings

logger = logging.getLogger(__name__)

__all__ = ["FaissReidEvaluator", "ReidEvaluator"]

_SLAB_BYTES = 64 * 2 ** 20  # features are copied into slabs of this size (>= glibc's mmap threshold cap)


def _malloc_trim_function() -> Optional[Any]:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _malloc_trim_function()


def _return_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; nothing elsewhere).

    The model's per-batch outputs are freed after each batch, but glibc's adaptive mmap threshold puts the next
    ones on the heap, between the store's long-lived small arrays: the freed space stays in the process's RSS.
    Measured with 16,384-d features (LMP) on a Market-sized split: RSS grew by 2.8x the features' size without
    this, by their size with it (``docs/lmp.md``).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _FeatureStore:
    """Accumulates (features, pids, camids) batch by batch into large preallocated slabs.

    Copying each batch into a slab lets the caller free its output tensor, keeps the GEMM operands large and
    contiguous, and removes the need for fastreid's final ``torch.cat`` of everything (a second copy of the
    whole gallery at evaluation time).
    """

    def __init__(self):
        self.slabs: List[np.ndarray] = []
        self.filled = 0        # rows used in the last slab
        self.pids: List[np.ndarray] = []
        self.camids: List[np.ndarray] = []
        self.dim: Optional[int] = None

    def add(self, feats: np.ndarray, pids: np.ndarray, camids: np.ndarray) -> None:
        if feats.ndim != 2:
            feats = feats.reshape(len(feats), -1)
        if self.dim is None:
            self.dim = feats.shape[1]
        elif feats.shape[1] != self.dim:
            raise ValueError(f"feature dim changed from {self.dim} to {feats.shape[1]}")
        rows_per_slab = max(1, _SLAB_BYTES // (4 * self.dim))
        i = 0
        while i < len(feats):
            if not self.slabs or self.filled == len(self.slabs[-1]):
                if self.slabs:
                    _return_free_heap()  # once per full slab (64 MB of features): a few ms
                self.slabs.append(empty_f32(rows_per_slab, self.dim))
                self.filled = 0
            slab = self.slabs[-1]
            n = min(len(feats) - i, len(slab) - self.filled)
            slab[self.filled:self.filled + n] = feats[i:i + n]
            self.filled += n
            i += n
        self.pids.append(np.asarray(pids, np.int64).reshape(-1))
        self.camids.append(np.asarray(camids, np.int64).reshape(-1))

    def blocks(self) -> List[np.ndarray]:
        if not self.slabs:
            return []
        return self.slabs[:-1] + [self.slabs[-1][:self.filled]]

    def export(self) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray]:
        """(feature blocks, pids, camids); the blocks are views (pickling sends only the filled rows)."""
        cat = (lambda xs: np.concatenate(xs) if xs else np.empty(0, np.int64))
        return self.blocks(), cat(self.pids), cat(self.camids)


def _to_numpy(x, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if dtype is not None and x.is_floating_point():
            x = x.to(torch.float32)
        x = x.cpu().numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype)


class FaissReidEvaluator(DatasetEvaluator):
    """Re-ID evaluator with fastreid's interface and results (``Rank-1/5/10``, ``mAP``, ``mINP``, ``metric``,
    and ``TPR@FPR=...`` when ``cfg.TEST.ROC.ENABLED``; percentages except the TPRs, as in fastreid).

    Honours ``cfg.TEST.METRIC`` (cosine | euclidean), ``cfg.TEST.AQE`` and ``cfg.TEST.RERANK``, and
    ``cfg.TEST.SEARCH``: with ``MODE faiss`` the gallery is searched through a faiss index for each query's top
    ``TOPK`` and the results are ``Rank-1/5/10`` (those <= TOPK), ``mAP@TOPK``, ``metric`` and, with ``RECALL``,
    ``recall@TOPK`` (:mod:`~fastreid_gan.evaluation.search`; ROC, re-ranking and pair re-ranking need the exact
    mode: an error says so when the evaluator is built).
    The first ``num_query`` processed samples are the queries, the rest the gallery (fastreid's convention).

    Edge cases (Market-1501 protocol, as fastreid): queries without a match in the gallery (no image of their
    pid from another camera) are left out of CMC, mAP and mINP; their number is logged and kept in
    ``num_unmatched_queries``.  ``Rank-k`` is reported only for ``k`` up to the gallery size (a 3-image gallery
    gives ``Rank-1`` but no ``Rank-5``/``Rank-10``, where fastreid raises ``IndexError``); from 10 gallery
    images on the keys are always ``Rank-1/5/10``.  An empty query set or gallery, or no query with a match,
    raises :class:`~fastreid_gan.evaluation.ranking.EvaluationDataError` naming ``dataset_name``.

    Args:
        cfg: a fastreid config node.
        num_query: number of query samples.
        output_dir: accepted for compatibility (unused, like in fastreid).
        memory_budget_mb: bound for the (query chunk x gallery) distance block; default 256 MB.
        device: ``None``/``"auto"`` (CUDA when torch sees it, else CPU), ``"cpu"`` or a CUDA device.
        num_threads: CPU worker threads for the per-row sorts (default: the usable CPUs).
        dataset_name: the test dataset, named in errors and in the log line.
        pair_scorer: with ``TEST.PAIR_RERANK.ENABLED``, re-scores each query's ``TEST.PAIR_RERANK.TOPK`` nearest
            gallery items (:class:`~fastreid_gan.evaluation.pair_rerank.PairRerankDistance`); the re-ranked
            metrics are added with the ``verified/`` prefix, next to the plain ones.
    """

    def __init__(self, cfg, num_query: int, output_dir: Optional[str] = None, *,
                 memory_budget_mb: Optional[float] = None, device: Optional[Union[str, torch.device]] = None,
                 num_threads: Optional[int] = None, dataset_name: Optional[str] = None,
                 pair_scorer: Optional[PairScorer] = None):
        self.cfg = cfg
        self._num_query = int(num_query)
        self._output_dir = output_dir
        self._cpu_device = torch.device("cpu")
        self.memory_budget_mb = float(memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB)
        self.device = device
        self.num_threads = num_threads
        self.dataset_name = dataset_name
        #: queries of the last evaluate() without any match in the gallery (left out of CMC/mAP/mINP)
        self.num_unmatched_queries = 0
        #: ``TEST.PAIR_RERANK``: ``scorer(query_feats, gallery_feats) -> distances`` of aligned pairs (a model's
        #: ``pair_distance``, set by :func:`~fastreid_gan.evaluation.evaluate_on_test_datasets`), or None
        self.pair_scorer: Optional[PairScorer] = pair_scorer
        #: ``TEST.SEARCH``: exact whole-gallery ranking or a faiss index's top-k (checked now, before inference)
        self.search: SearchSettings = search_settings(cfg)
        if self.search.mode == "faiss":
            _check_search_options(cfg)
        self._results: "OrderedDict[str, float]" = OrderedDict()
        self.timings: Dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self._store = _FeatureStore()

    def process(self, inputs: Dict, outputs: torch.Tensor) -> None:
        """Store a batch: ``outputs`` (B, D) features, ``inputs["targets"]`` pids, ``inputs["camids"]``."""
        feats = _to_numpy(outputs, np.float32)
        self._store.add(feats, _to_numpy(inputs["targets"]), _to_numpy(inputs["camids"]))

    def _gather(self) -> Optional[Tuple[FeatureBlocks, np.ndarray, np.ndarray]]:
        if comm.get_world_size() > 1:
            comm.synchronize()
            parts = comm.gather(self._store.export(), dst=0)
            if not comm.is_main_process():
                return None
            blocks = list(itertools.chain(*[p[0] for p in parts]))
            pids = np.concatenate([p[1] for p in parts])
            camids = np.concatenate([p[2] for p in parts])
        else:
            blocks, pids, camids = self._store.export()
        return FeatureBlocks(blocks), pids, camids

    def evaluate(self) -> "OrderedDict[str, float]":
        gathered = self._gather()
        if gathered is None:
            return {}
        feats, pids, camids = gathered
        nq = self._num_query
        name = self.dataset_name or "the evaluated dataset"
        if nq <= 0:
            raise EvaluationDataError(f"{name}: the query set is empty (num_query={nq}), nothing to evaluate. Fix: "
                                      f"the dataset's query set (a Market-1501-style query/ folder) must hold images.")
        if nq >= len(feats):
            raise EvaluationDataError(
                f"{name}: the gallery is empty: num_query={nq} but only {len(feats)} samples were processed. Fix: "
                f"the dataset's gallery (a Market-1501-style bounding_box_test/ folder) must hold images, and the "
                f"loader must yield the queries then the gallery.")
        t0 = time.perf_counter()
        query, gallery = feats.slice(0, nq), feats.slice(nq, len(feats))
        q_pids, g_pids = pids[:nq], pids[nq:]
        q_camids, g_camids = camids[:nq], camids[nq:]
        test = self.cfg.TEST
        metric = test.METRIC
        budget, threads = self.memory_budget_mb, self.num_threads

        if test.AQE.ENABLED:
            logger.info("Test with AQE setting")
            qf, gf = aqe(query.to_array(), gallery.to_array(), test.AQE.QE_TIME, test.AQE.QE_K, test.AQE.ALPHA)
            query, gallery = FeatureBlocks.from_array(qf), FeatureBlocks.from_array(gf)

        dev = _resolve_device(self.device)
        if dev is None or (self.search.mode == "faiss" and not self.search.recall):
            # (the faiss mode without recall uses the provider only for its NaN check: no copy to the device)
            provider = FeatureDistance(query, gallery, metric)
        else:
            provider = TorchFeatureDistance(query, gallery, metric, dev)

        if self.search.mode == "faiss":
            return self._evaluate_search(query, gallery, q_pids, g_pids, q_camids, g_camids, provider, dev, t0)

        if test.RERANK.ENABLED:
            logger.info("Test with rerank setting")
            dist = empty_f32(provider.num_query, provider.num_gallery)
            step = max(1, int(budget * 2 ** 20 // max(1, 4 * provider.num_gallery)))
            for s in range(0, provider.num_query, step):
                e = min(provider.num_query, s + step)
                block = provider.chunk(s, e)
                dist[s:e] = block.cpu().numpy() if isinstance(block, torch.Tensor) else block
            dist = rerank_distance(query.to_array(), gallery.to_array(), dist, metric, test.RERANK.K1,
                                   test.RERANK.K2, test.RERANK.LAMBDA)
            provider = MatrixDistance(dist, None if dev is None else dev)

        roc = bool(test.ROC.ENABLED)
        res = rank_chunked(provider, q_pids, g_pids, q_camids, g_camids, 50, budget, threads, collect_roc=roc,
                           dataset=self.dataset_name)
        self.num_unmatched_queries = res.num_unmatched
        if len(res.cmc) < 10:
            logger.warning("%s: gallery of %d images: CMC reported up to Rank-%d only", name, len(res.cmc),
                           max(r for r in (1, 5, 10) if r <= len(res.cmc)))
        results = _ranking_metrics(res)
        if self.pair_scorer is not None:
            topk = int(test.PAIR_RERANK.TOPK)
            # chunk by chunk, never the whole matrix: each chunk holds the ranked block, the provider's block and
            # argpartition's int64 indices (16 bytes a cell), so a quarter of the budget goes to the ranked block
            verified = PairRerankDistance(provider, query, gallery, self.pair_scorer, topk, budget)
            res_v = rank_chunked(verified, q_pids, g_pids, q_camids, g_camids, 50, budget / 4, threads,
                                 dataset=self.dataset_name)
            for key, value in _ranking_metrics(res_v).items():
                results[f"{PAIR_RERANK_PREFIX}{key}"] = value
            logger.info("%s: the pair scorer re-ranked each query's top %d (%s* keys): mAP %.2f -> %.2f", name,
                        topk, PAIR_RERANK_PREFIX, results["mAP"], results[f"{PAIR_RERANK_PREFIX}mAP"])
        if roc:
            tprs = tpr_at_fpr_chunked(provider, q_pids, g_pids, q_camids, g_camids, res.positive_dists,
                                      res.num_negative_pairs, FPR_TARGETS, memory_budget_mb=budget,
                                      num_threads=threads)
            for fpr in FPR_TARGETS:
                results[roc_key(fpr)] = tprs[fpr]
        #: wall times of the last evaluate(): total, and the distance GEMMs inside the ranking pass
        self.timings = {"evaluate_s": time.perf_counter() - t0, "gemm_s": res.extra.get("gemm_s", float("nan"))}
        logger.info("Evaluated %s: %d queries (%d without a match in the gallery, left out of CMC/mAP/mINP) x %d "
                    "gallery (%s, %s) in %.2f s (distance GEMMs %.2f s)", name, nq, res.num_unmatched,
                    len(feats) - nq, metric, "numpy/BLAS CPU" if dev is None else str(dev),
                    self.timings["evaluate_s"], self.timings["gemm_s"])
        self._results = results
        return copy.deepcopy(results)

    def _evaluate_search(self, query: FeatureBlocks, gallery: FeatureBlocks, q_pids: np.ndarray,
                         g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray, provider: Any,
                         dev: Optional[torch.device], t0: float) -> "OrderedDict[str, float]":
        """``TEST.SEARCH.MODE faiss``: the index's top-k and the truncated metrics (:mod:`.search`)."""
        name = self.dataset_name or "the evaluated dataset"
        if self.pair_scorer is not None:
            raise ValueError("TEST.PAIR_RERANK re-scores the whole-gallery ranking and needs TEST.SEARCH.MODE exact: "
                             "set TEST.PAIR_RERANK.ENABLED False or TEST.SEARCH.MODE exact")
        # faiss on the CPU when the evaluator was asked for the CPU; otherwise on the GPU when faiss sees one
        use_gpu = False if (self.device is not None and self.device != "auto" and dev is None) else None
        res = search_rank(query, gallery, q_pids, g_pids, q_camids, g_camids, self.cfg.TEST.METRIC, self.search,
                          self.memory_budget_mb, use_gpu=use_gpu, provider=provider, num_threads=self.num_threads,
                          dataset=self.dataset_name)
        self.num_unmatched_queries = res.num_unmatched
        results = truncated_metrics_dict(res)
        extra = res.extra
        self.timings = {"evaluate_s": time.perf_counter() - t0, "build_s": extra["build_s"],
                        "search_s": extra["search_s"], "recall_s": extra.get("recall_s", float("nan"))}
        logger.info("Evaluated %s with faiss %s (%s): %d queries (%d without a match in the gallery) x %d gallery, "
                    "top %d: index built in %.2f s, searched in %.2f s%s", name, extra["index"],
                    "GPU" if extra["on_gpu"] else "CPU", len(query), res.num_unmatched, len(gallery), res.k,
                    extra["build_s"], extra["search_s"],
                    "" if res.recall is None else f", recall@{res.k} {res.recall:.4f} ({extra['recall_s']:.2f} s)")
        self._results = results
        return copy.deepcopy(results)


def _check_search_options(cfg: Any) -> None:
    """Options that need every gallery item's distance cannot run on an index's top-k: say which key to change."""
    test = cfg.TEST
    for key, node in (("TEST.ROC", test.ROC), ("TEST.RERANK", test.RERANK)):
        if node.ENABLED:
            raise ValueError(f"{key}.ENABLED needs every query x gallery distance, but TEST.SEARCH.MODE faiss keeps "
                             f"only each query's top TEST.SEARCH.TOPK: set {key}.ENABLED False or TEST.SEARCH.MODE "
                             f"exact")


def truncated_metrics_dict(res: TruncatedResult) -> "OrderedDict[str, float]":
    """The faiss mode's results in %: ``Rank-1/5/10`` (those <= k and <= the gallery), ``mAP@k``, ``metric``
    (fastreid's checkpoint-selection key, here ``(mAP@k + Rank-1) / 2``) and ``recall@k`` when computed."""
    results: "OrderedDict[str, float]" = OrderedDict()
    for r in (1, 5, 10):
        if r <= len(res.cmc):  # len(cmc) = min(50, k, gallery size)
            results[f"Rank-{r}"] = float(res.cmc[r - 1] * 100)
    results[f"mAP@{res.k}"] = res.mAP * 100
    results["metric"] = (res.mAP + float(res.cmc[0])) / 2 * 100
    if res.recall is not None:
        results[f"recall@{res.k}"] = res.recall * 100
    return results


def _ranking_metrics(res: Any) -> "OrderedDict[str, float]":
    """Rank-1/5/10 (those within the gallery's size), mAP, mINP and fastreid's "metric" of a ranking, in %."""
    results: "OrderedDict[str, float]" = OrderedDict()
    for r in (1, 5, 10):
        if r <= len(res.cmc):  # len(cmc) = min(50, gallery size)
            results[f"Rank-{r}"] = float(res.cmc[r - 1] * 100)
    results["mAP"] = res.mAP * 100
    results["mINP"] = res.mINP * 100
    results["metric"] = (res.mAP + float(res.cmc[0])) / 2 * 100
    return results


#: fastreid's class name, for ``from fastreid_gan.evaluation import ReidEvaluator``.
ReidEvaluator = FaissReidEvaluator

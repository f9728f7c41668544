"""Approximate top-k gallery search with a faiss index (``TEST.SEARCH.MODE faiss``) and its truncated metrics.

The exact path (:func:`~fastreid_gan.evaluation.ranking.rank_chunked`) ranks every gallery item for every query:
its cost grows with query x gallery x dim and is bound by one GEMM pass. Past a few hundred thousand gallery
images a user usually wants the top of each list, fast: a faiss index (``TEST.SEARCH.INDEX``, any
``faiss.index_factory`` string: ``HNSW32``, ``IVF1024,Flat``, ``Flat`` ...; on the GPU when faiss sees one and
has a GPU version of the index) returns each query's ``TEST.SEARCH.TOPK`` nearest gallery items.

What is reported from those lists, with the Market-1501 protocol of the exact path (a query's gallery items of the
same pid *and* the same camera are removed before ranking; a query without any match in the whole gallery is left
out): CMC up to ``k`` (``Rank-1/5/10`` for those ranks <= k), ``mAP@k`` = the exact AP's sum truncated at rank ``k``
(normalised by all of the query's matches in the gallery, so it is a lower bound on the exact AP and equals it when
every match is in the top k), and, with ``TEST.SEARCH.RECALL``, ``recall@k``: the fraction of the exact top-k
(before removing same-camera items) that the index returned, which costs one exact GEMM pass over the gallery.
mINP needs every match's rank and is not reported. With ``k`` = the gallery size and an exact (``Flat``) index the
truncated metrics equal the exact ones.

To keep the removal of same-camera items exact, the index is asked for ``k`` plus the largest number of such items
any query has (at most the gallery size), and the first ``k`` kept items form the list.
"""
from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .distance import DistanceProvider, FeatureBlocks, empty_f32, l2_normalize, rows_for_budget
from .faiss_search import _GPU_MAX_K, _gpu_resources, faiss_gpu_available
from .ranking import DEFAULT_MEMORY_BUDGET_MB, EvaluationDataError, _as_1d_int, default_num_threads

logger = logging.getLogger(__name__)

__all__ = ["SEARCH_MODES", "SearchSettings", "search_settings", "SearchIndex", "build_search_index",
           "exact_topk", "recall_at_k", "TruncatedResult", "truncated_metrics", "search_rank", "check_topk"]

SEARCH_MODES = ("exact", "faiss")
_SEARCH_BATCH = 4096  # query rows per index.search call (faiss parallelises over the queries of one call)


@dataclass(frozen=True)
class SearchSettings:
    """``cfg.TEST.SEARCH`` as plain values (see :func:`search_settings`)."""

    mode: str = "exact"
    topk: int = 100
    index: str = "HNSW32"
    nprobe: int = 32
    ef_search: int = 256
    refine: int = 4
    recall: bool = False


def search_settings(cfg: Any) -> SearchSettings:
    """Read and check ``cfg.TEST.SEARCH``; a config without the node (fastreid's own) means the exact mode.

    Raises:
        ValueError: an unknown ``MODE``, ``TOPK`` < 1, ``NPROBE``/``EF_SEARCH`` < 1 or an empty ``INDEX``, naming the
            key and the values it takes.
    """
    node = cfg.TEST.get("SEARCH") if hasattr(cfg.TEST, "get") else None
    if node is None:
        return SearchSettings()
    mode = str(node.MODE).lower()
    if mode not in SEARCH_MODES:
        raise ValueError(f"TEST.SEARCH.MODE must be one of {', '.join(SEARCH_MODES)}, got {node.MODE!r}: set "
                         f"TEST.SEARCH.MODE exact (whole-gallery ranking) or faiss (an index's top TEST.SEARCH.TOPK)")
    topk = int(node.TOPK)
    if topk < 1:
        raise ValueError(f"TEST.SEARCH.TOPK must be >= 1 (the length of each query's returned list), got {topk}: "
                         f"set e.g. TEST.SEARCH.TOPK 100")
    for key in ("NPROBE", "EF_SEARCH", "REFINE"):
        if int(node[key]) < 1:
            raise ValueError(f"TEST.SEARCH.{key} must be >= 1, got {node[key]}")
    spec = str(node.INDEX).strip()
    if not spec:
        raise ValueError("TEST.SEARCH.INDEX is empty: give a faiss index_factory string such as HNSW32, "
                         "IVF1024,Flat or Flat")
    return SearchSettings(mode=mode, topk=topk, index=spec, nprobe=int(node.NPROBE), ef_search=int(node.EF_SEARCH),
                          refine=int(node.REFINE), recall=bool(node.RECALL))


def check_topk(k: int, num_gallery: int, dataset: Optional[str] = None) -> None:
    """``TEST.SEARCH.TOPK`` must lie in 1..gallery size: a clear error otherwise."""
    name = dataset or "the evaluated dataset"
    if k < 1:
        raise ValueError(f"TEST.SEARCH.TOPK must be >= 1, got {k}: set e.g. TEST.SEARCH.TOPK 100")
    if k > num_gallery:
        raise ValueError(f"{name}: TEST.SEARCH.TOPK={k} exceeds the gallery size ({num_gallery} images): set "
                         f"TEST.SEARCH.TOPK {num_gallery} or less, or TEST.SEARCH.MODE exact for the whole ranking")


def _as_blocks(x: Union[FeatureBlocks, np.ndarray, torch.Tensor]) -> FeatureBlocks:
    return x if isinstance(x, FeatureBlocks) else FeatureBlocks.from_array(x)


def _rows(blocks: FeatureBlocks, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (sorted, unique) of a block-stored matrix, gathered block by block."""
    out = np.empty((len(idx), blocks.dim), np.float32)
    for off, b in blocks.iter_blocks():
        lo, hi = np.searchsorted(idx, [off, off + len(b)])
        out[lo:hi] = b[idx[lo:hi] - off]
    return out


class SearchIndex:
    """A built faiss index over a gallery with fastreid's distances: ``search`` returns cosine distances
    (``1 - <q, g>`` of L2-normalised features) or squared euclidean ones, best first, and gallery indices
    (``-1`` where the index found fewer than ``k`` items)."""

    def __init__(self, index: Any, metric: str, spec: str, on_gpu: bool, build_s: float):
        self.index, self.metric, self.spec, self.on_gpu, self.build_s = index, metric, spec, on_gpu, build_s

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def _to_cpu(self) -> None:
        import faiss

        logger.info("k exceeds the faiss GPU limit (%d): moving the %s index to the CPU", _GPU_MAX_K, self.spec)
        self.index = faiss.index_gpu_to_cpu(self.index)
        self.on_gpu = False

    def search(self, query: Union[FeatureBlocks, np.ndarray, torch.Tensor], k: int,
               batch: int = _SEARCH_BATCH) -> Tuple[np.ndarray, np.ndarray]:
        """``(distances (Q, k) float32, gallery indices (Q, k) int64)`` of each query's ``k`` nearest items."""
        query = _as_blocks(query)
        k = int(k)
        if self.on_gpu and k > _GPU_MAX_K:
            self._to_cpu()
        nq = len(query)
        dist = np.empty((nq, k), np.float32)
        idx = np.empty((nq, k), np.int64)
        for s in range(0, nq, batch):
            e = min(nq, s + batch)
            q = np.ascontiguousarray(query.rows(s, e), dtype=np.float32)
            if self.metric == "cosine":
                q = l2_normalize(q)
            d, i = self.index.search(q, k)
            dist[s:e] = (1.0 - d) if self.metric == "cosine" else d
            idx[s:e] = i
        return dist, idx


def _faiss_message(exc: BaseException) -> str:
    """The reason in a faiss C++ exception, without its source location ('Error in ... at file.cpp:66: ...')."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*?' failed: )?", "", text)


def _factory(dim: int, spec: str, metric: str):
    import faiss

    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    try:
        return faiss.index_factory(dim, spec, faiss_metric)
    except RuntimeError as exc:  # faiss's C++ message: "could not parse index string ..."
        detail = _faiss_message(exc)
        raise ValueError(f"TEST.SEARCH.INDEX {spec!r} is not an index type the installed faiss "
                         f"{getattr(faiss, '__version__', '?')} can build for {dim}-d {metric} features ({detail}): "
                         f"set a faiss index_factory string it supports, e.g. HNSW32, IVF1024,Flat or Flat") from None


def _set_search_params(index: Any, spec: str, nprobe: int, ef_search: int, refine: int, on_gpu: bool) -> None:
    import faiss

    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    upper = spec.upper()
    if "IVF" in upper:
        space.set_index_parameter(index, "nprobe", int(nprobe))
    if "HNSW" in upper and not on_gpu:
        space.set_index_parameter(index, "efSearch", int(ef_search))
    if "RFLAT" in upper or "REFINE" in upper:  # a refining index re-scores refine x k candidates exactly
        space.set_index_parameter(index, "k_factor_rf", int(refine))


def _train_rows(index: Any, num: int, train_size: Optional[int]) -> int:
    """How many gallery rows train the index: ``train_size``, else 40 per IVF list (faiss's k-means warns
    below 39), at least 10,000 and at most the gallery."""
    if train_size:
        return min(num, int(train_size))
    import faiss

    try:
        nlist = faiss.extract_index_ivf(index).nlist
        return min(num, max(10_000, 40 * nlist))
    except (RuntimeError, AttributeError):
        return min(num, 100_000)


def build_search_index(gallery: Union[FeatureBlocks, np.ndarray, torch.Tensor], metric: str = "cosine",
                       spec: str = "HNSW32", nprobe: int = 32, ef_search: int = 256, refine: int = 4,
                       use_gpu: Optional[bool] = None, train_size: Optional[int] = None, seed: int = 0,
                       add_batch: int = 65536) -> SearchIndex:
    """Build ``faiss.index_factory(dim, spec)`` over the gallery (trained on a deterministic sample when the
    index type needs training), for ``metric`` ``"cosine"`` (inner product of L2-normalised features, normalised
    block by block: no normalised copy of the gallery) or ``"euclidean"`` (squared L2, fastreid's).

    ``use_gpu=None``: on the GPU when :func:`~fastreid_gan.evaluation.faiss_search.faiss_gpu_available` and faiss
    has a GPU version of ``spec`` (HNSW has none: it stays on the CPU, with a log line).

    Raises:
        ValueError: ``spec`` is not an index type the installed faiss builds, or the index cannot be trained on
            this gallery (e.g. more IVF lists than gallery items), naming the fix.
    """
    import faiss

    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean' (TEST.METRIC), got {metric!r}")
    gallery = _as_blocks(gallery)
    if len(gallery) == 0:
        raise ValueError("cannot build a search index over an empty gallery")
    t0 = time.perf_counter()
    index = _factory(gallery.dim, spec, metric)
    gpu = faiss_gpu_available() if use_gpu is None else bool(use_gpu)
    on_gpu = False
    if gpu:
        try:
            index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
            on_gpu = True
        except (RuntimeError, AttributeError) as exc:
            logger.info("faiss has no GPU version of %r (%s): building it on the CPU", spec,
                        _faiss_message(exc))

    def prepared(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return l2_normalize(x) if metric == "cosine" else x

    if not index.is_trained:
        n_train = _train_rows(index, len(gallery), train_size)
        rows = np.sort(np.random.default_rng(seed).choice(len(gallery), n_train, replace=False))
        try:
            index.train(prepared(_rows(gallery, rows)))
        except RuntimeError as exc:
            detail = _faiss_message(exc)
            raise ValueError(f"TEST.SEARCH.INDEX {spec!r} cannot be trained on this {len(gallery)}-image gallery "
                             f"({detail}): use fewer IVF lists (about 4 x sqrt(gallery size)) or an index without "
                             f"training such as HNSW32 or Flat") from None
    for s in range(0, len(gallery), add_batch):
        index.add(prepared(gallery.rows(s, min(len(gallery), s + add_batch))))
    _set_search_params(index, spec, nprobe, ef_search, refine, on_gpu)
    return SearchIndex(index, metric, spec, on_gpu, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ exact top-k, recall
def _row_topk(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest values of ``row`` by (value, index), without an argpartition of the row.

    A threshold from a strided sample of the row keeps a few times ``k`` candidates (all values <= it, so every
    one of the k smallest and every tie of the k-th); only they are sorted. If the sample was unlucky (fewer than
    k candidates), the threshold is the row's exact k-th value. Either way the result is exact.
    """
    g = len(row)
    stride = max(1, g // (100 * k))
    cand = None
    if stride > 1:
        sample = row[::stride]
        c = min(len(sample) - 1, (4 * k) // stride + 4)  # about 4k + 4 x stride values lie below this sample value
        cand = np.flatnonzero(row <= np.partition(sample, c)[c])
        if len(cand) < k:
            cand = None
    if cand is None:
        cand = np.flatnonzero(row <= np.partition(row, k - 1)[k - 1])
    return cand[np.lexsort((cand, row[cand]))[:k]]


def exact_topk(provider: DistanceProvider, k: int, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
               num_threads: Optional[int] = None) -> np.ndarray:
    """(Q, k) gallery indices of each query's ``k`` nearest items by the provider's exact distances, nearest
    first (ties by gallery index on the CPU; in torch.topk's order on a device), in query chunks of distances bounded
    by ``memory_budget_mb``."""
    Q, G = provider.num_query, provider.num_gallery
    k = int(min(k, G))
    out = np.empty((Q, k), np.int64)
    if provider.kind == "torch":
        step = rows_for_budget(G, memory_budget_mb, 16.0)
        for s in range(0, Q, step):
            e = min(Q, s + step)
            d = provider.chunk(s, e)
            out[s:e] = torch.topk(d, k, dim=1, largest=False, sorted=True).indices.cpu().numpy()
        return out
    step = rows_for_budget(G, memory_budget_mb, 4.0)
    threads = num_threads or default_num_threads()

    def rows_topk(d: np.ndarray) -> np.ndarray:
        return np.stack([_row_topk(row, k) for row in d])

    buf = empty_f32(min(step, Q), G) if Q else None
    for s in range(0, Q, step):
        e = min(Q, s + step)
        d = provider.chunk(s, e, buf[:e - s])
        blocks = range(0, e - s, 8)
        if threads > 1 and e - s > 8:
            with ThreadPoolExecutor(threads) as ex:
                parts = list(ex.map(lambda r: rows_topk(d[r:r + 8]), blocks))
        else:
            parts = [rows_topk(d[r:r + 8]) for r in blocks]
        out[s:e] = np.concatenate(parts, axis=0)
    return out


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k (``-1`` entries of the approximate lists are
    misses). Both are (Q, k) gallery indices."""
    approx_idx, exact_idx = np.asarray(approx_idx), np.asarray(exact_idx)
    if approx_idx.shape != exact_idx.shape:
        raise ValueError(f"approximate and exact top-k lists differ in shape: {approx_idx.shape} vs "
                         f"{exact_idx.shape}")
    q, k = exact_idx.shape
    if q == 0 or k == 0:
        return float("nan")
    a = np.sort(np.where(approx_idx < 0, -1, approx_idx), axis=1)
    b = np.sort(exact_idx, axis=1)
    # membership of each exact item in the (sorted) approximate row: row-wise searchsorted via an offset per row
    span = int(max(a.max(initial=0), b.max(initial=0))) + 2
    offs = (np.arange(q, dtype=np.int64) * span)[:, None]
    flat_a = (a + 1 + offs).ravel()  # -1 -> 0: never equal to an exact item (>= 1 after the shift)
    flat_b = (b + 1 + offs).ravel()
    pos = np.clip(np.searchsorted(flat_a, flat_b), 0, len(flat_a) - 1)
    hit = flat_a[pos] == flat_b
    return float(hit.reshape(q, k).sum(1).mean() / k)


# ------------------------------------------------------------------------------------------------ truncated metrics
@dataclass
class TruncatedResult:
    """CMC and AP from each query's top ``k`` (see the module doc); ``recall`` when computed."""

    k: int
    cmc: np.ndarray          # (min(50, k, gallery),) float64 over valid queries
    all_AP: np.ndarray       # (num_valid,) AP@k, in query order
    valid: np.ndarray        # (num_query,) bool: the query has a match in the whole gallery
    num_gallery: int
    recall: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    #: (Q, K) gallery indices the metrics came from, best first, before the same-camera items were removed
    ranked_idx: Optional[np.ndarray] = None

    @property
    def num_unmatched(self) -> int:
        return int(len(self.valid) - self.valid.sum())

    @property
    def mAP(self) -> float:
        return float(np.mean(self.all_AP))


def _label_counts(q_pids, q_camids, g_pids, g_camids) -> Tuple[np.ndarray, np.ndarray]:
    """Per query: #gallery items of its pid from another camera (matches) and from its camera (removed)."""
    def count(keys_g: np.ndarray, keys_q: np.ndarray) -> np.ndarray:
        uniq, cnt = np.unique(keys_g, return_counts=True)
        if len(uniq) == 0:
            return np.zeros(len(keys_q), np.int64)
        loc = np.clip(np.searchsorted(uniq, keys_q), 0, len(uniq) - 1)
        return np.where(uniq[loc] == keys_q, cnt[loc], 0)

    cams = np.concatenate([q_camids, g_camids])
    cmin, ncam = int(cams.min()), int(cams.max() - cams.min()) + 1
    same_pid = count(g_pids, q_pids)
    same_cam = count(g_pids * ncam + (g_camids - cmin), q_pids * ncam + (q_camids - cmin))
    return same_pid - same_cam, same_cam


def truncated_metrics(ranked_idx: np.ndarray, k: int, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                      *, dataset: Optional[str] = None) -> TruncatedResult:
    """CMC up to ``min(max_rank, k)`` and AP@k from ranked gallery indices.

    Args:
        ranked_idx: (Q, K >= k) gallery indices, best first (``-1`` = no item); the same-pid/same-camera items are
            removed here, and the first ``k`` kept items form each query's list, so ``K`` should be ``k`` plus the
            largest number of such items any query has (see :func:`search_rank`).
        k: the list length the metrics are truncated at.

    Raises:
        EvaluationDataError: no query has a match in the gallery.
    """
    q_pids, g_pids = _as_1d_int(q_pids, "q_pids"), _as_1d_int(g_pids, "g_pids")
    q_camids, g_camids = _as_1d_int(q_camids, "q_camids"), _as_1d_int(g_camids, "g_camids")
    ranked_idx = np.asarray(ranked_idx, np.int64)
    Q, G = len(q_pids), len(g_pids)
    if ranked_idx.ndim != 2 or len(ranked_idx) != Q:
        raise ValueError(f"ranked_idx must be ({Q}, K) gallery indices, got shape {ranked_idx.shape}")
    n_match, _ = _label_counts(q_pids, q_camids, g_pids, g_camids)
    valid = n_match > 0
    name = dataset or "the evaluated dataset"
    if not valid.any():
        raise EvaluationDataError(
            f"{name}: none of the {Q} queries has a match in the {G}-image gallery (an image of the same pid from "
            f"another camera), so CMC and mAP are undefined. Fix: query and gallery must come from the same "
            f"dataset, and each query identity needs gallery images from other cameras.")
    max_rank = int(min(max_rank, k, G))
    present = ranked_idx >= 0
    safe = np.where(present, ranked_idx, 0)
    same_pid = present & (g_pids[safe] == q_pids[:, None])
    junk = same_pid & (g_camids[safe] == q_camids[:, None])
    kept = present & ~junk
    pos = np.cumsum(kept, axis=1) - 1                       # 0-based rank among the kept items
    rel = same_pid & ~junk & (pos < k)
    hits_before = np.cumsum(rel, axis=1) - rel
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.where(rel, (hits_before + 1) / (pos + 1.0), 0.0).sum(1) / np.maximum(n_match, 1)
    big = np.iinfo(np.int64).max
    first = np.where(rel, pos, big).min(1) if ranked_idx.shape[1] else np.full(Q, big)
    num_valid = int(valid.sum())
    hist = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / float(num_valid)
    return TruncatedResult(k=int(k), cmc=cmc, all_AP=ap[valid], valid=valid, num_gallery=G)


def search_rank(query: Union[FeatureBlocks, np.ndarray, torch.Tensor],
                gallery: Union[FeatureBlocks, np.ndarray, torch.Tensor], q_pids, g_pids, q_camids, g_camids,
                metric: str = "cosine", settings: SearchSettings = SearchSettings(mode="faiss"),
                memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, use_gpu: Optional[bool] = None,
                provider: Optional[DistanceProvider] = None, num_threads: Optional[int] = None,
                dataset: Optional[str] = None, index: Optional[SearchIndex] = None) -> TruncatedResult:
    """Build ``settings.index`` over the gallery (or reuse ``index``), search each query's top ``settings.topk``
    and compute the truncated metrics; with ``settings.recall``, also ``recall@k`` against the exact top-k of
    ``provider`` (built from the features when None). ``extra`` holds ``build_s``, ``search_s``, ``recall_s``,
    ``searched_k`` and ``on_gpu``.
    """
    query, gallery = _as_blocks(query), _as_blocks(gallery)
    q_pids, g_pids = _as_1d_int(q_pids, "q_pids"), _as_1d_int(g_pids, "g_pids")
    q_camids, g_camids = _as_1d_int(q_camids, "q_camids"), _as_1d_int(g_camids, "g_camids")
    G = len(gallery)
    if len(q_pids) != len(query) or len(q_camids) != len(query) or len(g_pids) != G or len(g_camids) != G:
        raise ValueError(f"pid/camid lengths do not match the {len(query)} query and {G} gallery features")
    k = int(settings.topk)
    check_topk(k, G, dataset)
    _, n_removed = _label_counts(q_pids, q_camids, g_pids, g_camids)
    searched_k = int(min(G, k + (int(n_removed.max()) if len(n_removed) else 0)))
    if index is None:
        index = build_search_index(gallery, metric, settings.index, settings.nprobe, settings.ef_search,
                                   settings.refine, use_gpu)
    t0 = time.perf_counter()
    _, ranked = index.search(query, searched_k)
    search_s = time.perf_counter() - t0
    res = truncated_metrics(ranked, k, q_pids, g_pids, q_camids, g_camids, dataset=dataset)
    res.ranked_idx = ranked
    res.extra.update(build_s=index.build_s, search_s=search_s, searched_k=searched_k, on_gpu=index.on_gpu,
                     index=index.spec)
    if settings.recall:
        from .distance import FeatureDistance

        t1 = time.perf_counter()
        provider = provider or FeatureDistance(query, gallery, metric)
        exact = exact_topk(provider, k, memory_budget_mb, num_threads)
        res.recall = recall_at_k(ranked[:, :k], exact)
        res.extra["recall_s"] = time.perf_counter() - t1
    return res

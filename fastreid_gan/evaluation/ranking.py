"""Exact Market-1501 CMC / mAP / mINP in bounded memory.

Same protocol and numbers as fastreid's ``evaluate_rank`` (``eval_market1501``): for each query the gallery
items with the same pid *and* the same camid are removed, queries without any remaining match are skipped,
AP is over the whole (filtered) gallery, not a top-k.

How it avoids the full argsort fastreid does (an int64 matrix twice the size of the distance matrix):
query rows are processed in chunks sized by a memory budget; for a row only the *positions* of its matches
in the sorted row are needed, and position(m) = #(gallery items ranked before m). Per row the same-pid
gallery items (matches and removed same-camera items, a handful) are gathered, the row is sorted (a copy of a
small row block, numpy's SIMD sort, in worker threads) and the match distances are located with
``searchsorted``; the few same-pid items and exact-tie corrections are then handled on small (rows x R)
arrays. Nothing larger than a chunk of rows is ever allocated.

Ties: the ranking is the *stable* order by (distance, gallery index), i.e. ``np.argsort(kind="stable")``.
fastreid uses the default (unstable) argsort, so with exactly tied float32 distances its tie order is
arbitrary; without ties both agree exactly.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .distance import DistanceProvider, FeatureDistance, MatrixDistance, TorchFeatureDistance, empty_f32, \
    rows_for_budget

logger = logging.getLogger(__name__)

__all__ = ["EvaluationDataError", "RankResult", "rank_chunked", "evaluate_rank", "evaluate_rank_features",
           "default_num_threads"]

DEFAULT_MEMORY_BUDGET_MB = 256.0
_BLOCK_ROWS = 8  # rows per worker task: small enough to balance 2+ threads, large enough to amortise the calls


def default_num_threads() -> int:
    """Worker threads for the per-row sorts: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class EvaluationDataError(ValueError):
    """The query/gallery split cannot be evaluated: an empty set, or no query has a match in the gallery.

    fastreid raises a bare ``AssertionError`` ("all query identities do not appear in gallery") or an
    ``IndexError``; this names the dataset (when the caller passes it) and the fix.
    """


@dataclass
class RankResult:
    """Output of :func:`rank_chunked`."""

    cmc: np.ndarray                 # (max_rank,) float64, averaged over valid queries
    all_AP: np.ndarray              # (num_valid,) float64, in query order
    all_INP: np.ndarray             # (num_valid,) float64
    valid: np.ndarray               # (num_query,) bool: the query has at least one match
    num_gallery: int
    # Filled when ``collect_roc=True``: distances of every (query, same pid / other camera) pair, and the
    # number of (query, other pid) pairs.
    positive_dists: Optional[np.ndarray] = None
    num_negative_pairs: int = 0
    extra: Dict[str, float] = field(default_factory=dict)

    @property
    def num_unmatched(self) -> int:
        """Queries without any match in the gallery (same pid, another camera): left out of CMC, mAP and mINP."""
        return int(len(self.valid) - self.valid.sum())

    @property
    def mAP(self) -> float:
        return float(np.mean(self.all_AP))

    @property
    def mINP(self) -> float:
        return float(np.mean(self.all_INP))

    def as_fastreid(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cmc, all_AP, all_INP)`` like ``fastreid.evaluation.rank.evaluate_rank``."""
        return self.cmc, self.all_AP, self.all_INP


class _SamePidIndex:
    """Gallery indices grouped by pid, so each query's same-pid items are one slice."""

    def __init__(self, g_pids: np.ndarray):
        self.order = np.argsort(g_pids, kind="stable")  # stable: indices ascending within a pid
        uniq, starts, counts = np.unique(g_pids[self.order], return_index=True, return_counts=True)
        self.uniq, self.starts, self.counts = uniq, starts, counts

    def lookup(self, q_pids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if len(self.uniq) == 0:
            z = np.zeros(len(q_pids), np.int64)
            return z, z
        loc = np.clip(np.searchsorted(self.uniq, q_pids), 0, len(self.uniq) - 1)
        found = self.uniq[loc] == q_pids
        return np.where(found, self.starts[loc], 0), np.where(found, self.counts[loc], 0)


def _as_1d_int(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.cpu().numpy()
    x = np.asarray(x).reshape(-1)
    if x.dtype.kind not in "iu":
        if x.dtype.kind == "f" and np.all(np.mod(x, 1) == 0):
            x = x.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers, got {x.dtype}")
    return x.astype(np.int64, copy=False)


class _ChunkRanker:
    """Per-chunk work shared by the ranking pass and the ROC counting pass."""

    def __init__(self, provider: DistanceProvider, q_pids, g_pids, q_camids, g_camids,
                 memory_budget_mb: float, num_threads: Optional[int]):
        self.provider = provider
        self.q_pids, self.g_pids = q_pids, g_pids
        self.q_camids, self.g_camids = q_camids, g_camids
        self.G = provider.num_gallery
        self.Q = provider.num_query
        self.num_threads = num_threads or default_num_threads()
        self.budget_mb = float(memory_budget_mb)
        self.index = _SamePidIndex(g_pids)
        self.sp_start, self.sp_count = self.index.lookup(q_pids)
        # Torch providers sort the whole chunk on the device (values + int64 indices: 4 + 4 + 8 bytes a cell);
        # numpy sorts small row blocks, so only the float32 chunk counts.
        cell_bytes = 16.0 if provider.kind == "torch" else 4.0
        self.chunk_rows = rows_for_budget(self.G, self.budget_mb, cell_bytes)
        # Cap on rows x R of the padded (rows, R) same-pid arrays (~80 bytes a cell over all of them), so that
        # a query whose pid has thousands of gallery images (junk/distractor pids) cannot blow the budget.
        self.max_pad_cells = max(1, int(self.budget_mb * 2 ** 20 / 80))
        self.gemm_s = 0.0  # time spent in provider.gemm (the BLAS floor), for logs/benchmarks

    def chunks(self):
        """Yield ``(start, stop)`` query ranges respecting both the row budget and the padding cap."""
        start = 0
        while start < self.Q:
            stop = min(self.Q, start + self.chunk_rows)
            while True:
                rmax = max(1, int(self.sp_count[start:stop].max()))
                if (stop - start) * rmax <= self.max_pad_cells or stop - start == 1:
                    break
                stop = start + max(1, self.max_pad_cells // rmax)
            yield start, stop
            start = stop

    def same_pid(self, start: int, stop: int):
        """Padded (rows, R) gallery indices of each query's same-pid items, validity and same-camera masks."""
        cnt = self.sp_count[start:stop]
        rmax = max(1, int(cnt.max()))
        ar = np.arange(rmax)
        valid = ar[None, :] < cnt[:, None]
        pos = np.where(valid, self.sp_start[start:stop, None] + ar[None, :], 0)
        P = np.where(valid, self.index.order[pos], 0) if self.G else np.zeros_like(pos)
        same_cam = valid & (self.g_camids[P] == self.q_camids[start:stop, None])
        return P, valid, same_cam

    def _run_numpy(self, D: np.ndarray, start: int, stop: int, P: np.ndarray, valid: np.ndarray,
                   match: np.ndarray, window: Optional[np.ndarray]):
        c, R = P.shape
        T = np.empty((c, R), np.float32)
        cl = np.zeros((c, R), np.int64)
        cr = np.zeros((c, R), np.int64)
        def work(r0: int) -> Optional[np.ndarray]:
            r1 = min(c, r0 + _BLOCK_ROWS)
            blk = D[r0:r1]
            self.provider.finalize(blk, start + r0, start + r1)
            t = np.take_along_axis(blk, P[r0:r1], axis=1)
            t[~valid[r0:r1]] = np.inf
            T[r0:r1] = t
            if window is None:
                for i in range(r1 - r0):
                    m = match[r0 + i]
                    if not m.any():
                        continue  # no match: the query is skipped, no need to rank it
                    mt = t[i][m]
                    row = blk[i]
                    # Only items up to the farthest match can precede a match: sort just those (with a good
                    # model the farthest match is close, so this is a small fraction of the gallery).
                    below = row[row <= mt.max()]
                    below.sort()
                    cl[r0 + i, m] = np.searchsorted(below, mt, "left")
                    cr[r0 + i, m] = np.searchsorted(below, mt, "right")
                return None
            # ROC counting pass: only values >= the smallest window threshold matter, and only their totals.
            vals = blk[blk >= window[0]]
            lo = np.searchsorted(window, vals, "left")
            hi = np.searchsorted(window, vals, "right")
            return _window_hist(lo, hi, len(window))

        starts = range(0, c, _BLOCK_ROWS)
        if self.num_threads > 1 and c > _BLOCK_ROWS:
            with ThreadPoolExecutor(self.num_threads) as ex:
                results = list(ex.map(work, starts))
        else:
            results = [work(r0) for r0 in starts]
        if window is not None:
            return T, None, None, np.sum(results, axis=0) if results else np.zeros((2, len(window)), np.int64)
        return T, cl, cr, None

    def _run_torch(self, D: torch.Tensor, start: int, stop: int, P: np.ndarray, valid: np.ndarray,
                   match: np.ndarray, window: Optional[np.ndarray]):
        dev = D.device
        self.provider.finalize(D, start, stop)
        Pt = torch.from_numpy(P).to(dev)
        Tt = D.gather(1, Pt)
        Tt[~torch.from_numpy(valid).to(dev)] = float("inf")
        T = Tt.cpu().numpy()
        if window is None:
            srt = torch.sort(D, dim=1).values
            cl = torch.searchsorted(srt, Tt).cpu().numpy()
            cr = torch.searchsorted(srt, Tt, right=True).cpu().numpy()
            del srt
            return T, cl, cr, None
        w = torch.from_numpy(window).to(dev)
        vals = D[D >= w[0]]
        lo = torch.searchsorted(w, vals).cpu().numpy()
        hi = torch.searchsorted(w, vals, right=True).cpu().numpy()
        return T, None, None, _window_hist(lo, hi, len(window))

    def run_chunk(self, start: int, stop: int, buf, window: Optional[np.ndarray] = None):
        """Distances for the chunk, same-pid thresholds ``T`` and their (strict, non-strict) ranks ``cl``/``cr``
        in the sorted rows; or, with ``window``, the ROC window histogram."""
        P, valid, same_cam = self.same_pid(start, stop)
        match = valid & ~same_cam
        c = stop - start
        t0 = time.perf_counter()
        if self.provider.kind == "torch":
            D = self.provider.gemm(start, stop, None)
            self.gemm_s += time.perf_counter() - t0
            out = self._run_torch(D, start, stop, P, valid, match, window)
        else:
            D = self.provider.gemm(start, stop, None if buf is None else buf[:c])
            self.gemm_s += time.perf_counter() - t0
            out = self._run_numpy(D, start, stop, P, valid, match, window)
        return (D, P, valid, same_cam) + out

    def tie_count(self, D, row: int, q_pid: int, t: float, g_idx: int) -> int:
        """#other-pid gallery items at exactly distance ``t`` with an index below ``g_idx`` (stable order)."""
        r = D[row, :g_idx]
        r = r.cpu().numpy() if isinstance(r, torch.Tensor) else r
        eq = np.flatnonzero(r == t)
        return int(np.count_nonzero(self.g_pids[eq] != q_pid))


def _window_hist(lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
    """Row 0: #values >= window[j] (from the strict-rank ``hi``); row 1: #values == window[j]."""
    ge = np.cumsum(np.bincount(hi, minlength=k + 1)[::-1])[::-1][1:]  # values with hi > j are >= window[j]
    eq_mask = hi > lo
    eq = np.bincount(lo[eq_mask], minlength=k)[:k]
    return np.stack([ge, eq]).astype(np.int64)


def _match_positions(T: np.ndarray, P: np.ndarray, match: np.ndarray, cl: np.ndarray, cr: np.ndarray):
    """Sort each row's same-pid items by (distance, index) and compute every match's 0-based rank among the
    kept gallery items. Returns the sorted arrays and the positions (valid where ``Ms``)."""
    c, R = T.shape
    order = np.lexsort((P, T), axis=1)
    Ts = np.take_along_axis(T, order, 1)
    Ps = np.take_along_axis(P, order, 1)
    Ms = np.take_along_axis(match, order, 1)
    cls = np.take_along_axis(cl, order, 1)
    crs = np.take_along_axis(cr, order, 1)
    k = np.arange(R)
    new_grp = np.ones((c, R), bool)
    new_grp[:, 1:] = Ts[:, 1:] != Ts[:, :-1]
    grp_start = np.maximum.accumulate(np.where(new_grp, k, 0), axis=1)
    last = np.ones((c, R), bool)
    last[:, :-1] = Ts[:, :-1] != Ts[:, 1:]
    grp_end = np.minimum.accumulate(np.where(last, k + 1, R)[:, ::-1], axis=1)[:, ::-1]
    # Same-pid items are all valid before the inf padding, so grp_start = #same-pid items strictly closer.
    other_less = cls - grp_start
    other_eq = (crs - cls) - (grp_end - grp_start)
    match_before = np.cumsum(Ms, axis=1) - Ms
    pos = other_less + match_before
    return Ts, Ps, Ms, pos, match_before, other_eq


def rank_chunked(provider: DistanceProvider, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                 memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, num_threads: Optional[int] = None,
                 collect_roc: bool = False, *, dataset: Optional[str] = None) -> RankResult:
    """Exact Market-1501 ranking metrics from a chunked distance provider.

    Queries without a match in the gallery (no gallery item of their pid from another camera) are skipped, as
    in the Market-1501 protocol and fastreid: they count in neither CMC nor mAP/mINP
    (:attr:`RankResult.num_unmatched` says how many).

    Args:
        provider: a :class:`~fastreid_gan.evaluation.distance.DistanceProvider` (features or a matrix).
        max_rank: length of the returned CMC (clamped to the gallery size, like fastreid).
        memory_budget_mb: bound for the per-chunk distance block (rows x gallery float32) and padding.
        num_threads: worker threads for the row sorts (default: usable CPUs).
        collect_roc: also keep the positive-pair distances needed by :func:`roc.tpr_at_fpr`.
        dataset: named in the errors.

    Raises:
        EvaluationDataError: no query, no gallery item, or no query with a match in the gallery.
    """
    q_pids, g_pids = _as_1d_int(q_pids, "q_pids"), _as_1d_int(g_pids, "g_pids")
    q_camids, g_camids = _as_1d_int(q_camids, "q_camids"), _as_1d_int(g_camids, "g_camids")
    Q, G = provider.num_query, provider.num_gallery
    if len(q_pids) != Q or len(q_camids) != Q or len(g_pids) != G or len(g_camids) != G:
        raise ValueError(f"pid/camid lengths do not match the {Q} x {G} distances")
    name = dataset or "the evaluated dataset"
    for count, part, folder in ((Q, "query set", "query"), (G, "gallery", "bounding_box_test")):
        if count == 0:
            raise EvaluationDataError(f"{name}: the {part} is empty, nothing to evaluate. Fix: the dataset's "
                                      f"{part} (a Market-1501-style {folder}/ folder) must hold images.")
    if G < max_rank:
        logger.info("Note: number of gallery samples is quite small, got %d", G)
        max_rank = G
    ranker = _ChunkRanker(provider, q_pids, g_pids, q_camids, g_camids, memory_budget_mb, num_threads)

    all_AP = np.zeros(Q)
    all_INP = np.zeros(Q)
    first = np.full(Q, np.iinfo(np.int64).max, np.int64)
    valid_q = np.zeros(Q, bool)
    pos_dists: List[np.ndarray] = []
    num_neg = 0
    buf = None
    if provider.kind != "torch" and Q:
        buf = empty_f32(min(ranker.chunk_rows, Q), G)

    t_start = time.perf_counter()
    for start, stop in ranker.chunks():
        D, P, valid, same_cam, T, cl, cr, _ = ranker.run_chunk(start, stop, buf)
        match = valid & ~same_cam
        Ts, Ps, Ms, pos, match_before, other_eq = _match_positions(T, P, match, cl, cr)
        # Exact ties with other-pid items: rare, so fixed one by one on the original (unsorted) row.
        for i, j in zip(*np.nonzero(Ms & (other_eq > 0))):
            pos[i, j] += ranker.tie_count(D, i, int(q_pids[start + i]), float(Ts[i, j]), int(Ps[i, j]))
        n_match = Ms.sum(1)
        ok = n_match > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ap = np.where(Ms, (match_before + 1) / (pos + 1.0), 0.0).sum(1) / n_match
            inp = n_match / (np.where(Ms, pos, -1).max(1) + 1.0)
        sl = slice(start, stop)
        all_AP[sl], all_INP[sl], valid_q[sl] = ap, inp, ok
        first[sl] = np.where(Ms, pos, np.iinfo(np.int64).max).min(1)
        if collect_roc:
            pos_dists.append(Ts[Ms])
            num_neg += int(G * (stop - start) - valid.sum())
        del D

    num_valid = int(valid_q.sum())
    if num_valid == 0:
        raise EvaluationDataError(
            f"{name}: none of the {Q} queries has a match in the {G}-image gallery (an image of the same pid from "
            f"another camera), so CMC and mAP are undefined. Fix: query and gallery must come from the same "
            f"dataset, and each query identity needs gallery images from other cameras.")
    hist = np.bincount(np.minimum(first[valid_q], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / float(num_valid)
    res = RankResult(cmc=cmc, all_AP=all_AP[valid_q], all_INP=all_INP[valid_q], valid=valid_q, num_gallery=G,
                     extra={"total_s": time.perf_counter() - t_start, "gemm_s": ranker.gemm_s})
    if collect_roc:
        res.positive_dists = np.concatenate(pos_dists) if pos_dists else np.empty(0, np.float32)
        res.num_negative_pairs = num_neg
    return res


def _resolve_device(device: Optional[Union[str, torch.device]]) -> Optional[torch.device]:
    """None/"auto": CUDA when torch sees it, else the numpy CPU path (returned as None)."""
    if device is None or device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    device = torch.device(device)
    return None if device.type == "cpu" else device


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                  use_metric_cuhk03: bool = False, use_cython: bool = True,
                  memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, num_threads: Optional[int] = None):
    """Drop-in for ``fastreid.evaluation.rank.evaluate_rank`` on a precomputed distance matrix.

    Returns ``(cmc, all_AP, all_INP)``. ``use_cython`` is accepted and ignored; the CUHK03 single-shot
    protocol (random sampling) is delegated to fastreid.
    """
    if use_metric_cuhk03:
        from fastreid.evaluation.rank import evaluate_rank as fr_evaluate_rank

        return fr_evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, True, use_cython)
    res = rank_chunked(MatrixDistance(distmat), q_pids, g_pids, q_camids, g_camids, max_rank,
                       memory_budget_mb, num_threads)
    return res.as_fastreid()


def evaluate_rank_features(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids,
                           metric: str = "cosine", max_rank: int = 50,
                           memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                           device: Optional[Union[str, torch.device]] = None,
                           num_threads: Optional[int] = None, collect_roc: bool = False) -> RankResult:
    """Rank straight from features (fastreid's ``cosine``/``euclidean`` distances), never holding the
    query x gallery matrix: numpy BLAS on CPU, torch on CUDA when available (``device="auto"``)."""
    dev = _resolve_device(device)
    if dev is None:
        provider = FeatureDistance(query_feats, gallery_feats, metric)
    else:
        provider = TorchFeatureDistance(query_feats, gallery_feats, metric, dev)
    return rank_chunked(provider, q_pids, g_pids, q_camids, g_camids, max_rank, memory_budget_mb,
                        num_threads, collect_roc)

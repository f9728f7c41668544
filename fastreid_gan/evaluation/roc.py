"""fastreid's ``TPR@FPR`` numbers, exact, without materialising every (query, gallery) score.

fastreid (``ReidEvaluator`` with ``TEST.ROC.ENABLED``) collects the distance of every kept pair (same-pid /
same-camera pairs removed), labels same-pid pairs 0 and other-pid pairs 1, calls
``sklearn.metrics.roc_curve(labels, distances)`` (default ``drop_intermediate=True``) and reports, for
``fpr in (1e-4, 1e-3, 1e-2)``, ``tprs[argmin(|fprs - fpr|)]`` (a fraction, not a percentage). Note the
roles: sklearn's "positives" are the *other-pid* pairs, so "FPR" is the fraction of same-pid pairs whose
distance is >= the threshold and "TPR" the fraction of other-pid pairs that are.

Every ROC point sits at a distinct score; which points sklearn keeps, and so which one the argmin picks, only
depends on the same-pid distances (few: ~ one per match) and, for a handful of thresholds around each
target, on how many other-pid distances are >=, == or strictly between them. Those counts are gathered in one
extra chunked pass (a compare + ``searchsorted`` against ~100 thresholds), so the result equals fastreid's to
the last bit (ties included) at the cost of one more GEMM pass over the gallery.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from .distance import DistanceProvider, MatrixDistance, empty_f32
from .ranking import DEFAULT_MEMORY_BUDGET_MB, _as_1d_int, _ChunkRanker, _window_hist

logger = logging.getLogger(__name__)

__all__ = ["FPR_TARGETS", "tpr_at_fpr_chunked", "evaluate_roc_tpr", "roc_key"]

FPR_TARGETS: Tuple[float, ...] = (1e-4, 1e-3, 1e-2)


def roc_key(fpr: float) -> str:
    """fastreid's result key, e.g. ``TPR@FPR=1e-04``."""
    return "TPR@FPR={:.0e}".format(fpr)


def _window_indices(K: np.ndarray, P: int, fprs: Sequence[float], half: int) -> Tuple[np.ndarray, list]:
    """Distinct-positive indices (descending distance order) to count negatives for, per target."""
    m = len(K)
    fpr_pts = K / float(P)
    need = set()
    spans = []
    for f in fprs:
        jc = int(np.searchsorted(fpr_pts, f, "left"))
        lo, hi = max(0, jc - half), min(m - 1, jc + half - 1)
        spans.append((jc, lo, hi))
        need.update(range(lo, min(m - 1, hi + 1) + 1))  # j+1 decides whether j is a kept corner
    return np.array(sorted(need), dtype=np.int64), spans


def _count_negatives(ranker: _ChunkRanker, window_asc: np.ndarray) -> np.ndarray:
    """(2, len(window)) totals over other-pid pairs: #distances >= w and #distances == w."""
    total = np.zeros((2, len(window_asc)), np.int64)
    buf = None
    if ranker.provider.kind != "torch":
        buf = empty_f32(min(ranker.chunk_rows, ranker.Q), ranker.G)
    for start, stop in ranker.chunks():
        D, P, valid, same_cam, T, _, _, hist = ranker.run_chunk(start, stop, buf, window=window_asc)
        total += hist
        # Remove the same-pid pairs: matches are positives, same-camera ones are not scored at all.
        tv = T[valid]
        tv = tv[tv >= window_asc[0]]
        total -= _window_hist(np.searchsorted(window_asc, tv, "left"), np.searchsorted(window_asc, tv, "right"),
                              len(window_asc))
        del D
    return total


def tpr_at_fpr_chunked(provider: DistanceProvider, q_pids, g_pids, q_camids, g_camids,
                       positive_dists: np.ndarray, num_negative_pairs: int,
                       fprs: Iterable[float] = FPR_TARGETS, window: int = 16,
                       memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                       num_threads: Optional[int] = None) -> Dict[float, float]:
    """``{fpr: tpr}`` exactly as fastreid/sklearn compute them (see module doc).

    ``positive_dists``/``num_negative_pairs`` come from ``rank_chunked(..., collect_roc=True)`` on the same
    provider (the provider must return identical distances on every pass).
    """
    fprs = [float(f) for f in fprs]
    pos = np.asarray(positive_dists, np.float32)
    P, N = int(pos.size), int(num_negative_pairs)
    if P == 0:
        logger.warning("ROC: no same-pid pair left after filtering; TPR@FPR reported as 0 (as sklearn/fastreid)")
        return {f: 0.0 for f in fprs}
    if N == 0:
        logger.warning("ROC: no other-pid pair; TPR@FPR is undefined (nan)")
        return {f: float("nan") for f in fprs}
    uniq, counts = np.unique(pos, return_counts=True)
    u, c = uniq[::-1], counts[::-1]  # distinct positive distances, descending (sklearn's threshold order)
    K = np.cumsum(c)
    m = len(u)
    ranker = _ChunkRanker(provider, _as_1d_int(q_pids, "q_pids"), _as_1d_int(g_pids, "g_pids"),
                          _as_1d_int(q_camids, "q_camids"), _as_1d_int(g_camids, "g_camids"),
                          memory_budget_mb, num_threads)
    half = max(1, int(window))
    while True:
        idx, spans = _window_indices(K, P, fprs, half)
        w_asc = u[idx][::-1].copy()  # ascending for searchsorted
        counts_asc = _count_negatives(ranker, w_asc)
        ge_d = dict(zip(idx.tolist(), counts_asc[0][::-1].tolist()))
        eq_d = dict(zip(idx.tolist(), counts_asc[1][::-1].tolist()))

        def kept(j: int) -> bool:
            if j == m - 1:
                return True  # last positive: either negatives follow it (a corner) or it is the last point
            between = (ge_d[j + 1] - eq_d[j + 1]) - ge_d[j]  # negatives strictly between u[j+1] and u[j]
            if between > 0:
                return True
            if j == 0 and ge_d[0] - eq_d[0] == 0:
                return True  # first point of the curve
            return (c[j], eq_d[j]) != (c[j + 1], eq_d[j + 1])

        out: Dict[float, float] = {}
        retry = False
        for f, (jc, lo, hi) in zip(fprs, spans):
            lower = next((j for j in range(jc - 1, lo - 1, -1) if kept(j)), None)
            upper = next((j for j in range(jc, hi + 1) if kept(j)), None)
            if (lower is None and lo > 0) or (upper is None and hi < m - 1):
                retry = True  # every counted threshold on one side was dropped by sklearn: widen the window
                break
            # Candidates in curve order; argmin keeps the first of equal distances, like np.argmin.
            cands = [(0.0, 0.0)]
            for j in (lower, upper):
                if j is not None:
                    cands.append((K[j] / float(P), ge_d[j] / float(N)))
            errs = [abs(fp - f) for fp, _ in cands]
            out[f] = float(cands[int(np.argmin(errs))][1])
        if not retry:
            return out
        if half >= m:
            raise RuntimeError("ROC window covers every threshold but no kept point was found")  # pragma: no cover
        half *= 4
        logger.info("ROC: widening the threshold window to %d", half)


def evaluate_roc_tpr(distmat, q_pids, g_pids, q_camids, g_camids, fprs: Iterable[float] = FPR_TARGETS,
                     window: int = 16, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> Dict[float, float]:
    """``{fpr: tpr}`` for a precomputed distance matrix (fastreid's ``evaluate_roc`` + ``roc_curve`` + argmin).

    Unlike fastreid, queries without a match do not need to exist for this to work, and nothing of size
    (queries x gallery) beyond ``distmat`` itself is allocated.
    """
    provider = MatrixDistance(distmat)
    res = _positives(provider, q_pids, g_pids, q_camids, g_camids, memory_budget_mb)
    return tpr_at_fpr_chunked(provider, q_pids, g_pids, q_camids, g_camids, res[0], res[1], fprs, window,
                              memory_budget_mb)


def _positives(provider: DistanceProvider, q_pids, g_pids, q_camids, g_camids,
               memory_budget_mb: float) -> Tuple[np.ndarray, int]:
    """Same-pid/other-camera distances and the number of other-pid pairs, without requiring a valid query."""
    ranker = _ChunkRanker(provider, _as_1d_int(q_pids, "q_pids"), _as_1d_int(g_pids, "g_pids"),
                          _as_1d_int(q_camids, "q_camids"), _as_1d_int(g_camids, "g_camids"),
                          memory_budget_mb, None)
    pos = []
    neg = 0
    for start, stop in ranker.chunks():
        P, valid, same_cam = ranker.same_pid(start, stop)
        D = provider.chunk(start, stop)
        rows = np.arange(stop - start)[:, None]
        T = D[rows, P] if not hasattr(D, "cpu") else D.cpu().numpy()[rows, P]
        pos.append(T[valid & ~same_cam])
        neg += ranker.G * (stop - start) - int(valid.sum())
    return np.concatenate(pos) if pos else np.empty(0, np.float32), neg

"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017) on CPU, with sparse encodings instead of fastreid's dense (N x N) ``V`` and Python double loops.

Two front-ends share the same core:
  * :func:`re_ranking` reproduces ``fastreid.evaluation.rerank.re_ranking`` (the authors' original code: squared,
    row-max-normalised distances, ``exp`` weights, full argsort ranks) from the three distance blocks;
  * :func:`compute_jaccard_distance` / :func:`rerank_distance` reproduce what fastreid's ``ReidEvaluator`` does
    with ``TEST.RERANK.ENABLED`` (``fastreid.utils.compute_dist.compute_jaccard_distance``: faiss k1-NN ranks,
    softmax of squared euclidean distances as weights, Jaccard clamped at 0), but without fastreid's hard-coded
    ``.cuda()``: faiss runs on the GPU when it sees one, on CPU otherwise.

Memory: the encodings are sparse (~k1 nonzeros a row before query expansion, ~k2 * k1 after), so the working set is
O(N * k1 * k2) plus the dense (rows x columns) output block that is asked for; the k1-NN search over all N = q + g
samples still costs O(N^2 * d) time.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch

from .faiss_search import knn_search

logger = logging.getLogger(__name__)

__all__ = ["re_ranking", "compute_jaccard_distance", "k_reciprocal_jaccard", "rerank_distance"]

_LARGE_N = 40_000  # above this many samples, warn about time and the dense output


def _reciprocal(rank: np.ndarray, k: int, chunk: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
    """k-reciprocal neighbours: ``fwd = rank[:, :k+1]``; ``mask[i, t]`` iff ``i`` is in ``rank[fwd[i, t], :k+1]``."""
    fwd = np.ascontiguousarray(rank[:, :k + 1])
    mask = np.empty(fwd.shape, bool)
    for s in range(0, len(fwd), chunk):
        e = min(len(fwd), s + chunk)
        back = fwd[fwd[s:e]]  # (rows, k+1, k+1): the forward lists of each forward neighbour
        mask[s:e] = (back == np.arange(s, e)[:, None, None]).any(-1)
    return fwd, mask


def _expansion_pairs(rank: np.ndarray, k1: int, chunk: int = 2048) -> Tuple[np.ndarray, np.ndarray]:
    """(row, col) pairs of every sample's expanded k-reciprocal set, sorted by row then col, unique.

    A k1-reciprocal neighbour c of i adds its own round(k1/2)-reciprocal set R(c) when
    ``|R(c) & R_k1(i)| > 2/3 |R(c)|`` (the authors' rule).
    """
    N = len(rank)
    fwd, mask = _reciprocal(rank, k1)
    hf, hm = _reciprocal(rank, int(np.around(k1 / 2.)))
    hsize = hm.sum(1)
    rows, cols = [], []
    for s in range(0, N, chunk):
        e = min(N, s + chunk)
        R = np.where(mask[s:e], fwd[s:e], -1)                      # (c, k) reciprocal set, -1 = absent
        cand = fwd[s:e]                                              # (c, k)
        H, HM = hf[cand], hm[cand]                                   # (c, k, kh) candidate half sets
        inter = ((H[..., None] == R[:, None, None, :]).any(-1) & HM).sum(-1)
        accept = mask[s:e] & (inter > 2. / 3 * hsize[cand])
        i_idx = np.arange(s, e)
        rr, tt = np.nonzero(mask[s:e])
        rows.append(i_idx[rr]); cols.append(fwd[s:e][rr, tt])
        ar, at = np.nonzero(accept)
        sub = H[ar, at]                                              # (n_acc, kh)
        subm = HM[ar, at]
        rows.append(np.repeat(i_idx[ar], subm.sum(1))); cols.append(sub[subm])
    keys = np.unique(np.concatenate(rows).astype(np.int64) * N + np.concatenate(cols))
    return keys // N, keys % N


def _segment_starts(rows: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])


def _encode(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, N: int) -> sp.csr_matrix:
    """Row-normalised sparse encoding V (float32)."""
    starts = _segment_starts(rows)
    sums = np.add.reduceat(weights, starts).astype(np.float32)
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
    data = (weights / sums[seg]).astype(np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(N, N), dtype=np.float32)


def _query_expand(V: sp.csr_matrix, rank: np.ndarray, k2: int) -> sp.csr_matrix:
    """``V_qe[i] = mean(V[rank[i, :k2]])`` (local query expansion)."""
    if k2 == 1:
        return V
    N = V.shape[0]
    nb = rank[:, :k2]
    B = sp.csr_matrix((np.ones(nb.size, np.float32), (np.repeat(np.arange(N), nb.shape[1]), nb.ravel())),
                      shape=(N, N))
    Vq = (B @ V).tocsr()
    Vq.data = (Vq.data / np.float32(nb.shape[1])).astype(np.float32)
    Vq.sort_indices()
    return Vq


def _jaccard_block(V: sp.csr_matrix, row_range: Tuple[int, int], col_range: Tuple[int, int],
                   max_triples: int = 8_000_000) -> np.ndarray:
    """``1 - s / (2 - s)`` with ``s[i, j] = sum_k min(V[i, k], V[j, k])`` for i in rows, j in cols (dense)."""
    r0, r1 = row_range
    c0, c1 = col_range
    ncol = c1 - c0
    Vc = V[c0:c1].tocsc()                          # column k -> the j's (restricted to cols) with V[j, k] != 0
    col_nnz = np.diff(Vc.indptr)
    Vr = V[r0:r1]
    out = np.empty((r1 - r0, ncol), np.float32)
    # Work per row = sum over its nonzeros of the column sizes; split rows so temporaries stay bounded.
    work = np.add.reduceat(np.r_[col_nnz[Vr.indices], 0], Vr.indptr[:-1]) * (np.diff(Vr.indptr) > 0)
    s = 0
    n = r1 - r0
    while s < n:
        e, acc = s, 0
        while e < n and (e == s or acc + work[e] <= max_triples) and (e - s) * ncol < max_triples:
            acc += work[e]
            e += 1
        a, b = Vr.indptr[s], Vr.indptr[e]
        ks, vik = Vr.indices[a:b], Vr.data[a:b]
        ri = np.repeat(np.arange(e - s), np.diff(Vr.indptr[s:e + 1]))
        lens = col_nnz[ks]
        total = int(lens.sum())
        if total:
            offs = np.repeat(Vc.indptr[ks] - np.cumsum(np.r_[0, lens[:-1]]), lens) + np.arange(total)
            j = Vc.indices[offs]
            m = np.minimum(np.repeat(vik, lens), Vc.data[offs])
            tm = np.bincount(np.repeat(ri, lens) * ncol + j, weights=m, minlength=(e - s) * ncol)
            tm = tm.reshape(e - s, ncol).astype(np.float32)
        else:
            tm = np.zeros((e - s, ncol), np.float32)
        out[s:e] = 1 - tm / (np.float32(2.0) - tm)
        s = e
    return out


def k_reciprocal_jaccard(rank: np.ndarray, weights_fn, k1: int, k2: int, row_range: Tuple[int, int],
                         col_range: Tuple[int, int]) -> np.ndarray:
    """Jaccard distance of the k-reciprocal encodings for a (rows x cols) block.

    ``rank``: (N, >= k1 + 1 or k1) neighbour indices, nearest first (self included, as in both references).
    ``weights_fn(rows, cols) -> float32 weights`` of each (sample, expansion member) pair before normalisation.
    """
    N = len(rank)
    rows, cols = _expansion_pairs(rank, k1)
    V = _encode(rows, cols, weights_fn(rows, cols), N)
    V = _query_expand(V, rank, k2)
    return _jaccard_block(V, row_range, col_range)


def re_ranking(q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """Same inputs/outputs as ``fastreid.evaluation.rerank.re_ranking`` (numbers equal to float32 rounding).

    Takes the three distance blocks (so (q+g)^2 memory, by the API); returns the (q, g) re-ranked distances.
    """
    q_g_dist, q_q_dist, g_g_dist = (np.asarray(x) for x in (q_g_dist, q_q_dist, g_g_dist))
    nq = q_g_dist.shape[0]
    original = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                               np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1. * original / np.max(original, axis=0))
    N = len(original)
    if N > _LARGE_N:
        logger.warning("re_ranking on %d samples: the API's (q+g)^2 input already needs %.1f GB", N,
                       N * N * 4 / 2 ** 30)
    kk = min(N, max(k1 + 1, k2))
    part = np.argpartition(original, kk - 1, axis=1)[:, :kk] if kk < N else np.tile(np.arange(N), (N, 1))
    rank = np.take_along_axis(part, np.argsort(np.take_along_axis(original, part, 1), axis=1), 1)

    def weights(rows, cols):
        return np.exp(-original[rows, cols]).astype(np.float32)

    jaccard = k_reciprocal_jaccard(rank, weights, k1, k2, (0, nq), (nq, N))
    return (jaccard * (1 - lambda_value) + original[:nq, nq:] * lambda_value).astype(np.float32)


def _knn_rank(features: np.ndarray, k: int, use_gpu: Optional[bool]) -> np.ndarray:
    # fastreid searches k1 neighbours (self included) with a flat L2 index and then slices [:k1 + 1].
    _, idx = knn_search(features, features, k, "euclidean", use_gpu=use_gpu)
    return idx


def _softmax_weights(features: np.ndarray, batch: int = 65536):
    """Weights of fastreid's compute_jaccard_distance: softmax over each set of ``-|f_i - f_j|^2``."""
    sq = np.einsum("ij,ij->i", features, features, dtype=np.float32)

    def fn(rows, cols):
        d = np.empty(len(rows), np.float32)
        for s in range(0, len(rows), batch):
            r, c = rows[s:s + batch], cols[s:s + batch]
            d[s:s + batch] = (sq[r] + sq[c]) - 2 * np.einsum("ij,ij->i", features[r], features[c], dtype=np.float32)
        z = -d
        starts = _segment_starts(rows)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
        z = z - np.maximum.reduceat(z, starts)[seg]
        return np.exp(z).astype(np.float32)

    return fn


def compute_jaccard_distance(features: Union[np.ndarray, torch.Tensor], k1: int = 20, k2: int = 6,
                             row_range: Optional[Tuple[int, int]] = None,
                             col_range: Optional[Tuple[int, int]] = None,
                             use_gpu: Optional[bool] = None) -> np.ndarray:
    """CPU/GPU-agnostic ``fastreid.utils.compute_dist.compute_jaccard_distance`` (float32, clamped at 0).

    Returns the (rows x cols) block (default: the full N x N matrix, like fastreid).
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float32).numpy()
    features = np.ascontiguousarray(features, dtype=np.float32)
    N = len(features)
    if N > _LARGE_N:
        logger.warning("k-reciprocal re-ranking over %d samples: the k1-NN search is O(N^2 d) and the output "
                       "block is dense", N)
    row_range = row_range or (0, N)
    col_range = col_range or (0, N)
    rank = _knn_rank(features, k1, use_gpu)
    jac = k_reciprocal_jaccard(rank, _softmax_weights(features), k1, k2, row_range, col_range)
    np.maximum(jac, 0, out=jac)
    return jac


def rerank_distance(query_feats, gallery_feats, dist: np.ndarray, metric: str, k1: int = 20, k2: int = 6,
                    lambda_value: float = 0.3, use_gpu: Optional[bool] = None) -> np.ndarray:
    """What fastreid's ``ReidEvaluator`` does with ``TEST.RERANK.ENABLED``, on CPU or GPU:
    ``jaccard(q, g) * (1 - lambda) + dist * lambda`` with features L2-normalised first for ``cosine``.

    ``dist`` is the (q, g) distance matrix of ``metric``; it is updated in place and returned.
    """
    q = np.asarray(query_feats.detach().cpu() if isinstance(query_feats, torch.Tensor) else query_feats, np.float32)
    g = np.asarray(gallery_feats.detach().cpu() if isinstance(gallery_feats, torch.Tensor) else gallery_feats,
                   np.float32)
    feats = np.concatenate([q, g], axis=0)
    if metric == "cosine":
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), np.float32(1e-12))
    nq = len(q)
    if nq * len(g) * 4 > 2 ** 30:
        logger.warning("re-ranking materialises the %d x %d distance matrix (%.1f GB)", nq, len(g),
                       nq * len(g) * 4 / 2 ** 30)
    jac = compute_jaccard_distance(feats, k1, k2, (0, nq), (nq, len(feats)), use_gpu)
    jac *= np.float32(1 - lambda_value)
    dist *= np.float32(lambda_value)
    dist += jac
    return dist

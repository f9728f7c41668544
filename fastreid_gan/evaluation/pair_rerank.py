"""Re-ranking each query's nearest gallery items with a pair scorer (FD-GAN's published test protocol).

FD-GAN's evaluation (published ``reid/evaluators.py``; not in the paper, yet its numbers use it) ranks the gallery
by the feature distance, then re-scores each query's top 100 with the verification head V: the probability
"different" becomes their distance, so they are re-ordered by it, and the rest of the gallery keeps its order
behind them.  ``TEST.PAIR_RERANK.ENABLED`` / ``TOPK`` switch it on for any model with a ``pair_distance``.

:class:`PairRerankDistance` serves those distances a chunk of query rows at a time, like the feature providers,
so the ranking behind the ``verified/`` metrics never holds the query x gallery matrix (13.5 GB at 3,368 queries x
1M gallery images).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .distance import DistanceProvider, FeatureBlocks, empty_f32

__all__ = ["PairScorer", "PAIR_RERANK_PREFIX", "PairRerankDistance", "pair_rerank_distance"]

#: ``scorer(query_feats (N, D), gallery_feats (N, D)) -> (N,)`` distances of aligned pairs (lower = same person)
PairScorer = Callable[[Tensor, Tensor], Tensor]
PAIR_RERANK_PREFIX = "verified/"


def _gather(blocks: FeatureBlocks, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (any order, repeats allowed) of a block-stored matrix, without joining its blocks."""
    flat = idx.ravel()
    out = np.empty((len(flat), blocks.dim), np.float32)
    for off, b in blocks.iter_blocks():
        sel = np.flatnonzero((flat >= off) & (flat < off + len(b)))
        out[sel] = b[flat[sel] - off]
    return out


class PairRerankDistance(DistanceProvider):
    """The pair-re-ranked distances of :func:`pair_rerank_distance`, a chunk of query rows at a time.

    Row ``i``: the ``topk`` items nearest by ``provider`` get the scorer's distance; every other item keeps its
    order behind them (its distance shifted above the row's largest score).  The scorer runs again on each pass
    (the ROC pass would rank a second time): it must be deterministic, as a network in eval mode is.
    """

    kind = "numpy"

    def __init__(self, provider: DistanceProvider, query: Union[FeatureBlocks, np.ndarray],
                 gallery: Union[FeatureBlocks, np.ndarray], scorer: PairScorer, topk: int = 100,
                 memory_budget_mb: float = 256.0):
        self.provider, self.scorer = provider, scorer
        self.query = query if isinstance(query, FeatureBlocks) else FeatureBlocks.from_array(query)
        self.gallery = gallery if isinstance(gallery, FeatureBlocks) else FeatureBlocks.from_array(gallery)
        self.num_query, self.num_gallery = provider.num_query, provider.num_gallery
        self.topk = max(1, min(int(topk), self.num_gallery))
        # rows whose topk pairs go to the scorer at once: (rows x topk x D x 2) float32 within the budget
        self.pair_rows = max(1, int(memory_budget_mb * 2 ** 20 // (8 * self.topk * max(1, self.query.dim))))

    def gemm(self, start: int, stop: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        k, num_g = self.topk, self.num_gallery
        block = self.provider.chunk(start, stop)
        block = block.cpu().numpy() if isinstance(block, Tensor) else np.asarray(block)
        rows = stop - start
        nearest = (np.argpartition(block, k - 1, axis=1)[:, :k] if k < num_g
                   else np.broadcast_to(np.arange(num_g), (rows, num_g)).copy())
        scores = np.empty((rows, k), np.float32)
        for r0 in range(0, rows, self.pair_rows):
            r1 = min(rows, r0 + self.pair_rows)
            pairs_q = torch.from_numpy(np.repeat(self.query.rows(start + r0, start + r1), k, axis=0))
            pairs_g = torch.from_numpy(_gather(self.gallery, nearest[r0:r1]))
            scores[r0:r1] = self.scorer(pairs_q, pairs_g).detach().float().cpu().numpy().reshape(r1 - r0, k)
        # the rest keeps its order, behind every re-scored item
        shift = scores.max(axis=1, keepdims=True) + 1.0 - block.min(axis=1, keepdims=True)
        if out is None:
            out = empty_f32(rows, num_g)
        np.add(block, shift, out=out)
        np.put_along_axis(out, nearest, scores, axis=1)
        return out

    def finalize(self, block: np.ndarray, start: int, stop: int) -> None:
        return None


def pair_rerank_distance(provider: DistanceProvider, query: Union[FeatureBlocks, np.ndarray],
                         gallery: Union[FeatureBlocks, np.ndarray], scorer: PairScorer, topk: int = 100,
                         memory_budget_mb: float = 256.0) -> np.ndarray:
    """The whole (Q, G) matrix of :class:`PairRerankDistance` (for small sets and tests; the evaluator ranks the
    provider chunk by chunk instead).

    Args:
        provider: the feature distances (its ``chunk(start, end)`` rows).
        query, gallery: the raw features the scorer takes (Q, D) and (G, D).
        memory_budget_mb: bound for one chunk of scored pairs (rows x topk x D x 2 float32).
    """
    reranked = PairRerankDistance(provider, query, gallery, scorer, topk, memory_budget_mb)
    num_q, num_g = reranked.num_query, reranked.num_gallery
    step = reranked.pair_rows
    out = empty_f32(num_q, num_g)
    for start in range(0, num_q, step):
        end = min(num_q, start + step)
        reranked.gemm(start, end, out[start:end])
    return out

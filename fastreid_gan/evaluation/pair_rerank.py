"""Re-ranking each query's nearest gallery items with a pair scorer (FD-GAN's published test protocol).

FD-GAN's evaluation (published ``reid/evaluators.py``; not in the paper, yet its numbers use it) ranks the gallery
by the feature distance, then re-scores each query's top 100 with the verification head V: the probability
"different" becomes their distance, so they are re-ordered by it, and the rest of the gallery keeps its order
behind them.  ``TEST.PAIR_RERANK.ENABLED`` / ``TOPK`` switch it on for any model with a ``pair_distance``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .distance import DistanceProvider, empty_f32

__all__ = ["PairScorer", "PAIR_RERANK_PREFIX", "pair_rerank_distance"]

#: ``scorer(query_feats (N, D), gallery_feats (N, D)) -> (N,)`` distances of aligned pairs (lower = same person)
PairScorer = Callable[[Tensor, Tensor], Tensor]
PAIR_RERANK_PREFIX = "verified/"


def pair_rerank_distance(provider: DistanceProvider, query: np.ndarray, gallery: np.ndarray, scorer: PairScorer,
                         topk: int = 100, memory_budget_mb: float = 256.0) -> np.ndarray:
    """(Q, G) distances whose ranking puts each query's ``topk`` nearest gallery items first, ordered by
    ``scorer``, and the others after them in their original order.

    Args:
        provider: the feature distances (its ``chunk(start, end)`` rows).
        query, gallery: the raw features the scorer takes (Q, D) and (G, D).
        memory_budget_mb: bound for one chunk of scored pairs (rows x topk x D x 2 float32).
    """
    num_q, num_g = provider.num_query, provider.num_gallery
    k = max(1, min(int(topk), num_g))
    dim = query.shape[1]
    step = max(1, int(memory_budget_mb * 2 ** 20 // (8 * k * dim)))
    out = empty_f32(num_q, num_g)
    for start in range(0, num_q, step):
        end = min(num_q, start + step)
        block = provider.chunk(start, end)
        block = block.cpu().numpy() if isinstance(block, Tensor) else np.asarray(block)
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k] if k < num_g else np.tile(np.arange(num_g),
                                                                                         (end - start, 1))
        pairs_q = torch.from_numpy(np.repeat(query[start:end], k, axis=0))
        pairs_g = torch.from_numpy(gallery[nearest.ravel()])
        scores = scorer(pairs_q, pairs_g).detach().float().cpu().numpy().reshape(end - start, k)
        # the rest keeps its order, behind every re-scored item
        rest = block - block.min(axis=1, keepdims=True) + scores.max(axis=1, keepdims=True) + 1.0
        np.put_along_axis(rest, nearest, scores, axis=1)
        out[start:end] = rest
    return out

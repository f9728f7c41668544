"""Alpha query expansion (fastreid's ``aqe``: Radenovic et al.'s alpha-QE over query + gallery features).

fastreid builds the full (N x N) similarity matrix of all N = q + g samples and argpartitions every row;
here the ``qe_k`` nearest neighbours come from an exact faiss inner-product search (GPU when available), so
memory is O(N * d) instead of O(N^2) and the result is the same up to float32 rounding of the similarities.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .distance import l2_normalize
from .faiss_search import build_index

logger = logging.getLogger(__name__)

__all__ = ["aqe"]


def aqe(query_feat: Union[torch.Tensor, np.ndarray], gallery_feat: Union[torch.Tensor, np.ndarray],
        qe_times: int = 1, qe_k: int = 10, alpha: float = 3.0, use_gpu: Optional[bool] = None,
        batch: int = 4096) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace every feature by the ``sim**alpha``-weighted mean of its ``qe_k`` nearest neighbours
    (itself included), ``qe_times`` times; neighbours by cosine similarity. Same signature and result as
    ``fastreid.evaluation.query_expansion.aqe``; returns float32 CPU tensors."""
    def as_np(x):
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", torch.float32).numpy()
        return np.asarray(x, np.float32)

    q, g = as_np(query_feat), as_np(gallery_feat)
    num_query = len(q)
    all_feat = np.concatenate([q, g], axis=0)
    n = len(all_feat)
    k = min(int(qe_k), n)
    for _ in range(int(qe_times)):
        norm = l2_normalize(all_feat)
        index = build_index(norm, "ip", use_gpu)
        new = np.empty_like(all_feat)
        for s in range(0, n, batch):
            sims, idx = index.search(norm[s:s + batch], k)
            w = np.power(sims, alpha).astype(np.float32)
            # fastreid: np.mean(all_feat[idx] * weights, axis=0)
            new[s:s + batch] = np.mean(all_feat[idx] * w[:, :, None], axis=1)
        del index
        all_feat = new
    return torch.from_numpy(all_feat[:num_query]), torch.from_numpy(all_feat[num_query:])

"""Exact (flat) faiss k-NN search: a GPU index when faiss sees a GPU, a CPU flat index otherwise.

Used for the top-k neighbour lists of re-ranking (initial ranks) and query expansion. The full-gallery ranking
behind mAP does not go through a faiss index (``k`` would have to be the gallery size, which GPU indexes do
not support and which costs a heap per query on CPU); it uses the chunked GEMM of
:mod:`fastreid_gan.evaluation.distance` instead. Searching a large gallery for each query's top k through an
approximate index (``TEST.SEARCH.MODE faiss``) is :mod:`fastreid_gan.evaluation.search`.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["faiss_gpu_available", "build_index", "knn_search"]

_GPU_MAX_K = 2048  # faiss GPU flat indexes reject larger k


def faiss_gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    import faiss

    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # pragma: no cover - broken CUDA setups
        return False


def _as_f32(x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


_GPU_RES = None


def _gpu_resources():
    # One StandardGpuResources per process: each one reserves temporary GPU memory.
    global _GPU_RES
    if _GPU_RES is None:
        import faiss

        _GPU_RES = faiss.StandardGpuResources()
    return _GPU_RES


def build_index(xb: Union[np.ndarray, torch.Tensor], metric: str = "euclidean",
                use_gpu: Optional[bool] = None):
    """A flat faiss index over ``xb``.

    ``metric``: ``"euclidean"`` (IndexFlatL2: squared L2) or ``"ip"`` (IndexFlatIP; for cosine pass
    L2-normalised vectors). ``use_gpu=None`` picks the GPU when :func:`faiss_gpu_available`.
    """
    import faiss

    xb = _as_f32(xb)
    d = xb.shape[1]
    if metric not in ("euclidean", "ip"):
        raise ValueError(f"metric must be 'euclidean' or 'ip', got {metric!r}")
    gpu = faiss_gpu_available() if use_gpu is None else use_gpu
    if gpu:
        cfg = faiss.GpuIndexFlatConfig()
        cls = faiss.GpuIndexFlatL2 if metric == "euclidean" else faiss.GpuIndexFlatIP
        index = cls(_gpu_resources(), d, cfg)
    else:
        index = faiss.IndexFlatL2(d) if metric == "euclidean" else faiss.IndexFlatIP(d)
    index.add(xb)
    return index


def knn_search(xq: Union[np.ndarray, torch.Tensor], xb: Union[np.ndarray, torch.Tensor], k: int,
               metric: str = "euclidean", use_gpu: Optional[bool] = None,
               index=None) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each row of ``xq`` in ``xb``.

    Returns ``(scores, indices)``, each (nq, k), best first: squared L2 distances for ``"euclidean"``,
    inner products for ``"ip"``. ``index`` reuses an index from :func:`build_index` over ``xb``.
    """
    xq = _as_f32(xq)
    k = int(min(k, len(xb) if index is None else index.ntotal))
    if index is None:
        gpu = faiss_gpu_available() if use_gpu is None else use_gpu
        if gpu and k > _GPU_MAX_K:
            logger.info("k=%d exceeds the faiss GPU limit (%d): searching on CPU", k, _GPU_MAX_K)
            gpu = False
        index = build_index(xb, metric, gpu)
    scores, idx = index.search(xq, k)
    return scores, idx

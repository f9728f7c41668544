"""Row-chunked query x gallery distances with fastreid's conventions, without ever building the full matrix.

fastreid (``fastreid.utils.compute_dist``) uses
  * ``cosine``:    ``1 - <q / max(|q|, 1e-12), g / max(|g|, 1e-12)>``
  * ``euclidean``: the *squared* euclidean distance ``|q|^2 + |g|^2 - 2 <q, g>`` (float32, via a GEMM).
The providers here compute exactly those formulas for a block of query rows at a time, with a BLAS GEMM per
gallery block (numpy's BLAS, the same one ``faiss.pairwise_distances`` uses for inner products; on this
project's CPUs it is faster than torch's MKL on AMD), or with torch on a device (CUDA).

A provider's work is split in two so the cheap elementwise part can run in the ranking worker threads:
``gemm(start, stop, out)`` writes the raw inner products, ``finalize(block, start, stop)`` turns a row block of
them into distances in place.
"""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "FeatureBlocks",
    "DistanceProvider",
    "FeatureDistance",
    "TorchFeatureDistance",
    "MatrixDistance",
    "l2_normalize",
]

_EPS = 1e-12  # F.normalize's default eps


def empty_f32(*shape: int) -> np.ndarray:
    """An uninitialised float32 array for large buffers, allocated through torch.

    numpy asks for transparent huge pages on big allocations; on a host whose THP ``defrag`` setting is
    ``madvise`` (common), first-touching such memory stalls on direct compaction once free huge pages run out
    (several times slower than torch's plain pages), which would dominate feature storage.
    """
    return torch.empty(shape, dtype=torch.float32).numpy()


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """``F.normalize(x, dim=1)`` in numpy (float32): ``x / max(|x|, 1e-12)``."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    return x / np.maximum(norms, np.float32(_EPS))[:, None]


class FeatureBlocks:
    """A (n, d) float32 feature matrix stored as a list of contiguous row blocks.

    Evaluators accumulate features batch by batch; keeping them as large blocks avoids the
    ``torch.cat`` copy of the whole gallery (1.3 GB for a 160k x 2048 gallery) that fastreid makes.
    """

    def __init__(self, blocks: Sequence[np.ndarray]):
        self.blocks: List[np.ndarray] = []
        for b in blocks:
            b = np.ascontiguousarray(b, dtype=np.float32)
            if b.ndim != 2:
                raise ValueError(f"feature blocks must be 2-D, got shape {b.shape}")
            if len(b):
                self.blocks.append(b)
        dims = {b.shape[1] for b in self.blocks}
        if len(dims) > 1:
            raise ValueError(f"feature blocks have different dims: {sorted(dims)}")
        self.dim = dims.pop() if dims else 0
        self.offsets = np.cumsum([0] + [len(b) for b in self.blocks])
        self.n = int(self.offsets[-1])

    @classmethod
    def from_array(cls, x: Union[np.ndarray, torch.Tensor]) -> "FeatureBlocks":
        """Wrap one matrix (no copy when it is already contiguous float32)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float32).numpy()
        return cls([x])

    def __len__(self) -> int:
        return self.n

    def iter_blocks(self, start: int = 0, stop: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
        """Yield ``(row offset relative to start, view)`` for the blocks overlapping ``[start, stop)``."""
        stop = self.n if stop is None else stop
        for b, off in zip(self.blocks, self.offsets[:-1]):
            lo, hi = max(start, off), min(stop, off + len(b))
            if lo < hi:
                yield int(lo - start), b[lo - off:hi - off]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``: a view when they lie in one block, else a (small) concatenated copy."""
        parts = [v for _, v in self.iter_blocks(start, stop)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.empty((0, self.dim), np.float32)
        return np.concatenate(parts, axis=0)

    def slice(self, start: int, stop: int) -> "FeatureBlocks":
        """Rows ``[start, stop)`` as a new ``FeatureBlocks`` of views (no copy)."""
        return FeatureBlocks([v for _, v in self.iter_blocks(start, stop)])

    def to_array(self) -> np.ndarray:
        """The whole matrix (a copy unless there is a single block)."""
        return self.rows(0, self.n)

    def sq_norms(self) -> np.ndarray:
        """Squared L2 norm of every row (float32), block by block."""
        out = np.empty(self.n, np.float32)
        for off, b in self.iter_blocks():
            np.einsum("ij,ij->i", b, b, out=out[off:off + len(b)], dtype=np.float32)
        return out


class DistanceProvider:
    """Interface of the row-chunk distance sources used by :mod:`fastreid_gan.evaluation.ranking`."""

    num_query: int
    num_gallery: int
    #: "numpy" providers return numpy arrays, "torch" providers return tensors on ``device``.
    kind: str = "numpy"
    device: torch.device = torch.device("cpu")

    def gemm(self, start: int, stop: int, out):  # pragma: no cover - interface
        raise NotImplementedError

    def finalize(self, block, start: int, stop: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def chunk(self, start: int, stop: int, out=None):
        """Distances of query rows ``[start, stop)`` to the whole gallery (finalized)."""
        out = self.gemm(start, stop, out)
        self.finalize(out, start, stop)
        return out


def _check_finite(name: str, sq: np.ndarray) -> None:
    # The norms are computed anyway; a non-finite norm means a NaN/inf feature that would silently corrupt the
    # ranking (NaN compares false with everything).
    if not np.all(np.isfinite(sq)):
        raise ValueError(f"{name} features contain NaN or inf")


class FeatureDistance(DistanceProvider):
    """fastreid's cosine / squared-euclidean distance from features, chunked over query rows (numpy BLAS, CPU)."""

    kind = "numpy"

    def __init__(self, query: Union[FeatureBlocks, np.ndarray], gallery: Union[FeatureBlocks, np.ndarray],
                 metric: str = "cosine"):
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        self.query = query if isinstance(query, FeatureBlocks) else FeatureBlocks.from_array(query)
        self.gallery = gallery if isinstance(gallery, FeatureBlocks) else FeatureBlocks.from_array(gallery)
        if self.query.dim != self.gallery.dim:
            raise ValueError(f"query dim {self.query.dim} != gallery dim {self.gallery.dim}")
        self.metric = metric
        self.num_query, self.num_gallery = len(self.query), len(self.gallery)
        q_sq, g_sq = self.query.sq_norms(), self.gallery.sq_norms()
        _check_finite("query", q_sq)
        _check_finite("gallery", g_sq)
        if metric == "cosine":
            # Scale the GEMM output column-wise instead of normalising the gallery: a normalised copy of a
            # 10x-Market gallery alone would cost 1.3 GB.
            self._q_inv = (1.0 / np.maximum(np.sqrt(q_sq), np.float32(_EPS))).astype(np.float32)
            self._g_inv = (1.0 / np.maximum(np.sqrt(g_sq), np.float32(_EPS))).astype(np.float32)
        else:
            self._q_sq, self._g_sq = q_sq, g_sq

    def gemm(self, start: int, stop: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        q = self.query.rows(start, stop)
        if self.metric == "cosine":
            q = q * self._q_inv[start:stop, None]
        else:
            q = q * np.float32(-2.0)  # exact (power of two): the GEMM then yields -2<q, g> directly
        if out is None:
            out = empty_f32(stop - start, self.num_gallery)
        for off, g in self.gallery.iter_blocks():
            np.matmul(q, g.T, out=out[:, off:off + len(g)])
        return out

    def finalize(self, block: np.ndarray, start: int, stop: int) -> None:
        if self.metric == "cosine":
            np.multiply(block, self._g_inv[None, :], out=block)
            np.subtract(np.float32(1.0), block, out=block)
        else:
            block += self._g_sq[None, :]
            block += self._q_sq[start:stop, None]


class TorchFeatureDistance(DistanceProvider):
    """The same distances computed with torch on ``device`` (used for CUDA; runs on CPU too, for tests).

    The gallery is moved to the device once (a copy there: GPU memory, not host memory).
    """

    kind = "torch"

    def __init__(self, query: Union[FeatureBlocks, np.ndarray, torch.Tensor],
                 gallery: Union[FeatureBlocks, np.ndarray, torch.Tensor], metric: str = "cosine",
                 device: Union[str, torch.device] = "cuda"):
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        self.metric = metric
        self.device = torch.device(device)
        self.query = self._to_device(query)
        self.gallery = self._to_device(gallery)
        self.num_query, self.num_gallery = len(self.query), len(self.gallery)
        q_sq = (self.query * self.query).sum(1)
        g_sq = (self.gallery * self.gallery).sum(1)
        if not (bool(torch.isfinite(q_sq).all()) and bool(torch.isfinite(g_sq).all())):
            raise ValueError("features contain NaN or inf")
        if metric == "cosine":
            self._q_inv = 1.0 / q_sq.sqrt().clamp_min(_EPS)
            self._g_inv = 1.0 / g_sq.sqrt().clamp_min(_EPS)
        else:
            self._q_sq, self._g_sq = q_sq, g_sq

    def _to_device(self, x) -> torch.Tensor:
        if isinstance(x, FeatureBlocks):
            parts = [torch.from_numpy(b).to(self.device) for _, b in x.iter_blocks()]
            if not parts:
                return torch.empty((0, x.dim), device=self.device)
            return parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return torch.as_tensor(x).to(self.device, torch.float32)

    def gemm(self, start: int, stop: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        q = self.query[start:stop]
        q = q * self._q_inv[start:stop, None] if self.metric == "cosine" else q * -2.0
        if out is None:
            return q @ self.gallery.T
        torch.mm(q, self.gallery.T, out=out)
        return out

    def finalize(self, block: torch.Tensor, start: int, stop: int) -> None:
        if self.metric == "cosine":
            block.mul_(self._g_inv[None, :]).neg_().add_(1.0)
        else:
            block.add_(self._g_sq[None, :]).add_(self._q_sq[start:stop, None])


class MatrixDistance(DistanceProvider):
    """A precomputed (num_query, num_gallery) distance matrix (e.g. after re-ranking), served in row chunks."""

    def __init__(self, distmat: Union[np.ndarray, torch.Tensor], device: Optional[Union[str, torch.device]] = None):
        if isinstance(distmat, torch.Tensor):
            distmat = distmat.detach().cpu().numpy()
        self.distmat = np.asarray(distmat, dtype=np.float32)
        if self.distmat.ndim != 2:
            raise ValueError("distmat must be 2-D")
        self.num_query, self.num_gallery = self.distmat.shape
        if device is not None:
            self.kind, self.device = "torch", torch.device(device)

    def gemm(self, start: int, stop: int, out=None):
        rows = self.distmat[start:stop]
        if self.kind == "torch":
            t = torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)
            if out is None:
                return t
            out.copy_(t)
            return out
        # Ranking never writes to the distances of a matrix provider (finalize is a no-op and rows are sorted
        # as copies), so a view is enough: no per-chunk copy of a matrix the caller already holds.
        return rows

    def finalize(self, block, start: int, stop: int) -> None:
        return None


def rows_for_budget(num_gallery: int, memory_budget_mb: float, bytes_per_cell: float = 4.0,
                    minimum: int = 1) -> int:
    """How many query rows of ``num_gallery`` cells fit in ``memory_budget_mb``."""
    per_row = max(1.0, num_gallery * bytes_per_cell)
    return max(minimum, int(math.floor(memory_budget_mb * 2 ** 20 / per_row)))

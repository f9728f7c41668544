"""Image grids of a trained DG-Net: code swapping (paper Fig. 1) and appearance interpolation (Fig. 5).

Everything goes through the model's public methods (``encode_appearance``, ``encode_structure``,
``decode``), which take and return images in fastreid's 0..255 convention, so these helpers work on any
DG-Net checkpoint and never touch its modules.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

__all__ = ["swap_grid", "interpolation_grid", "save_png", "to_unit"]


def to_unit(images: Tensor) -> Tensor:
    """0..255 images -> 0..1, clamped (generated images may overshoot)."""
    return (images.float() / 255.0).clamp(0.0, 1.0)


@torch.no_grad()
def swap_grid(model, images: Tensor, appearance_images: Optional[Tensor] = None) -> Tensor:
    """Fig. 1: a (1 + A) x (1 + S) grid; cell (i, j) = G(s_j, a_i).

    Rows keep an appearance (the real image heading the row provides it), columns keep a structure (the
    real image heading the column).  ``images`` (S, 3, H, W, 0..255) give the structures and, unless
    ``appearance_images`` is given, the appearances too.  Returns (1 + A) * (1 + S) images in 0..1, row
    major, the top-left cell blank (white), ready for :func:`save_png` with ``nrow = 1 + S``.
    """
    app_imgs = images if appearance_images is None else appearance_images
    s = model.encode_structure(images)  # (S, ...)
    a = model.encode_appearance(app_imgs)  # (A, D)
    n_s, n_a = s.shape[0], a.shape[0]
    # one decoder call for the whole grid: structures tiled along rows, appearances repeated per row
    s_all = s.repeat(n_a, *([1] * (s.dim() - 1)))
    a_all = a.repeat_interleave(n_s, dim=0)
    cells = to_unit(model.decode(s_all, a_all)).view(n_a, n_s, *images.shape[1:])
    blank = torch.ones_like(cells[0, :1])
    header = torch.cat([blank, to_unit(images)], dim=0)  # (1 + S, 3, H, W)
    rows = [header] + [torch.cat([to_unit(app_imgs[i : i + 1]), cells[i]], dim=0) for i in range(n_a)]
    return torch.cat(rows, dim=0)


@torch.no_grad()
def interpolation_grid(model, images_a: Tensor, images_b: Tensor, steps: int = 8) -> Tensor:
    """Fig. 5: one row per pair; the structure of ``images_a[k]`` is kept while the appearance code moves
    linearly from a(images_a[k]) to a(images_b[k]) in ``steps`` steps.  Each row is
    ``[x_a, G(s_a, (1-t) a_a + t a_b) for t in linspace(0, 1, steps), x_b]``.  Returns
    P * (steps + 2) images in 0..1; save with ``nrow = steps + 2``.
    """
    if images_a.shape != images_b.shape:
        raise ValueError(f"interpolation pairs need equal shapes, got {tuple(images_a.shape)} and {tuple(images_b.shape)}")
    p = images_a.shape[0]
    s = model.encode_structure(images_a)
    a_a, a_b = model.encode_appearance(images_a), model.encode_appearance(images_b)
    t = torch.linspace(0, 1, steps, device=a_a.device).view(1, steps, 1)
    codes = ((1 - t) * a_a.unsqueeze(1) + t * a_b.unsqueeze(1)).reshape(p * steps, -1)
    s_all = s.repeat_interleave(steps, dim=0)
    cells = to_unit(model.decode(s_all, codes)).view(p, steps, *images_a.shape[1:])
    rows = [torch.cat([to_unit(images_a[k : k + 1]), cells[k], to_unit(images_b[k : k + 1])], 0) for k in range(p)]
    return torch.cat(rows, dim=0)


def save_png(images: Tensor, path: str, nrow: int, padding: int = 2) -> str:
    """Write (N, 3, H, W) images in 0..1 as one PNG grid with ``nrow`` images per row; returns the path."""
    from torchvision.utils import save_image

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    save_image(images.detach().cpu().float(), path, nrow=nrow, padding=padding, pad_value=1.0)
    return path

"""Local max pooling (LMP), a test-time feature of any re-id model (Deng et al., SPGAN/eSPGAN TPAMI, Sec. 3.4).

The last feature map (B, C, H, W) of a model's re-id encoder is split into P horizontal stripes, each stripe is
max- (or average-) pooled to C values, the P vectors are concatenated (C * P), the same is done for the
horizontally mirrored image and added, and the sum is L2-normalised.  No weights: it works on any trained model.

Stripe boundaries are torch's adaptive pooling ones: stripe p covers rows ``floor(p * H / P)`` up to (not
including) ``ceil((p + 1) * H / P)``.  When P divides H the stripes are H / P rows each; otherwise neighbouring
stripes share a row (H = 6, P = 4: rows 0-1, 1-2, 3-4, 4-5).  P > H is an error (a stripe would repeat a row).
The concatenation is part-major: index ``p * C + c`` (top stripe first).

A model supports LMP with a ``local_pooling`` attribute (``None`` or a :class:`LocalPooling`, built from the
``TEST.LMP`` keys by :meth:`LocalPooling.from_config`) and a method ``reid_feature_map(images)`` (0..255 images
-> the encoder's last map); its eval ``forward`` returns ``self.local_pooling(self.reid_feature_map, images)``
when the attribute is set.  :func:`set_local_pooling` switches it on an already built (and loaded) model.
See ``docs/lmp.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["POOL_TYPES", "LocalPooling", "check_local_pooling_config", "local_pool", "set_local_pooling"]

POOL_TYPES = ("max", "avg")

FeatureMapFn = Callable[[Tensor], Tensor]


def _check_settings(parts: Any, pool: Any) -> None:
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"TEST.LMP.PARTS must be an integer >= 1 (the number of horizontal stripes; the paper "
                         f"uses 8), got {parts!r}: set e.g. TEST.LMP.PARTS 8")
    if pool not in POOL_TYPES:
        raise ValueError(f"TEST.LMP.POOL must be one of {', '.join(POOL_TYPES)} (max: local max pooling, avg: "
                         f"local average pooling), got {pool!r}: set TEST.LMP.POOL max")


def local_pool(feature_map: Tensor, parts: int, pool: str = "max") -> Tensor:
    """Pool each of ``parts`` horizontal stripes of ``feature_map`` (B, C, H, W) -> (B, parts * C), part-major.

    Sec. 3.4 / Fig. 7: global max (or average) pooling per stripe, concatenated.  Stripes follow torch's adaptive
    pooling boundaries (see the module docstring).  No normalisation here.

    Raises:
        ValueError: ``parts`` < 1 or larger than the map's height, ``pool`` not "max"/"avg", not a 4-D map.
    """
    _check_settings(parts, pool)
    if feature_map.dim() != 4:
        raise ValueError(f"local pooling needs a (B, C, H, W) feature map, got shape {tuple(feature_map.shape)}")
    height = feature_map.shape[2]
    if parts > height:
        raise ValueError(f"TEST.LMP.PARTS = {parts} horizontal stripes, but the model's last feature map has only "
                         f"{height} rows (shape {tuple(feature_map.shape)}): set TEST.LMP.PARTS to at most "
                         f"{height}, or test at a larger INPUT.SIZE_TEST")
    pooler = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    stripes = pooler(feature_map, (parts, 1))  # (B, C, P, 1)
    return stripes.squeeze(3).transpose(1, 2).flatten(1)  # (B, P, C) -> index p * C + c


class LocalPooling(nn.Module):
    """LMP's test feature: ``normalize(lp(F(x)) + lp(F(flip(x))))``, (B, parts * C) (Sec. 3.4).

    ``F`` is the model's ``reid_feature_map`` (0..255 images -> last feature map), ``lp`` is :func:`local_pool`,
    ``flip`` mirrors the image left-right.  The two images are encoded in two calls, so a model whose
    normalisation layers use batch statistics gives each exactly its own feature.  No parameters or buffers:
    adding it to a model leaves its ``state_dict`` (and every checkpoint) unchanged.
    """

    def __init__(self, parts: int = 8, pool: str = "max") -> None:
        super().__init__()
        _check_settings(parts, pool)
        self.parts = int(parts)
        self.pool = str(pool)

    @classmethod
    def from_config(cls, cfg: Any) -> Optional["LocalPooling"]:
        """The ``TEST.LMP`` settings of ``cfg`` (``None`` when ``TEST.LMP.ENABLED`` is False); checks them."""
        check_local_pooling_config(cfg)
        if not cfg.TEST.LMP.ENABLED:
            return None
        return cls(int(cfg.TEST.LMP.PARTS), str(cfg.TEST.LMP.POOL))

    def pool_map(self, feature_map: Tensor) -> Tensor:
        """:func:`local_pool` with this module's settings (no flip, no normalisation)."""
        return local_pool(feature_map, self.parts, self.pool)

    def forward(self, feature_map_fn: FeatureMapFn, images: Tensor) -> Tensor:  # noqa: D102
        pooled = self.pool_map(feature_map_fn(images)) + self.pool_map(feature_map_fn(images.flip(3)))
        return F.normalize(pooled, dim=1)

    def extra_repr(self) -> str:
        return f"parts={self.parts}, pool={self.pool}"


def check_local_pooling_config(cfg: Any) -> None:
    """Config-time checks of ``TEST.LMP`` (the map's height is checked at the first forward, where it is known).

    ``PARTS`` and ``POOL`` are checked also while LMP is off (a tool may switch it on later).

    Raises:
        ValueError: ``TEST.LMP.PARTS`` < 1 or ``TEST.LMP.POOL`` not max/avg.
    """
    _check_settings(cfg.TEST.LMP.PARTS, cfg.TEST.LMP.POOL)


def set_local_pooling(model: nn.Module, local_pooling: Optional[LocalPooling]) -> nn.Module:
    """Switch LMP on (a :class:`LocalPooling`) or off (``None``) on a built model, e.g. after loading weights.

    Works on every model of this project (and a ``(Distributed)DataParallel`` around one); returns ``model``.

    Raises:
        TypeError: the model has no ``reid_feature_map`` (it does not support LMP).
    """
    net = getattr(model, "module", model)
    if not callable(getattr(net, "reid_feature_map", None)):
        raise TypeError(f"{type(net).__name__} does not support TEST.LMP (local max pooling needs a model with "
                        f"reid_feature_map(images) and a local_pooling attribute; see docs/lmp.md)")
    net.local_pooling = local_pooling
    return model


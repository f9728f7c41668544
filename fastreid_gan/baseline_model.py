"""fastreid's ``Baseline`` meta-architecture with the project's test-time switches (``TEST.LMP``).

:class:`Baseline` subclasses fastreid's and takes its place in ``META_ARCH_REGISTRY`` under the same name when
:mod:`fastreid_gan` is imported, so every config that says ``MODEL.META_ARCHITECTURE: Baseline`` (the ResNet
ID-loss baseline, DG-Net's teacher, SPGAN's feature learner) and fastreid's own ``build_model`` /
``DefaultPredictor`` build it.  It has the same modules, ``state_dict`` and training behaviour; only its eval
``forward`` differs, and only when ``TEST.LMP.ENABLED`` is on (local max pooling of the backbone's last map,
:mod:`fastreid_gan.layers.local_pooling`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from torch import Tensor

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.modeling.meta_arch.baseline import Baseline as FastreidBaseline

from fastreid_gan.layers.local_pooling import LocalPooling

__all__ = ["Baseline", "register_baseline"]


class Baseline(FastreidBaseline):
    """fastreid's ``Baseline`` + ``local_pooling``: with it set, the eval ``forward`` returns LMP's feature of the
    backbone's last map (B, C * PARTS) instead of the head's (Sec. 3.4 of the SPGAN/eSPGAN paper)."""

    @configurable
    def __init__(self, *, local_pooling: Optional[LocalPooling] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local_pooling = local_pooling

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        return {**super().from_config(cfg), "local_pooling": LocalPooling.from_config(cfg)}

    def reid_feature_map(self, images: Tensor) -> Tensor:
        """The backbone's last feature map (B, C, H, W) of 0..255 images (normalised here, not in place)."""
        return self.backbone(self.preprocess_image(images))

    def forward(self, batched_inputs: Any) -> Any:
        """fastreid's forward; in eval mode with ``local_pooling`` set, LMP's feature of the backbone's map."""
        if self.training or self.local_pooling is None:
            return super().forward(batched_inputs)
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        if not isinstance(images, Tensor):
            raise TypeError(f"batched_inputs must be a dict with 'images' or a tensor, got {type(batched_inputs)}")
        return self.local_pooling(self.reid_feature_map, images.to(self.device))


def register_baseline() -> None:
    """Put :class:`Baseline` in ``META_ARCH_REGISTRY`` in place of fastreid's (idempotent).

    fastreid's ``Registry`` refuses a second registration of a name, so the entry is replaced directly.
    """
    current = META_ARCH_REGISTRY.get("Baseline")
    if current is Baseline:
        return
    if current is not FastreidBaseline:
        raise RuntimeError(f"META_ARCH_REGISTRY['Baseline'] is {current!r}, neither fastreid's Baseline nor "
                           f"fastreid_gan's: another package replaced it")
    META_ARCH_REGISTRY._obj_map["Baseline"] = Baseline  # noqa: SLF001 (no public API to replace an entry)


register_baseline()

"""SPGAN's discriminators D_T and D_S (TPAMI Eq. 1-2): the 70x70 PatchGAN with instance norm, in the two padding
variants of the official codes, and the variant carried by the weights.

Both official codes build [Conv4x4 s2 3->64 (bias) -> LReLU 0.2; 2 x (Conv4x4 s2 (no bias) -> IN -> LReLU 0.2);
Conv4x4 s1 256->512 (no bias) -> IN -> LReLU 0.2; Conv4x4 s1 512->1 (bias)] with zero padding, identical keys and
shapes, but pad the last two convs differently (``../shared/reference/spgan_official/RECIPE.md``):

* ``"pyspgan"`` (Simon4Yan/eSPGAN ``py-spgan``, the authors' PyTorch code, also eSPGAN's): (1, 2) then (2, 1)
  (H, W): a 32x16 score map at 256x128;
* ``"openunreid"`` (open-mmlab/OpenUnReID, pix2pix's ``NLayerDiscriminator``): 1 then 1: 30x14 at 256x128.

The same weights give different scores, so the variant is part of the weights: :class:`SPGANDiscriminator` keeps
it in the persistent buffer ``padding_variant`` (0 = openunreid, 1 = pyspgan). Every checkpoint (trained here or
converted by ``tools/convert_official.py spgan``) holds it, and loading one switches the paddings to the file's
variant, whatever ``MODEL.SPGAN.DISCRIMINATOR.PADDING`` (the variant of a fresh model) says; a change is logged.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

import torch

from fastreid_gan.layers import PatchDiscriminator

__all__ = ["PADDING_VARIANTS", "SPGANDiscriminator"]

logger = logging.getLogger(__name__)

#: variant -> (padding of the last body conv, padding of the head conv), each (H, W)
PADDING_VARIANTS: Dict[str, Tuple[Tuple[int, int], Tuple[int, int]]] = {
    "openunreid": ((1, 1), (1, 1)),
    "pyspgan": ((1, 2), (2, 1)),
}
_CODES = {"openunreid": 0, "pyspgan": 1}
_NAMES = {code: name for name, code in _CODES.items()}


def _check_variant(variant: str) -> str:
    if variant not in PADDING_VARIANTS:
        raise ValueError(f"unknown SPGAN discriminator padding variant {variant!r} (MODEL.SPGAN.DISCRIMINATOR.PADDING); "
                         f"expected one of {sorted(PADDING_VARIANTS)}")
    return variant


class SPGANDiscriminator(PatchDiscriminator):
    """A :meth:`~fastreid_gan.layers.PatchDiscriminator.patchgan70` whose two last paddings follow
    :attr:`variant` (see the module docstring); build it with :meth:`build`.

    Output: raw LSGAN scores (no sigmoid), (B, 1, h, w).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pads = (tuple(self.body[-1].conv.padding), tuple(self.head.padding))
        found = [name for name, p in PADDING_VARIANTS.items() if p == pads]
        if not found:
            raise ValueError(f"paddings {pads} are neither SPGAN discriminator variant {PADDING_VARIANTS}")
        self.variant = found[0]
        self.register_buffer("padding_variant", torch.tensor(_CODES[self.variant], dtype=torch.int64))

    @classmethod
    def build(cls, ndf: int = 64, n_layers: int = 3, variant: str = "pyspgan", in_channels: int = 3,
              init: str = "gaussian", checkpoint: bool = False) -> "SPGANDiscriminator":
        """The published PatchGAN (``ndf`` 64, ``n_layers`` 3: 70x70 receptive field) in padding ``variant``."""
        return cls.patchgan70(in_channels, ndf, "in", n_layers, norm_bias=False,
                              paddings=PADDING_VARIANTS[_check_variant(variant)], init=init, checkpoint=checkpoint)

    def set_variant(self, variant: str) -> None:
        """Switch to padding ``variant`` (``"pyspgan"`` or ``"openunreid"``); the weights stay."""
        last, head = PADDING_VARIANTS[_check_variant(variant)]
        self.body[-1].conv.padding = last
        self.head.padding = head
        self.variant = variant
        self.padding_variant.fill_(_CODES[variant])

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Loading weights also loads their padding variant (``<prefix>padding_variant``)."""
        key = prefix + "padding_variant"
        code = state_dict.get(key)
        if code is not None:
            code = int(code)
            if code not in _NAMES:
                raise ValueError(f"{key} = {code} in the checkpoint names no SPGAN discriminator variant "
                                 f"(0 = openunreid, 1 = pyspgan)")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if code is not None and _NAMES[code] != self.variant:
            logger.info("%s: padding variant %r from the checkpoint (the model was built as %r)",
                        prefix.rstrip(".") or "discriminator", _NAMES[code], self.variant)
            self.set_variant(_NAMES[code])

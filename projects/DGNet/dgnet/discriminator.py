"""DG-Net's multi-scale discriminator D (paper Sec. 4.1 (iv), appendix Table 8; published ``MsImageDis``)."""
from __future__ import annotations

from typing import List

from fastreid_gan.layers import ConvSpec, MultiScaleDiscriminator

__all__ = ["dgnet_discriminator_convs", "build_dgnet_discriminator"]


def dgnet_discriminator_convs(dim: int = 32, n_layer: int = 2, norm: str = "none") -> List[ConvSpec]:
    """The published ``_make_net`` body: conv1x1 -> dim, conv3x3 dim, conv3x3 s2 dim, then ``n_layer - 1`` x
    [conv3x3 dim, conv3x3 s2 -> min(2 dim, 512)]. Defaults give Table 8's Conv1-Conv5 (32, 32, 32, 32, 64)."""
    specs = [ConvSpec(dim, 1, 1, 0, norm), ConvSpec(dim, 3, 1, 1, norm), ConvSpec(dim, 3, 2, 1, norm)]
    for _ in range(n_layer - 1):
        nxt = min(dim * 2, 512)
        specs += [ConvSpec(dim, 3, 1, 1, norm), ConvSpec(nxt, 3, 2, 1, norm)]
        dim = nxt
    return specs


def build_dgnet_discriminator(
    in_channels: int = 3,
    n_scales: int = 3,
    dim: int = 32,
    n_layer: int = 2,
    n_res: int = 4,
    norm: str = "none",
    pad_type: str = "reflect",
    init: str = "gaussian",
    checkpoint: bool = False,
) -> MultiScaleDiscriminator:
    """D as published (config ``dis``: dim 32, n_layer 2, n_res 4, norm none, lrelu, reflect, 3 scales).

    Per scale: :func:`dgnet_discriminator_convs`, ``n_res`` ResBlocks (no norm), conv1x1 -> 1; scales see the
    image average-pooled (3, s2, p1). At 256x128 the outputs are (B,1,64,32), (B,1,32,16), (B,1,16,8).
    Weights N(0, 0.02), biases 0 (published ``weights_init('gaussian')``). ``checkpoint``: see
    :class:`~fastreid_gan.layers.PatchDiscriminator`.
    """
    return MultiScaleDiscriminator(
        n_scales=n_scales,
        in_channels=in_channels,
        convs=dgnet_discriminator_convs(dim, n_layer, norm),
        n_res=n_res,
        res_norm=norm,
        pad_type=pad_type,
        head_kernel=1,
        head_padding=0,
        init=init,
        checkpoint=checkpoint,
    )

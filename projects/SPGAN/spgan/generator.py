"""SPGAN's translators G (source -> target) and F (target -> source): the CycleGAN ResNet generator
(TPAMI Sec. 3.2.1 and 4.2, "the architecture released by [CycleGAN's] authors"; py-spgan ``Generator``,
OpenUnReID ``resnet_9blocks``).

Layout (``../shared/reference/spgan_official/RECIPE.md``, "Behaviour"), for ``ngf`` 64 and 9 blocks::

    head   ReflectionPad 3 -> Conv7x7 3->64 (no bias) -> IN -> ReLU
    down   2 x [Conv3x3 stride 2, zero pad 1 (no bias) -> IN -> ReLU]           64->128->256
    res    9 x [x + (ReflectionPad 1, Conv3x3 (no bias), IN, ReLU, ReflectionPad 1, Conv3x3 (bias), IN)(x)]
    up     2 x [ConvTranspose3x3 stride 2, pad 1, output_padding 1 (no bias) -> IN -> ReLU]   256->128->64
    tail   ReflectionPad 3 -> Conv7x7 64->3 (bias) -> Tanh

Instance norm has no affine parameters and no running statistics (eval normalises each image by itself).
Images in and out are in the mean 0.5 / std 0.5 space, [-1, 1].
"""
from __future__ import annotations

from torch import Tensor, nn

from fastreid_gan.layers import Conv2dBlock, ResBlocks, init_weights, run_segments

__all__ = ["ResnetGenerator"]


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator (see the module docstring).

    Args:
        in_channels, out_channels: image channels (3).
        ngf: width of the first conv (published 64); the widest layers have ``ngf * 2**n_downsampling``.
        n_blocks: residual blocks (published 9).
        n_downsampling: stride-2 convs, and as many transposed convs (published 2): H and W must be multiples
            of ``2**n_downsampling``.
        init: :func:`~fastreid_gan.layers.init_weights` scheme (CycleGAN: ``"gaussian"``, N(0, 0.02)).
        checkpoint: recompute each block's activations in backward instead of storing them (same outputs and
            gradients, less memory).
    Sub-modules: ``head``, ``down`` (Sequential), ``res`` (:class:`~fastreid_gan.layers.ResBlocks`), ``up``
    (Sequential), ``tail``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 n_downsampling: int = 2, init: str = "gaussian", checkpoint: bool = False) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0 or n_downsampling < 0:
            raise ValueError(f"ResnetGenerator needs ngf >= 1, n_blocks >= 0 and n_downsampling >= 0; got ngf {ngf}, "
                             f"n_blocks {n_blocks}, n_downsampling {n_downsampling}")
        self.n_downsampling = int(n_downsampling)
        self.checkpoint = bool(checkpoint)
        norm = dict(norm="in", activation="relu", bias=False)
        self.head = Conv2dBlock(in_channels, ngf, 7, 1, 3, pad_type="reflect", **norm)
        widths = [ngf * 2 ** i for i in range(n_downsampling + 1)]
        self.down = nn.Sequential(*[Conv2dBlock(widths[i], widths[i + 1], 3, 2, 1, pad_type="zero", **norm)
                                    for i in range(n_downsampling)])
        # bias only on the second conv: the first one's would be cancelled by its instance norm (as published)
        self.res = ResBlocks(n_blocks, widths[-1], norm="in", activation="relu", pad_type="reflect",
                             bias=(False, True))
        self.up = nn.Sequential(*[Conv2dBlock(widths[i + 1], widths[i], 3, 2, 1, pad_type="zero", transposed=True,
                                              output_padding=1, **norm)
                                  for i in reversed(range(n_downsampling))])
        self.tail = Conv2dBlock(ngf, out_channels, 7, 1, 3, pad_type="reflect", norm="none", activation="tanh",
                                bias=True)
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]; H and W multiples of ``2**n_downsampling``."""
        step = 2 ** self.n_downsampling
        if x.dim() != 4 or x.shape[-2] % step or x.shape[-1] % step:
            raise ValueError(f"the SPGAN generator takes (B, C, H, W) images with H and W multiples of {step}; got "
                             f"{tuple(x.shape)}")
        segments = [self.head, *self.down, *self.res.blocks, *self.up, self.tail]
        return run_segments(segments, x, checkpoint=self.checkpoint)

"""PatchGAN-style discriminators: a configurable single-scale net and its multi-scale wrapper.

- DG-Net (paper Table 8; published ``MsImageDis``): 3 scales of [conv1x1 3->32, conv3x3 32->32, conv3x3 s2 32->32,
  conv3x3 32->32, conv3x3 s2 32->64, 4 ResBlocks(64), conv1x1 64->1], LReLU(0.2), no norm, reflect padding.
- SPGAN / CycleGAN 70x70 PatchGAN: one scale of [conv4x4 s2 3->64 (bias, no norm), conv4x4 s2 64->128 (IN),
  conv4x4 s2 128->256 (IN), conv4x4 s1 256->512 (IN), conv4x4 s1 512->1], zero padding:
  :meth:`PatchDiscriminator.patchgan70`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Union

from torch import Tensor, nn

from .blocks import Conv2dBlock, IntOrPair, ResBlock
from .checkpoint import run_segments
from .init import init_weights

__all__ = ["ConvSpec", "PatchDiscriminator", "MultiScaleDiscriminator"]


@dataclass(frozen=True)
class ConvSpec:
    """One :class:`Conv2dBlock` of a discriminator body (YAML-friendly: also accepted as a dict or a tuple
    ``(out_channels, kernel_size, stride, padding[, norm[, activation[, bias]]])``)."""

    out_channels: int
    kernel_size: IntOrPair
    stride: IntOrPair = 1
    padding: IntOrPair = 0
    norm: str = "none"
    activation: str = "lrelu"
    bias: bool = True

    @classmethod
    def coerce(cls, spec: Union["ConvSpec", Mapping[str, Any], Sequence[Any]]) -> "ConvSpec":
        """Accept a ConvSpec, a dict of its fields, or a positional tuple/list."""
        if isinstance(spec, ConvSpec):
            return spec
        if isinstance(spec, Mapping):
            return cls(**{k.lower(): (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()})
        fields = [tuple(v) if isinstance(v, list) else v for v in spec]
        return cls(*fields)


class PatchDiscriminator(nn.Module):
    """Single-scale fully convolutional discriminator: ``body`` (Conv2dBlocks then ResBlocks) -> ``head`` conv.

    Args:
        in_channels: image channels.
        convs: the body's conv blocks (:class:`ConvSpec`, dicts or tuples), applied in order.
        n_res: residual blocks after the convs (DG-Net: 4), at the last conv's width.
        res_norm: norm inside the residual blocks.
        pad_type: padding of the body's blocks (``"reflect"`` for DG-Net, ``"zero"`` for PatchGAN).
        negative_slope: LeakyReLU slope.
        head_kernel, head_padding: the final plain ``nn.Conv2d(C, out_channels)`` (zero padding, bias); DG-Net 1/0,
            PatchGAN 4/1 (an (h, w) pair is allowed).
        out_channels: channels of the output map (1 for real/fake scores).
        init: :func:`init_weights` scheme (DG-Net and PatchGAN: ``"gaussian"``, N(0, 0.02)).
        checkpoint: keep only each block's input for backward and recompute the rest there
            (:func:`~fastreid_gan.layers.checkpoint.run_segments`; R1's double backward included). Same outputs
            and gradients for one more forward.
    Output: raw scores (no sigmoid), (B, out_channels, h, w).
    """

    def __init__(
        self,
        in_channels: int = 3,
        convs: Sequence[Union[ConvSpec, Mapping[str, Any], Sequence[Any]]] = (),
        *,
        n_res: int = 0,
        res_norm: str = "none",
        pad_type: str = "reflect",
        negative_slope: float = 0.2,
        head_kernel: IntOrPair = 1,
        head_padding: IntOrPair = 0,
        out_channels: int = 1,
        init: str = "gaussian",
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint = bool(checkpoint)
        specs = [ConvSpec.coerce(s) for s in convs]
        if not specs:
            raise ValueError("PatchDiscriminator needs at least one conv spec")
        layers: List[nn.Module] = []
        ch = in_channels
        for s in specs:
            layers.append(
                Conv2dBlock(
                    ch, s.out_channels, s.kernel_size, s.stride, s.padding, norm=s.norm, activation=s.activation,
                    pad_type=pad_type, bias=s.bias, negative_slope=negative_slope,
                )
            )
            ch = s.out_channels
        for _ in range(n_res):
            layers.append(ResBlock(ch, norm=res_norm, activation="lrelu", pad_type=pad_type,
                                   negative_slope=negative_slope))
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, out_channels, head_kernel, 1, head_padding)
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if self.checkpoint:
            return run_segments([*self.body, self.head], x, checkpoint=True)
        return self.head(self.body(x))

    @classmethod
    def patchgan70(
        cls,
        in_channels: int = 3,
        ndf: int = 64,
        norm: str = "in",
        n_layers: int = 3,
        *,
        norm_bias: bool = False,
        paddings: Optional[Sequence[IntOrPair]] = None,
        init: str = "gaussian",
        checkpoint: bool = False,
    ) -> "PatchDiscriminator":
        """pix2pix/CycleGAN ``NLayerDiscriminator`` (70x70 receptive field for ``n_layers=3``).

        4x4 convs with zero padding and LReLU(0.2): ``ndf`` (stride 2, bias, no norm), then ``n_layers`` normed
        convs doubling the width up to 8*ndf (stride 2, the last stride 1), then a 4x4 head conv to 1 channel.
        ``norm_bias``: bias on the normed convs (False for SPGAN's and FD-GAN's nets; CycleGAN's own IN variant
        uses True). ``paddings``: the (body's last conv, head) paddings, default (1, 1); py-spgan uses
        ((1, 2), (2, 1)) (32x16 maps at 256x128 instead of 30x14).
        """
        specs: List[ConvSpec] = [ConvSpec(ndf, 4, 2, 1, "none", "lrelu", True)]
        last_pad, head_pad = (1, 1) if paddings is None else tuple(paddings)
        for i in range(1, n_layers + 1):
            last = i == n_layers
            specs.append(ConvSpec(ndf * min(2 ** i, 8), 4, 1 if last else 2, last_pad if last else 1, norm,
                                  "lrelu", norm_bias))
        return cls(in_channels, specs, pad_type="zero", head_kernel=4, head_padding=head_pad, init=init,
                   checkpoint=checkpoint)


class MultiScaleDiscriminator(nn.Module):
    """``n_scales`` identical single-scale nets; scale k+1 sees the image average-pooled (3x3, stride 2, pad 1,
    padding not counted), as pix2pixHD / MUNIT / DG-Net (paper Sec. 4.1 (iv), Table 8: 256x128, 128x64, 64x32).

    Args:
        n_scales: number of scales (DG-Net: 3).
        **net_kwargs: :class:`PatchDiscriminator` arguments for every scale (in_channels, convs, n_res, ...).
    Sub-modules: ``scales`` (ModuleList of PatchDiscriminator), ``downsample`` (AvgPool2d).
    Output of forward: list of ``n_scales`` score maps, finest first.
    """

    def __init__(self, n_scales: int = 3, **net_kwargs: Any) -> None:
        super().__init__()
        if n_scales < 1:
            raise ValueError("n_scales must be >= 1")
        self.scales = nn.ModuleList([PatchDiscriminator(**net_kwargs) for _ in range(n_scales)])
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> List[Tensor]:  # noqa: D102
        outputs = []
        for i, net in enumerate(self.scales):
            if i > 0:
                x = self.downsample(x)
            outputs.append(net(x))
        return outputs

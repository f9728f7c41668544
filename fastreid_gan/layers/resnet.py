"""torchvision-layout ResNets for the methods' encoders: fastreid's ``ResNet`` (keys equal torchvision's) with
torchvision's stem, ImageNet weights from a local file, and the residual blocks as checkpointable segments.

DG-Net's appearance encoder and FD-GAN's Siamese encoder and identity discriminator are such ResNets.
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from torch import nn

import fastreid_gan  # noqa: F401  (applies the fastreid 1.4.0 compatibility fixes before fastreid is imported)
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import BasicBlock, Bottleneck, ResNet, model_urls

from fastreid_gan.checkpoint_io import load_torch_file

logger = logging.getLogger(__name__)

__all__ = ["RESNET_DEPTHS", "resnet_depth_key", "build_resnet", "resnet_out_channels", "resnet_segments",
           "find_cached_imagenet_weights", "imagenet_weights_path", "load_imagenet_resnet",
           "build_torchvision_stem_resnet_backbone"]

RESNET_DEPTHS: Dict[str, Tuple[type, List[int]]] = {
    "18x": (BasicBlock, [2, 2, 2, 2]),
    "34x": (BasicBlock, [3, 4, 6, 3]),
    "50x": (Bottleneck, [3, 4, 6, 3]),
    "101x": (Bottleneck, [3, 4, 23, 3]),
}


def resnet_depth_key(depth: Union[int, str]) -> str:
    """``50``, ``"50"`` or ``"50x"`` -> ``"50x"`` (fastreid's ``MODEL.BACKBONE.DEPTH`` spelling)."""
    key = f"{depth}x" if isinstance(depth, int) or not str(depth).endswith("x") else str(depth)
    if key not in RESNET_DEPTHS:
        raise ValueError(f"unsupported ResNet depth {depth!r}; expected one of {sorted(RESNET_DEPTHS)}")
    return key



def resnet_out_channels(depth: Union[int, str]) -> int:
    """Channels of layer4's output: 512 for ResNet-18/34, 2048 for ResNet-50/101."""
    return 512 * RESNET_DEPTHS[resnet_depth_key(depth)][0].expansion


def build_resnet(depth: Union[int, str] = 50, last_stride: int = 2, bn_norm: str = "BN",
                 torchvision_stem: bool = True) -> ResNet:
    """fastreid's ``ResNet`` of ``depth`` (no IBN/SE/non-local), layer4 stride ``last_stride``.

    ``torchvision_stem=True`` replaces fastreid's stem max-pool (3x3, stride 2, no padding, ceil mode) with
    torchvision's (3x3, stride 2, padding 1): the published models and the ImageNet weights use torchvision's,
    and the two are not numerically equal.
    """
    block, layers = RESNET_DEPTHS[resnet_depth_key(depth)]
    backbone = ResNet(last_stride, bn_norm, False, False, False, block, layers, [0, 0, 0, 0])
    if torchvision_stem:
        backbone.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return backbone


def resnet_segments(backbone: ResNet) -> List[nn.Module]:
    """fastreid's ``ResNet.forward`` without its (disabled) non-local hooks, one segment per residual block
    (for :func:`fastreid_gan.layers.run_segments`)."""
    b = backbone
    return [nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool), *b.layer1, *b.layer2, *b.layer3, *b.layer4]


def find_cached_imagenet_weights(depth_key: str) -> Optional[str]:
    """A torchvision ImageNet checkpoint for ``depth_key`` already in the torch cache, if any (no download)."""
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    )
    dirs = [os.path.join(torch_home, "checkpoints"), os.path.join(torch_home, "hub", "checkpoints")]
    names = [model_urls[depth_key].rsplit("/", 1)[-1], f"resnet{depth_key[:-1]}-*.pth"]
    for d in dirs:
        for n in names:
            hits = sorted(glob.glob(os.path.join(d, n)))
            if hits:
                return hits[0]
    return None


def imagenet_weights_path(depth: Union[int, str], path: str = "") -> str:
    """The ImageNet weights to load for ``MODEL.BACKBONE.PRETRAIN True``: ``path`` (``PRETRAIN_PATH``) or a
    torchvision file already in the torch cache (nothing is downloaded).

    Raises:
        FileNotFoundError: neither is there (naming the keys to set).
    """
    key = resnet_depth_key(depth)
    found = path or find_cached_imagenet_weights(key)
    if not found:
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PRETRAIN is True but MODEL.BACKBONE.PRETRAIN_PATH is empty and no torchvision "
            f"ResNet-{key[:-1]} file (resnet{key[:-1]}-*.pth) is in the torch cache: set MODEL.BACKBONE.PRETRAIN_PATH "
            f"/path/to/resnet{key[:-1]}-*.pth, or MODEL.BACKBONE.PRETRAIN False")
    return found


def load_imagenet_resnet(backbone: nn.Module, path: str) -> None:
    """Load a torchvision-layout ResNet state dict (ImageNet weights) into ``backbone`` (a fastreid ``ResNet``).

    Accepts a bare state dict or one under ``state_dict`` / ``model``, with or without a ``module.`` /
    ``backbone.`` / ``model.`` prefix; the classifier ``fc.*`` is ignored. Every backbone key must be present
    (a clear error otherwise); other extra keys are logged.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ImageNet weights not found: {path!r}")
    state = load_torch_file(path, source="MODEL.BACKBONE.PRETRAIN_PATH")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    wanted = backbone.state_dict()
    best_prefix, best_hits = "", -1
    for prefix in ("", "module.", "backbone.", "module.backbone.", "model.", "module.model."):
        hits = sum(1 for k in wanted if prefix + k in state)
        if hits > best_hits:
            best_prefix, best_hits = prefix, hits
    picked = {k: state[best_prefix + k] for k in wanted if best_prefix + k in state}
    missing = [k for k in wanted if k not in picked]
    if missing:
        raise ValueError(
            f"{path} is not a ResNet checkpoint matching this backbone: {len(missing)} keys missing, "
            f"e.g. {missing[:5]}"
        )
    bad = [k for k, v in picked.items() if tuple(v.shape) != tuple(wanted[k].shape)]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:5]} (wrong depth?)")
    backbone.load_state_dict(picked, strict=True)
    extra = [k for k in state if not k.startswith(best_prefix) or
             (k[len(best_prefix):] not in picked and not k[len(best_prefix):].startswith("fc."))]
    logger.info("Loaded ImageNet weights from %s (%d tensors)%s", path, len(picked),
                f"; ignored {len(extra)} other keys" if extra else "")


@BACKBONE_REGISTRY.register()
def build_torchvision_stem_resnet_backbone(cfg: Any) -> nn.Module:
    """fastreid's ``BACKBONE_REGISTRY`` entry for :func:`build_resnet` with torchvision's stem, from
    ``MODEL.BACKBONE.{DEPTH, LAST_STRIDE, NORM, PRETRAIN, PRETRAIN_PATH}``: images -> the last map (what
    ``TEST.LMP`` pools). FD-GAN's E and eSPGAN's feature learner are this ResNet; fastreid's own
    ``build_resnet_backbone`` has the other stem, so their deployments name this one (``tools/export.py --format
    fastreid``, ``docs/export.md``)."""
    b = cfg.MODEL.BACKBONE
    backbone = build_resnet(b.DEPTH, b.LAST_STRIDE, b.NORM, torchvision_stem=True)
    if b.PRETRAIN:
        load_imagenet_resnet(backbone, imagenet_weights_path(b.DEPTH, b.PRETRAIN_PATH))
    return backbone

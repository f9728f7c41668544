"""Building blocks shared by the GAN re-id methods (DG-Net, FD-GAN, SPGAN)."""
from .adain import AdaIN2d, adaptive_instance_norm
from .blocks import (
    ACTIVATIONS,
    NORM_TYPES,
    PAD_TYPES,
    AdaINParams,
    Conv2dBlock,
    ResBlock,
    ResBlocks,
    make_activation,
    make_norm,
)
from .checkpoint import checkpointed, frozen_call, keep_batchnorm_stats, run_segments
from .discriminator import ConvSpec, MultiScaleDiscriminator, PatchDiscriminator
from .image_pool import ImagePool
from .init import INIT_TYPES, init_weights
from .local_pooling import POOL_TYPES, LocalPooling, check_local_pooling_config, local_pool, set_local_pooling
from .norms import LayerNorm2d, freeze_batchnorm

__all__ = [
    "ACTIVATIONS",
    "NORM_TYPES",
    "PAD_TYPES",
    "INIT_TYPES",
    "POOL_TYPES",
    "AdaIN2d",
    "AdaINParams",
    "Conv2dBlock",
    "ConvSpec",
    "ImagePool",
    "LayerNorm2d",
    "freeze_batchnorm",
    "LocalPooling",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "ResBlock",
    "ResBlocks",
    "adaptive_instance_norm",
    "check_local_pooling_config",
    "checkpointed",
    "frozen_call",
    "init_weights",
    "keep_batchnorm_stats",
    "local_pool",
    "make_activation",
    "make_norm",
    "run_segments",
    "set_local_pooling",
]

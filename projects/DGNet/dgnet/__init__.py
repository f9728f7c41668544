"""DG-Net (Zheng et al., CVPR 2019) for fastreid: importing this package registers the ``DGNet`` meta-architecture
and its part of ``tools/generate.py``."""
from . import generate_tool  # noqa: F401  (registers DG-Net's "generate" tool)
from .config import add_dgnet_config
from .dgnet import DGNet

__all__ = ["add_dgnet_config", "DGNet"]

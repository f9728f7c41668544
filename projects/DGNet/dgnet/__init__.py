"""DG-Net (Zheng et al., CVPR 2019) for fastreid: importing this package registers the ``DGNet`` meta-architecture
and its part of ``tools/generate.py``."""
from . import generate_tool  # noqa: F401  (registers DG-Net's "generate" tool)
from . import deploy_parts  # noqa: F401  (registers E_a and its test-time head as fastreid parts)
from .config import add_dgnet_config
from .dgnet import DGNet

__all__ = ["add_dgnet_config", "DGNet"]

"""FD-GAN (Ge et al., NeurIPS 2018) for fastreid: importing this package registers the ``FDGAN``
meta-architecture."""
from .config import add_fdgan_config
from .fdgan import FDGAN
from . import generate_tool  # noqa: F401  (registers the "generate" tool)
from . import deploy_parts  # noqa: F401  (registers E's fastreid deployment)

__all__ = ["add_fdgan_config", "FDGAN"]

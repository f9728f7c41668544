"""FD-GAN (Ge et al., NeurIPS 2018) for fastreid: importing this package registers the ``FDGAN``
meta-architecture."""
from .config import add_fdgan_config
from .fdgan import FDGAN

__all__ = ["add_fdgan_config", "FDGAN"]

"""fastreid-gan: GAN-based person re-identification methods as a fastreid plugin.

Importing the package first adapts fastreid 1.4.0 to today's Python/PyTorch/NumPy (:mod:`fastreid_gan.compat`),
then registers what the core provides (the synthetic datasets and clearer dataset errors).
"""
from . import compat

compat.apply()

from . import data  # noqa: E402  (registers datasets; must come after the compat fixes)

__version__ = "0.1.0"

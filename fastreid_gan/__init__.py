"""fastreid-gan: GAN-based person re-identification methods as a fastreid plugin."""
from . import compat

compat.apply()

__version__ = "0.1.0"

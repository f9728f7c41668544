"""fastreid-gan: GAN-based person re-identification methods as a fastreid plugin.

Importing the package first adapts fastreid 1.4.0 to today's Python/PyTorch/NumPy (:mod:`fastreid_gan.compat`),
then registers what the core provides (the synthetic datasets and clearer dataset errors, fastreid's
``Baseline`` with the test-time ``TEST.LMP`` switch, :mod:`fastreid_gan.baseline_model`, and the ResNet with
torchvision's stem as a fastreid backbone, :func:`fastreid_gan.layers.resnet.build_torchvision_stem_resnet_backbone`).
"""
from . import compat

compat.apply()

from . import data  # noqa: E402  (registers datasets; must come after the compat fixes)
from . import baseline_model  # noqa: E402,F401  (registers the Baseline with TEST.LMP)
from .layers import resnet  # noqa: E402,F401  (registers the torchvision-stem ResNet backbone)

__version__ = "0.1.0"

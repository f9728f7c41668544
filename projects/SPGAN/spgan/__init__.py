"""SPGAN and eSPGAN (Deng et al., CVPR 2018 / TPAMI) for fastreid: importing this package registers the ``SPGAN``
and ``ESPGAN`` meta-architectures and the ``TranslatedMarket`` dataset."""
from .config import add_spgan_config
from .espgan import ESPGAN
from .spgan import SPGAN
from .translated_dataset import TranslatedMarket  # registers the dataset tools/translate.py writes
from . import deploy_parts  # noqa: F401  (registers the feature learner's fastreid deployment)

__all__ = ["add_spgan_config", "SPGAN", "ESPGAN", "TranslatedMarket"]

"""fastreid dataset classes for the synthetic data.

Importing this module (``fastreid_gan.data`` does) registers in fastreid's ``DATASET_REGISTRY``:

* ``SyntheticMarket`` / ``SyntheticDuke``: the ``small`` preset, generated on first use under
  ``<root>/synthetic-market`` / ``<root>/synthetic-duke``;
* ``SyntheticMarketTiny`` / ``SyntheticDukeTiny`` and ``SyntheticMarketMedium`` / ``SyntheticDukeMedium``:
  the other presets, in ``<root>/synthetic-<domain>-<preset>``.

``root`` is what fastreid passes (``$FASTREID_DATASETS``, default ``datasets``: :func:`.build.datasets_root`).
Missing datasets raise :class:`~fastreid_gan.data.dataset_errors.DatasetNotFoundError`, misnamed files and empty
folders :class:`~fastreid_gan.data.dataset_errors.DatasetFormatError` (see that module).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, List, Optional, Tuple

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from .build import datasets_root
from .dataset_errors import read_market_style_dir
from .synthetic import ensure_dataset, get_domain

__all__ = [
    "SyntheticReID", "SyntheticMarket", "SyntheticDuke", "SyntheticMarketTiny", "SyntheticDukeTiny",
    "SyntheticMarketMedium", "SyntheticDukeMedium",
]

class SyntheticReID(ImageDataset):
    """A synthetic domain read like Market1501 (same layout and parsing), generated if absent.

    Args:
        root: datasets root; ``None`` reads ``$FASTREID_DATASETS`` (default ``datasets``).
        preset: ``tiny`` | ``small`` | ``medium`` (default: the class attribute).
        seed, height, width: generation parameters (defaults 0, 128, 64).
        folder: folder under ``root`` (default ``synthetic-<domain>`` for ``small``, else
            ``synthetic-<domain>-<preset>``).
        **kwargs: fastreid ``ImageDataset`` options (``mode``, ``combineall``, ...).
    """

    _junk_pids = [0, -1]
    domain = "market"
    preset = "small"
    dataset_name = "synthetic_market"

    def __init__(self, root: Optional[str] = None, preset: Optional[str] = None, seed: int = 0,
                 height: Optional[int] = None, width: Optional[int] = None, folder: Optional[str] = None,
                 **kwargs: Any) -> None:
        self.root = root if root is not None else datasets_root()
        self.preset = preset or type(self).preset
        self.num_cams = get_domain(self.domain).num_cams
        self.dataset_dir = str(ensure_dataset(self.root, self.domain, self.preset, folder=folder,
                                              height=height, width=width, seed=seed))
        self.data_dir = self.dataset_dir
        self.train_dir = osp.join(self.data_dir, "bounding_box_train")
        self.query_dir = osp.join(self.data_dir, "query")
        self.gallery_dir = osp.join(self.data_dir, "bounding_box_test")
        self.check_before_run([self.data_dir, self.train_dir, self.query_dir, self.gallery_dir])

        train = lambda: self.process_dir(self.train_dir)  # noqa: E731  (lazy, like fastreid's Market1501)
        query = lambda: self.process_dir(self.query_dir, is_train=False)  # noqa: E731
        gallery = lambda: self.process_dir(self.gallery_dir, is_train=False)  # noqa: E731
        super().__init__(train, query, gallery, **kwargs)

    def process_dir(self, dir_path: str, is_train: bool = True) -> List[Tuple[str, Any, Any]]:
        """(path, pid, camid) items like fastreid's Market1501: junk (-1) dropped, camids 0-based, train ids
        prefixed by the dataset name; a misnamed file or an empty folder is a ``DatasetFormatError``."""
        return read_market_style_dir(dir_path, is_train, class_name=type(self).__name__,
                                     dataset_name=self.dataset_name, num_cams=self.num_cams)


@DATASET_REGISTRY.register()
class SyntheticMarket(SyntheticReID):
    """Synthetic Market-like domain (6 cameras, summer), ``small`` preset."""

    domain = "market"
    preset = "small"
    dataset_name = "synthetic_market"


@DATASET_REGISTRY.register()
class SyntheticDuke(SyntheticReID):
    """Synthetic Duke-like domain (8 cameras, winter), ``small`` preset."""

    domain = "duke"
    preset = "small"
    dataset_name = "synthetic_duke"


@DATASET_REGISTRY.register()
class SyntheticMarketTiny(SyntheticMarket):
    """``tiny`` preset of :class:`SyntheticMarket` (tests, smoke runs)."""

    preset = "tiny"
    dataset_name = "synthetic_market_tiny"


@DATASET_REGISTRY.register()
class SyntheticDukeTiny(SyntheticDuke):
    """``tiny`` preset of :class:`SyntheticDuke`."""

    preset = "tiny"
    dataset_name = "synthetic_duke_tiny"


@DATASET_REGISTRY.register()
class SyntheticMarketMedium(SyntheticMarket):
    """``medium`` preset of :class:`SyntheticMarket` (benchmarks)."""

    preset = "medium"
    dataset_name = "synthetic_market_medium"


@DATASET_REGISTRY.register()
class SyntheticDukeMedium(SyntheticDuke):
    """``medium`` preset of :class:`SyntheticDuke`."""

    preset = "medium"
    dataset_name = "synthetic_duke_medium"

"""fastreid dataset classes for the synthetic data, and clear errors when a real dataset is missing.

Importing this module (``fastreid_gan.data`` does) registers in fastreid's ``DATASET_REGISTRY``:

* ``SyntheticMarket`` / ``SyntheticDuke``: the ``small`` preset, generated on first use under
  ``<root>/synthetic-market`` / ``<root>/synthetic-duke``;
* ``SyntheticMarketTiny`` / ``SyntheticDukeTiny`` and ``SyntheticMarketMedium`` / ``SyntheticDukeMedium``:
  the other presets, in ``<root>/synthetic-<domain>-<preset>``.

``root`` is what fastreid passes (``$FASTREID_DATASETS``, default ``datasets``).  It also wraps fastreid's
``check_before_run`` (see :func:`install_dataset_errors`) so a missing Market-1501 / DukeMTMC-reID / MSMT17
says where it looked and what layout it expects.
"""
from __future__ import annotations

import functools
import glob
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Tuple

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset
from fastreid.data.datasets.msmt17 import MSMT17

from .synthetic import ensure_dataset, get_domain

__all__ = [
    "DatasetNotFoundError", "SyntheticReID", "SyntheticMarket", "SyntheticDuke", "SyntheticMarketTiny",
    "SyntheticDukeTiny", "SyntheticMarketMedium", "SyntheticDukeMedium", "EXPECTED_LAYOUTS",
    "install_dataset_errors", "dataset_missing_message",
]

_MARKET_LAYOUT = "{bounding_box_train,query,bounding_box_test}/*.jpg"

# Dataset class name -> (display name, folder under the root, expected layout, hint).
EXPECTED_LAYOUTS: Dict[str, Tuple[str, str, str, str]] = {
    "Market1501": ("Market-1501", "Market-1501-v15.09.15", f"<root>/Market-1501-v15.09.15/{_MARKET_LAYOUT}",
                   "to try the project without it use DATASETS.NAMES ('SyntheticMarket',)"),
    "DukeMTMC": ("DukeMTMC-reID", "DukeMTMC-reID", f"<root>/DukeMTMC-reID/{_MARKET_LAYOUT}",
                 "to try the project without it use DATASETS.NAMES ('SyntheticDuke',)"),
    "MSMT17": ("MSMT17", "MSMT17_V1",
               "<root>/MSMT17_V1/{train,test}/<pid>/*.jpg and <root>/MSMT17_V1/list_{train,val,query,gallery}.txt "
               "(or MSMT17_V2 with mask_train_v2, mask_test_v2)", ""),
}
for _cls, _domain, _folder in (("SyntheticMarket", "market", "synthetic-market"),
                               ("SyntheticDuke", "duke", "synthetic-duke")):
    for _suffix, _preset in (("", "small"), ("Tiny", "tiny"), ("Medium", "medium")):
        _name = _folder if not _suffix else f"{_folder}-{_preset}"
        EXPECTED_LAYOUTS[_cls + _suffix] = (
            f"Synthetic {_domain} ({_preset})", _name, f"<root>/{_name}/{_MARKET_LAYOUT}",
            f"it is generated automatically on first use; or run: python tools/make_synthetic.py --domain "
            f"{_domain} --preset {_preset} --root <root>",
        )


class DatasetNotFoundError(FileNotFoundError, RuntimeError):
    """A dataset folder is missing.  Also a ``RuntimeError``, which fastreid raised before, for old callers."""


def dataset_missing_message(class_name: str, root: str, missing: Optional[str] = None) -> str:
    """The error text for dataset ``class_name`` not found under ``root``."""
    root_abs = osp.abspath(osp.expanduser(root))
    if class_name not in EXPECTED_LAYOUTS:
        where = missing or root_abs
        return (f"{class_name}: {osp.abspath(where)} not found; check the dataset layout and set "
                f"FASTREID_DATASETS=<root> (the folder holding your datasets; now {root_abs})")
    display, folder, layout, hint = EXPECTED_LAYOUTS[class_name]
    msg = (f"{display} not found at {osp.join(root_abs, folder)}. Expected: {layout}; "
           f"set FASTREID_DATASETS=<root> (now {root_abs})")
    expected = osp.join(root_abs, folder)
    # Only name a missing path inside the expected folder: Market1501 falls back to looking in <root> itself.
    if missing and osp.abspath(missing).startswith(expected + os.sep):
        msg += f". Missing: {osp.abspath(missing)}"
    if hint:
        msg += f". Hint: {hint}"
    return msg


def _root_of(dataset: Any) -> str:
    # Market1501/DukeMTMC keep the root in .root; MSMT17 only in .dataset_dir.
    return str(getattr(dataset, "root", None) or getattr(dataset, "dataset_dir", None) or ".")


def install_dataset_errors() -> None:
    """Make fastreid's missing-dataset errors name the searched path and the expected layout (idempotent).

    Wraps ``ImageDataset.check_before_run`` to raise :class:`DatasetNotFoundError`, and checks MSMT17's root
    before its constructor asserts on it.
    """
    original = ImageDataset.check_before_run
    if not getattr(original, "_fastreid_gan_wrapped", False):
        @functools.wraps(original)
        def check_before_run(self: ImageDataset, required_files: Any) -> None:
            files = [required_files] if isinstance(required_files, str) else list(required_files)
            for path in files:
                if not osp.exists(path):
                    raise DatasetNotFoundError(dataset_missing_message(type(self).__name__, _root_of(self), path))
            original(self, required_files)

        check_before_run._fastreid_gan_wrapped = True  # type: ignore[attr-defined]
        ImageDataset.check_before_run = check_before_run  # type: ignore[method-assign]

    init = MSMT17.__init__
    if not getattr(init, "_fastreid_gan_wrapped", False):
        @functools.wraps(init)
        def msmt_init(self: MSMT17, root: str = "datasets", **kwargs: Any) -> None:
            if not any(osp.isdir(osp.join(root, d)) for d in ("MSMT17_V1", "MSMT17_V2")):
                raise DatasetNotFoundError(dataset_missing_message("MSMT17", root))
            init(self, root=root, **kwargs)

        msmt_init._fastreid_gan_wrapped = True  # type: ignore[attr-defined]
        MSMT17.__init__ = msmt_init  # type: ignore[method-assign]


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
        self.root = root if root is not None else os.getenv("FASTREID_DATASETS", "datasets")
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
        """(path, pid, camid) items; junk (-1) dropped, camids 0-based, train ids prefixed by the dataset name."""
        pattern = re.compile(r"([-\d]+)_c(\d)")
        data = []
        for img_path in sorted(glob.glob(osp.join(dir_path, "*.jpg"))):
            pid, camid = map(int, pattern.search(osp.basename(img_path)).groups())
            if pid == -1:
                continue
            assert 1 <= camid <= self.num_cams, f"{img_path}: camera {camid} out of 1..{self.num_cams}"
            camid -= 1
            if is_train:
                # Prefixing keeps ids of several training datasets apart; CommDataset relabels them to 0..N-1.
                data.append((img_path, f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}"))
            else:
                data.append((img_path, pid, camid))
        return data


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


install_dataset_errors()

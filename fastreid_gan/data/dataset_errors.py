"""What a missing dataset's error says: where it was looked for, the layout expected, and how to fix it.

:mod:`fastreid_gan.compat` makes fastreid's datasets raise :class:`DatasetNotFoundError` with
:func:`dataset_missing_message` (its ``check_before_run`` and MSMT17's constructor assert with no path).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, Optional, Tuple

__all__ = ["DatasetNotFoundError", "EXPECTED_LAYOUTS", "dataset_missing_message"]

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

"""What a missing or malformed dataset's error says: where it was looked for, the layout expected, the fix.

:mod:`fastreid_gan.compat` makes fastreid's datasets raise :class:`DatasetNotFoundError` with
:func:`dataset_missing_message` (its ``check_before_run`` and MSMT17's constructor assert with no path), and
reads Market-1501-style folders with :func:`read_market_style_dir` (fastreid's ``process_dir`` fails with an
``AttributeError`` on a file name that does not parse and with a bare ``assert`` on an out-of-range camera):
such files and empty folders raise :class:`DatasetFormatError` / :class:`EmptyDatasetFolderError`.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["DatasetNotFoundError", "DatasetFormatError", "EmptyDatasetFolderError", "EXPECTED_LAYOUTS",
           "NAME_FORMATS", "dataset_missing_message", "read_market_style_dir"]

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


class DatasetFormatError(ValueError):
    """A dataset folder holds a file the dataset cannot read (its name does not follow the dataset's pattern)."""


class EmptyDatasetFolderError(DatasetFormatError):
    """A dataset folder (train, query or gallery) holds no usable image."""


_MARKET_NAME = ("<pid>_c<camera>s<seq>_<frame>_<n>.jpg", "0002_c1s1_000451_03.jpg")
# Dataset class name -> (file name pattern, example).  Synthetic datasets are written with Market-1501 names.
NAME_FORMATS: Dict[str, Tuple[str, str]] = {
    "Market1501": _MARKET_NAME,
    "DukeMTMC": ("<pid>_c<camera>_f<frame>.jpg", "0001_c2_f0046182.jpg"),
}
# What fastreid's regex ``([-\d]+)_c(\d)`` takes from a name, anchored at the start of the file name (fastreid
# searches the whole path, so a folder name like ``run_0001_c1`` could be read as the pid of any file in it).
_NAME_RE = re.compile(r"(-?\d+)_c(\d+)")


def _format_error(class_name: str, img_path: str, problem: str, name_format: Tuple[str, str]) -> DatasetFormatError:
    pattern, example = name_format
    return DatasetFormatError(
        f"{class_name}: {osp.abspath(img_path)}: {problem}. Files in {osp.dirname(osp.abspath(img_path))} must be "
        f"named {pattern}, like {example}. Fix: remove or rename the file.")


def read_market_style_dir(dir_path: str, is_train: bool, *, class_name: str, dataset_name: str, num_cams: int,
                          max_pid: Optional[int] = None, skip_junk: bool = True,
                          name_format: Optional[Tuple[str, str]] = None) -> List[Tuple[str, Any, Any]]:
    """``(path, pid, camid)`` of the ``*.jpg`` files of a Market-1501-style folder, sorted by path.

    fastreid's ``process_dir`` semantics: ``camid`` 0-based; with ``skip_junk`` pid -1 images are dropped (junk
    detections; pid 0, background, is kept); train ids and cameras are prefixed ``<dataset_name>_``.  Unlike
    fastreid, a file whose name does not start with ``<pid>_c<camera>``, a camera outside ``1..num_cams`` or a
    pid outside ``0..max_pid`` raises :class:`DatasetFormatError` naming the file, and a folder without any
    usable image :class:`EmptyDatasetFolderError` naming the folder (fastreid's samplers would ``assert``).
    ``name_format`` (pattern, example) is what the messages show; default ``NAME_FORMATS[class_name]`` or
    Market-1501's.
    """
    name_format = name_format or NAME_FORMATS.get(class_name, _MARKET_NAME)
    paths = sorted(glob.glob(osp.join(dir_path, "*.jpg")))
    data: List[Tuple[str, Any, Any]] = []
    for img_path in paths:
        match = _NAME_RE.match(osp.basename(img_path))
        if match is None:
            raise _format_error(class_name, img_path, "the file name does not start with <pid>_c<camera>",
                                name_format)
        pid, camid = int(match.group(1)), int(match.group(2))
        if pid == -1 and skip_junk:
            continue
        if not 1 <= camid <= num_cams:
            raise _format_error(class_name, img_path, f"camera {camid} is outside 1..{num_cams}", name_format)
        if max_pid is not None and not 0 <= pid <= max_pid:
            raise _format_error(class_name, img_path, f"pid {pid} is outside 0..{max_pid} (or -1 for junk)",
                                name_format)
        camid -= 1
        if is_train:
            # Prefixing keeps ids of several training datasets apart; CommDataset relabels them to 0..N-1.
            data.append((img_path, f"{dataset_name}_{pid}", f"{dataset_name}_{camid}"))
        else:
            data.append((img_path, pid, camid))
    if not data:
        folder = osp.abspath(dir_path)
        what = "no *.jpg images" if not paths else f"only junk (pid -1) images ({len(paths)})"
        pattern, example = name_format
        fix = (f"delete {osp.dirname(folder)}: the synthetic dataset is generated again on next use"
               if class_name.startswith("Synthetic") else "re-extract the dataset's archive so that it holds them")
        raise EmptyDatasetFolderError(
            f"{class_name}: {folder} holds {what}; it needs the dataset's {pattern} images (like {example}). "
            f"Fix: {fix}.")
    return data

"""fastreid datasets for the open-reid layout, the one FD-GAN's prepared Market-1501 / DukeMTMC-reID / CUHK03 zips use.

Layout of one dataset folder (written by open-reid's ``reid/datasets/*.py``, read by FD-GAN's
``reid/utils/data/dataset.py``)::

    <folder>/images/<pid:08d>_<cam:02d>_<n:04d>.jpg   every image, renamed (cam 0-based)
    <folder>/poses/<image stem>.txt                 FD-GAN only: 18 keypoints per image (see pose_files.py)
    <folder>/meta.json    {"name", "shot", "num_cameras", "identities": [pid][cam] -> [file names]}
    <folder>/splits.json  [{"trainval": [pids], "query": [pids], "gallery": [pids]}, ...]

Importing this module (``fastreid_gan.data`` does) registers in fastreid's ``DATASET_REGISTRY``
:class:`OpenReIDMarket1501` (``<root>/market1501``), :class:`OpenReIDDukeMTMC` (``<root>/dukemtmc``) and
:class:`OpenReIDCUHK03` (``<root>/cuhk03``), the folder names FD-GAN's ``--dataroot`` expects; ``root`` is
``$FASTREID_DATASETS``.  Training uses the ``trainval`` identities of the split (FD-GAN trains on them).
Query and gallery are, as in open-reid, every image of the split's query / gallery identities, unless
``meta.json`` carries ``query_fnames`` / ``gallery_fnames`` lists (later open-reid forks add them to keep
Market-1501's standard 3368 queries): see ``protocol``.
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from .build import datasets_root
from .dataset_errors import DatasetFormatError, DatasetNotFoundError
from .pose_files import POSES_DIR

__all__ = ["OpenReIDLayout", "OpenReIDMarket1501", "OpenReIDDukeMTMC", "OpenReIDCUHK03", "PROTOCOLS",
           "OPEN_REID_LAYOUT"]

logger = logging.getLogger(__name__)

OPEN_REID_LAYOUT = ("images/<pid:08d>_<cam:02d>_<n:04d>.jpg, meta.json (identities[pid][cam] -> file names), "
                    "splits.json ([{trainval, query, gallery}: pid lists]) and, for FD-GAN, poses/<stem>.txt")
# "split": open-reid's query/gallery (all images of the split's pid lists); "meta-files": meta.json's
# query_fnames/gallery_fnames; "auto": the file lists when meta.json has both, else the pid lists.
PROTOCOLS = ("auto", "split", "meta-files")
_NAME_RE = re.compile(r"^(\d+)_(\d+)_(\d+)$")
_MAX_LISTED = 5  # how many missing files an error names

Item = Tuple[str, Any, Any]


class OpenReIDLayout(ImageDataset):
    """One dataset in open-reid's layout under ``<root>/<dataset_dir>`` (``dataset_dir`` from the subclass;
    empty: ``root`` is the dataset folder itself).

    Args:
        root: datasets root; ``None`` reads ``$FASTREID_DATASETS`` (default ``datasets``).
        split: index into ``splits.json`` (default 0, as FD-GAN; CUHK03 has 20 splits).
        protocol: how query and gallery are chosen, one of :data:`PROTOCOLS` (default ``auto``).
        **kwargs: fastreid ``ImageDataset`` options (``mode``, ``combineall``, ...).

    Items follow fastreid: train ``(path, "<dataset_name>_<pid>", "<dataset_name>_<cam>")``, query and gallery
    ``(path, pid, cam)`` with ``cam`` 0-based as open-reid numbers them (the same numbering in query and
    gallery, so fastreid's evaluation drops same-identity same-camera gallery images, the query itself too).

    Raises:
        DatasetNotFoundError: the folder, ``images/``, ``meta.json`` / ``splits.json`` or a listed image is
            missing; the message names the path and the fix.
        DatasetFormatError: ``meta.json`` / ``splits.json`` is not valid JSON or breaks the layout.
        ValueError: ``split`` out of range or an unknown ``protocol``.
    """

    dataset_dir = ""
    dataset_name = "openreid"
    display_name = "open-reid dataset"
    zip_hint = ""
    num_cameras: Optional[int] = None  # expected meta.json num_cameras; None: any
    _junk_pids: List[int] = []

    def __init__(self, root: Optional[str] = None, split: int = 0, protocol: str = "auto", **kwargs: Any) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"{type(self).__name__}: protocol={protocol!r}; expected one of {PROTOCOLS}")
        self.root = root if root is not None else datasets_root()
        self.dataset_dir = osp.join(self.root, type(self).dataset_dir)
        self.images_dir = osp.join(self.dataset_dir, "images")
        self.poses_dir = osp.join(self.dataset_dir, POSES_DIR)
        self.meta_path = osp.join(self.dataset_dir, "meta.json")
        self.splits_path = osp.join(self.dataset_dir, "splits.json")
        self.split_id = split
        self._check_files()

        meta = self._read_json(self.meta_path)
        identities = self._check_meta(meta)
        splits = self._read_json(self.splits_path)
        self.split = self._check_split(splits, len(identities))
        self.meta = meta

        train = self._pluck(identities, self.split["trainval"], is_train=True)
        query, gallery, used = self._test_items(meta, identities, protocol)
        self.protocol = used
        self._check_images_exist(train + query + gallery)
        for subset, items in (("train (trainval)", train), ("query", query), ("gallery", gallery)):
            if not items:
                raise DatasetFormatError(
                    f"{type(self).__name__}: split {split} of {osp.abspath(self.splits_path)} gives no {subset} "
                    f"image. Fix: re-extract the dataset's archive ({OPEN_REID_LAYOUT})")
        logger.info("%s: %s, split %d; query/gallery by %s: %d query / %d gallery images",
                    type(self).__name__, osp.abspath(self.dataset_dir), split,
                    "meta.json query_fnames/gallery_fnames" if used == "meta-files"
                    else "all images of the split's query/gallery identities (open-reid)", len(query), len(gallery))
        super().__init__(train, query, gallery, **kwargs)

    # ---- checks -------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"set FASTREID_DATASETS=<root> (now {osp.abspath(self.root)})"

    def _check_files(self) -> None:
        name = type(self).__name__
        folder = osp.abspath(self.dataset_dir)
        if not osp.isdir(folder):
            fix = self.zip_hint or "put the dataset's folder there"
            if type(self).dataset_dir and osp.isfile(osp.join(self.root, "meta.json")):
                # a common slip: the variable names the dataset folder instead of the folder holding it
                fix = (f"{osp.abspath(self.root)} itself holds meta.json: point FASTREID_DATASETS at its parent "
                       f"and name the folder {type(self).dataset_dir}")
            raise DatasetNotFoundError(
                f"{name}: {self.display_name} (open-reid layout) not found at {folder}. Expected there: "
                f"{OPEN_REID_LAYOUT}. Fix: {fix}; {self._where()}")
        for path, what in ((self.images_dir, "folder"), (self.meta_path, "file"), (self.splits_path, "file")):
            exists = osp.isdir(path) if what == "folder" else osp.isfile(path)
            if not exists:
                raise DatasetNotFoundError(
                    f"{name}: {osp.abspath(path)} not found: {folder} is not a complete open-reid dataset (expected "
                    f"{OPEN_REID_LAYOUT}). Fix: re-extract the dataset's archive there, or {self._where()}")

    def _read_json(self, path: str) -> Any:
        try:
            with open(path, "r", encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetFormatError(f"{type(self).__name__}: {osp.abspath(path)} is not valid JSON ({err}). "
                                     f"Fix: re-extract the dataset's archive") from None

    def _format_error(self, path: str, problem: str) -> DatasetFormatError:
        return DatasetFormatError(f"{type(self).__name__}: {osp.abspath(path)}: {problem}. Expected the open-reid "
                                  f"layout ({OPEN_REID_LAYOUT}). Fix: re-extract the dataset's archive")

    def _check_meta(self, meta: Any) -> List[List[List[str]]]:
        """``meta['identities']`` after checking its shape and that every name encodes its pid and camera."""
        if not isinstance(meta, dict) or not isinstance(meta.get("identities"), list):
            raise self._format_error(self.meta_path, "no 'identities' list (identities[pid][camera] -> file names)")
        num_cams = meta.get("num_cameras")
        if num_cams is not None and not isinstance(num_cams, int):
            raise self._format_error(self.meta_path, f"'num_cameras' is {num_cams!r}, not an integer")
        if self.num_cameras is not None and num_cams is not None and num_cams != self.num_cameras:
            raise self._format_error(
                self.meta_path, f"it describes {meta.get('name')!r} with {num_cams} cameras; {type(self).__name__} "
                f"expects {self.display_name} with {self.num_cameras} (is another dataset in this folder?)")
        identities = meta["identities"]
        for pid, cams in enumerate(identities):
            if not isinstance(cams, list) or (num_cams is not None and len(cams) > num_cams):
                most = f" of at most {num_cams}" if num_cams is not None else ""
                raise self._format_error(self.meta_path, f"identities[{pid}] is not a list{most} camera lists")
            for cam, names in enumerate(cams):
                if not isinstance(names, list):
                    raise self._format_error(self.meta_path, f"identities[{pid}][{cam}] is not a list of file names")
                for fname in names:
                    # open-reid's _pluck asserts the same: the name encodes the list position
                    match = _NAME_RE.match(osp.splitext(fname)[0]) if isinstance(fname, str) else None
                    if match is None or (int(match.group(1)), int(match.group(2))) != (pid, cam):
                        raise self._format_error(
                            self.meta_path, f"identities[{pid}][{cam}] lists {fname!r}; names there must be "
                            f"{pid:08d}_{cam:02d}_<n:04d>.jpg")
        return identities

    def _check_split(self, splits: Any, num_ids: int) -> Dict[str, List[int]]:
        if not isinstance(splits, list) or not splits:
            raise self._format_error(self.splits_path, "not a non-empty list of splits")
        if not isinstance(self.split_id, int) or not 0 <= self.split_id < len(splits):
            raise ValueError(
                f"{type(self).__name__}: split {self.split_id!r} is out of range: {osp.abspath(self.splits_path)} "
                f"holds {len(splits)} split(s), indices 0..{len(splits) - 1}. Fix: pass split=<index in that range>")
        split = splits[self.split_id]
        if not isinstance(split, dict):
            raise self._format_error(self.splits_path, f"split {self.split_id} is not an object")
        for key in ("trainval", "query", "gallery"):
            pids = split.get(key)
            if not isinstance(pids, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in pids):
                raise self._format_error(self.splits_path, f"split {self.split_id} has no '{key}' list of pids")
            bad = [p for p in pids if not 0 <= p < num_ids]
            if bad:
                raise self._format_error(self.splits_path, f"split {self.split_id} '{key}' lists pid {bad[0]}, "
                                         f"outside the {num_ids} identities of meta.json")
        leaked = sorted(set(split["trainval"]) & (set(split["query"]) | set(split["gallery"])))
        if leaked:
            raise self._format_error(self.splits_path, f"split {self.split_id} trains on test identities "
                                     f"(trainval and query/gallery share pids {leaked[:_MAX_LISTED]})")
        return split

    def _check_images_exist(self, items: Iterable[Item]) -> None:
        # one listing instead of a stat per image: Market-1501 lists ~36k files
        present = set(os.listdir(self.images_dir))
        missing = sorted({osp.basename(path) for path, _, _ in items} - present)
        if missing:
            more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            raise DatasetNotFoundError(
                f"{type(self).__name__}: {len(missing)} image(s) listed in {osp.abspath(self.meta_path)} are missing "
                f"from {osp.abspath(self.images_dir)}: {', '.join(missing[:_MAX_LISTED])}{more}. Fix: re-extract the "
                f"dataset's archive so that images/ holds every file meta.json lists")

    # ---- items --------------------------------------------------------------------------------------------
    def _pluck(self, identities: Sequence[Sequence[Sequence[str]]], pids: Iterable[int],
               is_train: bool) -> List[Item]:
        items: List[Item] = []
        for pid in pids:
            for cam, names in enumerate(identities[pid]):
                for fname in names:
                    path = osp.join(self.images_dir, fname)
                    if is_train:
                        # prefixed like fastreid's datasets; CommDataset relabels them to 0..N-1
                        items.append((path, f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{cam}"))
                    else:
                        items.append((path, pid, cam))
        return items

    def _from_names(self, names: Any, key: str, identities: Sequence[Sequence[Sequence[str]]]) -> List[Item]:
        if not isinstance(names, list):
            raise self._format_error(self.meta_path, f"'{key}' is not a list of file names")
        items: List[Item] = []
        for fname in names:
            match = _NAME_RE.match(osp.splitext(fname)[0]) if isinstance(fname, str) else None
            pid, cam = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
            # the lists must name images of 'identities', or pid and camera could disagree with the rest
            if not (0 <= pid < len(identities) and cam < len(identities[pid]) and fname in identities[pid][cam]):
                raise self._format_error(self.meta_path, f"'{key}' lists {fname!r}, which is not an image of "
                                         f"'identities' (<pid:08d>_<cam:02d>_<n:04d>.jpg)")
            items.append((osp.join(self.images_dir, fname), pid, cam))
        return items

    def _test_items(self, meta: Dict[str, Any], identities: List[Any], protocol: str
                    ) -> Tuple[List[Item], List[Item], str]:
        has_lists = "query_fnames" in meta and "gallery_fnames" in meta
        if protocol == "meta-files" and not has_lists:
            raise self._format_error(self.meta_path, "protocol='meta-files' needs 'query_fnames' and "
                                     "'gallery_fnames' lists, which it lacks (use protocol='split')")
        if protocol == "meta-files" or (protocol == "auto" and has_lists):
            return (self._from_names(meta["query_fnames"], "query_fnames", identities),
                    self._from_names(meta["gallery_fnames"], "gallery_fnames", identities), "meta-files")
        return (self._pluck(identities, self.split["query"], is_train=False),
                self._pluck(identities, self.split["gallery"], is_train=False), "split")

    def combine_all(self) -> None:
        """fastreid's ``combine_all`` without duplicates: with open-reid's query/gallery an image of a query
        identity is in both lists, and would otherwise be trained on twice."""
        combined = list(self.train)
        seen = set()
        for path, pid, cam in self.query + self.gallery:
            if pid in self._junk_pids or path in seen:
                continue
            seen.add(path)
            combined.append((path, f"{self.dataset_name}_test_{pid}", f"{self.dataset_name}_test_{cam}"))
        self._train = combined


@DATASET_REGISTRY.register()
class OpenReIDMarket1501(OpenReIDLayout):
    """Market-1501 as open-reid / FD-GAN prepare it, in ``<root>/market1501`` (pid 0 is background)."""

    dataset_dir = "market1501"
    dataset_name = "openreid_market1501"
    display_name = "Market-1501"
    zip_hint = "unzip FD-GAN's prepared Market1501 zip so that <root>/market1501/images exists"
    num_cameras = 6
    _junk_pids = [0, -1]


@DATASET_REGISTRY.register()
class OpenReIDDukeMTMC(OpenReIDLayout):
    """DukeMTMC-reID as open-reid / FD-GAN prepare it, in ``<root>/dukemtmc`` (pids renumbered 0..N-1)."""

    dataset_dir = "dukemtmc"
    dataset_name = "openreid_dukemtmc"
    display_name = "DukeMTMC-reID"
    zip_hint = "unzip FD-GAN's prepared DukeMTMC-reID zip so that <root>/dukemtmc/images exists"
    num_cameras = 8


@DATASET_REGISTRY.register()
class OpenReIDCUHK03(OpenReIDLayout):
    """CUHK03 as open-reid / FD-GAN prepare it, in ``<root>/cuhk03`` (2 cameras; 20 splits, query = gallery)."""

    dataset_dir = "cuhk03"
    dataset_name = "openreid_cuhk03"
    display_name = "CUHK03"
    zip_hint = "unzip FD-GAN's prepared CUHK03 zip so that <root>/cuhk03/images exists"
    num_cameras = 2

"""``TranslatedMarket``: a dataset that ``tools/translate.py`` wrote (SPGAN's translated source images), read like
Market-1501, registered in fastreid's ``DATASET_REGISTRY`` when ``spgan`` is imported.

A config names it like any dataset (``DATASETS.NAMES ("TranslatedMarket",)``); its folder is
``$SPGAN_TRANSLATED_DIR`` when that is set, else ``<datasets root>/spgan-translated`` (the root fastreid passes:
``$FASTREID_DATASETS``, default ``datasets``), which is also where ``translate.py`` writes by default.

The folder is read only when it is complete: ``translate.py`` writes its manifest (:data:`MANIFEST_FILE`) last,
just before it renames the folder into place, so a folder without one is an interrupted or foreign one, and it is
refused with the command that writes it. The images keep the source's file names, so identities and cameras are
the source's; the number of cameras comes from the manifest (a Duke source keeps its 8). A split that was not
translated (``--splits train``) is an error only when something reads it (a test set).

To read two translated datasets in one run, register a subclass with its own folder::

    @DATASET_REGISTRY.register()
    class TranslatedDukeToMarket(TranslatedMarket):
        env_var, default_folder, dataset_name = "SPGAN_TRANSLATED_D2M_DIR", "spgan-translated-d2m", "spgan_d2m"
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from fastreid_gan.data.build import datasets_root
from fastreid_gan.data.dataset_errors import DatasetFormatError, DatasetNotFoundError, read_market_style_dir

__all__ = ["MANIFEST_FILE", "MANIFEST_FORMAT", "SPLIT_FOLDERS", "ENV_VAR", "DEFAULT_FOLDER",
           "IncompleteTranslationError", "TranslatedMarket", "translated_folder", "read_manifest", "TOOL_COMMAND"]

MANIFEST_FILE = "translation.json"
MANIFEST_FORMAT = "spgan-translated-dataset"
# split -> folder of the Market-1501 layout
SPLIT_FOLDERS: Dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
ENV_VAR = "SPGAN_TRANSLATED_DIR"
DEFAULT_FOLDER = "spgan-translated"
TOOL_COMMAND = ("python projects/SPGAN/tools/translate.py --config-file CFG --weights W --dataset SOURCE "
                "--output {folder}")


class IncompleteTranslationError(DatasetFormatError):
    """A translated-dataset folder without its completion manifest, or whose images do not match it."""


def translated_folder(root: Optional[str] = None, env_var: str = ENV_VAR, default_folder: str = DEFAULT_FOLDER) -> str:
    """Where a translated dataset is read from: ``$<env_var>`` if set, else ``<root>/<default_folder>``."""
    override = os.getenv(env_var, "")
    if override:
        return osp.abspath(osp.expanduser(override))
    return osp.abspath(osp.join(root if root is not None else datasets_root(), default_folder))


def read_manifest(folder: str) -> Optional[Dict[str, Any]]:
    """The manifest of a complete translated dataset, or None when ``folder`` has none (or an unreadable one)."""
    path = osp.join(folder, MANIFEST_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


@DATASET_REGISTRY.register()
class TranslatedMarket(ImageDataset):
    """A dataset written by ``projects/SPGAN/tools/translate.py`` (see the module docstring).

    Args:
        root: datasets root (what fastreid passes); the folder is ``$SPGAN_TRANSLATED_DIR`` or
            ``<root>/spgan-translated``.
        folder: the folder itself, in place of both (for code that builds the dataset by hand).
        **kwargs: fastreid ``ImageDataset`` options (``mode``, ``combineall``, ...).
    """

    _junk_pids = [0, -1]
    env_var = ENV_VAR
    default_folder = DEFAULT_FOLDER
    dataset_name = "spgan_translated"

    def __init__(self, root: Optional[str] = None, folder: Optional[str] = None, **kwargs: Any) -> None:
        name = type(self).__name__
        self.dataset_dir = osp.abspath(folder) if folder else translated_folder(root, self.env_var,
                                                                                 self.default_folder)
        self.data_dir = self.dataset_dir
        how = (f"write it with: {TOOL_COMMAND.format(folder=self.dataset_dir)} (or set {self.env_var} to the folder "
               f"translate.py wrote)")
        if not osp.isdir(self.dataset_dir):
            raise DatasetNotFoundError(f"{name}: translated dataset {self.dataset_dir} not found; {how}")
        manifest = read_manifest(self.dataset_dir)
        if manifest is None:
            raise IncompleteTranslationError(
                f"{name}: {self.dataset_dir} is not a complete translated dataset (it has no {MANIFEST_FILE}, which "
                f"translate.py writes last: an interrupted run, or a folder translate.py did not write); {how}")
        self.manifest = manifest
        self.num_cams = int(manifest["num_cams"])
        self.translated_splits: Dict[str, int] = {s: int(v["images"]) for s, v in manifest["splits"].items()}
        self.train_dir = osp.join(self.data_dir, SPLIT_FOLDERS["train"])
        self.query_dir = osp.join(self.data_dir, SPLIT_FOLDERS["query"])
        self.gallery_dir = osp.join(self.data_dir, SPLIT_FOLDERS["gallery"])
        train = lambda: self._read("train")  # noqa: E731  (lazy, like fastreid's Market1501)
        query = lambda: self._read("query")  # noqa: E731
        gallery = lambda: self._read("gallery")  # noqa: E731
        super().__init__(train, query, gallery, **kwargs)

    def _read(self, split: str) -> List[Tuple[str, Any, Any]]:
        name = type(self).__name__
        if split not in self.translated_splits:
            raise IncompleteTranslationError(
                f"{name}: {self.dataset_dir} holds only the translated {', '.join(sorted(self.translated_splits))} "
                f"split(s), not {split}: translate it again with --splits all to test on it")
        if self.translated_splits[split] == 0:  # the source's split was empty too
            return []
        items = read_market_style_dir(osp.join(self.dataset_dir, SPLIT_FOLDERS[split]), split == "train",
                                      class_name=name, dataset_name=self.dataset_name, num_cams=self.num_cams,
                                      skip_junk=False)
        if len(items) != self.translated_splits[split]:
            raise IncompleteTranslationError(
                f"{name}: {osp.join(self.dataset_dir, SPLIT_FOLDERS[split])} holds {len(items)} images but "
                f"{MANIFEST_FILE} lists {self.translated_splits[split]}: files were added or removed after "
                f"translation; translate it again with --overwrite")
        return items

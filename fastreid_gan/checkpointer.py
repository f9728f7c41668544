"""``RunCheckpointer``: fastreid's ``Checkpointer`` as both trainers (baseline and GAN) use it.

What it adds to fastreid's (``save(name, **extra)``, ``load``, ``has_checkpoint``, ``last_checkpoint`` tag):

* an atomic write (``<name>.pth.<pid>.tmp`` then rename), so a killed save never leaves a truncated file;
  :meth:`remove_stale_partial_saves` deletes what a killed save left behind;
* the config's meta-architecture recorded in every file (``"meta_architecture"``), for the error that names
  a mix-up;
* a fit check on every load (:func:`~fastreid_gan.checkpoint_io.check_weights_fit`) and named errors for
  files that are no checkpoints (:func:`~fastreid_gan.checkpoint_io.read_checkpoint`);
* retention: only the newest ``keep`` periodic checkpoints (``model_<n>.pth``) stay on disk
  (``SOLVER.CHECKPOINT_KEEP``; ``model_final.pth`` and ``model_best.pth`` are never removed);
* resuming falls back to the newest complete checkpoint when the last one is unreadable (:meth:`resumable`).
"""
from __future__ import annotations

import glob
import logging
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from fastreid.utils.checkpoint import Checkpointer

from fastreid_gan.checkpoint_io import CheckpointFileError, check_weights_fit, read_checkpoint

__all__ = ["RunCheckpointer", "NoResumableCheckpointError", "RESUME_ADVICE"]

logger = logging.getLogger(__name__)

_PERIODIC = re.compile(r"^model_(\d+)\.pth$")
_PARTIAL = re.compile(r"^.+\.pth\.\d+\.tmp$")


RESUME_ADVICE = ("OUTPUT_DIR holds the checkpoints of a run with another config: give this run its own "
                 "OUTPUT_DIR, or run without --resume (MODEL.WEIGHTS <file> starts from a file's weights).")


class NoResumableCheckpointError(CheckpointFileError):
    """``--resume`` found checkpoints in ``OUTPUT_DIR`` but none of them is readable."""


class RunCheckpointer(Checkpointer):
    """``RunCheckpointer(model, save_dir, meta_architecture=cfg.MODEL.META_ARCHITECTURE, keep=N,
    keep_init=cfg.MODEL.WEIGHTS_KEEP_INIT, save_to_disk=..., **checkpointables)``."""

    def __init__(self, model: nn.Module, save_dir: str = "", *, meta_architecture: str = "", keep: int = 0,
                 keep_init: Sequence[str] = (), save_to_disk: bool = True, **checkpointables: Any) -> None:
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        if int(keep) < 0:
            raise ValueError(f"SOLVER.CHECKPOINT_KEEP is {keep}: give the number of periodic checkpoints to keep "
                             f"(0 keeps all)")
        self.meta_architecture = meta_architecture or type(model).__name__
        self.keep = int(keep)
        self.keep_init = tuple(keep_init)
        self._source = "MODEL.WEIGHTS"
        self._path = ""
        self._resuming = False
        self._preread: Optional[Tuple[str, Dict[str, Any]]] = None

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **extra: Any) -> Optional[str]:  # type: ignore[override]
        """Write ``<save_dir>/<name>.pth`` atomically, tag it as the last checkpoint, prune old periodic ones;
        returns its path (None on processes that do not write)."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict(), "meta_architecture": self.meta_architecture}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        os.makedirs(self.save_dir, exist_ok=True)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save(data, tmp)
        os.replace(tmp, path)  # an interrupted save never leaves a truncated checkpoint behind
        self.tag_last_checkpoint(basename)
        self.logger.info("Saved checkpoint to %s", path)
        if self.keep and _PERIODIC.match(basename):
            self._prune()
        return path

    def periodic_checkpoints(self) -> List[str]:
        """``model_<n>.pth`` files of ``save_dir``, oldest (smallest n) first."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        found = [(int(m.group(1)), f) for f in os.listdir(self.save_dir) if (m := _PERIODIC.match(f))]
        return [os.path.join(self.save_dir, f) for _, f in sorted(found)]

    def _prune(self) -> None:
        for path in self.periodic_checkpoints()[: -self.keep]:
            os.remove(path)
            logger.info("Removed %s (SOLVER.CHECKPOINT_KEEP %d keeps the newest periodic checkpoints)",
                        path, self.keep)

    def remove_stale_partial_saves(self) -> List[str]:
        """Delete ``*.pth.<pid>.tmp`` files that a killed save left in ``save_dir``; returns their paths.
        Call it before this run saves anything (the trainers do, on the main process)."""
        if not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            return []
        stale = sorted(p for p in glob.glob(os.path.join(self.save_dir, "*.tmp"))
                       if _PARTIAL.match(os.path.basename(p)))
        for path in stale:
            os.remove(path)
            logger.warning("Removed %s: a partial checkpoint left by an interrupted save", path)
        return stale

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None,  # type: ignore[override]
             source: str = "MODEL.WEIGHTS") -> Dict[str, Any]:
        """fastreid's ``load`` with the fit check: ``checkpointables=[]`` loads weights to start from (the
        identity classifier and ``keep_init`` prefixes may keep their initialisation); otherwise everything
        is restored and the weights must fit exactly.  ``source`` names ``path`` in errors."""
        self._source, self._path = source, path
        self._resuming = checkpointables is None or len(checkpointables) > 0
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"{source} = '{path}': file not found")
        return super().load(path, checkpointables)

    def _load_file(self, f: str) -> Dict[str, Any]:
        if self._preread is not None and self._preread[0] == f:
            data, self._preread = self._preread[1], None
            return data
        return read_checkpoint(f, source=self._source)

    def _load_model(self, checkpoint: Any) -> Any:
        check_weights_fit(self.model, checkpoint, self._path, source=self._source,
                          meta_arch=self.meta_architecture, classifier_may_differ=not self._resuming,
                          keep_init=() if self._resuming else self.keep_init,
                          advice=RESUME_ADVICE if self._resuming else None)
        return super()._load_model(checkpoint)

    def _log_incompatible_keys(self, incompatible: Any) -> None:
        pass  # check_weights_fit has said, in one line per reason, what keeps its initialisation

    def resumable(self) -> Tuple[str, Dict[str, Any]]:
        """``(path, checkpoint)`` to resume from: the last checkpoint, or, when it is unreadable, the newest
        readable ``.pth`` of ``save_dir`` (with a warning naming both).

        Raises:
            NoResumableCheckpointError: no checkpoint of ``save_dir`` can be read (with the advice).
        """
        last = self.get_checkpoint_file()
        tag = os.path.join(self.save_dir, "last_checkpoint")
        try:
            return last, read_checkpoint(last, source="the last checkpoint")
        except FileNotFoundError:
            problem = f"The last checkpoint {last} (named in {tag}) does not exist"
        except CheckpointFileError as exc:
            problem = f"The last checkpoint {last} is unreadable: {exc.reason}"
        others = sorted((p for p in glob.glob(os.path.join(self.save_dir, "*.pth")) if p != last),
                        key=os.path.getmtime, reverse=True)
        for path in others:
            try:
                data = read_checkpoint(path, source="a checkpoint of OUTPUT_DIR")
            except CheckpointFileError as exc:
                logger.warning("Cannot resume from %s either: %s", path, exc.reason)
                continue
            logger.warning("%s. Resuming from the newest complete checkpoint instead: %s", problem, path)
            return path, data
        raise NoResumableCheckpointError(
            f"{problem}. No other checkpoint of {self.save_dir} is readable, so the run cannot resume: delete "
            f"{tag} and run without --resume to start over (or use another OUTPUT_DIR)", path=last, reason=problem)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:  # type: ignore[override]
        """fastreid's ``resume_or_load`` (used by the baseline trainer) with the fall-back of :meth:`resumable`."""
        if resume and self.has_checkpoint():
            last, data = self.resumable()
            self._preread = (last, data)
            return self.load(last, source="the checkpoint to resume from")
        return self.load(path, checkpointables=[])

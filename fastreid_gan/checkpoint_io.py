"""Reading checkpoint files and checking that their weights fit a model, with errors that name the file.

Every path that loads weights for use goes through here (``--eval-only``, ``--resume``, ``MODEL.WEIGHTS``,
``tools/generate.py`` and the methods' tools): torch's loader and fastreid's lenient ``Checkpointer`` would
otherwise turn a wrong file into a bare ``UnpicklingError``, or into a model that is silently left at its
random initialisation (fastreid only logs the keys it skipped).

A checkpoint *fits* when it sets every tensor of the model with the right shape.  The partial loads that are
meant are named, never tolerated by accident:

* the identity classifier (:func:`identity_classifier_prefixes`) may be missing or sized for another number
  of identities when weights initialise a model or serve for retrieval (a fine-tune on another dataset; the
  classifier is not used to rank a gallery); it keeps its initialisation and the log says so.  Resuming
  needs it exactly;
* ``MODEL.WEIGHTS_KEEP_INIT`` lists key prefixes of the model that ``MODEL.WEIGHTS`` may leave at their
  initialisation, e.g. ``["heads."]`` for a backbone-only initialisation;
* what a method builds for training only and never saves (DG-Net's teacher) is not in the model's
  ``state_dict()``, so it is never expected in a file.
"""
from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "CheckpointFileError",
    "WeightsMismatchError",
    "WeightsFit",
    "load_torch_file",
    "read_checkpoint",
    "checkpoint_state_dict",
    "identity_classifier_prefixes",
    "check_weights_fit",
]

logger = logging.getLogger(__name__)


class CheckpointFileError(ValueError):
    """A file that is not a readable checkpoint (empty, truncated, text, or without weights); ``path`` and
    ``reason`` hold the file and what is wrong with it."""

    def __init__(self, message: str, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


class WeightsMismatchError(ValueError):
    """A checkpoint whose weights do not fit the model the config builds."""


def _not_a_checkpoint(path: str, source: str, why: str) -> CheckpointFileError:
    return CheckpointFileError(
        f"{source} = '{path}' is not a checkpoint: {why}. Point it at a .pth file written by a training run "
        f"(<OUTPUT_DIR>/model_final.pth) or by tools/convert_official.py", path=path, reason=why)


def load_torch_file(path: str, source: str = "MODEL.WEIGHTS", weights_only: bool = True) -> Any:
    """What ``torch.save`` wrote to ``path``, read on the CPU; ``source`` names where the path came from.

    ``weights_only=True`` reads tensors and plain data only; stock fastreid checkpoints also hold numpy
    scalars, for which the file is read again with the full unpickler (``weights_only=False``), as fastreid
    does — only pass files you trust.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointFileError: the file is empty, truncated or not a torch file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{source} = '{path}': file not found")
    if os.path.getsize(path) == 0:
        raise _not_a_checkpoint(path, source, "the file is empty (0 bytes; an interrupted copy or save?)")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as exc:
            if not weights_only or "Weights only load failed" not in str(exc):
                raise
            logger.info("%s holds non-tensor objects (numpy scalars of a stock fastreid checkpoint): "
                        "reading it with weights_only=False", path)
            return torch.load(path, map_location="cpu", weights_only=False)
    # a text file fails inside the legacy (non-zip) reader with a bare KeyError of its magic number
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, RuntimeError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_a_checkpoint(path, source, f"torch cannot read it ({type(exc).__name__}: {first_line}; "
                                              f"a truncated file, or not a torch file)") from None


def read_checkpoint(path: str, source: str = "MODEL.WEIGHTS", weights_only: bool = True) -> Dict[str, Any]:
    """The checkpoint dict at ``path`` (:func:`load_torch_file`), which must hold a ``"model"`` state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointFileError: the file is empty, truncated, not a torch file, or holds no ``"model"`` weights.
    """
    data = load_torch_file(path, source, weights_only)
    if not isinstance(data, dict):
        raise _not_a_checkpoint(path, source, f"it holds a {type(data).__name__}, not a dict of weights")
    if "model" not in data:
        if data and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
            raise _not_a_checkpoint(
                path, source, "it is a bare state dict; wrap it as torch.save({'model': state_dict}, path)")
        raise _not_a_checkpoint(path, source, f"it has no 'model' entry (entries: {sorted(map(str, data))[:8]})")
    if not isinstance(data["model"], Mapping):
        raise _not_a_checkpoint(path, source, "its 'model' entry is not a state dict")
    return data


def checkpoint_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The checkpoint's weights as tensors, without the ``module.`` prefix of (Distributed)DataParallel."""
    state = {}
    for key, value in checkpoint["model"].items():
        key = key[len("module."):] if key.startswith("module.") else key
        state[key] = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
    return state


def identity_classifier_prefixes(model: nn.Module) -> Tuple[str, ...]:
    """State-dict key prefixes of ``model``'s identity classifier (their first dimension counts identities).

    A :class:`~fastreid_gan.engine.GANMetaArch` declares them (``identity_classifier_prefixes()``); fastreid's
    single-network models keep theirs in ``heads.weight`` (every classifier layer of ``EmbeddingHead``).
    """
    declared = getattr(model, "identity_classifier_prefixes", None)
    if callable(declared):
        return tuple(declared())
    from fastreid.modeling.heads import EmbeddingHead

    if isinstance(getattr(model, "heads", None), EmbeddingHead):
        return ("heads.weight",)
    return ()


def _starts(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


@dataclass
class WeightsFit:
    """How a checkpoint's weights map onto a model's ``state_dict()``."""

    model_keys: int
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    unexpected: List[str] = field(default_factory=list)
    kept_init: List[str] = field(default_factory=list)  # allowed to keep their initialisation


def _top_prefixes(keys: Sequence[str]) -> List[str]:
    return sorted({k.split(".")[0] + "." for k in keys})


def _examples(items: Sequence[Any], n: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (", ..." if len(items) > n else "")


def _likely_mix_up(fit: WeightsFit, state: Mapping[str, Any], saved_by: Optional[str], meta_arch: str,
                   model_prefixes: List[str]) -> str:
    file_prefixes = _top_prefixes(list(state))
    if saved_by and saved_by != meta_arch:
        return f"This is a {saved_by} checkpoint (saved by a {saved_by} run) and the config builds a {meta_arch}"
    if set(file_prefixes) == {"backbone.", "heads."} and set(model_prefixes) != {"backbone.", "heads."}:
        return ("This looks like a Baseline checkpoint (a fastreid single-network model: backbone. and heads. "
                "tensors only)")
    if not fit.loaded and not fit.mismatched:
        return (f"It shares no tensor with the model: its tensors are under {_examples(file_prefixes, 6)}, the "
                f"model's under {_examples(model_prefixes, 6)}")
    if fit.mismatched:
        return (f"This looks like a {saved_by or meta_arch} checkpoint of a differently sized model (trained "
                f"with other settings: backbone depth, feature or code dimensions)")
    return "It holds only part of the model (trained with other settings, or a backbone-only file)"


def check_weights_fit(
    model: nn.Module,
    checkpoint: Mapping[str, Any],
    path: str,
    *,
    source: str = "MODEL.WEIGHTS",
    meta_arch: Optional[str] = None,
    classifier_may_differ: bool = True,
    keep_init: Sequence[str] = (),
    advice: Optional[str] = None,
) -> WeightsFit:
    """Check that ``checkpoint`` (as read by :func:`read_checkpoint`) sets every tensor of ``model``.

    Args:
        source: where ``path`` came from, for the message (``MODEL.WEIGHTS``, ``--weights``, ...).
        meta_arch: the config's ``MODEL.META_ARCHITECTURE`` (default: the model's class name).
        classifier_may_differ: the identity classifier may be missing or of another size (not when resuming).
        keep_init: key prefixes of the model that may keep their initialisation (``MODEL.WEIGHTS_KEEP_INIT``).
        advice: what to do instead, when the default (use a matching file or config) does not fit the case.

    Returns the fit (the tensors kept at their initialisation are logged, by reason).

    Raises:
        WeightsMismatchError: a tensor of the model is missing from the file or has another shape, beyond the
            allowed ones; the message names the file, the meta-architecture, how many of the model's tensors
            the file would set and the likely mix-up.
    """
    meta_arch = meta_arch or type(model).__name__
    state = checkpoint_state_dict(checkpoint)
    model_state = model.state_dict()
    allowed_classifier = identity_classifier_prefixes(model) if classifier_may_differ else ()
    fit = WeightsFit(model_keys=len(model_state))
    fit.unexpected = sorted(k for k in state if k not in model_state)
    for key, tensor in model_state.items():
        if key not in state:
            problem = "missing"
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problem = "shape"
        else:
            fit.loaded.append(key)
            continue
        if _starts(key, allowed_classifier) or _starts(key, keep_init):
            fit.kept_init.append(key)
        elif problem == "missing":
            fit.missing.append(key)
        else:
            fit.mismatched.append((key, tuple(state[key].shape), tuple(tensor.shape)))
    if fit.missing or fit.mismatched:
        details = []
        if fit.missing:
            details.append(f"{len(fit.missing)} missing from the file, e.g. {_examples(fit.missing, 2)}")
        if fit.mismatched:
            shown = [f"{k} {tuple(f)} in the file vs {tuple(m)}" for k, f, m in fit.mismatched]
            details.append(f"{len(fit.mismatched)} of another shape, e.g. {_examples(shown, 2)}")
        if fit.unexpected:
            details.append(f"the file also has {len(fit.unexpected)} tensors the model lacks, e.g. "
                           f"{_examples(fit.unexpected, 2)}")
        mix_up = _likely_mix_up(fit, state, checkpoint.get("meta_architecture"), meta_arch,
                                _top_prefixes(list(model_state)))
        raise WeightsMismatchError(
            f"{source} = '{path}' does not fit MODEL.META_ARCHITECTURE '{meta_arch}': it would set "
            f"{len(fit.loaded)} of the model's {fit.model_keys} tensors ({'; '.join(details)}). {mix_up}. "
            + (advice or f"Use a checkpoint of a {meta_arch} run with this config, or this file with the config "
                         f"it was trained with (the config.yaml next to it). To leave part of the model at its "
                         f"initialisation on purpose, list its key prefixes in MODEL.WEIGHTS_KEEP_INIT "
                         f"(e.g. ['heads.']).")
        )
    _log_kept_init(fit, state, path, allowed_classifier, keep_init)
    if fit.unexpected:
        logger.warning("%s: %d tensors of the file are not in the %s model and are ignored (e.g. %s)",
                       path, len(fit.unexpected), meta_arch, _examples(fit.unexpected))
    return fit


def _log_kept_init(fit: WeightsFit, state: Mapping[str, Any], path: str, classifier: Sequence[str],
                   keep_init: Sequence[str]) -> None:
    classifier_keys = [k for k in fit.kept_init if _starts(k, classifier) and not _starts(k, keep_init)]
    if classifier_keys:
        sizes = sorted({int(state[k].shape[0]) for k in classifier_keys if k in state and state[k].dim() > 0})
        in_file = f"the file's is sized for {', '.join(map(str, sizes))} identities" if sizes else "the file has none"
        logger.info("%s: the identity classifier (%s) keeps its initialisation: %s (it is not used for retrieval, "
                    "and a fine-tune trains it anew)", path, _examples(classifier_keys), in_file)
    listed = [k for k in fit.kept_init if _starts(k, keep_init)]
    if listed:
        logger.info("%s: %d tensors keep their initialisation as MODEL.WEIGHTS_KEEP_INIT %s asks (e.g. %s)",
                    path, len(listed), list(keep_init), _examples(listed))

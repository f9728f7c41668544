"""Build a config's model for inference and load trained weights into it: one code path for ``--eval-only``,
``tools/generate.py`` and every method's tools."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

from torch import nn

from fastreid.modeling import build_model

from fastreid_gan.checkpoint_io import checkpoint_state_dict, read_checkpoint
from fastreid_gan.checkpointer import RunCheckpointer

__all__ = ["inference_config", "load_model_for_inference", "checkpoint_num_classes"]

logger = logging.getLogger(__name__)


def inference_config(cfg: Any) -> Any:
    """A copy of ``cfg`` for building a model that trained weights will overwrite.

    Nothing is initialised from ImageNet (``MODEL.BACKBONE.PRETRAIN False``), and a config whose number of
    identities is filled in by the trainer (``MODEL.HEADS.NUM_CLASSES 0``) gets one: retrieval and generation
    do not use the identity classifier.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    if cfg.MODEL.HEADS.NUM_CLASSES == 0:
        cfg.MODEL.HEADS.NUM_CLASSES = 1
    return cfg


def checkpoint_num_classes(weights: str, classifier_key: str, source: str = "MODEL.WEIGHTS") -> int:
    """The number of identities of the checkpoint's classifier ``classifier_key`` (its first dimension).

    For a model that needs its classifier's size to be built and is built from a dataset config
    (``MODEL.HEADS.NUM_CLASSES 0``, which only the trainer fills in) with trained weights, e.g. by fastreid's
    ``DefaultPredictor``: the weights say how many identities they were trained on.

    Raises:
        FileNotFoundError, CheckpointFileError: see :func:`~fastreid_gan.checkpoint_io.read_checkpoint`.
        ValueError: the checkpoint has no ``classifier_key`` (a checkpoint of another method?).
    """
    state = checkpoint_state_dict(read_checkpoint(weights, source))
    tensor = state.get(classifier_key)
    if tensor is None or tensor.dim() == 0:
        raise ValueError(f"{source} = '{weights}' has no identity classifier {classifier_key} (a checkpoint of "
                         f"another method?): set MODEL.HEADS.NUM_CLASSES to the training set's identities")
    return int(tensor.shape[0])


def load_model_for_inference(cfg: Any, weights: Optional[str], source: str = "MODEL.WEIGHTS") -> nn.Module:
    """The config's model with ``weights`` loaded (``None``: untrained, the floor training must beat), in eval mode.

    The weights must fit the model (:func:`~fastreid_gan.checkpoint_io.check_weights_fit`): only the identity
    classifier, which retrieval and generation do not use, and ``MODEL.WEIGHTS_KEEP_INIT`` may stay unset.
    ``source`` names where ``weights`` came from in errors (``MODEL.WEIGHTS``, ``--weights``).

    Raises:
        ValueError: ``weights`` is empty.  FileNotFoundError: ``weights`` does not exist.
        CheckpointFileError: it is not a checkpoint.  WeightsMismatchError: it does not fit the model.
    """
    if weights is not None:
        if not weights:
            raise ValueError("Trained weights are needed: add MODEL.WEIGHTS /path/to/model_final.pth "
                             "(or --weights for the tools)")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{source} = '{weights}': file not found")
    model = build_model(inference_config(cfg))
    if weights is not None:
        RunCheckpointer(model, meta_architecture=cfg.MODEL.META_ARCHITECTURE,
                        keep_init=cfg.MODEL.WEIGHTS_KEEP_INIT).load(weights, checkpointables=[], source=source)
    else:
        logger.info("Evaluating %s with random weights (no checkpoint loaded)", cfg.MODEL.META_ARCHITECTURE)
    return model.eval()

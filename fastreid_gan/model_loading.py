"""Build a config's model for inference and load trained weights into it: one code path for ``--eval-only``,
``tools/generate.py`` and every method's tools."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

from torch import nn

from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

__all__ = ["inference_config", "load_model_for_inference"]

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


def load_model_for_inference(cfg: Any, weights: Optional[str]) -> nn.Module:
    """The config's model with ``weights`` loaded (``None``: untrained, the floor training must beat), in eval mode.

    Raises:
        ValueError: ``weights`` is empty.  FileNotFoundError: ``weights`` does not exist.
    """
    if weights is not None:
        if not weights:
            raise ValueError("Trained weights are needed: add MODEL.WEIGHTS /path/to/model_final.pth "
                             "(or --weights for the tools)")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Checkpoint not found: {weights}")
    model = build_model(inference_config(cfg))
    if weights is not None:
        Checkpointer(model).load(weights)
    else:
        logger.info("Evaluating %s with random weights (no checkpoint loaded)", cfg.MODEL.META_ARCHITECTURE)
    return model.eval()

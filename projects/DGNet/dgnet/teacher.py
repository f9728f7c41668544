"""DG-Net's teacher: a frozen fastreid ID-loss baseline that soft-labels generated images (Eq. 8).

The teacher is any fastreid model whose head has a classifier (``EmbeddingHead``/``ClasHead``: a
``weight`` parameter and a ``cls_layer``), built from its own fastreid config file and checkpoint, e.g.
the project's baseline config trained with ``tools/train_net.py --config-file configs/<...>/baseline_*.yml``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastreid_gan.checkpoint_io import load_torch_file

__all__ = ["Teacher", "build_teacher", "TEACHER_HELP"]

TEACHER_HELP = (
    "DG-Net's primary-feature loss (Eq. 8) needs a teacher: a fastreid ID-loss baseline trained on the same "
    "training set. Train one with `tools/train_net.py --config-file <baseline config of that dataset>` "
    "(configs/ holds one per dataset), then set MODEL.DGNET.TEACHER.CONFIG to that config file (or the "
    "config.yaml written in its OUTPUT_DIR) and MODEL.DGNET.TEACHER.WEIGHTS to its model_final.pth. "
    "To train without a teacher (no Eq. 8), set MODEL.DGNET.LOSS_WEIGHTS.PRIM [0.0]."
)


class Teacher(nn.Module):
    """A frozen fastreid classifier; ``soft_label(x)`` = renormalised softmax(T(x)) + softmax(T(flip x)).

    Always in eval mode: :meth:`train` is a no-op, so the owner's ``train()`` never switches its BN
    layers to batch statistics.  Images of another size than ``input_size`` (the teacher's training size)
    are resized to it first, as the published ``scale2`` does for 128x64 inputs (nearest x2 there;
    bilinear to any size here).  Inputs are images normalised with the *student's* mean/std (DG-Net's
    generated images live in that space); they are mapped to the teacher's own normalisation here.
    """

    def __init__(self, model: nn.Module, student_mean: Sequence[float], student_std: Sequence[float],
                 input_size: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        head = getattr(model, "heads", None)
        if head is None or not hasattr(head, "weight") or not hasattr(head, "bottleneck"):
            raise ValueError(
                "MODEL.DGNET.TEACHER.CONFIG must describe a fastreid model with a classifier head "
                f"(EmbeddingHead or ClasHead); got {type(model).__name__} with head {type(head).__name__}."
            )
        self.model = model
        self.model.eval()
        self.input_size = tuple(int(v) for v in input_size) if input_size else None
        for p in self.model.parameters():
            p.requires_grad_(False)
        t_mean = torch.as_tensor(model.pixel_mean).view(1, -1, 1, 1).float()
        t_std = torch.as_tensor(model.pixel_std).view(1, -1, 1, 1).float()
        s_mean = torch.tensor(student_mean, dtype=torch.float32).view(1, -1, 1, 1)
        s_std = torch.tensor(student_std, dtype=torch.float32).view(1, -1, 1, 1)
        # x_teacher = (x_student * s_std + s_mean - t_mean) / t_std, folded into one affine map
        self.register_buffer("scale", s_std / t_std, persistent=False)
        self.register_buffer("shift", (s_mean - t_mean) / t_std, persistent=False)
        self.eval()

    @property
    def num_classes(self) -> int:
        return int(self.model.heads.weight.shape[0])

    def train(self, mode: bool = True) -> "Teacher":  # noqa: D102 - frozen: always eval
        return super().train(False)

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Class logits of normalised (student space) images, as fastreid's ``pred_class_logits``."""
        x = images.float() * self.scale + self.shift
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        head = self.model.heads
        feat = head.pool_layer(self.model.backbone(x))
        neck = head.bottleneck(feat)[..., 0, 0]
        if head.cls_layer.__class__.__name__ == "Linear":
            logits = F.linear(neck, head.weight)
        else:  # cosine classifiers (ArcSoftmax, CircleSoftmax, ...): margins only apply while training
            logits = F.linear(F.normalize(neck), F.normalize(head.weight))
        return logits * head.cls_layer.s

    @torch.no_grad()
    def soft_label(self, images: Tensor) -> Tensor:
        """q(k|x) of Eq. 8: softmax of the teacher on x and on its mirror image, summed and renormalised."""
        both = self.logits(torch.cat([images, images.flip(dims=[3])], dim=0))
        prob = F.softmax(both, dim=1)
        n = images.shape[0]
        q = prob[:n] + prob[n:]
        return q / q.sum(dim=1, keepdim=True)


def _resolve(path: str, key: str, what: str) -> str:
    if not path:
        raise FileNotFoundError(f"{key} is empty: {what} is required. {TEACHER_HELP}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key} = '{path}': file not found ({what}). {TEACHER_HELP}")
    return path


def _checkpoint_state(path: str) -> Dict[str, Tensor]:
    ckpt: Any = load_torch_file(path, source="MODEL.DGNET.TEACHER.WEIGHTS")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"MODEL.DGNET.TEACHER.WEIGHTS = '{path}' holds no state dict. {TEACHER_HELP}")
    return {k[len("module."):] if k.startswith("module.") else k: torch.as_tensor(v) for k, v in state.items()}


def build_teacher(cfg, num_classes: Optional[int] = None, device: Optional[torch.device] = None) -> Teacher:
    """Build the frozen teacher from ``MODEL.DGNET.TEACHER.CONFIG`` and ``MODEL.DGNET.TEACHER.WEIGHTS``.

    Raises FileNotFoundError when either file is missing, ValueError when the checkpoint does not fit the
    config or its number of classes differs from ``num_classes`` (the DG-Net training set's).
    """
    from fastreid.modeling import build_model
    from fastreid_gan.config import get_cfg, merge_config

    config_file = _resolve(cfg.MODEL.DGNET.TEACHER.CONFIG, "MODEL.DGNET.TEACHER.CONFIG", "the teacher's fastreid config")
    weights = _resolve(cfg.MODEL.DGNET.TEACHER.WEIGHTS, "MODEL.DGNET.TEACHER.WEIGHTS", "the teacher's checkpoint")

    tcfg = get_cfg()
    merge_config(tcfg, config_file)
    state = _checkpoint_state(weights)
    if "heads.weight" not in state:
        raise ValueError(
            f"MODEL.DGNET.TEACHER.WEIGHTS = '{weights}' has no classifier ('heads.weight'): the teacher must be an "
            f"ID-loss model with a classification head. {TEACHER_HELP}"
        )
    # the baseline config says NUM_CLASSES 0 (the trainer fills it in from the data): take it from the weights
    tcfg.defrost()
    tcfg.MODEL.HEADS.NUM_CLASSES = int(state["heads.weight"].shape[0])
    tcfg.MODEL.BACKBONE.PRETRAIN = False
    tcfg.MODEL.DEVICE = "cpu"
    tcfg.freeze()
    if num_classes is not None and tcfg.MODEL.HEADS.NUM_CLASSES != num_classes:
        raise ValueError(
            f"MODEL.DGNET.TEACHER.WEIGHTS = '{weights}' classifies {tcfg.MODEL.HEADS.NUM_CLASSES} identities but "
            f"DG-Net trains on {num_classes}: the teacher must be trained on the same training set. {TEACHER_HELP}"
        )
    model = build_model(tcfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"MODEL.DGNET.TEACHER.WEIGHTS = '{weights}' does not match the model of MODEL.DGNET.TEACHER.CONFIG = "
            f"'{config_file}': {str(exc).splitlines()[0]} ... {TEACHER_HELP}"
        ) from exc
    teacher = Teacher(model, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, input_size=tcfg.INPUT.SIZE_TEST)
    return teacher.to(device or torch.device("cpu"))

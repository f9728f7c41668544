"""Teacher-student soft-label losses."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["soft_label_kl"]


def soft_label_kl(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """DG-Net primary feature learning loss (paper Eq. 8): ``KL(q || p)`` averaged over the batch.

    ``mean_i sum_k q_ik (log q_ik - log p_ik)`` with ``p = softmax(student_logits)`` and ``q = teacher_probs``
    (rows summing to 1; zeros contribute 0). Matches the published ``KLDivLoss(size_average=False)(log p, q) / B``.

    Args:
        student_logits: (B, K) logits of the re-id head on generated images.
        teacher_probs: (B, K) teacher probabilities (no gradient expected; detach beforehand).
    """
    if student_logits.shape != teacher_probs.shape:
        raise ValueError(f"shape mismatch: {tuple(student_logits.shape)} vs {tuple(teacher_probs.shape)}")
    log_p = F.log_softmax(student_logits.float(), dim=1)
    return F.kl_div(log_p, teacher_probs.float(), reduction="batchmean")

"""Losses shared by the GAN re-id methods. Every loss returns a scalar tensor."""
from .adversarial import as_list, bce_d_loss, bce_g_loss, lsgan_d_loss, lsgan_g_loss
from .distill import soft_label_kl
from .penalty import r1_penalty

__all__ = [
    "as_list",
    "bce_d_loss",
    "bce_g_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "r1_penalty",
    "soft_label_kl",
]

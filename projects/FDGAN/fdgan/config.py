"""FD-GAN configuration keys (``MODEL.FDGAN.*``) and its optimizer defaults.

The Siamese encoder E (and D_id's own copy) is described by fastreid's ``MODEL.BACKBONE.DEPTH / LAST_STRIDE /
NORM / PRETRAIN / PRETRAIN_PATH`` keys; the image size by ``INPUT.SIZE_TRAIN`` (multiples of 32).  Defaults
are the published architecture (``../shared/reference/fdgan_official/RECIPE.md``).
"""
from typing import Dict

from fastreid.config import CfgNode as CN

from fastreid_gan.engine.config import optimizer_node

__all__ = ["add_fdgan_config", "fdgan_optimizers"]


def add_fdgan_config(cfg: CN) -> None:
    """Add FD-GAN's keys (``MODEL.FDGAN``) to a fastreid config."""
    cfg.MODEL.FDGAN = CN()
    f = cfg.MODEL.FDGAN
    f.POSE = CN()
    f.POSE.NUM_JOINTS = 18  # OpenPose COCO-18
    f.POSE.SIGMA = 5.0  # Gaussian of the heat-maps (published 5)
    f.POSE.DIR = ""  # folder of the keypoint files; empty: <dataset>/poses/ beside each image's folder
    f.GENERATOR = CN()
    f.GENERATOR.NGF = 64
    f.GENERATOR.POSE_DIM = 128
    f.GENERATOR.NOISE_DIM = 256
    f.GENERATOR.DROPOUT = 0.2
    f.POSE_DISCRIMINATOR = CN()  # pix2pix NLayerDiscriminator on cat(pose maps, image)
    f.POSE_DISCRIMINATOR.NDF = 64
    f.POSE_DISCRIMINATOR.N_LAYERS = 3


def fdgan_optimizers() -> Dict[str, CN]:
    """The published stage II optimizers (``fdgan/model.py``, ``--lr 1e-3``): G Adam 1e-4 (0.5, 0.999), D_id SGD
    1e-5, D_pd SGD 1e-3 (momentum 0.9, weight decay 1e-4); E + V (``reid``) the stage I SGD 0.01."""
    return {
        "reid": optimizer_node("SGD", 0.01, momentum=0.9, weight_decay=5e-4),
        "gen": optimizer_node("Adam", 1e-4, betas=(0.5, 0.999)),
        "dis_id": optimizer_node("SGD", 1e-5, momentum=0.9, weight_decay=1e-4),
        "dis_pose": optimizer_node("SGD", 1e-3, momentum=0.9, weight_decay=1e-4),
    }

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
    # Sec. 3.4: 1 = the Siamese baseline (E + V), 2 = G, D_id, D_pd with E and V frozen, 3 = everything jointly.
    # 0: a config of the whole recipe, whose STAGE_CONFIGS tools/train_net.py runs in order (docs/fdgan.md).
    f.STAGE = 0
    # per-stage settings, merged over the config file (before the command-line overrides) for each stage, in
    # order; paths relative to the folder of the --config-file (or absolute)
    f.STAGE_CONFIGS = ()
    f.NEGATIVES_PER_POSITIVE = 3  # pairs per anchor: 1 positive, then this many negatives (published 3)
    f.POSE = CN()
    f.POSE.NUM_JOINTS = 18  # OpenPose COCO-18
    f.POSE.SIGMA = 5.0  # Gaussian of the heat-maps (published 5)
    f.POSE.DIR = ""  # folder of the keypoint files; empty: <dataset>/poses/ beside each image's folder
    # an image without a readable keypoint file: "error" (named, before training starts) or "skip" (left out of
    # the training set, counted and named in the log)
    f.POSE.ON_MISSING = "error"
    f.POSE.FLIP_SWAP_LEFT_RIGHT = True  # mirrored joints trade sides; the published code keeps them (False)
    f.POSE.AUG_SIGMA = (4.0, 6.0)  # training maps' Gaussian sigma range (Sec. 4.1)
    f.POSE.AUG_SIGMA_INTEGER = True  # published: an integer sigma (4, 5, 6); False: the paper's U[4, 6]
    f.POSE.AUG_DROP_JOINT_PROB = 0.0  # the published "erase" augmentation: drop one joint with this probability
    f.GENERATOR = CN()
    f.GENERATOR.NGF = 64
    f.GENERATOR.POSE_DIM = 128
    f.GENERATOR.NOISE_DIM = 256
    f.GENERATOR.DROPOUT = 0.2
    f.POSE_DISCRIMINATOR = CN()  # pix2pix NLayerDiscriminator on cat(pose maps, image)
    f.POSE_DISCRIMINATOR.NDF = 64
    f.POSE_DISCRIMINATOR.N_LAYERS = 3
    # D-side targets of the adversarial BCE (one value per loss call): real U(0.7, 1), fake U(0, 0.3); the two
    # are swapped with FLIP_PROB (published 1 / 10001)
    f.LABEL_SMOOTHING = (0.7, 1.0, 0.0, 0.3)
    f.LABEL_FLIP_PROB = 1.0 / 10001
    # activation checkpointing (docs/engine.md, "Activation memory") of the ResNets of E and D_id, and of G
    f.CHECKPOINT = False
    # NHWC weights and activations: the same network, faster convolutions on CPU (oneDNN; small maps gain most)
    # and on recent GPUs
    f.CHANNELS_LAST = False
    # loss weights (docs/engine.md, "Loss weights"): KEY weighs loss_<key>.  Eq. 6 with the published code's
    # values, which are 10x the paper's in every term (equal ratios): verification L_v, G's identity and pose
    # adversarial terms (L_id, L_pd), reconstruction L_r (Eq. 4), same-pose L_sp (Eq. 5); DIS_ID and DIS_POSE
    # weigh the discriminators' own losses (Eq. 2, 3).  The stage configs set VERIF (stage II: 0).
    f.LOSS_WEIGHTS = CN()
    w = f.LOSS_WEIGHTS
    w.VERIF = [10.0]
    w.GAN_ID = [1.0]
    w.GAN_POSE = [1.0]
    w.RECON = [100.0]
    w.SAME_POSE = [10.0]
    w.DIS_ID = [1.0]
    w.DIS_POSE = [1.0]


def fdgan_optimizers() -> Dict[str, CN]:
    """The published stage II optimizers (``fdgan/model.py``, ``--lr 1e-3``): G Adam 1e-4 (0.5, 0.999), D_id SGD
    1e-5, D_pd SGD 1e-3 (momentum 0.9, weight decay 1e-4); E + V (``reid``) the stage I SGD 0.01."""
    return {
        "reid": optimizer_node("SGD", 0.01, momentum=0.9, weight_decay=5e-4),
        "gen": optimizer_node("Adam", 1e-4, betas=(0.5, 0.999)),
        "dis_id": optimizer_node("SGD", 1e-5, momentum=0.9, weight_decay=1e-4),
        "dis_pose": optimizer_node("SGD", 1e-3, momentum=0.9, weight_decay=1e-4),
    }

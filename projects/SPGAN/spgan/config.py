"""SPGAN / eSPGAN configuration keys (``MODEL.SPGAN.*``) and their optimizer defaults.

Defaults are the published architecture and the paper's weights (TPAMI Sec. 4.2: alpha = 10 in Eq. 4, beta = 5
and gamma = 2 in Eq. 7, m = 2 in Eq. 6, lambda = 5 in Eq. 10; ``../shared/reference/fdgan-spgan-official.md``).
Shared keys a method sets in its ``Base-SPGAN.yml``: ``MODEL.PIXEL_MEAN/STD`` (127.5: the mean 0.5 / std 0.5
space of the official codes), ``INPUT.SIZE_TRAIN`` (the translators' and SiaNet's image size) and, for eSPGAN's
feature learner, ``MODEL.BACKBONE.*`` and ``MODEL.HEADS.NUM_CLASSES``.
"""
from typing import Dict

from fastreid.config import CfgNode as CN

from fastreid_gan.engine.config import optimizer_node

__all__ = ["add_spgan_config", "spgan_optimizers", "espgan_optimizers"]


def add_spgan_config(cfg: CN) -> None:
    """Add SPGAN's and eSPGAN's keys (``MODEL.SPGAN``) to a fastreid config."""
    cfg.MODEL.SPGAN = CN()
    s = cfg.MODEL.SPGAN
    # G (source -> target) and F (target -> source): the CycleGAN ResNet generator (spgan/generator.py)
    s.GENERATOR = CN()
    s.GENERATOR.NGF = 64
    s.GENERATOR.N_BLOCKS = 9
    s.GENERATOR.N_DOWNSAMPLING = 2  # H and W must be multiples of 2**N_DOWNSAMPLING
    s.GENERATOR.INIT = "gaussian"  # N(0, 0.02), as CycleGAN
    s.GENERATOR.CHECKPOINT = False  # recompute activations in backward: less memory, same gradients
    # D_S and D_T: 70x70 PatchGAN with instance norm (spgan/discriminator.py). PADDING: the last two convs'
    # paddings, "pyspgan" (the authors' code and eSPGAN: 32x16 score maps at 256x128) or "openunreid" (pix2pix:
    # 30x14). Only a fresh model reads it: loaded weights bring their own variant (docs/spgan.md).
    s.DISCRIMINATOR = CN()
    s.DISCRIMINATOR.NDF = 64
    s.DISCRIMINATOR.N_LAYERS = 3
    s.DISCRIMINATOR.PADDING = "pyspgan"
    s.DISCRIMINATOR.INIT = "gaussian"
    s.DISCRIMINATOR.CHECKPOINT = False
    # SiaNet M (spgan/metric_net.py): 3 conv + max-pool stages, fc1 HIDDEN, fc2 EMBED_DIM, L2-normalised; its fc1
    # input follows INPUT.SIZE_TRAIN
    s.METRIC = CN()
    s.METRIC.CHANNELS = (64, 128, 256)
    s.METRIC.HIDDEN = 128
    s.METRIC.EMBED_DIM = 64
    s.METRIC.DROPOUT = 0.5
    s.METRIC.MARGIN = 2.0  # m of the contrastive loss, Eq. 6
    # eSPGAN's feature learner C (spgan/feature_learner.py, IDE+ ft_net): MODEL.BACKBONE.* describe its ResNet,
    # MODEL.HEADS.NUM_CLASSES its classifier
    s.FEATURE_LEARNER = CN()
    s.FEATURE_LEARNER.BOTTLENECK_DIM = 512
    s.FEATURE_LEARNER.DROPOUT = 0.5
    s.FEATURE_LEARNER.NEGATIVE_SLOPE = 0.1
    s.FEATURE_LEARNER.CHECKPOINT = False
    # eSPGAN's training (espgan.py, TPAMI Sec. 3.3, Eq. 9-11)
    s.ESPGAN = CN()
    # "pretrain": the feature learner alone, on the labelled source, in the translator's normalisation (Sec.
    # 3.3.2 (i)); "joint": translators, feature learner and discriminators (Eq. 11); "recipe": STAGE_CONFIGS
    # (pretrain, then joint from its weights) in order, one tools/train_net.py command (docs/spgan.md)
    s.ESPGAN.STAGE = "joint"
    s.ESPGAN.STAGE_CONFIGS = ()
    s.ESPGAN.TRAIN_FEATURE_LEARNER = True  # False: "naive eSPGAN" (Sec. 4.4, Table 2), the feature learner frozen
    s.ESPGAN.CE_ON_RECONSTRUCTION = True  # published espgan.py: G's CE also on F(G(x_s)); Eq. 9: G(x_s) only
    s.ESPGAN.FRESH_SOURCE_BATCH = True  # published: C's step on a new real source batch; False: the iteration's own
    s.POOL_SIZE = 50  # per discriminator: history of translated images it judges (CycleGAN's image pool, per image)
    # two-domain training data (spgan/data.py): DATASETS.NAMES is the labelled source; the target's training split
    # (a registered dataset name) is the unlabelled other domain
    s.TARGET_DATASET = ""
    # the published schedule (py-spgan train_spgan.py), in "epochs" of EPOCH_ITERS iterations
    s.SCHEDULE = CN()
    s.SCHEDULE.EPOCH_ITERS = 0  # 0: min(|source|, |target|) // SOLVER.IMS_PER_BATCH
    s.SCHEDULE.GEN_EVERY = 2  # G and F are updated on iterations 0, k, 2k, ...
    s.SCHEDULE.METRIC_START_EPOCH = 1  # SiaNet's own update from this epoch on (published: epoch > 0)
    s.SCHEDULE.CONTRASTIVE_START_EPOCH = 2  # G's contrastive term from this epoch on (published: epoch > 1)
    # loss weights (docs/engine.md, "Loss weights"): KEY weighs loss_<key>. SPGAN (Eq. 1-8): GAN: G's and F's
    # LSGAN terms (Eq. 1-2); CYCLE: alpha, Eq. 3-4; IDENTITY: beta, Eq. 5; CONTRASTIVE: gamma, G's contrastive term
    # (Eq. 6-7 on G's pairs; a constant value is switched on at CONTRASTIVE_START_EPOCH); SIANET: SiaNet's own
    # contrastive loss (its pairs); DIS_S, DIS_T: the discriminators' LSGAN losses. eSPGAN: IDE, lambda of Eq. 10
    # (the feature learner's cross-entropy on the translations, G's side, Eq. 9); FEATURE_LEARNER: the feature
    # learner's own cross-entropy (real source + detached translations; pretraining: real source)
    s.LOSS_WEIGHTS = CN()
    w = s.LOSS_WEIGHTS
    w.GAN = [1.0]
    w.CYCLE = [10.0]
    w.IDENTITY = [5.0]
    w.CONTRASTIVE = [2.0]
    w.SIANET = [1.0]
    w.DIS_S = [1.0]
    w.DIS_T = [1.0]
    w.IDE = [5.0]
    w.FEATURE_LEARNER = [1.0]

def spgan_optimizers() -> Dict[str, CN]:
    """The official SPGAN optimizers (py-spgan, OpenUnReID): Adam 2e-4, betas (0.5, 0.999), no decay, for G, F,
    D_S, D_T and SiaNet."""
    adam = dict(name="Adam", base_lr=2e-4, betas=(0.5, 0.999))
    return {net: optimizer_node(**adam) for net in ("gen_st", "gen_ts", "dis_s", "dis_t", "sianet")}


def espgan_optimizers() -> Dict[str, CN]:
    """eSPGAN (``espgan.py``): the translators and discriminators as SPGAN's; the feature learner SGD (Nesterov,
    momentum 0.9, weight decay 5e-4) at 1e-3 for the backbone and 1e-2 for the bottleneck and classifier."""
    adam = dict(name="Adam", base_lr=2e-4, betas=(0.5, 0.999))
    nodes = {net: optimizer_node(**adam) for net in ("gen_st", "gen_ts", "dis_s", "dis_t")}
    nodes["ide"] = optimizer_node("SGD", 1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                  lr_factors=("bottleneck=10", "classifier=10"))
    return nodes

"""DG-Net configuration keys (``MODEL.DGNET.*``) and its optimizer defaults (``SOLVER.GAN.OPTIMIZERS.GEN/DIS/ID``).

Defaults are the published Market-1501 recipe (paper Sec. 3.3 / 4.1 and the authors' ``configs/latest.yaml``);
every sub-network size is a key, so a CPU-sized variant (``projects/DGNet/configs/synthetic.yml``) is
config-only.  The appearance encoder's ResNet is described by fastreid's own ``MODEL.BACKBONE.DEPTH /
LAST_STRIDE / NORM / PRETRAIN / PRETRAIN_PATH`` keys, so the lead's pretrained-weights check applies to it.

Loss weights are LossWeight specs: ``[v]`` constant, ``[v0, v1, start_iter, ramp_iters]`` linear ramp; key ``X``
weighs the loss ``loss_x`` (:func:`fastreid_gan.engine.loss_weights_from_config`).  The optimizer defaults are
not config keys of their own: :func:`dgnet_optimizers` is what ``DGNet.default_optimizers()`` declares, and a
config completes them when it names ``MODEL.META_ARCHITECTURE: DGNet``.
Every DG-Net loss term is the published SUM over the two halves (x_a and x_b) of the batch, so the published
weights apply unchanged (see :mod:`dgnet.dgnet`).
"""
from typing import Dict

from fastreid.config import CfgNode as CN

from fastreid_gan.engine.config import optimizer_node

__all__ = ["add_dgnet_config", "dgnet_optimizers"]

def add_dgnet_config(cfg: CN) -> None:
    """Add DG-Net's keys (``MODEL.DGNET``) to a fastreid config."""
    _C = cfg
    _C.MODEL.DGNET = CN()
    d = _C.MODEL.DGNET

    # ---- E_a: ResNet from MODEL.BACKBONE (DEPTH 50x, LAST_STRIDE 1 published) + two heads (Sec. 4.1 (i))
    d.APPEARANCE = CN()
    d.APPEARANCE.PARTS = 4  # appearance code = layer4 max-pooled to (PARTS, 1): 2048 x 4 for ResNet-50
    d.APPEARANCE.BOTTLENECK_DIM = 512  # f_prim / f_fine width
    d.APPEARANCE.DROPOUT_PRIM = 0.5
    d.APPEARANCE.DROPOUT_FINE = 0.75
    d.APPEARANCE.TORCHVISION_STEM = True  # max-pool with padding 1, as the published net and ImageNet weights
    d.APPEARANCE.CHECKPOINT = False  # recompute E_a's activations in backward, block by block

    # ---- E_s (Table 6): 1x256x128 gray -> 128x64x32
    d.STRUCTURE = CN()
    d.STRUCTURE.WIDTHS = [16, 32, 32, 64]
    d.STRUCTURE.STRIDES = [2, 1, 1, 2]  # total stride must equal 2 ** DECODER.N_UPSAMPLE
    d.STRUCTURE.N_RES = 4
    d.STRUCTURE.DIM = 128  # structure code channels = decoder input
    d.STRUCTURE.ASPP = True
    d.STRUCTURE.DILATIONS = [3, 6, 9]
    d.STRUCTURE.INPUT = "gray"  # published `single`: "gray" (paper Sec. 3.1) or "edge" (dgnet.generator.soft_edges)
    d.STRUCTURE.EDGE_SCALE = 0.17  # "edge": normalised intensity step per pixel where an edge saturates
    d.STRUCTURE.EDGE_NOISE = 0.1  # "edge": noise added in training (published 0.1)
    d.STRUCTURE.CHECKPOINT = False  # recompute E_s's activations in backward, block by block

    # ---- G (Table 7): AdaIN ResBlocks fed by per-chunk MLPs of the appearance code
    d.DECODER = CN()
    d.DECODER.N_RES = 4
    d.DECODER.N_UPSAMPLE = 2
    d.DECODER.N_CHUNKS = 4
    d.DECODER.MLP_DIM = 512
    d.DECODER.MLP_LAYERS = 3
    d.DECODER.DROPOUT = 0.0
    d.DECODER.CHECKPOINT = False  # recompute G's activations in backward, block by block
    d.GEN_INIT = "kaiming"

    # ---- D (Table 8): multi-scale PatchGAN
    d.DISCRIMINATOR = CN()
    d.DISCRIMINATOR.N_SCALES = 3
    d.DISCRIMINATOR.DIM = 32
    d.DISCRIMINATOR.N_LAYER = 2
    d.DISCRIMINATOR.N_RES = 4
    d.DISCRIMINATOR.NORM = "none"
    d.DISCRIMINATOR.INIT = "gaussian"
    d.DISCRIMINATOR.CHECKPOINT = False  # recompute D's activations in backward, scale by scale

    # ---- teacher (Eq. 8): a fastreid ID-loss baseline on the same training set
    d.TEACHER = CN()
    d.TEACHER.CONFIG = ""  # its fastreid config file (e.g. configs/Market1501/baseline_R50.yml)
    d.TEACHER.WEIGHTS = ""  # its checkpoint (model_final.pth)

    # ---- loss weights (Eq. 10, published latest.yaml; each term sums the x_a and x_b halves)
    w = d.LOSS_WEIGHTS = CN()
    w.RECON_X = [5.0]  # lambda_img, Eq. 1
    w.RECON_XP = [5.0]  # lambda_img, Eq. 2
    w.ID = [1.0]  # Eq. 3 on real x_a, x_b (primary head)
    w.PID = [1.0]  # Eq. 3 on the same-id positives (published pid_w)
    w.ID_CROSS = [0.5]  # lambda_id, Eq. 6 (published recon_id_w, frozen E_a on x_ba)
    # published warm-up: +warm_scale (0.0005) per iteration after warm_iter (30K) up to max_w / max_cyc_w
    w.RECON_F = [0.0, 1.0, 30000, 2000]  # Eq. 4
    w.RECON_S = [0.0, 1.0, 30000, 2000]  # Eq. 5
    w.RECON_X_CYC = [0.0, 2.0, 30000, 4000]  # published cycle reconstruction (not in the paper)
    w.GAN_G = [1.0]  # Eq. 7, generator side
    w.PRIM = [0.0, 2.0, 30000, 4000]  # lambda_prim, Eq. 8 (teacher_w x T_w)
    w.FINE = [0.0, 0.4, 30000, 4000]  # lambda_fine = 0.2 lambda_prim, Eq. 9 (teacher_w x B_w)
    w.ID_FINE = [0.0, 0.4, 30000, 4000]  # published: fine head also learns real ids with weight teacher_w x B_w
    w.GAN_D = [1.0]  # Eq. 7, discriminator side
    w.R1 = [0.01]  # published LAMBDA of the R1 "gradient punishment" (Sec. 4.1 (iv))

    d.ERASING_PROB = 0.5  # random erasing on the ID-path inputs only
    d.ENCODER_AGAIN_PROB = 0.5  # published use_encoder_again: Eq. 5 trains E_s (input fixed) vs. G (E_s frozen)
    d.TEST_FINE_WEIGHT = 0.5  # test feature = [f_prim / |f_prim|, w * f_fine / |f_fine|]
    d.DETACH_RECON_CODE = False  # True: the published code's inert Eq. 4 (its E_a detaches every code it returns)
    d.CHANNELS_LAST = False  # NHWC weights/activations: faster convolutions on CPU (oneDNN) and recent GPUs


def dgnet_optimizers() -> Dict[str, CN]:
    """DG-Net's optimizers (Sec. 4.1 (v), published ``latest.yaml``), declared by ``DGNet.default_optimizers``.

    E_s + G and D: Adam(1e-4, betas (0, 0.999)); E_a: SGD 0.002 with both heads x10 (0.02), as the published
    ``id_opt``; all with weight decay 5e-4 and the LR divided by 10 at 60K, 90K and 105K iterations.
    """
    steps = (60000, 90000, 105000)
    return {
        "gen": optimizer_node(name="Adam", base_lr=1e-4, betas=(0.0, 0.999), weight_decay=5e-4,
                              sched="multistep", steps=steps, gamma=0.1),
        "dis": optimizer_node(name="Adam", base_lr=1e-4, betas=(0.0, 0.999), weight_decay=5e-4,
                              sched="multistep", steps=steps, gamma=0.1),
        "id": optimizer_node(name="SGD", base_lr=0.002, momentum=0.9, nesterov=True, weight_decay=5e-4,
                             lr_factors=("head_prim=10", "head_fine=10"), sched="multistep", steps=steps,
                             gamma=0.1),
    }

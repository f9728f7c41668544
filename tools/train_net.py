#!/usr/bin/env python
"""Train or evaluate any fastreid-gan config: the ResNet baseline, DG-Net, ...

    python tools/train_net.py --config-file projects/DGNet/configs/market.yml [--resume] [KEY VALUE ...]
    python tools/train_net.py --config-file configs/Synthetic/baseline_market.yml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file ... --num-gpus 2     # 2 processes: NCCL on GPUs, gloo on CPU
"""
from fastreid_gan.runner import launch_main

if __name__ == "__main__":
    launch_main()

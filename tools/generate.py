#!/usr/bin/env python
"""Images from a trained DG-Net: code-swap grid (paper Fig. 1), appearance interpolation (Fig. 5), swap accuracy.

    python tools/generate.py --config-file projects/DGNet/configs/synthetic.yml \
        --weights logs/synthetic_market/dgnet/model_final.pth --split query --num 6 --output-dir logs/generate
    python tools/generate.py --config-file ... --weights ... --swap-accuracy [--pairs 500]

Writes ``swap_grid.png`` (rows keep an appearance, columns keep a structure) and ``interpolation.png``
(each row keeps the structure of its left image while the appearance moves to its right image's).
``--swap-accuracy`` (synthetic datasets only) prints the fraction of swaps G(s_j, a_i) whose clothes colours
are closer to identity i's than to j's, and the fraction whose edge layout is closer to x_j's than to x_i's
("structure kept"); chance is 0.5 for both.  Trailing ``KEY VALUE`` pairs override the config.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
import torch

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid.data.data_utils import read_image
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.data.build import datasets_root

logger = logging.getLogger("generate")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True, help="the DG-Net config the checkpoint was trained with")
    p.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS of the config)")
    p.add_argument("--dataset", default="", help="dataset name (default: the config's first DATASETS.TESTS)")
    p.add_argument("--split", default="query", choices=("train", "query", "gallery"))
    p.add_argument("--num", type=int, default=6, help="identities in the swap grid")
    p.add_argument("--interp-pairs", type=int, default=4, help="rows of the interpolation figure (0: none)")
    p.add_argument("--steps", type=int, default=8, help="interpolation steps per row")
    p.add_argument("--output-dir", default="", help="where the PNGs go (default: <OUTPUT_DIR>/generate)")
    p.add_argument("--seed", type=int, default=0, help="picks the images")
    p.add_argument("--swap-accuracy", action="store_true", help="print the swap accuracy and structure score instead of drawing")
    p.add_argument("--pairs", type=int, default=500, help="pairs scored by --swap-accuracy")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def load_model(cfg: Any, weights: str) -> torch.nn.Module:
    """Build the config's model (no pretrained download, no teacher) and load ``weights``; eval mode."""
    if not weights or not os.path.isfile(weights):
        raise FileNotFoundError(f"checkpoint not found: {weights!r} (pass --weights or MODEL.WEIGHTS)")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    if cfg.MODEL.HEADS.NUM_CLASSES == 0:
        # the trainer fills this in from the training set; read it back from the checkpoint's heads
        state = torch.load(weights, map_location="cpu", weights_only=False)
        state = state.get("model", state)
        cfg.MODEL.HEADS.NUM_CLASSES = int(state["id.head_prim.classifier.weight"].shape[0])
    model = build_model(cfg)
    Checkpointer(model).load(weights)
    return model.eval()


def split_items(cfg: Any, dataset: str, split: str) -> List[tuple]:
    """(img_path, pid, camid, ...) tuples of one split of a registered dataset."""
    data = DATASET_REGISTRY.get(dataset)(root=datasets_root())
    return list({"train": data.train, "query": data.query, "gallery": data.gallery}[split])


def image_loader(cfg: Any) -> Callable[[str], torch.Tensor]:
    """path -> (3, H, W) float in 0..255, through the config's test transform (as the evaluator sees it)."""
    transform = build_transforms(cfg, is_train=False)
    return lambda path: transform(read_image(path)).float()


def pick_identities(items: Sequence[tuple], num: int, seed: int) -> List[str]:
    """One image each of ``num`` random identities (real ones: pid > 0 in Market-style names)."""
    by_pid = {}
    for item in items:
        pid = item[1]
        if isinstance(pid, str):  # fastreid prefixes training pids with the dataset name
            pid = pid.rsplit("_", 1)[-1]
        if int(pid) <= 0:
            continue
        by_pid.setdefault(int(pid), []).append(item[0])
    rng = np.random.default_rng(seed)
    pids = sorted(by_pid)
    chosen = rng.choice(len(pids), size=min(num, len(pids)), replace=False)
    return [by_pid[pids[k]][int(rng.integers(len(by_pid[pids[k]])))] for k in chosen]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from dgnet.swap_accuracy import swap_accuracy
    from dgnet.visualize import interpolation_grid, save_png, swap_grid

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    cfg = get_cfg()
    merge_config(cfg, args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    model = load_model(cfg, args.weights or cfg.MODEL.WEIGHTS)
    dataset = args.dataset or cfg.DATASETS.TESTS[0]
    items = split_items(cfg, dataset, args.split)
    load = image_loader(cfg)
    device = model.device

    if args.swap_accuracy:
        result = swap_accuracy(model, [it[0] for it in items], load, num_pairs=args.pairs, seed=args.seed)
        print(f"{dataset} {args.split}: {result}")
        return 0

    out_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "generate")
    paths = pick_identities(items, args.num, args.seed)
    images = torch.stack([load(p) for p in paths]).to(device)
    grid = swap_grid(model, images)
    print("wrote", save_png(grid, os.path.join(out_dir, "swap_grid.png"), nrow=images.shape[0] + 1))
    if args.interp_pairs > 0:
        more = pick_identities(items, 2 * args.interp_pairs, args.seed + 1)
        k = len(more) // 2
        if k:
            pair_a = torch.stack([load(p) for p in more[:k]]).to(device)
            pair_b = torch.stack([load(p) for p in more[k : 2 * k]]).to(device)
            grid = interpolation_grid(model, pair_a, pair_b, args.steps)
            print("wrote", save_png(grid, os.path.join(out_dir, "interpolation.png"), nrow=args.steps + 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

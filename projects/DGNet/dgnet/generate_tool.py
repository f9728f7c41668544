"""DG-Net's part of ``tools/generate.py``: code-swap grid (paper Fig. 1), appearance interpolation (Fig. 5) and
the swap-accuracy / structure scores (``dgnet.swap_accuracy``).

    python tools/generate.py --config-file projects/DGNet/configs/synthetic.yml \
        --weights logs/synthetic_market/dgnet/model_final.pth --split query --num 6 --output-dir logs/generate
    python tools/generate.py --config-file ... --weights ... --swap-accuracy [--pairs 500]

Writes ``swap_grid.png`` (rows keep an appearance, columns keep a structure) and ``interpolation.png`` (each row
keeps the structure of its left image while the appearance moves to its right image's).  ``--swap-accuracy``
(synthetic datasets only) prints the fraction of swaps G(s_j, a_i) whose clothes colours are closer to identity
i's than to j's, and the fraction whose edge layout is closer to x_j's than to x_i's ("structure kept"); chance
is 0.5 for both.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from torch import nn

from fastreid_gan.data.samples import SPLITS, eval_image_loader, pick_identities, split_items
from fastreid_gan.method_tools import register_method_tool

from .swap_accuracy import swap_accuracy
from .visualize import interpolation_grid, save_png, swap_grid

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("DG-Net")
    p.add_argument("--dataset", default="", help="dataset name (default: the config's first DATASETS.TESTS)")
    p.add_argument("--split", default="query", choices=SPLITS)
    p.add_argument("--num", type=int, default=6, help="identities in the swap grid")
    p.add_argument("--interp-pairs", type=int, default=4, help="rows of the interpolation figure (0: none)")
    p.add_argument("--steps", type=int, default=8, help="interpolation steps per row")
    p.add_argument("--seed", type=int, default=0, help="picks the images")
    p.add_argument("--swap-accuracy", action="store_true",
                   help="print the swap accuracy and structure score instead of drawing")
    p.add_argument("--pairs", type=int, default=500, help="pairs scored by --swap-accuracy")


def run(args: argparse.Namespace, cfg: Any, model: nn.Module) -> int:
    dataset = args.dataset or cfg.DATASETS.TESTS[0]
    items = split_items(dataset, args.split)
    load = eval_image_loader(cfg)
    device = model.device

    if args.swap_accuracy:
        result = swap_accuracy(model, [it[0] for it in items], load, num_pairs=args.pairs, seed=args.seed)
        print(f"{dataset} {args.split}: {result}")
        return 0

    out_dir = args.output_dir
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


register_method_tool("generate", "DGNet", help="DG-Net code swaps, interpolation, swap accuracy",
                     add_arguments=add_arguments, run=run)

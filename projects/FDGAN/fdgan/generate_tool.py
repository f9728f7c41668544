"""FD-GAN's part of ``tools/generate.py``: pose-transfer grids (paper Fig. 4) and the generation scores
(:mod:`fdgan.generation_metrics`).

    python tools/generate.py --config-file projects/FDGAN/configs/market.yml --weights fdgan_market.pth \
        [--dataset Market1501] [--split query] [--num 6] [--poses 6] [--seed 0] [--output-dir logs/generate]
    python tools/generate.py --config-file ... --weights ... --metrics [--pairs 200] [--queries 0]

Writes ``pose_transfer.png``: the first column holds the source images, the first row the images the target
poses come from with those poses' skeletons drawn on them (the keypoints G is given), and cell (i, j) is
G(E(x_i), p_j, n) with one noise vector for the whole grid.  ``--metrics`` also prints identity preservation,
pose fidelity and same-pose consistency, each with its baseline, and writes them to
``generation_metrics.json``.  Every image needs its keypoint file (``<dataset>/poses/<stem>.txt`` or under
``MODEL.FDGAN.POSE.DIR``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, List, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from fastreid_gan.data.pose_files import PoseFileError, PoseFileMissingError
from fastreid_gan.data.samples import SPLITS, pick_identities, split_items
from fastreid_gan.method_tools import register_method_tool

from .generation_metrics import LIMBS, GenerationDataError, PoseInputs, draw_noise, generate, generation_scores

__all__ = ["add_arguments", "run", "pick_poses", "pose_transfer_grid", "draw_skeleton", "save_grid"]

GRID_FILE = "pose_transfer.png"
METRICS_FILE = "generation_metrics.json"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("FD-GAN")
    p.add_argument("--dataset", default="", help="dataset name (default: the config's first DATASETS.TESTS)")
    p.add_argument("--split", default="query", choices=SPLITS, help="where the grid's images come from")
    p.add_argument("--num", type=int, default=6, help="source persons (rows of the grid)")
    p.add_argument("--poses", type=int, default=6, help="target poses (columns of the grid)")
    p.add_argument("--seed", type=int, default=0, help="picks the images and draws the noise")
    p.add_argument("--dropout", action="store_true",
                   help="run G's dropout while generating, as the published code does (seeded: reproducible)")
    p.add_argument("--metrics", action="store_true",
                   help=f"also print the generation scores on the test split and write {METRICS_FILE}")
    p.add_argument("--pairs", type=int, default=200, help="pairs scored for pose fidelity and same-pose consistency")
    p.add_argument("--queries", type=int, default=0, help="queries scored for identity preservation (0: all)")


def _pid(value: Any) -> int:
    return int(value.rsplit("_", 1)[-1]) if isinstance(value, str) else int(value)


def pick_poses(items: Sequence[tuple], num: int, seed: int, exclude: Sequence[str]) -> List[str]:
    """``num`` target-pose images of distinct identities, preferring identities not among ``exclude``'s."""
    excluded = set(exclude)
    used = {_pid(it[1]) for it in items if it[0] in excluded}
    others = [it for it in items if _pid(it[1]) not in used]
    picked = pick_identities(others, num, seed)
    if len(picked) < num:  # too few other identities: fill with the rest, other images than the sources
        rest = [it for it in items if it[0] not in excluded | set(picked)]
        picked += pick_identities(rest, num - len(picked), seed + 1)
    return picked


def draw_skeleton(image: Tensor, keypoints: np.ndarray) -> Tensor:
    """A copy of a (3, H, W) 0..255 image with the COCO-18 skeleton of ``keypoints`` (18, 2) ``(y, x)``, -1 for
    missing joints, drawn on it."""
    canvas = np.ascontiguousarray(image.detach().cpu().clamp(0, 255).byte().permute(1, 2, 0).numpy())
    h = canvas.shape[0]
    thickness = max(1, h // 96)
    visible = (np.asarray(keypoints) >= 0).all(axis=1)
    for k, (a, b) in enumerate(LIMBS):
        if visible[a] and visible[b]:
            hue = int(180 * k / len(LIMBS))
            colour = cv2.cvtColor(np.uint8([[[hue, 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0].tolist()
            cv2.line(canvas, (int(keypoints[a][1]), int(keypoints[a][0])), (int(keypoints[b][1]), int(keypoints[b][0])),
                     colour, thickness)
    for y, x in np.asarray(keypoints)[visible]:
        cv2.circle(canvas, (int(x), int(y)), thickness, (255, 255, 255), -1)
    return torch.from_numpy(canvas).permute(2, 0, 1).float()


@torch.no_grad()
def pose_transfer_grid(model: nn.Module, inputs: PoseInputs, sources: Sequence[str], targets: Sequence[str],
                       seed: int = 0, dropout: bool = False) -> Tensor:
    """Fig. 4: (1 + S) x (1 + T) images in 0..1, row major; cell (i, j) = G(E(x_i), p_j, n) with one noise
    vector n for all cells.  Row 0: blank, then the target images with their skeletons; column 0: the sources."""
    src = inputs.images(sources)
    tgt = inputs.images(targets)
    maps = inputs.posemaps(targets)
    n_s, n_t = len(sources), len(targets)
    feats = model.encode(src.to(model.device))
    cells = generate(model, src, maps.repeat(n_s, 1, 1, 1), seed, noise=draw_noise(1, model.gen.noise_dim, seed),
                     dropout=dropout, features=feats.repeat_interleave(n_t, dim=0)).cpu()
    header = [torch.full_like(src[0], 255.0)] + [draw_skeleton(t, inputs.keypoints(p)) for t, p in zip(tgt, targets)]
    rows = [torch.stack(header)]
    for i in range(n_s):
        rows.append(torch.cat([src[i : i + 1], cells[i * n_t : (i + 1) * n_t]]))
    return (torch.cat(rows) / 255.0).clamp(0, 1)


def save_grid(images: Tensor, path: str, nrow: int, padding: int = 2) -> str:
    """Write (N, 3, H, W) 0..1 images as one PNG, ``nrow`` per row, white ``padding``; returns the path."""
    from torchvision.utils import save_image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image(images.detach().cpu().float(), path, nrow=nrow, padding=padding, pad_value=1.0)
    return path


def run(args: argparse.Namespace, cfg: Any, model: nn.Module) -> int:
    dataset = args.dataset or cfg.DATASETS.TESTS[0]
    try:
        return _run(args, cfg, model, dataset)
    except (PoseFileMissingError, PoseFileError, GenerationDataError) as exc:
        # the message names the file (or the missing images) and the fix: no traceback needed
        print(f"error: {dataset}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, cfg: Any, model: nn.Module, dataset: str) -> int:
    if args.num < 1 or args.poses < 1:
        raise GenerationDataError(f"--num and --poses must be at least 1 (got {args.num} and {args.poses})")
    inputs = PoseInputs(cfg)
    items = split_items(dataset, args.split)
    sources = pick_identities(items, args.num, args.seed)
    targets = pick_poses(items, args.poses, args.seed + 1, sources)
    if not sources or not targets:
        raise GenerationDataError(f"the {args.split} split has too few images of real identities for a grid")
    grid = pose_transfer_grid(model, inputs, sources, targets, args.seed, args.dropout)
    print("wrote", save_grid(grid, os.path.join(args.output_dir, GRID_FILE), nrow=len(targets) + 1))
    if args.metrics:
        scores = generation_scores(model, cfg, dataset, pairs=args.pairs, seed=args.seed, max_queries=args.queries,
                                   dropout=args.dropout, progress=logger.info)
        print(scores)
        path = os.path.join(args.output_dir, METRICS_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(scores.as_dict(), f, indent=2)
        print("wrote", path)
    return 0


register_method_tool("generate", "FDGAN", help="FD-GAN pose transfer grids and generation scores",
                     add_arguments=add_arguments, run=run)

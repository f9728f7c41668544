#!/usr/bin/env python
"""`make demo`: the project's main job on a fresh CPU machine, on the synthetic Market-style dataset.

1. an untrained ResNet baseline is evaluated (the floor any training must beat);
2. the ResNet ID-loss baseline trains (DG-Net's teacher);
3. DG-Net trains with that teacher (skip with --baseline-only);
4. a CMC/mAP table (untrained / baseline / DG-Net), DG-Net's swap accuracy (do the clothes follow the appearance
   code?) with its structure score (does the pose follow the structure code?) and the swap-grid path are printed;
   DG-Net's ranked lists of a few queries (``tools/visualize_ranks.py``: top 10, true/false matches, distractors
   and junk marked) and its CMC curve are drawn and their paths printed.

Every stage runs ``tools/train_net.py`` (or ``tools/generate.py``) as a user would; outputs go to --output-dir.
The teacher's backbone also initialises DG-Net's E_a (the synthetic stand-in for ImageNet weights).  While a
stage trains, its progress lines (iteration, ETA, key losses) are printed as the trainer logs them; the full
output of each stage is in its ``stdout.txt``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fastreid_gan.demo_runs import REPO, read_metrics, run

BASELINE_CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"
DGNET_CONFIG = REPO / "projects" / "DGNet" / "configs" / "synthetic.yml"
METRICS = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP")


def train(config: Path, output_dir: Path, label: str, keys: Sequence[str], extra: Optional[List[str]] = None) -> Dict:
    cmd = [sys.executable, "tools/train_net.py", "--config-file", str(config), "OUTPUT_DIR", str(output_dir)]
    run(cmd + list(extra or []), output_dir / "stdout.txt", label, keys)
    return read_metrics(output_dir, label)


def print_table(rows: Dict[str, Dict]) -> None:
    print("\nSyntheticMarket (query vs gallery, Market-1501 protocol, cosine distance)")
    header = f"| {'model':<22} | " + " | ".join(f"{m:>7}" for m in METRICS) + " |"
    print(header)
    print("|" + "-" * (len(header) - 2) + "|")
    for name, result in rows.items():
        print(f"| {name:<22} | " + " | ".join(f"{result[m]:7.2f}" for m in METRICS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="logs/demo")
    parser.add_argument("--baseline-only", action="store_true", help="skip DG-Net")
    args = parser.parse_args()
    out = Path(args.output_dir).resolve()
    start = time.time()

    rows: Dict[str, Dict] = {}
    untrained = out / "untrained"
    print("1/4  the untrained ResNet-18 (the floor any training must beat)", flush=True)
    run([sys.executable, "tools/train_net.py", "--config-file", str(BASELINE_CONFIG), "--eval-only", "--untrained",
         "OUTPUT_DIR", str(untrained)], untrained / "stdout.txt", "untrained")
    rows["untrained ResNet-18"] = read_metrics(untrained, "untrained")
    print("\n2/4  the ResNet-18 ID-loss baseline (DG-Net's teacher)", flush=True)
    rows["baseline (ID loss)"] = train(BASELINE_CONFIG, out / "baseline", "baseline", ("total_loss", "lr"))
    teacher = out / "baseline" / "model_final.pth"

    dgnet_dir = out / "dgnet"
    if not args.baseline_only and DGNET_CONFIG.exists():
        # the teacher's backbone also initialises E_a: the synthetic stand-in for ImageNet weights (paper Sec. 4.1)
        teacher_opts = ["MODEL.DGNET.TEACHER.CONFIG", str(BASELINE_CONFIG), "MODEL.DGNET.TEACHER.WEIGHTS", str(teacher),
                        "MODEL.BACKBONE.PRETRAIN_PATH", str(teacher)]
        print("\n3/4  DG-Net with that teacher", flush=True)
        rows["DG-Net"] = train(DGNET_CONFIG, dgnet_dir, "DG-Net",
                               ("dis/total_loss", "gen/total_loss", "gen/loss_recon_x", "gen/loss_id"), extra=teacher_opts)
    print_table(rows)

    if "DG-Net" in rows:
        generate = [sys.executable, "tools/generate.py", "--config-file", str(DGNET_CONFIG),
                    "--weights", str(dgnet_dir / "model_final.pth"), "--output-dir", str(dgnet_dir)]
        generate_opts = teacher_opts + ["OUTPUT_DIR", str(dgnet_dir)]
        print("\n4/4  DG-Net's cross-identity generation", flush=True)
        run(generate + generate_opts, dgnet_dir / "generate.txt", "generate")
        run(generate + ["--swap-accuracy"] + generate_opts, dgnet_dir / "swap_accuracy.txt", "swap accuracy")
        print("\nDG-Net cross-identity generation, G(a_i, s_j) on query pairs (chance = 0.5 for both scores):\n ",
              (dgnet_dir / "swap_accuracy.txt").read_text().strip().splitlines()[-1])
        print(f"Swap grid (rows keep an appearance, columns keep a structure): {dgnet_dir / 'swap_grid.png'}")
        print(f"Appearance interpolation: {dgnet_dir / 'interpolation.png'}")
        # the ranked lists of DG-Net's first queries on the test set (docs/retrieval.md has the legend)
        ranks_dir = dgnet_dir / "ranks"
        run([sys.executable, "tools/visualize_ranks.py", "--config-file", str(DGNET_CONFIG), "--num-queries", "6",
             "--topk", "10", "--output", str(ranks_dir), "--no-progress", "MODEL.WEIGHTS",
             str(dgnet_dir / "model_final.pth")] + teacher_opts, dgnet_dir / "ranks.txt", "ranked lists")
        print(f"Ranked lists (green: true match, red: false, orange: distractor, grey: junk): "
              f"{ranks_dir / 'ranks.png'}  (CMC curve: {ranks_dir / 'cmc.png'})")
    total = time.time() - start
    print(f"\nOutputs in {out} (log.txt, config.yaml, metrics.json, tensorboard events, checkpoints)")
    print(f"Total time: {int(total // 60)} min {total % 60:.0f} s", flush=True)


if __name__ == "__main__":
    main()

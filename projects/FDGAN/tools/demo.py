#!/usr/bin/env python
"""`make demo-fdgan`: FD-GAN's three stages on the synthetic Market-style dataset, on a CPU, as a user runs them.

1. the untrained Siamese network is evaluated (the floor any training must beat);
2. the ResNet-18 ID-loss baseline trains (``configs/Synthetic/baseline_market.yml``): its backbone is E's
   starting point, the synthetic stand-in for the paper's ImageNet initialisation;
3. ``tools/train_net.py --config-file projects/FDGAN/configs/synthetic.yml`` trains stages I, II and III in order;
4. a table: R1/mAP of the untrained model, stage I (the Siamese baseline) and stage III (the distilled feature),
   each on E's raw feature and after V's re-ranking of the top of the list (the published protocol);
5. ``tools/generate.py`` draws the pose-transfer grid of the stage III model and prints its generation scores
   (identity preservation, pose fidelity, same-pose consistency, each beside its reference).

Outputs go to --output-dir; each command's full output is in a ``stdout.txt`` there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

from fastreid_gan.demo_runs import REPO, read_metrics, run

CONFIG = REPO / "projects" / "FDGAN" / "configs" / "synthetic.yml"
BASELINE_CONFIG = REPO / "configs" / "Synthetic" / "baseline_market.yml"
#: half the DG-Net demo's 12 epochs: E needs a start, not the best ID-loss model (it keeps the demo in 15 minutes)
BASELINE_SCHEDULE = ["SOLVER.MAX_EPOCH", "6", "SOLVER.STEPS", "[4, 5]", "SOLVER.CHECKPOINT_PERIOD", "6"]
METRICS = ("Rank-1", "mAP")
KEYS = {"stage1": ("reid/loss_verif", "lr"),
        "stage2": ("dis_id/loss_dis_id", "dis_pose/loss_dis_pose", "gen/loss_recon", "gen/loss_same_pose"),
        "stage3": ("gen/loss_verif", "gen/loss_recon", "gen/loss_gan_id", "gen/loss_gan_pose")}


def _row(result: Dict) -> str:
    cells = [f"{result[m]:6.1f}" for m in METRICS]
    cells += [f"{result['verified/' + m]:6.1f}" if "verified/" + m in result else f"{'-':>6}" for m in METRICS]
    return " | ".join(cells)


def print_table(rows: Dict[str, Dict]) -> None:
    print("\nSyntheticMarket, query vs gallery (E's raw feature, euclidean; then V re-scores each query's top 100)")
    print(f"| {'model':<30} | {'R1':>6} | {'mAP':>6} | {'V: R1':>6} | {'V: mAP':>6} |")
    print(f"|{'-' * 32}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|")
    for name, result in rows.items():
        print(f"| {name:<30} | {_row(result)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="logs/demo_fdgan")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every command")
    args = parser.parse_args()
    out = Path(args.output_dir).resolve()
    opts: List[str] = list(args.opts)
    start = time.time()
    train_net = [sys.executable, "tools/train_net.py", "--config-file", str(CONFIG)]

    print("1/4  the untrained Siamese network (the floor any training must beat)", flush=True)
    untrained = out / "untrained"
    run(train_net + ["--eval-only", "--untrained", "OUTPUT_DIR", str(untrained), "MODEL.BACKBONE.PRETRAIN", "False"]
        + opts, untrained / "stdout.txt",
        "untrained")
    rows = {"untrained": read_metrics(untrained, "untrained")}

    print("\n2/4  the ResNet-18 ID-loss baseline, whose backbone E starts from (the stand-in for ImageNet)", flush=True)
    baseline = out / "baseline"
    run([sys.executable, "tools/train_net.py", "--config-file", str(BASELINE_CONFIG), "OUTPUT_DIR", str(baseline)]
        + BASELINE_SCHEDULE, baseline / "stdout.txt", "baseline", ("total_loss", "lr"))
    rows["ID-loss baseline (own head)"] = read_metrics(baseline, "baseline")
    pretrained = ["MODEL.BACKBONE.PRETRAIN_PATH", str(baseline / "model_final.pth")]

    print("\n3/4  stages I, II and III in one command", flush=True)
    fdgan = out / "fdgan"
    run(train_net + ["OUTPUT_DIR", str(fdgan)] + pretrained + opts, fdgan / "stdout.txt", "FD-GAN",
        tuple(dict.fromkeys(key for keys in KEYS.values() for key in keys)))
    done = json.loads((fdgan / "stages.json").read_text())["done"]
    rows["stage I (Siamese baseline)"] = next(iter(done["stage1"].values()))
    rows["stage II (E frozen: = stage I)"] = next(iter(done["stage2"].values()))
    rows["stage III (FD-GAN)"] = next(iter(done["stage3"].values()))
    print_table(rows)
    gain = rows["stage III (FD-GAN)"]["mAP"] - rows["stage I (Siamese baseline)"]["mAP"]
    print(f"Stage III vs the Siamese baseline: {gain:+.1f} mAP on E's raw feature "
          f"(the paper's claim: the distilled feature is better)")

    print("\n4/4  pose transfer and generation scores of the stage III model", flush=True)
    generate = [sys.executable, "tools/generate.py", "--config-file", str(CONFIG),
                "--weights", str(fdgan / "stage3" / "model_final.pth"), "--output-dir", str(fdgan / "generate")]
    run(generate + ["--metrics"] + pretrained + opts, fdgan / "generate" / "metrics_stdout.txt", "scores")
    print((fdgan / "generate" / "metrics_stdout.txt").read_text().strip())
    print(f"Pose-transfer grid (rows: persons, columns: target poses): {fdgan / 'generate' / 'pose_transfer.png'}")
    total = time.time() - start
    print(f"\nOutputs in {out}; total time: {int(total // 60)} min {total % 60:.0f} s", flush=True)


if __name__ == "__main__":
    main()

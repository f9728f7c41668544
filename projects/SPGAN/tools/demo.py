#!/usr/bin/env python
"""`make demo-spgan`: "learning via translation" (SPGAN and eSPGAN, TPAMI Sec. 3-4, Table 1) on the synthetic data,
SyntheticDuke (source, labelled) -> SyntheticMarket (target, unlabelled), on a CPU, as a user runs it.

1. direct transfer: the IDE+ source model (``ide_synthetic_duke.yml``: ResNet-18, 512-d bottleneck) trains on
   SyntheticDuke and is tested on SyntheticMarket, without and with local max pooling (``TEST.LMP``);
2. SPGAN (``synthetic.yml``) trains on SyntheticDuke + the SyntheticMarket training images (no labels);
3. ``projects/SPGAN/tools/translate.py`` translates SyntheticDuke's training split into the target style, into the
   folder ``TranslatedMarket`` reads (``$SPGAN_TRANSLATED_DIR``, set here to ``<output-dir>/translated``);
4. IDE+ feature learning (``ide_synthetic.yml``): the source model fine-tuned on the translated images, backbone
   BatchNorm frozen (Sec. 4.2, strategy 3), tested on SyntheticMarket without and with LMP;
5. eSPGAN (``espgan_synthetic.yml``: pretrain the feature learner on the source, then the joint training), tested
   on SyntheticMarket without and with LMP; skipped, with a message, when that config is not there;
6. the table (rows direct transfer / SPGAN / eSPGAN; R1 and mAP on the target without and with LMP) and a
   translation grid (rows: source, translated, reconstructed, real target images for the style).

Outputs go to --output-dir; each command's full output is in a ``stdout.txt`` there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fastreid_gan.demo_runs import REPO, read_metrics, run

CONFIGS = REPO / "projects" / "SPGAN" / "configs"
SOURCE_CONFIG = CONFIGS / "ide_synthetic_duke.yml"
SPGAN_CONFIG = CONFIGS / "synthetic.yml"
IDE_CONFIG = CONFIGS / "ide_synthetic.yml"
ESPGAN_CONFIG = CONFIGS / "espgan_synthetic.yml"
TRANSLATE = REPO / "projects" / "SPGAN" / "tools" / "translate.py"
TRAIN_NET = REPO / "tools" / "train_net.py"
SOURCE, TARGET = "SyntheticDuke", "SyntheticMarket"
#: SPGAN's demo schedule: half of synthetic.yml's 600 iterations, the same 6 "epochs" (SiaNet from epoch 1, G's
#: contrastive term from epoch 2), to keep the whole demo within 15 minutes on 2 quiet cores (--full-spgan: 600)
SPGAN_SCHEDULE = ["SOLVER.GAN.MAX_ITER", "300", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "50",
                  "SOLVER.GAN.CHECKPOINT_PERIOD", "300", "SOLVER.GAN.VIS_PERIOD", "100"]
#: --quick: every step for a few iterations, to check the pipeline (figures meaningless): per step, overrides
QUICK = {"source": ["SOLVER.MAX_EPOCH", "1", "SOLVER.CHECKPOINT_PERIOD", "1"],
         "spgan": ["SOLVER.GAN.MAX_ITER", "12", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "4",
                   "SOLVER.GAN.CHECKPOINT_PERIOD", "12", "SOLVER.GAN.VIS_PERIOD", "12", "SOLVER.GAN.LOG_PERIOD", "4"],
         "ide": ["SOLVER.MAX_EPOCH", "1", "SOLVER.CHECKPOINT_PERIOD", "1"],
         "espgan": ["SOLVER.GAN.MAX_ITER", "8", "SOLVER.GAN.CHECKPOINT_PERIOD", "8", "SOLVER.GAN.VIS_PERIOD", "8",
                    "SOLVER.GAN.LOG_PERIOD", "4"]}
KEYS = {"baseline": ("total_loss", "lr"),
        "spgan": ("gen/loss_gan", "gen/loss_cycle", "gen/loss_identity", "gen/loss_contrastive",
                  "sianet/loss_sianet", "dis/loss_dis_t"),
        "espgan": ("ide/loss_feature_learner", "gen/loss_ide", "gen/loss_gan", "gen/loss_cycle", "dis/loss_dis_t")}


#: --reuse: a step whose outputs are complete in --output-dir is not run again (a rerun after a failure)
REUSE = False


def train_net(config: Path, output_dir: Path, extra: Sequence[str] = (), flags: Sequence[str] = ()) -> List[str]:
    """``tools/train_net.py`` (flags such as ``--eval-only`` go before the KEY VALUE pairs)."""
    return [sys.executable, str(TRAIN_NET), "--config-file", str(config), *flags, "OUTPUT_DIR", str(output_dir),
            *extra]


def run_step(cmd: List[str], log: Path, label: str, keys: Sequence[str] = (), done: Optional[Path] = None) -> None:
    """``run``, unless ``--reuse`` is given and ``done`` (the file the step writes last) exists."""
    if REUSE and done is not None and done.exists():
        print(f"\n  [{label}] reusing {done.parent} (--reuse)", flush=True)
        return
    run(cmd, log, label, keys)


def evaluate_with_lmp(run_dir: Path, weights: Path, label: str, parts: int) -> Dict:
    """``--eval-only`` of a finished run (its own ``config.yaml``) with ``TEST.LMP.ENABLED True``."""
    out = run_dir.parent / f"{run_dir.name}_lmp"
    run_step(train_net(run_dir / "config.yaml", out, ["MODEL.WEIGHTS", str(weights), "TEST.LMP.ENABLED", "True",
                                                      "TEST.LMP.PARTS", str(parts)], flags=["--eval-only"]),
             out / "stdout.txt", f"{label} + LMP", done=out / "metrics.json")
    return read_metrics(out, f"{label} + LMP (P={parts})")


def translation_grid(spgan_dir: Path, weights: Path, path: Path, samples: int = 8, source: str = SOURCE,
                     target: str = TARGET) -> Path:
    """Rows: source query images of different people, G(source), F(G(source)) (SPGAN's ``visualize``), and real
    target images (for the style), as one PNG."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import make_grid, save_image

    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid_gan.config import get_cfg, merge_config
    from fastreid_gan.data.build import datasets_root
    from fastreid_gan.model_loading import load_model_for_inference

    cfg = merge_config(get_cfg(), str(spgan_dir / "config.yaml"), ["MODEL.DEVICE", "cpu"])
    model = load_model_for_inference(cfg, str(weights), source="SPGAN weights")
    height, width = cfg.INPUT.SIZE_TRAIN

    def first_of_each_person(name: str) -> torch.Tensor:
        seen, images = set(), []
        for img_path, pid, _ in DATASET_REGISTRY.get(name)(root=datasets_root()).query:
            if pid not in seen:
                seen.add(pid)
                img = Image.open(img_path).convert("RGB").resize((width, height), Image.BICUBIC)
                images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
            if len(images) == samples:
                break
        return torch.stack(images).float()

    rows = model.visualize({"images": first_of_each_person(source)})
    rows["target"] = first_of_each_person(target) / 255.0
    grid = torch.cat([rows[k].clamp(0, 1) for k in ("source", "source_to_target", "source_cycle", "target")])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=samples, padding=2), str(path))
    return path


def espgan_step(espgan_dir: Path, source_weights: Path, parts: int,
                extra: Sequence[str] = ()) -> Dict[str, Optional[Dict]]:
    """``espgan_synthetic.yml``'s two stages in one command (``stages.json``: pretrain, joint), the joint model's
    evaluation from ``stages.json``, then with LMP."""
    # the source model's backbone starts the feature learner: the synthetic stand-in for ImageNet weights
    run_step(train_net(ESPGAN_CONFIG, espgan_dir, ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
                                                   str(source_weights), *extra]),
             espgan_dir / "stdout.txt", "eSPGAN", KEYS["espgan"], done=espgan_dir / "metrics.json")
    done = json.loads((espgan_dir / "stages.json").read_text())["done"]
    pretrain, joint = (next(iter(done[stage].values())) for stage in ("pretrain", "joint"))
    print(f"  eSPGAN pretrain (source only): Rank-1 {pretrain['Rank-1']:.1f}  mAP {pretrain['mAP']:.1f}\n"
          f"  eSPGAN joint: Rank-1 {joint['Rank-1']:.1f}  mAP {joint['mAP']:.1f}", flush=True)
    joint_dir = espgan_dir / "joint"
    return {"plain": joint, "lmp": evaluate_with_lmp(joint_dir, joint_dir / "model_final.pth", "eSPGAN", parts),
            "pretrain": pretrain}


def _cell(result: Optional[Dict], metric: str) -> str:
    return f"{result[metric]:6.1f}" if result else f"{'-':>6}"


def print_table(rows: Dict[str, Dict[str, Optional[Dict]]], parts: int) -> None:
    print(f"\n{SOURCE} -> {TARGET}: R1 / mAP on {TARGET} (query vs gallery, cosine), the model's own feature "
          f"and LMP (P={parts} stripes, max)")
    print(f"| {'method':<18} | {'R1':>6} | {'mAP':>6} | {'LMP R1':>6} | {'LMP mAP':>7} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for name, result in rows.items():
        plain, lmp = result.get("plain"), result.get("lmp")
        print(f"| {name:<18} | {_cell(plain, 'Rank-1')} | {_cell(plain, 'mAP')} | {_cell(lmp, 'Rank-1')} | "
              f"{_cell(lmp, 'mAP'):>7} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="logs/demo_spgan")
    parser.add_argument("--lmp-parts", type=int, default=4, help="LMP stripes (the synthetic maps are 4 rows high)")
    parser.add_argument("--full-spgan", action="store_true",
                        help="SPGAN's 600 iterations of synthetic.yml instead of the demo's 300")
    parser.add_argument("--skip-espgan", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations per step: checks the pipeline in minutes; the figures mean nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the steps already complete in --output-dir (a rerun after a failure)")
    args = parser.parse_args()
    quick = QUICK if args.quick else {}
    global REUSE
    REUSE = args.reuse
    out = Path(args.output_dir).resolve()
    translated = out / "translated"
    # the folder TranslatedMarket reads (translated_dataset.py): this run's own translation, for every child
    os.environ["SPGAN_TRANSLATED_DIR"] = str(translated)
    start = time.time()
    times: Dict[str, float] = {}
    rows: Dict[str, Dict[str, Optional[Dict]]] = {}

    def step(name: str, began: float) -> None:
        times[name] = time.time() - began

    print(f"1/6  direct transfer: the IDE+ source model, trained on {SOURCE}, tested on {TARGET}", flush=True)
    began = time.time()
    source_dir = out / "source_ide"
    source_weights = source_dir / "model_final.pth"
    run_step(train_net(SOURCE_CONFIG, source_dir, quick.get("source", [])), source_dir / "stdout.txt", "source IDE+",
             KEYS["baseline"], done=source_dir / "metrics.json")
    rows["direct transfer"] = {"plain": read_metrics(source_dir, "direct transfer"),
                               "lmp": evaluate_with_lmp(source_dir, source_weights, "direct transfer", args.lmp_parts)}
    step("1 source IDE+ + 2 evaluations", began)

    print(f"\n2/6  SPGAN: {SOURCE} -> {TARGET} translators, SiaNet and discriminators", flush=True)
    began = time.time()
    spgan_dir = out / "spgan"
    spgan_weights = spgan_dir / "model_final.pth"
    spgan_opts = ([] if args.full_spgan else SPGAN_SCHEDULE) + quick.get("spgan", [])
    run_step(train_net(SPGAN_CONFIG, spgan_dir, spgan_opts), spgan_dir / "stdout.txt", "SPGAN", KEYS["spgan"],
             done=spgan_weights)
    step("2 SPGAN training", began)

    print(f"\n3/6  translate {SOURCE}'s training images into the {TARGET} style", flush=True)
    began = time.time()
    run_step([sys.executable, str(TRANSLATE), "--config-file", str(spgan_dir / "config.yaml"), "--weights",
              str(spgan_weights), "--dataset", SOURCE, "--splits", "train", "--output", str(translated),
              "--overwrite"], out / "translate_stdout.txt", "translate", done=translated / "translation.json")
    grid = translation_grid(spgan_dir, spgan_weights, out / "translation_grid.png")
    step("3 translation + grid", began)

    print("\n4/6  IDE+ on the translated images, fine-tuned from the source model (backbone BN frozen)", flush=True)
    began = time.time()
    ide_dir = out / "spgan_ide"
    run_step(train_net(IDE_CONFIG, ide_dir, ["MODEL.WEIGHTS", str(source_weights), *quick.get("ide", [])]),
             ide_dir / "stdout.txt", "IDE+ on translated", KEYS["baseline"], done=ide_dir / "metrics.json")
    rows["SPGAN"] = {"plain": read_metrics(ide_dir, "SPGAN"),
                     "lmp": evaluate_with_lmp(ide_dir, ide_dir / "model_final.pth", "SPGAN", args.lmp_parts)}
    step("4 IDE+ fine-tuning + 2 evaluations", began)

    print("\n5/6  eSPGAN: the feature learner pre-trained on the source, then trained jointly with the translators",
          flush=True)
    rows["eSPGAN"] = {}
    if args.skip_espgan:
        print("  skipped (--skip-espgan)")
    elif not ESPGAN_CONFIG.exists():
        shown = ESPGAN_CONFIG.relative_to(REPO) if ESPGAN_CONFIG.is_relative_to(REPO) else ESPGAN_CONFIG
        print(f"  skipped: {shown} does not exist (eSPGAN's CPU-sized recipe; docs/spgan.md)")
    else:
        began = time.time()
        try:  # a failed eSPGAN run leaves the rest of the demo's results standing
            rows["eSPGAN"] = espgan_step(out / "espgan", source_weights, args.lmp_parts, quick.get("espgan", []))
        except SystemExit as failure:
            print(f"  eSPGAN failed; the table shows the other methods.\n{failure}", flush=True)
        step("5 eSPGAN (2 stages) + LMP evaluation", began)

    print("\n6/6  results" + ("  (--quick: a few iterations per step, the figures mean nothing)" if args.quick
                               else ""), flush=True)
    print_table(rows, args.lmp_parts)
    gain = rows["SPGAN"]["plain"]["mAP"] - rows["direct transfer"]["plain"]["mAP"]
    print(f"SPGAN vs direct transfer: {gain:+.1f} mAP (TPAMI Table 1, Duke -> Market: +3.9 mAP with IDE+)")
    print(f"Translation grid (rows: {SOURCE} query images, translated to {TARGET}'s style, reconstructed, real "
          f"{TARGET} images): {grid}")
    total = time.time() - start
    print("\nTime per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    summary = {"rows": rows, "times_s": times, "total_s": total, "lmp_parts": args.lmp_parts, "quick": args.quick,
               "spgan_schedule": "synthetic.yml" if args.full_spgan else SPGAN_SCHEDULE}
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
    print(f"Outputs in {out}; total time: {int(total // 60)} min {total % 60:.0f} s", flush=True)


if __name__ == "__main__":
    main()

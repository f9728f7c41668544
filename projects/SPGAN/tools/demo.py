#!/usr/bin/env python
"""`make demo-spgan`: "learning via translation" (SPGAN and eSPGAN, TPAMI Sec. 3-4, Table 1) on the synthetic data,
SyntheticDuke (source, labelled) -> SyntheticMarket (target, unlabelled), on a CPU, as a user runs it.

1. direct transfer: the IDE+ source model (``ide_synthetic_duke.yml``: ResNet-18, 512-d bottleneck) trains on the
   source and is tested on the target, without and with local max pooling (``TEST.LMP``);
2. SPGAN (``synthetic.yml``) trains on the source + the target's training images (no labels);
3. ``projects/SPGAN/tools/translate.py`` translates the source's training split into the target style, into the
   folder ``TranslatedMarket`` reads (``$SPGAN_TRANSLATED_DIR``, set here to ``<output-dir>/<variant>_translated``);
   with ``--measure-translation``, ``translation_quality.py`` then measures the translation's style (colour
   statistics against the target) and identity preservation (seen through the source model);
4. IDE+ feature learning (``ide_synthetic.yml``): the source model fine-tuned on the translated images, backbone
   BatchNorm frozen (Sec. 4.2, strategy 3), tested on the target without and with LMP;
5. eSPGAN (``espgan_synthetic.yml``: pretrain the feature learner on the source, then the joint training), tested
   on the target without and with LMP; skipped, with a message, when that config is not there;
6. the table (rows direct transfer / each translator + IDE+ / eSPGAN; R1 and mAP on the target without and with
   LMP) and a translation grid (rows: source, translated, reconstructed, real target images for the style).

Steps 2-4 run once per ``--variants`` entry: ``spgan`` (the demo), ``cyclegan`` (Table 1's "CycleGAN": adversarial
and cycle losses only) and ``cyclegan_identity`` ("CycleGAN + L_ide"), the same config with loss weights set to 0.
``--direction market2duke`` swaps source and target (Table 1's other direction).

Outputs go to --output-dir; each command's full output is in a ``stdout.txt`` there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fastreid_gan.demo_runs import REPO, read_metrics, run

CONFIGS = REPO / "projects" / "SPGAN" / "configs"
SOURCE_CONFIG = CONFIGS / "ide_synthetic_duke.yml"
SPGAN_CONFIG = CONFIGS / "synthetic.yml"
IDE_CONFIG = CONFIGS / "ide_synthetic.yml"
ESPGAN_CONFIG = CONFIGS / "espgan_synthetic.yml"
TRANSLATE = REPO / "projects" / "SPGAN" / "tools" / "translate.py"
TRAIN_NET = REPO / "tools" / "train_net.py"
QUALITY = REPO / "projects" / "SPGAN" / "tools" / "translation_quality.py"


@dataclass(frozen=True)
class Direction:
    """The source (labelled) and target (unlabelled training images; tested on) datasets."""
    source: str
    target: str

    def source_model(self) -> List[str]:
        """Overrides of the IDE+ source model's config (``ide_synthetic_duke.yml``)."""
        return ["DATASETS.NAMES", f'("{self.source}",)', "DATASETS.TESTS", f'("{self.target}",)']

    def translator(self) -> List[str]:
        """Overrides of the SPGAN and eSPGAN configs (their source and target domains)."""
        return ["DATASETS.NAMES", f'("{self.source}",)', "MODEL.SPGAN.TARGET_DATASET", self.target]

    def target_test(self) -> List[str]:
        return ["DATASETS.TESTS", f'("{self.target}",)']


DIRECTIONS = {"duke2market": Direction("SyntheticDuke", "SyntheticMarket"),
              "market2duke": Direction("SyntheticMarket", "SyntheticDuke")}
SOURCE, TARGET = DIRECTIONS["duke2market"].source, DIRECTIONS["duke2market"].target
#: SiaNet's phase starts after the last iteration: it never trains (the CycleGAN rows of Table 1 have no SiaNet)
_NO_SIANET = ["MODEL.SPGAN.SCHEDULE.METRIC_START_EPOCH", "1000000"]


@dataclass(frozen=True)
class Variant:
    """A translator of TPAMI Table 1: ``synthetic.yml`` with some of SPGAN's loss terms switched off."""
    label: str
    folder: str
    overrides: Tuple[str, ...] = ()


VARIANTS = {
    "cyclegan": Variant("CycleGAN", "cyclegan", ("MODEL.SPGAN.LOSS_WEIGHTS.IDENTITY", "[0.0]",
                                                 "MODEL.SPGAN.LOSS_WEIGHTS.CONTRASTIVE", "[0.0]", *_NO_SIANET)),
    "cyclegan_identity": Variant("CycleGAN + L_ide", "cyclegan_identity",
                                 ("MODEL.SPGAN.LOSS_WEIGHTS.CONTRASTIVE", "[0.0]", *_NO_SIANET)),
    "spgan": Variant("SPGAN", "spgan")}
#: SPGAN's demo schedule: half of synthetic.yml's 600 iterations, the same 6 "epochs" (SiaNet from epoch 1, G's
#: contrastive term from epoch 2)
SPGAN_SCHEDULE = ["SOLVER.GAN.MAX_ITER", "300", "MODEL.SPGAN.SCHEDULE.EPOCH_ITERS", "50",
                  "SOLVER.GAN.CHECKPOINT_PERIOD", "300", "SOLVER.GAN.VIS_PERIOD", "100"]
#: IDE+ fine-tuning on the translations in the demo: 5 of ide_synthetic.yml's 8 epochs, x0.1 after 4 (ide_synthetic.yml:
#: after 6), and eSPGAN's two stages shortened (stages/espgan_demo_*.yml: 100 + 200 iterations of espgan_synthetic's
#: 200 + 300), to keep the whole demo within 15 minutes on 2 quiet cores (--full-length: the configs' own lengths)
IDE_SCHEDULE = ["SOLVER.MAX_EPOCH", "5", "SOLVER.STEPS", "[4]", "SOLVER.CHECKPOINT_PERIOD", "5"]
ESPGAN_SCHEDULE = ["MODEL.SPGAN.ESPGAN.STAGE_CONFIGS",
                   '["stages/espgan_demo_pretrain.yml", "stages/espgan_demo_joint.yml"]']
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


def espgan_step(espgan_dir: Path, source_weights: Path, parts: int, direction: Direction,
                extra: Sequence[str] = ()) -> Dict[str, Optional[Dict]]:
    """``espgan_synthetic.yml``'s two stages in one command (``stages.json``: pretrain, joint), the joint model's
    evaluation from ``stages.json``, then with LMP."""
    # the source model's backbone starts the feature learner: the synthetic stand-in for ImageNet weights
    run_step(train_net(ESPGAN_CONFIG, espgan_dir, [*direction.translator(), *direction.target_test(),
                                                   "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
                                                   str(source_weights), *extra]),
             espgan_dir / "stdout.txt", "eSPGAN", KEYS["espgan"], done=espgan_dir / "metrics.json")
    done = json.loads((espgan_dir / "stages.json").read_text())["done"]
    pretrain, joint = (next(iter(done[stage].values())) for stage in ("pretrain", "joint"))
    print(f"  eSPGAN pretrain (source only): Rank-1 {pretrain['Rank-1']:.1f}  mAP {pretrain['mAP']:.1f}\n"
          f"  eSPGAN joint: Rank-1 {joint['Rank-1']:.1f}  mAP {joint['mAP']:.1f}", flush=True)
    joint_dir = espgan_dir / "joint"
    return {"plain": joint, "lmp": evaluate_with_lmp(joint_dir, joint_dir / "model_final.pth", "eSPGAN", parts),
            "pretrain": pretrain}


def measure_translation(translated: Path, source_dir: Path, direction: Direction, label: str) -> Dict:
    """``translation_quality.py`` on a translation: style (Lab colour statistics' Fréchet distance to the target's
    training images, against the untranslated source) and identity (the source model's cross-camera re-id of the
    translated images against the untranslated ones)."""
    out = translated.parent / f"{translated.name}_quality.json"
    run_step([sys.executable, str(QUALITY), "--source", direction.source, "--translated", str(translated),
              "--target", direction.target, "--reid-config", str(source_dir / "config.yaml"),
              "--reid-weights", str(source_dir / "model_final.pth"), "--json", str(out)],
             translated.parent / f"{translated.name}_quality.txt", f"{label} translation quality", done=out)
    result = json.loads(out.read_text())
    style, identity = result["style"], result["identity"]
    print(f"  {label}: style distance to {direction.target} {style['translated_to_target']:.2f} (untranslated "
          f"{style['source_to_target']:.2f}); identity R1 {identity['translated']['Rank-1']:.1f} (untranslated "
          f"{identity['reference']['Rank-1']:.1f})", flush=True)
    return result


def _cell(result: Optional[Dict], metric: str) -> str:
    return f"{result[metric]:6.1f}" if result else f"{'-':>6}"


def print_table(rows: Dict[str, Dict[str, Optional[Dict]]], parts: int, direction: Direction) -> None:
    print(f"\n{direction.source} -> {direction.target}: R1 / mAP on {direction.target} (query vs gallery, cosine), "
          f"the model's own feature and LMP (P={parts} stripes, max)")
    print(f"| {'method':<18} | {'R1':>6} | {'mAP':>6} | {'LMP R1':>6} | {'LMP mAP':>7} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for name, result in rows.items():
        plain, lmp = result.get("plain"), result.get("lmp")
        print(f"| {name:<18} | {_cell(plain, 'Rank-1')} | {_cell(plain, 'mAP')} | {_cell(lmp, 'Rank-1')} | "
              f"{_cell(lmp, 'mAP'):>7} |")
    measured = {name: result["translation"] for name, result in rows.items() if result.get("translation")}
    if measured:
        first = next(iter(measured.values()))
        print(f"\nTranslations of {direction.source}'s training images: style = Fréchet distance of Lab colour "
              f"statistics to {direction.target}'s training images (untranslated: "
              f"{first['style']['source_to_target']:.2f}); identity = the source model's R1 / mAP of the "
              f"translated images against the untranslated ones (untranslated queries: "
              f"{first['identity']['reference']['Rank-1']:.1f} / {first['identity']['reference']['mAP']:.1f})")
        print(f"| {'translator':<18} | {'style':>6} | {'id R1':>6} | {'id mAP':>6} |")
        print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 8}|")
        for name, quality in measured.items():
            identity = quality["identity"]["translated"]
            print(f"| {name:<18} | {quality['style']['translated_to_target']:6.2f} | {identity['Rank-1']:6.1f} | "
                  f"{identity['mAP']:6.1f} |")


def translator_step(variant: Variant, out: Path, source_dir: Path, direction: Direction, args: argparse.Namespace,
                    quick: Dict[str, List[str]], times: Dict[str, float]) -> Dict[str, Optional[Dict]]:
    """Steps 2-4 for one translator: train it, translate the source with it (+ grid, + quality), fine-tune the
    source model on the translation, evaluate without and with LMP."""
    label = variant.label
    print(f"\n2/6  {label}: {direction.source} -> {direction.target} translators and discriminators", flush=True)
    began = time.time()
    spgan_dir = out / variant.folder
    spgan_weights = spgan_dir / "model_final.pth"
    spgan_opts = [*direction.translator(), *variant.overrides, *([] if args.full_length else SPGAN_SCHEDULE),
                  *quick.get("spgan", [])]
    run_step(train_net(SPGAN_CONFIG, spgan_dir, spgan_opts), spgan_dir / "stdout.txt", label, KEYS["spgan"],
             done=spgan_weights)
    times[f"2 {label} training"] = time.time() - began

    print(f"\n3/6  translate {direction.source}'s training images into the {direction.target} style ({label})",
          flush=True)
    began = time.time()
    translated = out / f"{variant.folder}_translated"
    # the folder TranslatedMarket reads (translated_dataset.py): this translator's own output, for every child
    os.environ["SPGAN_TRANSLATED_DIR"] = str(translated)
    run_step([sys.executable, str(TRANSLATE), "--config-file", str(spgan_dir / "config.yaml"), "--weights",
              str(spgan_weights), "--dataset", direction.source, "--splits", "train", "--output", str(translated),
              "--overwrite"], out / f"{variant.folder}_translate_stdout.txt", f"translate ({label})",
             done=translated / "translation.json")
    grid = translation_grid(spgan_dir, spgan_weights, out / f"{variant.folder}_translation_grid.png",
                            source=direction.source, target=direction.target)
    print(f"  translation grid (rows: {direction.source} query images, translated to {direction.target}'s style, "
          f"reconstructed, real {direction.target} images): {grid}", flush=True)
    quality = measure_translation(translated, source_dir, direction, label) if args.measure_translation else None
    times[f"3 {label} translation + grid" + (" + quality" if quality else "")] = time.time() - began

    print(f"\n4/6  IDE+ on the {label} translations, fine-tuned from the source model (backbone BN frozen)",
          flush=True)
    began = time.time()
    ide_dir = out / f"{variant.folder}_ide"
    run_step(train_net(IDE_CONFIG, ide_dir, ["MODEL.WEIGHTS", str(source_dir / "model_final.pth"),
                                             *direction.target_test(), *([] if args.full_length else IDE_SCHEDULE),
                                             *quick.get("ide", [])]),
             ide_dir / "stdout.txt", f"IDE+ on {label} translations", KEYS["baseline"],
             done=ide_dir / "metrics.json")
    row = {"plain": read_metrics(ide_dir, label),
           "lmp": evaluate_with_lmp(ide_dir, ide_dir / "model_final.pth", label, args.lmp_parts),
           "translation": quality}
    times[f"4 IDE+ on {label} translations + 2 evaluations"] = time.time() - began
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="logs/demo_spgan")
    parser.add_argument("--direction", choices=list(DIRECTIONS), default="duke2market",
                        help="source -> target (default duke2market: SyntheticDuke -> SyntheticMarket)")
    parser.add_argument("--variants", default="spgan",
                        help=f"comma-separated translators of Table 1 to train and compare, in order: "
                             f"{', '.join(VARIANTS)} (default: spgan)")
    parser.add_argument("--measure-translation", action="store_true",
                        help="measure each translation's style and identity preservation (translation_quality.py)")
    parser.add_argument("--lmp-parts", type=int, default=4, help="LMP stripes (the synthetic maps are 4 rows high)")
    parser.add_argument("--full-length", action="store_true",
                        help="the configs' own lengths: the translators' 600 iterations of synthetic.yml (the demo: "
                             "300), IDE+'s 8 epochs (5), eSPGAN's 200 + 300 iterations (100 + 200)")
    parser.add_argument("--skip-espgan", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations per step: checks the pipeline in minutes; the figures mean nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the steps already complete in --output-dir (a rerun after a failure)")
    args = parser.parse_args()
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        parser.error(f"--variants {args.variants!r}: choose from {', '.join(VARIANTS)} (comma-separated)")
    direction = DIRECTIONS[args.direction]
    quick = QUICK if args.quick else {}
    global REUSE
    REUSE = args.reuse
    out = Path(args.output_dir).resolve()
    start = time.time()
    times: Dict[str, float] = {}
    rows: Dict[str, Dict[str, Optional[Dict]]] = {}

    print(f"1/6  direct transfer: the IDE+ source model, trained on {direction.source}, tested on "
          f"{direction.target}", flush=True)
    began = time.time()
    source_dir = out / "source_ide"
    source_weights = source_dir / "model_final.pth"
    run_step(train_net(SOURCE_CONFIG, source_dir, [*direction.source_model(), *quick.get("source", [])]),
             source_dir / "stdout.txt", "source IDE+", KEYS["baseline"], done=source_dir / "metrics.json")
    rows["direct transfer"] = {"plain": read_metrics(source_dir, "direct transfer"),
                               "lmp": evaluate_with_lmp(source_dir, source_weights, "direct transfer", args.lmp_parts)}
    times["1 source IDE+ + 2 evaluations"] = time.time() - began

    for name in names:
        rows[VARIANTS[name].label] = translator_step(VARIANTS[name], out, source_dir, direction, args, quick, times)

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
            rows["eSPGAN"] = espgan_step(out / "espgan", source_weights, args.lmp_parts, direction,
                                         [*([] if args.full_length else ESPGAN_SCHEDULE), *quick.get("espgan", [])])
        except SystemExit as failure:
            print(f"  eSPGAN failed; the table shows the other methods.\n{failure}", flush=True)
        times["5 eSPGAN (2 stages) + LMP evaluation"] = time.time() - began

    print("\n6/6  results" + ("  (--quick: a few iterations per step, the figures mean nothing)" if args.quick
                               else ""), flush=True)
    print_table(rows, args.lmp_parts, direction)
    for name in names:
        label = VARIANTS[name].label
        gain = rows[label]["plain"]["mAP"] - rows["direct transfer"]["plain"]["mAP"]
        print(f"{label} + IDE+ vs direct transfer: {gain:+.1f} mAP")
    print("(TPAMI Table 1, IDE+, mAP over direct transfer: Duke -> Market CycleGAN +1.1, CycleGAN + L_ide +2.3, "
          "SPGAN +3.9; Market -> Duke +0.4, +1.1, +2.6)")
    total = time.time() - start
    print("\nTime per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    summary = {"direction": args.direction, "source": direction.source, "target": direction.target,
               "variants": names, "rows": rows, "times_s": times, "total_s": total, "lmp_parts": args.lmp_parts,
               "quick": args.quick, "schedules": "the configs' own" if args.full_length else
               {"translators": SPGAN_SCHEDULE, "ide": IDE_SCHEDULE, "espgan": ESPGAN_SCHEDULE}}
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
    print(f"Outputs in {out}; total time: {int(total // 60)} min {total % 60:.0f} s", flush=True)


if __name__ == "__main__":
    main()

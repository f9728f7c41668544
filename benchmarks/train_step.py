#!/usr/bin/env python
"""Time, peak memory and FLOPs of one full-size DG-Net training iteration (projects/DGNet/configs/market.yml).

    python benchmarks/train_step.py                       # CPU, batch 2 (+2 positives), 5 timed iterations
    python benchmarks/train_step.py --batch 8 --amp bf16  # on a GPU: batch 8 with mixed precision
    python benchmarks/train_step.py --checkpoint none     # store every activation (market.yml recomputes them)
    python benchmarks/train_step.py --json figures.json   # also write the figures as JSON (benchmarks/gpu_check.py)

Every warm-up loss is switched on (the most expensive iteration of the published schedule), weights are random,
the data is the tiny synthetic dataset resized to 256x128 by the config. In the same run it times a plain
ResNet-50 forward+backward on the same number of images (the published code's E_a alone) and prints the ratio,
so figures from different machines compare. Reference (shared/reference, 2-core CPU, batch 2): the published
DG-Net code takes 16.5 s per iteration and 5.1 GB; on a GPU at batch 8 it needs 15 GB (fp32) / 10 GB (fp16).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import torch

import fastreid_gan  # noqa: F401  (compat fixes first)
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP_ON = {"RECON_F": [1.0], "RECON_S": [1.0], "RECON_X_CYC": [2.0], "PRIM": [2.0], "FINE": [0.4],
              "ID_FINE": [0.4]}


#: --checkpoint names -> the config node whose CHECKPOINT key they set
CHECKPOINT_NODES = {"structure": "STRUCTURE", "decoder": "DECODER", "appearance": "APPEARANCE",
                    "discriminator": "DISCRIMINATOR"}


def build_trainer(batch: int, device: str, amp: str, workdir: str,
                  checkpoint: Optional[Sequence[str]] = None) -> GANTrainer:
    """``checkpoint``: the sub-networks that recompute their activations in backward (None: as market.yml says)."""
    teacher_config = os.path.join(REPO, "configs/Market1501/baseline_R50.yml")
    tcfg = merge_config(get_cfg(), teacher_config, ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", "cpu",
                                                     "MODEL.HEADS.NUM_CLASSES", "12"])
    teacher = os.path.join(workdir, "teacher.pth")
    torch.save({"model": build_model(tcfg).state_dict()}, teacher)
    cfg = merge_config(get_cfg(), os.path.join(REPO, "projects/DGNet/configs/market.yml"), [
        "MODEL.DEVICE", device, "MODEL.BACKBONE.PRETRAIN", "False",
        "MODEL.DGNET.TEACHER.CONFIG", teacher_config, "MODEL.DGNET.TEACHER.WEIGHTS", teacher,
        "DATASETS.NAMES", "('SyntheticMarketTiny',)", "DATASETS.TESTS", "('SyntheticMarketTiny',)",
        "DATALOADER.NUM_WORKERS", "2", "SOLVER.IMS_PER_BATCH", str(2 * batch), "SOLVER.GAN.MAX_ITER", "1000",
        "SOLVER.AMP.ENABLED", str(amp != "off"), "SOLVER.AMP.DTYPE", amp if amp != "off" else "fp16",
        "SEED", "0", "OUTPUT_DIR", os.path.join(workdir, "out"),
    ] + [arg for name, node in CHECKPOINT_NODES.items() if checkpoint is not None
         for arg in (f"MODEL.DGNET.{node}.CHECKPOINT", str(name in checkpoint))])
    for key, spec in WARM_UP_ON.items():
        cfg.MODEL.DGNET.LOSS_WEIGHTS[key] = spec
    return GANTrainer(cfg)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_dgnet(trainer: GANTrainer, device: str, warmup: int, iters: int, count_flops: bool = True):
    """(median seconds per iteration, FLOPs of one iteration or None, peak memory figures, all timed seconds)."""
    trainer.model.train()
    trainer._data_iter = iter(trainer.data_loader)
    times = []
    with EventStorage(0) as trainer.storage:
        for i in range(warmup + iters):
            trainer.iter = i
            sync(device)
            start = time.perf_counter()
            trainer.run_step()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        peak = peak_memory_stats(device)  # before the FLOP-counted step, which may hold more
        flops = None
        if count_flops:
            try:
                from torch.utils.flop_counter import FlopCounterMode

                trainer.iter = warmup + iters
                with FlopCounterMode(display=False) as counter:
                    trainer.run_step()
                flops = counter.get_total_flops()
            except Exception as exc:  # the counter does not support every op on every version
                print(f"(FLOP count unavailable: {exc})")
    return statistics.median(times), flops, peak, times


def peak_memory_stats(device: str) -> Dict[str, Any]:
    """Peak memory so far: the CUDA caching allocator's high-water marks, or the process's peak RSS on CPU."""
    if device.startswith("cuda"):
        return {"kind": "cuda", "max_allocated_bytes": torch.cuda.max_memory_allocated(),
                "max_reserved_bytes": torch.cuda.max_memory_reserved()}
    return {"kind": "rss", "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def peak_memory(device: str, stats: Optional[Dict[str, Any]] = None) -> str:
    stats = stats or peak_memory_stats(device)
    if stats["kind"] == "cuda":
        return (f"{stats['max_allocated_bytes'] / 2**30:.2f} GiB GPU (max allocated; "
                f"{stats['max_reserved_bytes'] / 2**30:.2f} GiB reserved)")
    return f"{stats['max_rss_bytes'] / 2**30:.2f} GiB RSS (process high-water mark)"


def time_resnet50(images: int, device: str, warmup: int, iters: int, amp: str = "off") -> float:
    """Median seconds of a ResNet-50 forward+backward+SGD step; under autocast when ``amp`` is on (CUDA), so that
    the ratio compares like with like."""
    import torchvision

    model = torchvision.models.resnet50(num_classes=751).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(images, 3, 256, 128, device=device)
    y = torch.randint(0, 751, (images,), device=device)
    use_amp = amp != "off" and device.startswith("cuda")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    times = []
    for i in range(warmup + iters):
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=dtype, enabled=use_amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()  # no loss scaling: it changes the figures, not the time
        optimizer.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_checkpoint(text: str) -> List[str]:
    text = text.strip()
    if text in ("all", "none"):
        return list(CHECKPOINT_NODES) if text == "all" else []
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in CHECKPOINT_NODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {unknown}; choose from {', '.join(CHECKPOINT_NODES)}, all or none")
    return names


def checkpointed_parts(cfg) -> List[str]:
    return [name for name, node in CHECKPOINT_NODES.items() if cfg.MODEL.DGNET[node].CHECKPOINT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=None, help="x_a (and x_b) batch: 2 on CPU, 8 on GPU by default")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("off", "fp16", "bf16"), default="off")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--checkpoint", type=parse_checkpoint, default=None, metavar="PARTS",
                        help="sub-networks that recompute their activations in backward "
                             "(MODEL.DGNET.<NODE>.CHECKPOINT): a comma list of "
                             f"{', '.join(CHECKPOINT_NODES)}, 'all' or 'none'; default: as market.yml")
    parser.add_argument("--skip-flops", action="store_true", help="do not run the extra FLOP-counted iteration")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    batch = args.batch or (8 if args.device.startswith("cuda") else 2)
    images = 4 * batch  # x_a, x_b and one positive each, as published

    with tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("FASTREID_DATASETS", os.path.join(workdir, "datasets"))
        trainer = build_trainer(batch, args.device, args.amp, workdir, args.checkpoint)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        parts = checkpointed_parts(trainer.cfg)
        seconds, flops, peak, times = time_dgnet(trainer, args.device, args.warmup, args.iters,
                                                 count_flops=not args.skip_flops)
        del trainer
        baseline = time_resnet50(images, args.device, args.warmup, args.iters, args.amp)

    print(f"DG-Net market.yml, {args.device}, batch {batch} x 2 + positives ({images} images), AMP {args.amp}, "
          f"{torch.get_num_threads()} threads, recomputed in backward: {', '.join(parts) or 'nothing'}")
    print(f"  time per iteration (median of {args.iters}): {seconds:.2f} s")
    print(f"  peak memory: {peak_memory(args.device, peak)}")
    if flops:
        print(f"  FLOPs per iteration: {flops / 1e12:.2f} TFLOP ({flops / 1e9 / seconds:.0f} GFLOP/s achieved)")
    print(f"  ResNet-50 forward+backward on {images} images{' (same AMP)' if args.amp != 'off' else ''}: "
          f"{baseline:.2f} s -> DG-Net iteration = "
          f"{seconds / baseline:.1f}x a ResNet-50 step")
    if args.json:
        write_json(args.json, {
            "device": args.device, "batch": batch, "images": images, "amp": args.amp, "recomputed": parts,
            "threads": torch.get_num_threads(), "warmup": args.warmup, "iters": args.iters,
            "seconds_per_iter": seconds, "seconds_all": times, "peak_memory": peak, "flops_per_iter": flops,
            "resnet50_seconds": baseline, "ratio_to_resnet50": seconds / baseline,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "tf32": tf32_settings(),
        })


def tf32_settings() -> Dict[str, Any]:
    """TF32 changes what "fp32" means on Ampere and later GPUs: record what was in force."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates the allow_tf32 flags in favour of fp32_precision
        return {"cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "float32_matmul_precision": torch.get_float32_matmul_precision()}


def write_json(path: str, figures: Dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()

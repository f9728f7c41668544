#!/usr/bin/env python
"""Time, peak memory and FLOPs of one full-size training iteration: DG-Net (default) or FD-GAN stages II and III.

DG-Net (projects/DGNet/configs/market.yml):

    python benchmarks/train_step.py                       # CPU, batch 2 (+2 positives), 5 timed iterations
    python benchmarks/train_step.py --batch 8 --amp bf16  # on a GPU: batch 8 with mixed precision
    python benchmarks/train_step.py --checkpoint none     # store every activation (market.yml recomputes them)
    python benchmarks/train_step.py --json figures.json   # also write the figures as JSON (benchmarks/gpu_check.py)

Every warm-up loss is switched on (the most expensive iteration of the published schedule), weights are random,
the data is the tiny synthetic dataset resized to 256x128 by the config. In the same run it times a plain
ResNet-50 forward+backward on the same number of images (the published code's E_a alone) and prints the ratio,
so figures from different machines compare. Reference (shared/reference, 2-core CPU, batch 2): the published
DG-Net code takes 16.5 s per iteration and 5.1 GB; on a GPU at batch 8 it needs 15 GB (fp32) / 10 GB (fp16).

FD-GAN (projects/FDGAN/configs/market.yml, the stage configs stages/published_stage{2,3}.yml):

    python benchmarks/train_step.py --method fdgan                    # CPU: stages II and III, 2 pairs
    python benchmarks/train_step.py --method fdgan --stage 3 --checkpoint on   # recompute E's/D_id's/G's blocks
    python benchmarks/train_step.py --method fdgan --amp bf16         # on a GPU: 32 pairs with mixed precision

ResNet-50 E and D_id, 256x128, G ngf 64, random weights (MODEL.BACKBONE.PRETRAIN False), the tiny synthetic
dataset at 256x128, no evaluation. For each stage it measures, each in a fresh interpreter (peak RSS is a
per-process high-water mark): "ours", the real GANTrainer step (``trainer.run_step()``: FDGAN.forward_train and
its phases dis_id, dis_pose, gen), and "published", the published iteration written with the same sub-networks
(benchmarks/fdgan_published_loop.py). Both take the same pair batches, fetched before the timing (a cycle of a
few, so the data loader's workers do not compete for the CPU; the time is the training step's alone), and print
seconds per iteration (median of the timed iterations), peak memory (peak RSS on CPU, max_memory_allocated on
CUDA), FLOPs (FlopCounterMode over the first iteration, a warm-up one unless --warmup 0) and the ratios
published / ours. Reference (the issue, 2-core CPU, quiet, 2 pairs): the published loop takes 7.8 s and 4.0 GB in
stage III, 8.3 s and 3.4 GB in stage II.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import torch

import fastreid_gan  # noqa: F401  (compat fixes first)
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.engine import GANTrainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, however this is started
from step_timing import (count_flops, peak_bytes, peak_memory, peak_memory_stats, reset_peak_memory,  # noqa: E402
                         rss_now_bytes, run_child, sync, tf32_settings, time_steps, write_json)

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


def main_dgnet(args: argparse.Namespace) -> None:
    try:
        args.checkpoint = None if args.checkpoint is None else parse_checkpoint(args.checkpoint)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"train_step.py: --checkpoint: {exc}")
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


# ------------------------------------------------------------------------------------------------ FD-GAN
FDGAN_CONFIG = os.path.join(REPO, "projects/FDGAN/configs/market.yml")
FDGAN_LOOPS = ("ours", "published")
STAGE_NAMES = {2: "II", 3: "III"}
#: distinct pair batches fetched before the timing and cycled through (2 pairs: one with a positive pair, one
#: without, in turn, as the loader gives them)
CACHED_BATCHES = 4


def fdgan_stage_cfg(stage: int, pairs: int, device: str, amp: str, checkpoint: bool, output_dir: str,
                    channels_last: bool = False):
    """Stage ``stage``'s config of market.yml (the recipe's stage file merged in), at full size on the tiny
    synthetic dataset, no evaluation, no data-loader workers (the batches are fetched before the timing)."""
    from fastreid_gan.training_stages import stage_config, training_stages_of

    opts = ["MODEL.DEVICE", device, "MODEL.BACKBONE.PRETRAIN", "False",
            "DATASETS.NAMES", "('SyntheticMarketTiny',)", "DATASETS.TESTS", "()",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", str(pairs),
            "SOLVER.AMP.ENABLED", str(amp != "off"), "SOLVER.AMP.DTYPE", amp if amp != "off" else "fp16",
            "MODEL.FDGAN.CHECKPOINT", str(checkpoint), "MODEL.FDGAN.CHANNELS_LAST", str(channels_last),
            "SOLVER.GAN.LOG_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0",
            "SEED", "0"]
    top = merge_config(get_cfg(), FDGAN_CONFIG, opts)
    stages = training_stages_of(top)
    return stage_config(FDGAN_CONFIG, opts, stages[stage - 1], output_dir, None)


def _cached_batches(loader, count: int) -> List[Dict[str, Any]]:
    it = iter(loader)
    batches = [next(it) for _ in range(count)]
    del it
    return batches


def _calibrate_batchnorm(model: Any, batches: List[Dict[str, Any]]) -> None:
    """Running BatchNorm statistics of E's and D_id's encoders from the cached batches, for both loops alike.

    Stages II and III use those statistics frozen (eval-mode BN); at random initialisation they are 0 and 1, and
    50 un-normalised layers of a random ResNet-50 overflow to inf within a few iterations. The stage I weights a
    real run starts from have them; this stands in for those."""
    device = next(model.parameters()).device
    for encoder in (model.reid.encoder, model.dis_id.encoder):
        norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calls
        encoder.train()
        with torch.no_grad():  # batch by batch: the CPU's peak RSS cannot be reset before the timing
            for batch in batches:
                images = torch.cat((batch["images"], batch["target_images"])).flatten(0, 1)
                encoder(model.normalize(images.to(device).float()))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def fdgan_child(args: argparse.Namespace) -> Dict[str, Any]:
    """One loop (``args.loop``) of one stage in this (fresh) process: its figures."""
    stage, device, loop = args.stage[0], args.device, args.loop[0]
    rss_start = rss_now_bytes()  # the libraries (torch's, fastreid's) before any model: in every CPU figure
    amp_dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    checkpoint = args.checkpoint == "on" and loop == "ours"  # the published code recomputes nothing
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)
    torch.manual_seed(0)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # market.yml: CUDNN_BENCHMARK True, for both loops
    with tempfile.TemporaryDirectory() as workdir, EventStorage(0) as storage:
        cfg = fdgan_stage_cfg(stage, args.pairs, device, args.amp, checkpoint, workdir,
                              channels_last=args.channels_last and loop == "ours")
        count = min(CACHED_BATCHES, args.warmup + args.iters + 1)
        if loop == "ours":
            trainer = GANTrainer(cfg)
            model = trainer.model
            batches = _cached_batches(trainer.data_loader, count)
            trainer._data_iter = itertools.cycle(batches)  # run_step() takes its batches from here
            trainer.storage = storage  # what the trainer's loop would set (run_step() logs into it)

            optimizers = list(trainer.optimizers.values())

            def step(i: int) -> None:
                trainer.iter = i
                trainer.run_step()
        else:
            from fdgan import FDGAN
            from fdgan_published_loop import PublishedFDGANLoop

            model = build_model(cfg)
            batches = _cached_batches(FDGAN.build_train_loader(cfg), count)
            published = PublishedFDGANLoop(model, stage, amp=amp_dtype)
            optimizers = list(published.optimizers.values())
            cycle = itertools.cycle(batches)

            def step(i: int) -> None:
                published.step(next(cycle))
        _calibrate_batchnorm(model, batches)
        model.train()
        rss_built = rss_now_bytes()
        reset_peak_memory(device)
        flops: List[Optional[int]] = []
        first = None if args.skip_flops else (lambda thunk: flops.append(count_flops(thunk)))
        timing = time_steps(step, device, args.warmup, args.iters, first=first)
        peak = peak_memory_stats(device)
        floor = {"libraries": rss_start if device == "cpu" else 0,
                 "parameters": sum(p.numel() * p.element_size() for p in model.parameters()),
                 "optimizer_state": sum(t.numel() * t.element_size() for opt in optimizers
                                        for st in opt.state.values() for t in st.values()
                                        if torch.is_tensor(t))}
    return {"floor_bytes": floor, "loop": loop, "stage": stage, "seconds_per_iter": timing["seconds"],
            "seconds_all": timing["seconds_all"],
            "cpu_per_wall": timing["cpu_per_wall"], "load_average": timing["load_average"], "peak_memory": peak,
            "peak_bytes": peak_bytes(peak), "rss_after_build_bytes": rss_built,
            "flops_per_iter": flops[0] if flops else None, "checkpoint": checkpoint,
            "channels_last": args.channels_last and loop == "ours", "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled}


def _child_args(args: argparse.Namespace, stage: int, loop: str) -> List[str]:
    out = ["--method", "fdgan", "--stage", str(stage), "--loop", loop, "--pairs", str(args.pairs),
           "--device", args.device, "--amp", args.amp, "--checkpoint", args.checkpoint,
           "--warmup", str(args.warmup), "--iters", str(args.iters)] + (
               ["--threads", str(args.threads)] if args.threads else [])
    return out + (["--skip-flops"] if args.skip_flops else []) + (["--channels-last"] if args.channels_last else [])


def _gib(n: Optional[float]) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def _summary(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One loop's figures over its runs (each run: a fresh process): medians, spreads, and the runs."""
    seconds = [r["seconds_per_iter"] for r in runs]
    peaks = [r["peak_bytes"] for r in runs]
    first = runs[0]
    return {"seconds_per_iter": statistics.median(seconds), "seconds_runs": seconds,
            "seconds_all": [t for r in runs for t in r["seconds_all"]],
            "peak_bytes": statistics.median(peaks), "peak_bytes_runs": peaks, "peak_memory": first["peak_memory"],
            "rss_after_build_bytes": first["rss_after_build_bytes"], "flops_per_iter": first["flops_per_iter"],
            "cpu_per_wall": [r["cpu_per_wall"] for r in runs], "load_average": [r["load_average"] for r in runs],
            "checkpoint": first["checkpoint"], "channels_last": first["channels_last"], "threads": first["threads"],
            "floor_bytes": first["floor_bytes"], "runs": runs}


def main_fdgan(args: argparse.Namespace) -> None:
    if args.checkpoint not in ("on", "off"):
        raise SystemExit(f"train_step.py --method fdgan: --checkpoint is on or off (MODEL.FDGAN.CHECKPOINT), "
                         f"got {args.checkpoint!r}")
    if args.amp != "off" and not args.device.startswith("cuda"):
        raise SystemExit("train_step.py: --amp needs --device cuda (the engine's autocast is CUDA's)")
    args.pairs = args.pairs or (32 if args.device.startswith("cuda") else 2)
    if args.child_json:
        if len(args.stage) != 1 or len(args.loop) != 1:
            raise SystemExit("a child measures one stage and one loop")
        write_json(args.child_json, fdgan_child(args))
        return
    results: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("FASTREID_DATASETS", os.path.join(workdir, "datasets"))
        from fastreid_gan.data.synthetic import ensure_dataset

        ensure_dataset(os.environ["FASTREID_DATASETS"], "market", "tiny")  # once, before the children
        for stage in args.stage:
            runs: Dict[str, List[Dict[str, Any]]] = {loop: [] for loop in args.loop}
            for _ in range(max(1, args.repeat)):
                for loop in args.loop:
                    runs[loop].append(run_child(os.path.abspath(__file__), _child_args(args, stage, loop)))
            results[str(stage)] = {loop: _summary(r) for loop, r in runs.items()}
    images = 2 * args.pairs
    any_fig = next(iter(next(iter(results.values())).values()))
    print(f"FD-GAN market.yml, {args.device}, {args.pairs} pairs ({images} images, {images} targets), AMP {args.amp}, "
          f"{any_fig['threads']} threads, ours with MODEL.FDGAN.CHECKPOINT {args.checkpoint == 'on'}"
          f"{', channels_last' if args.channels_last else ''}; batches fetched before the timing; each loop in its "
          f"own process{f', {args.repeat} runs each, in turn' if args.repeat > 1 else ''}")
    for stage, figs in results.items():
        print(f"stage {STAGE_NAMES[int(stage)]}: {args.iters} timed iterations after {args.warmup} warm-up per run")
        for loop, fig in figs.items():
            flops = fig["flops_per_iter"]
            times = fig["seconds_runs"] if len(fig["seconds_runs"]) > 1 else fig["seconds_all"]
            spread = f"{min(times):.2f}-{max(times):.2f}"
            util = [u for u in fig["cpu_per_wall"] if u is not None]
            print(f"  {loop:<9}  time per iteration: {fig['seconds_per_iter']:.2f} s (median; "
                  f"{'runs' if len(fig['seconds_runs']) > 1 else 'iterations'} {spread}; CPU/wall "
                  f"{min(util, default=0):.2f}-{max(util, default=0):.2f})  "
                  f"peak memory: {peak_memory(args.device, dict(fig['peak_memory'], **_peak_override(fig)))}  "
                  f"(after build {_gib(fig['rss_after_build_bytes'])} RSS)  "
                  f"FLOPs per iteration: " + (f"{flops / 1e12:.3f} TFLOP" if flops else "-"))
        if "ours" in figs and "published" in figs:
            ours, pub = figs["ours"], figs["published"]
            ratios = {"time": pub["seconds_per_iter"] / ours["seconds_per_iter"],
                      "memory": ours["peak_bytes"] / pub["peak_bytes"],
                      "flops": (pub["flops_per_iter"] / ours["flops_per_iter"]
                                if pub["flops_per_iter"] and ours["flops_per_iter"] else None)}
            figs["ratios"] = ratios
            print(f"  published / ours: {ratios['time']:.2f}x the time (target >= 1.5x), "
                  + (f"{ratios['flops']:.2f}x the FLOPs; " if ratios["flops"] else "")
                  + f"ours / published peak memory: {ratios['memory']:.2f} (target <= 0.5)")
            # what neither loop can go below: weights and optimizer moments in fp32, and the libraries' RSS
            floor = ours["floor_bytes"]
            floor_total = sum(floor.values())
            above = {loop: fig["peak_bytes"] - floor_total for loop, fig in (("ours", ours), ("published", pub))}
            ratios["memory_above_floor"] = above["ours"] / above["published"] if above["published"] > 0 else None
            print(f"  memory floor of both: libraries {_gib(floor['libraries'])} + parameters "
                  f"{_gib(floor['parameters'])} + optimizer state {_gib(floor['optimizer_state'])} = "
                  f"{_gib(floor_total)} ({floor_total / pub['peak_bytes']:.2f} of published's peak); above it: ours "
                  f"{_gib(above['ours'])}, published {_gib(above['published'])}"
                  + (f" ({ratios['memory_above_floor']:.2f})" if ratios["memory_above_floor"] else ""))
    if args.json:
        write_json(args.json, {
            "method": "fdgan", "config": os.path.relpath(FDGAN_CONFIG, REPO), "device": args.device,
            "pairs": args.pairs, "images": images, "amp": args.amp, "checkpoint": args.checkpoint == "on",
            "channels_last": args.channels_last, "threads": any_fig["threads"], "warmup": args.warmup,
            "iters": args.iters, "repeat": args.repeat, "data": "cached batches", "stages": results,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "tf32": tf32_settings(),
        })


def _peak_override(fig: Dict[str, Any]) -> Dict[str, Any]:
    """The median peak over the runs, in the stats' own key (max_rss_bytes or max_allocated_bytes)."""
    key = "max_allocated_bytes" if fig["peak_memory"]["kind"] == "cuda" else "max_rss_bytes"
    return {key: fig["peak_bytes"]}


def _int_list(text: str) -> List[int]:
    values = [int(t) for t in text.split(",") if t.strip()]
    if not values or any(v not in (2, 3) for v in values):
        raise argparse.ArgumentTypeError(f"FD-GAN stages are 2 and/or 3 (comma list), got {text!r}")
    return values


def _loop_list(text: str) -> List[str]:
    values = [t.strip() for t in text.split(",") if t.strip()]
    if not values or any(v not in FDGAN_LOOPS for v in values):
        raise argparse.ArgumentTypeError(f"loops are {' and/or '.join(FDGAN_LOOPS)} (comma list), got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("dgnet", "fdgan"), default="dgnet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("off", "fp16", "bf16"), default="off")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, metavar="PARTS",
                        help="DG-Net: sub-networks that recompute their activations in backward "
                             "(MODEL.DGNET.<NODE>.CHECKPOINT): a comma list of "
                             f"{', '.join(CHECKPOINT_NODES)}, 'all' or 'none'; default: as market.yml. "
                             "FD-GAN: on or off (MODEL.FDGAN.CHECKPOINT for ours; default off, as market.yml)")
    parser.add_argument("--skip-flops", action="store_true", help="do not run the extra FLOP-counted iteration")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    dg = parser.add_argument_group("DG-Net")
    dg.add_argument("--batch", type=int, default=None, help="x_a (and x_b) batch: 2 on CPU, 8 on GPU by default")
    fd = parser.add_argument_group("FD-GAN")
    fd.add_argument("--stage", type=_int_list, default=[2, 3], help="2, 3 or 2,3 (default)")
    fd.add_argument("--pairs", type=int, default=None, help="pairs per batch: 2 on CPU, 32 on GPU by default")
    fd.add_argument("--loop", type=_loop_list, default=list(FDGAN_LOOPS),
                    help="ours, published or both (default ours,published)")
    fd.add_argument("--channels-last", action="store_true",
                    help="ours only: MODEL.FDGAN.CHANNELS_LAST True (NHWC weights and images)")
    fd.add_argument("--threads", type=int, default=0,
                    help="torch threads of the measured processes (default: torch's, the core count); on a shared "
                         "machine 1 thread per process is steadier than 2 that wait for each other")
    fd.add_argument("--repeat", type=int, default=1,
                    help="measure each loop this many times, the loops in turn (ours, published, ours, ...), and "
                         "report the median of the per-run medians with the spread")
    fd.add_argument("--child-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method == "fdgan":
        if args.checkpoint is None:
            args.checkpoint = "off"
        main_fdgan(args)
    else:
        main_dgnet(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Time, peak memory and FLOPs of one full-size training iteration: DG-Net (default), FD-GAN stages II and III,
SPGAN or eSPGAN.

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

SPGAN (projects/SPGAN/configs/market2duke.yml) and eSPGAN (espgan_market2duke.yml, its joint stage):

    python benchmarks/train_step.py --method spgan --threads 1              # CPU: batch 1 (+1 target) at 256x128
    python benchmarks/train_step.py --method spgan --checkpoint generator   # ours recomputing G's and F's blocks
    python benchmarks/train_step.py --method espgan --threads 1             # the IDE+ ResNet-50 with them
    python benchmarks/train_step.py --method spgan --amp bf16               # on a GPU: batch 8 with mixed precision

Full size (9-block generators, 64-wide PatchGANs, SiaNet or the ResNet-50 feature learner), random weights, the
tiny synthetic domains (SyntheticMarketTiny -> SyntheticDukeTiny) at 256x128, every phase on from iteration 0
(SPGAN: SiaNet's step and G's contrastive term, the published epochs > 0 and > 1). "ours" is the real
GANTrainer step; "published" the py-spgan train_spgan.py / espgan.py iteration written with the same
sub-networks (benchmarks/spgan_published_loop.py). Both take the same cached batches, each loop in its own
process; the G step runs on every 2nd (eSPGAN: 3rd) iteration, so the times are reported apart for a G iteration
and for an other one (medians), with the schedule's average, peak memory, FLOPs of a G and of an other iteration
(FlopCounterMode over warm-up iterations 0 and 1) and the memory floor. Reference (the issue, 2-core CPU, quiet,
batch 1): the published SPGAN loop takes 14.3 s for a G iteration, 2.4 s for an other one, 2.8 GB.
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
from step_timing import (count_flops, cpu_seconds, peak_bytes, peak_memory, peak_memory_stats, reset_peak_memory,  # noqa: E402
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


def _print_memory_floor(ours: Dict[str, Any], pub: Dict[str, Any]) -> Optional[float]:
    """Print the memory floor both loops share (libraries' RSS, fp32 parameters, optimizer moments) and each
    loop's peak above it; returns ours / published above the floor (None when published's is not above it)."""
    floor = ours["floor_bytes"]
    floor_total = sum(floor.values())
    above = {loop: fig["peak_bytes"] - floor_total for loop, fig in (("ours", ours), ("published", pub))}
    ratio = above["ours"] / above["published"] if above["published"] > 0 else None
    print(f"  memory floor of both: libraries {_gib(floor['libraries'])} + parameters "
          f"{_gib(floor['parameters'])} + optimizer state {_gib(floor['optimizer_state'])} = "
          f"{_gib(floor_total)} ({floor_total / pub['peak_bytes']:.2f} of published's peak); above it: ours "
          f"{_gib(above['ours'])}, published {_gib(above['published'])}"
          + (f" ({ratio:.2f})" if ratio else ""))
    return ratio


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
            ratios["memory_above_floor"] = _print_memory_floor(ours, pub)
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


# ------------------------------------------------------------------------------------------------ SPGAN / eSPGAN
SPGAN_CONFIGS = {"spgan": os.path.join(REPO, "projects/SPGAN/configs/market2duke.yml"),
                 "espgan": os.path.join(REPO, "projects/SPGAN/configs/espgan_market2duke.yml")}
SPGAN_NAMES = {"spgan": "SPGAN", "espgan": "eSPGAN"}
#: the published G-step period (train_spgan.py: i % 2, espgan.py: i % 3)
SPGAN_GEN_EVERY = {"spgan": 2, "espgan": 3}
#: the source (py-spgan's A, Market in market2duke) and the target (B, Duke), tiny synthetic stand-ins
SPGAN_SOURCE, SPGAN_TARGET = "SyntheticMarketTiny", "SyntheticDukeTiny"
#: --checkpoint parts -> the config node of MODEL.SPGAN whose CHECKPOINT they set
SPGAN_CHECKPOINT_NODES = {"generator": "GENERATOR", "discriminator": "DISCRIMINATOR",
                          "feature_learner": "FEATURE_LEARNER"}


def parse_spgan_checkpoint(text: Optional[str]) -> List[str]:
    """``--checkpoint`` for SPGAN / eSPGAN: none (default, as the configs), all, on (= generator), or a comma list
    of generator, discriminator, feature_learner (MODEL.SPGAN.<NODE>.CHECKPOINT of ours)."""
    text = (text or "none").strip()
    if text in ("none", "off"):
        return []
    if text == "all":
        return list(SPGAN_CHECKPOINT_NODES)
    if text == "on":
        return ["generator"]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in SPGAN_CHECKPOINT_NODES]
    if unknown:
        raise SystemExit(f"train_step.py --method spgan/espgan: --checkpoint: unknown part(s) {unknown}; choose "
                         f"from {', '.join(SPGAN_CHECKPOINT_NODES)}, all, on (generator) or none")
    return names


#: --toy: networks shrunk for the tests and the GPU check's CPU smoke run (the figures mean nothing; the code
#: paths and the comparison are the full-size ones)
SPGAN_TOY_OPTS = ["MODEL.SPGAN.GENERATOR.NGF", "8", "MODEL.SPGAN.GENERATOR.N_BLOCKS", "2",
                  "MODEL.SPGAN.DISCRIMINATOR.NDF", "8", "MODEL.SPGAN.METRIC.CHANNELS", "[8, 16, 16]",
                  "MODEL.SPGAN.METRIC.HIDDEN", "16", "MODEL.SPGAN.METRIC.EMBED_DIM", "8",
                  "MODEL.BACKBONE.DEPTH", "18x", "MODEL.SPGAN.FEATURE_LEARNER.BOTTLENECK_DIM", "32",
                  "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]


def spgan_cfg(method: str, batch: int, device: str, amp: str, checkpoint: Sequence[str], output_dir: str,
              num_classes: int = 0, toy: bool = False, extra_opts: Sequence[str] = ()):
    """market2duke.yml / espgan_market2duke.yml at full size (9-block generators, 64-wide PatchGANs, SiaNet or the
    ResNet-50 feature learner, 256x128) on the tiny synthetic domains, every phase of the published iteration on
    from iteration 0 (SiaNet's step and G's contrastive term: the schedule's start epochs 0), no evaluation, no
    data-loader workers (the batches are fetched before the timing), random weights. ``toy``: the networks of
    :data:`SPGAN_TOY_OPTS` instead (tests, smoke runs); ``extra_opts`` go last."""
    opts = ["MODEL.DEVICE", device, "MODEL.BACKBONE.PRETRAIN", "False",
            "DATASETS.NAMES", f"('{SPGAN_SOURCE}',)", "DATASETS.TESTS", "()",
            "MODEL.SPGAN.TARGET_DATASET", SPGAN_TARGET, "SOLVER.IMS_PER_BATCH", str(batch),
            "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.AMP.ENABLED", str(amp != "off"), "SOLVER.AMP.DTYPE", amp if amp != "off" else "fp16",
            "SOLVER.GAN.LOG_PERIOD", "0", "SOLVER.GAN.VIS_PERIOD", "0", "SOLVER.GAN.CHECKPOINT_PERIOD", "0",
            "SEED", "0", "OUTPUT_DIR", os.path.join(output_dir, "out")]
    if method == "spgan":
        opts += ["MODEL.SPGAN.SCHEDULE.METRIC_START_EPOCH", "0", "MODEL.SPGAN.SCHEDULE.CONTRASTIVE_START_EPOCH", "0"]
    if num_classes:
        opts += ["MODEL.HEADS.NUM_CLASSES", str(num_classes)]
    for name, node in SPGAN_CHECKPOINT_NODES.items():
        opts += [f"MODEL.SPGAN.{node}.CHECKPOINT", str(name in checkpoint)]
    opts += (SPGAN_TOY_OPTS if toy else []) + list(extra_opts)
    config = SPGAN_CONFIGS[method]
    if method == "espgan":  # a recipe config: its joint stage (stages/espgan_published_joint.yml), espgan.py's loop
        from fastreid_gan.training_stages import stage_config, training_stages_of

        stages = {stage.name: stage for stage in training_stages_of(merge_config(get_cfg(), config, opts))}
        cfg = stage_config(config, opts, stages["joint"], output_dir, None)
        cfg.OUTPUT_DIR = os.path.join(output_dir, "out")
        return cfg
    return merge_config(get_cfg(), config, opts)


def _calibrate_ide_batchnorm(ide: Any, normalize: Any, batches: List[Dict[str, Any]]) -> None:
    """Running BatchNorm statistics of eSPGAN's feature learner from the cached batches (source and target
    images), for both loops alike: its backbone BN is frozen (published: a source-trained IDE's statistics); the
    random initialisation's 0 and 1 make 50 un-normalised layers of a random ResNet-50 overflow."""
    device = next(ide.parameters()).device
    norms = [m for m in ide.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = ide.training
    ide.train()
    with torch.no_grad():  # batch by batch, the domains together (the head's BatchNorm1d needs 2 images)
        for batch in batches:
            images = torch.cat([batch[key] for key in ("images", "target_images", "fresh_images") if key in batch])
            ide(normalize(images.to(device).float()))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    ide.train(was_training)


def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere): hands the heap's free pages back to the OS."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def spgan_child(args: argparse.Namespace) -> Dict[str, Any]:
    """One loop (``args.loop``) of SPGAN or eSPGAN in this (fresh) process: its figures, per iteration kind."""
    method, device, loop = args.method, args.device, args.loop[0]
    rss_start = rss_now_bytes()
    amp_dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    checkpoint = parse_spgan_checkpoint(args.checkpoint) if loop == "ours" else []  # published: no recomputation
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)
    torch.manual_seed(0)
    import numpy as np

    np.random.seed(0)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # Base-SPGAN.yml: fastreid's CUDNN_BENCHMARK, for both loops
    gen_every = SPGAN_GEN_EVERY[method]
    with tempfile.TemporaryDirectory() as workdir, EventStorage(0) as storage:
        from spgan import ESPGAN, SPGAN

        meta_arch = SPGAN if method == "spgan" else ESPGAN
        count = min(CACHED_BATCHES, args.warmup + args.iters + 1)
        # the source's identities, for eSPGAN's classifier (the trainer fills this in; the published loop's
        # model is built directly)
        probe = spgan_cfg(method, args.batch, device, args.amp, checkpoint, workdir, toy=args.toy)
        loader = meta_arch.build_train_loader(probe)  # eSPGAN's joint stage: with the fresh source batch
        num_classes = int(loader.dataset.num_classes)
        cfg = spgan_cfg(method, args.batch, device, args.amp, checkpoint, workdir,
                        num_classes=num_classes if method == "espgan" else 0, toy=args.toy)
        if loop == "ours":
            try:
                trainer = GANTrainer(cfg)
                phases = list(trainer.model.phases())
            except NotImplementedError as exc:
                return {"loop": loop, "status": "not implemented", "error": str(exc).splitlines()[0]}
            model = trainer.model
            batches = _cached_batches(trainer.data_loader, count)
            trainer._data_iter = itertools.cycle(batches)
            trainer.storage = storage
            optimizers = list(trainer.optimizers.values())
            gen_phase = next((p for p in phases if p.name == "gen"), None)

            def is_gen(i: int) -> bool:
                return gen_phase is not None and gen_phase.is_active(i)

            def step(i: int) -> None:
                trainer.iter = i
                trainer.run_step()
        else:
            from spgan_published_loop import PublishedESPGANLoop, PublishedSPGANLoop

            model = build_model(cfg)
            batches = _cached_batches(loader, count)
            if method == "spgan":
                published = PublishedSPGANLoop(model, amp=amp_dtype, gen_every=gen_every)
            else:  # the IDE's fresh source batch: the loader's fresh_images / fresh_targets, as ours takes it
                published = PublishedESPGANLoop(model, amp=amp_dtype, gen_every=gen_every)

            def step(i: int) -> None:
                published.step(batches[i % count], i)
            optimizers = list(published.optimizers.values())

            def is_gen(i: int) -> bool:
                return i % gen_every == 0
        del loader
        if method == "espgan":
            _calibrate_ide_batchnorm(model.ide, model.normalize, batches)
        if loop == "ours":
            model.train()
        rss_built = rss_now_bytes()
        reset_peak_memory(device)
        # FLOPs of the first G iteration and the first other one (both warm-up iterations by default)
        flop_iters = {} if args.skip_flops else {i: None for i in (0, 1)}

        trim = _malloc_trim() if args.malloc_trim else None

        cpu_s: Dict[int, float] = {}  # CPU seconds of each iteration: on a busy machine, what it computed

        def measured(i: int) -> None:
            start = cpu_seconds()
            if i in flop_iters:
                flop_iters[i] = count_flops(lambda: step(i))
            else:
                step(i)
            if trim is not None:
                trim(0)
            cpu_s[i] = cpu_seconds() - start

        timing = time_steps(measured, device, args.warmup, args.iters)
        peak = peak_memory_stats(device)
        floor = {"libraries": rss_start if device == "cpu" else 0,
                 "parameters": sum(p.numel() * p.element_size() for p in model.parameters()),
                 "optimizer_state": sum(t.numel() * t.element_size() for opt in optimizers
                                        for st in opt.state.values() for t in st.values()
                                        if torch.is_tensor(t))}
    timed = list(range(args.warmup, args.warmup + args.iters))
    kinds: Dict[str, List[float]] = {"gen": [], "other": []}
    cpu_kinds: Dict[str, List[float]] = {"gen": [], "other": []}
    for i, seconds in zip(timed, timing["seconds_all"]):
        kinds["gen" if is_gen(i) else "other"].append(seconds)
        cpu_kinds["gen" if is_gen(i) else "other"].append(cpu_s[i])
    flops = {("gen" if is_gen(i) else "other"): f for i, f in flop_iters.items()}
    return {"loop": loop, "status": "ok", "method": method, "floor_bytes": floor,
            "seconds_all": timing["seconds_all"], "timed_iters": timed,
            "gen_iters": [i for i in timed if is_gen(i)],
            "seconds_gen": statistics.median(kinds["gen"]) if kinds["gen"] else None,
            "seconds_other": statistics.median(kinds["other"]) if kinds["other"] else None,
            "seconds_gen_all": kinds["gen"], "seconds_other_all": kinds["other"],
            "cpu_seconds_gen_all": cpu_kinds["gen"], "cpu_seconds_other_all": cpu_kinds["other"],
            "cpu_per_wall": timing["cpu_per_wall"], "load_average": timing["load_average"], "peak_memory": peak,
            "peak_bytes": peak_bytes(peak), "rss_after_build_bytes": rss_built,
            "flops_gen": flops.get("gen"), "flops_other": flops.get("other"), "checkpoint": checkpoint,
            "threads": torch.get_num_threads(), "gen_every": gen_every, "batch": args.batch, "toy": args.toy,
            "malloc_trim": bool(args.malloc_trim),
            "image_size": list(cfg.INPUT.SIZE_TRAIN)}


def _spgan_child_args(args: argparse.Namespace, loop: str) -> List[str]:
    out = ["--method", args.method, "--loop", loop, "--batch", str(args.batch), "--device", args.device,
           "--amp", args.amp, "--checkpoint", args.checkpoint or "none",
           "--warmup", str(args.warmup), "--iters", str(args.iters)]
    out += ["--threads", str(args.threads)] if args.threads else []
    return (out + (["--skip-flops"] if args.skip_flops else []) + (["--toy"] if args.toy else [])
            + (["--malloc-trim"] if args.malloc_trim else []))


def _median_or_none(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _spgan_summary(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    first = runs[0]
    if first["status"] != "ok":
        return dict(first)
    gen = [r["seconds_gen"] for r in runs]
    other = [r["seconds_other"] for r in runs]
    peaks = [r["peak_bytes"] for r in runs]
    k = first["gen_every"]
    per_gen, per_other = _median_or_none(gen), _median_or_none(other)
    return {"status": "ok", "seconds_gen": per_gen, "seconds_other": per_other,
            "seconds_gen_runs": gen, "seconds_other_runs": other,
            # the schedule's average: one G iteration and gen_every - 1 others
            "seconds_per_iter": ((per_gen + (k - 1) * per_other) / k
                                 if per_gen is not None and per_other is not None else None),
            "seconds_gen_all": [t for r in runs for t in r["seconds_gen_all"]],
            "seconds_other_all": [t for r in runs for t in r["seconds_other_all"]],
            "cpu_seconds_gen": _median_or_none([t for r in runs for t in r.get("cpu_seconds_gen_all", [])]),
            "cpu_seconds_other": _median_or_none([t for r in runs for t in r.get("cpu_seconds_other_all", [])]),
            "peak_bytes": statistics.median(peaks), "peak_bytes_runs": peaks, "peak_memory": first["peak_memory"],
            "rss_after_build_bytes": first["rss_after_build_bytes"], "flops_gen": first["flops_gen"],
            "flops_other": first["flops_other"], "cpu_per_wall": [r["cpu_per_wall"] for r in runs],
            "load_average": [r["load_average"] for r in runs], "checkpoint": first["checkpoint"],
            "threads": first["threads"], "gen_every": k, "floor_bytes": first["floor_bytes"],
            "image_size": first["image_size"], "toy": first["toy"], "runs": runs}


def _fmt_opt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def _spread(values: List[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main_spgan(args: argparse.Namespace) -> None:
    name = SPGAN_NAMES[args.method]
    if args.amp != "off" and not args.device.startswith("cuda"):
        raise SystemExit("train_step.py: --amp needs --device cuda (the engine's autocast is CUDA's)")
    parse_spgan_checkpoint(args.checkpoint)  # fails early on a bad list
    args.batch = args.batch or (8 if args.device.startswith("cuda") else 1)
    gen_every = SPGAN_GEN_EVERY[args.method]
    if args.warmup is None:
        args.warmup = gen_every  # one whole cycle: a G iteration and the others
    if args.iters is None:
        args.iters = 2 * gen_every
    if args.child_json:
        if len(args.loop) != 1:
            raise SystemExit("a child measures one loop")
        write_json(args.child_json, spgan_child(args))
        return
    runs: Dict[str, List[Dict[str, Any]]] = {loop: [] for loop in args.loop}
    with tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("FASTREID_DATASETS", os.path.join(workdir, "datasets"))
        from fastreid_gan.data.synthetic import ensure_dataset

        for domain in ("market", "duke"):  # once, before the children
            ensure_dataset(os.environ["FASTREID_DATASETS"], domain, "tiny")
        for _ in range(max(1, args.repeat)):
            for loop in args.loop:
                runs[loop].append(run_child(os.path.abspath(__file__), _spgan_child_args(args, loop)))
    figs = {loop: _spgan_summary(r) for loop, r in runs.items()}
    ok = {loop: fig for loop, fig in figs.items() if fig["status"] == "ok"}
    threads = next(iter(ok.values()))["threads"] if ok else args.threads
    parts = parse_spgan_checkpoint(args.checkpoint)
    size = "x".join(str(v) for v in (next(iter(ok.values()))["image_size"] if ok else ["?"]))
    print(f"{name} {os.path.relpath(SPGAN_CONFIGS[args.method], REPO)}{' (TOY networks)' if args.toy else ''}, "
          f"{args.device}, batch {args.batch} (+{args.batch} target) at {size}, AMP {args.amp}, {threads} threads, ours recomputing in backward: "
          f"{', '.join(parts) or 'nothing'}; G step every {gen_every} iterations; batches fetched before the "
          f"timing; each loop in its own process{f', {args.repeat} runs each, in turn' if args.repeat > 1 else ''}; "
          f"{args.iters} timed iterations after {args.warmup} warm-up per run")
    for loop, fig in figs.items():
        if fig["status"] != "ok":
            print(f"  {loop:<9}  {fig['status']}: {fig.get('error', '')}")
            continue
        util = [u for u in fig["cpu_per_wall"] if u is not None]
        fl_g, fl_o = fig["flops_gen"], fig["flops_other"]
        print(f"  {loop:<9}  time per G iteration: {fig['seconds_gen']:.2f} s ({_spread(fig['seconds_gen_all'])}), "
              f"per other iteration: {fig['seconds_other']:.2f} s ({_spread(fig['seconds_other_all'])}), "
              f"schedule average {fig['seconds_per_iter']:.2f} s (CPU/wall {min(util, default=0):.2f}-"
              f"{max(util, default=0):.2f}; CPU seconds per G iteration {_fmt_opt(fig['cpu_seconds_gen'])}, per "
              f"other {_fmt_opt(fig['cpu_seconds_other'])})")
        print(f"  {'':<9}  peak memory: {peak_memory(args.device, dict(fig['peak_memory'], **_peak_override(fig)))}  "
              f"(after build {_gib(fig['rss_after_build_bytes'])} RSS)  FLOPs per iteration: G "
              + (f"{fl_g / 1e12:.3f} TFLOP" if fl_g else "-") + ", other "
              + (f"{fl_o / 1e12:.3f} TFLOP" if fl_o else "-"))
    ratios: Dict[str, Any] = {}
    if "ours" in ok and "published" in ok:
        ours, pub = ok["ours"], ok["published"]

        def ratio(a, b):
            return a / b if a and b else None

        ratios = {"cpu_time_gen": ratio(pub["cpu_seconds_gen"], ours["cpu_seconds_gen"]),
                  "cpu_time_other": ratio(pub["cpu_seconds_other"], ours["cpu_seconds_other"]),
                  "time_gen": ratio(pub["seconds_gen"], ours["seconds_gen"]),
                  "time_other": ratio(pub["seconds_other"], ours["seconds_other"]),
                  "time": ratio(pub["seconds_per_iter"], ours["seconds_per_iter"]),
                  "memory": ours["peak_bytes"] / pub["peak_bytes"],
                  "flops_gen": ratio(pub["flops_gen"], ours["flops_gen"]),
                  "flops_other": ratio(pub["flops_other"], ours["flops_other"])}
        fmt = lambda x, spec=".2f": "-" if x is None else format(x, spec)  # noqa: E731
        print(f"  published / ours: time {fmt(ratios['time_gen'])}x (G iteration), {fmt(ratios['time_other'])}x "
              f"(other), {fmt(ratios['time'])}x (schedule average) (target >= 1.5x); FLOPs "
              f"{fmt(ratios['flops_gen'])}x (G), {fmt(ratios['flops_other'])}x (other); CPU seconds "
              f"{fmt(ratios['cpu_time_gen'])}x (G), {fmt(ratios['cpu_time_other'])}x (other); ours / published peak "
              f"memory: {ratios['memory']:.2f} (target <= 0.5)")
        ratios["memory_above_floor"] = _print_memory_floor(ours, pub)
    if args.json:
        write_json(args.json, {
            "method": args.method, "config": os.path.relpath(SPGAN_CONFIGS[args.method], REPO),
            "device": args.device, "batch": args.batch, "amp": args.amp, "checkpoint": parts, "threads": threads,
            "toy": args.toy,
            "warmup": args.warmup, "iters": args.iters, "repeat": args.repeat, "gen_every": gen_every,
            "data": "cached batches", "loops": figs, "ratios": ratios,
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
    parser.add_argument("--method", choices=("dgnet", "fdgan", "spgan", "espgan"), default="dgnet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("off", "fp16", "bf16"), default="off")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up iterations (default 2; SPGAN / eSPGAN: one G cycle, 2 / 3)")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed iterations (default 5; SPGAN / eSPGAN: two G cycles, 4 / 6)")
    parser.add_argument("--checkpoint", default=None, metavar="PARTS",
                        help="DG-Net: sub-networks that recompute their activations in backward "
                             "(MODEL.DGNET.<NODE>.CHECKPOINT): a comma list of "
                             f"{', '.join(CHECKPOINT_NODES)}, 'all' or 'none'; default: as market.yml. "
                             "FD-GAN: on or off (MODEL.FDGAN.CHECKPOINT for ours; default off, as market.yml). "
                             "SPGAN / eSPGAN: ours' MODEL.SPGAN.<NODE>.CHECKPOINT, a comma list of "
                             f"{', '.join(SPGAN_CHECKPOINT_NODES)}, 'all', 'on' (generator) or 'none' (default)")
    parser.add_argument("--skip-flops", action="store_true", help="do not run the extra FLOP-counted iteration")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    dg = parser.add_argument_group("DG-Net")
    dg.add_argument("--batch", type=int, default=None,
                    help="DG-Net: x_a (and x_b) batch, 2 on CPU, 8 on GPU by default; SPGAN / eSPGAN: source (and "
                         "target) images per batch, 1 on CPU, 8 on GPU by default")
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
    sp = parser.add_argument_group("SPGAN / eSPGAN (also --batch, --loop, --threads, --repeat, --checkpoint)")
    sp.add_argument("--toy", action="store_true",
                    help="toy networks (8-wide 2-block generators, ResNet-18 feature learner, 128x64) for tests and "
                         "smoke runs: the code paths of the full-size comparison, meaningless figures")
    sp.add_argument("--malloc-trim", action="store_true",
                    help="both loops: glibc malloc_trim(0) after every iteration (CPU: the heap's free pages back to "
                         "the OS, so that peak RSS follows the live tensors rather than the heap's history)")
    args = parser.parse_args()
    if args.method in ("spgan", "espgan"):
        main_spgan(args)
        return
    args.warmup = 2 if args.warmup is None else args.warmup
    args.iters = 5 if args.iters is None else args.iters
    if args.method == "fdgan":
        if args.checkpoint is None:
            args.checkpoint = "off"
        main_fdgan(args)
    else:
        main_dgnet(args)


if __name__ == "__main__":
    main()

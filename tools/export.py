#!/usr/bin/env python
"""Export a trained model of any method for deployment: an ONNX file checked with onnxruntime, or stock fastreid.

    python tools/export.py --config-file projects/DGNet/configs/synthetic.yml --format onnx \
        --output dgnet.onnx MODEL.WEIGHTS logs/synthetic_market/dgnet/model_final.pth [KEY VALUE ...]
    python tools/export.py --config-file ... --format onnx --output dgnet_lmp.onnx MODEL.WEIGHTS ... \
        TEST.LMP.ENABLED True TEST.LMP.PARTS 4
    python tools/export.py --config-file ... --format fastreid --output exported/ MODEL.WEIGHTS ...

``--format onnx`` exports the eval forward (``fastreid_gan.export.onnx_export``): input ``images`` float32
(batch, 3, H, W), RGB 0..255 at ``INPUT.SIZE_TEST``, output ``features`` (batch, D), batch axis dynamic. The file
is then run with onnxruntime on real test images (``--check-dataset``, default the config's first
``DATASETS.TESTS``) and on one image; the max relative error against the torch model is printed, and above
``--tolerance`` (1e-4) nothing is written and the exit code is 2. ``--format fastreid`` writes a checkpoint and a
``config.yaml`` for stock fastreid (``fastreid_gan.export.fastreid_format``). Trailing ``KEY VALUE`` pairs
override the config, ``MODEL.WEIGHTS`` among them. Bad input: one line on stderr, exit code 2. ``docs/export.md``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.checkpoint_io import CheckpointFileError, WeightsMismatchError
from fastreid_gan.config import ConfigKeyError, get_cfg, merge_config
from fastreid_gan.export import DEFAULT_TOLERANCE, ExportError, export_onnx, sample_test_images

FORMATS = ("onnx", "fastreid")


class UsageError(Exception):
    """A command line that argparse or this tool rejects (printed as one line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the usage and exit: one line instead
        raise UsageError(f"{message} (see tools/export.py --help)")


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="CFG", help="the config the weights were trained with")
    p.add_argument("--format", required=True, metavar="|".join(FORMATS),
                   help="onnx: one .onnx file, checked with onnxruntime; fastreid: a checkpoint and config.yaml "
                        "for stock fastreid")
    p.add_argument("--output", required=True, metavar="PATH",
                   help="the .onnx file (--format onnx) or the output folder (--format fastreid)")
    p.add_argument("--check-dataset", default="", metavar="NAME",
                   help="--format onnx: the registered dataset whose test images the check runs on (default: the "
                        "config's first DATASETS.TESTS; SyntheticMarketTiny is generated on first use)")
    p.add_argument("--check-images", type=int, default=8, metavar="N",
                   help="--format onnx: how many of its images (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="E",
                   help="--format onnx: the largest max relative error accepted (default: %(default)g)")
    p.add_argument("--verbose", action="store_true", help="show fastreid's and the loader's log lines")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (MODEL.WEIGHTS among them)")
    return p


def _check_arguments(args: argparse.Namespace) -> None:
    if args.format not in FORMATS:
        raise UsageError(f"--format {args.format!r} is not one of {', '.join(FORMATS)}")
    if os.path.isdir(args.output) and args.format == "onnx":
        raise UsageError(f"--output {args.output!r} is a folder: --format onnx writes one file, e.g. "
                         f"{os.path.join(args.output, 'model.onnx')}")
    if args.check_images < 2:
        raise UsageError(f"--check-images {args.check_images}: the check needs at least 2 images")
    if not args.tolerance > 0:
        raise UsageError(f"--tolerance {args.tolerance:g}: it must be > 0 (default {DEFAULT_TOLERANCE:g})")


def _load_config(args: argparse.Namespace):
    cfg = merge_config(get_cfg(), args.config_file, args.opts)
    if not str(cfg.MODEL.WEIGHTS):
        raise UsageError("no weights to export: add MODEL.WEIGHTS /path/to/model_final.pth after the options")
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise UsageError(f"MODEL.WEIGHTS = '{cfg.MODEL.WEIGHTS}': file not found")
    return cfg


def _export_onnx(cfg, args: argparse.Namespace) -> List[str]:
    dataset = args.check_dataset or (cfg.DATASETS.TESTS[0] if cfg.DATASETS.TESTS else "")
    if not dataset:
        raise UsageError("the config has no DATASETS.TESTS: name the check's images with --check-dataset NAME")
    images = sample_test_images(cfg, dataset, args.check_images)
    check = export_onnx(cfg, args.output, images, tolerance=args.tolerance)
    print(f"onnxruntime vs torch on {check.images} {dataset} test images: max relative error "
          f"{check.max_rel_error:.2e} (batch of {check.images}), {check.max_rel_error_single:.2e} (one image); "
          f"tolerance {args.tolerance:g}", flush=True)
    height, width = (int(s) for s in cfg.INPUT.SIZE_TEST)
    print(f"wrote {check.path}: {cfg.MODEL.META_ARCHITECTURE}"
          f"{' with TEST.LMP' if cfg.TEST.LMP.ENABLED else ''}, input 'images' float32 (batch, 3, {height}, "
          f"{width}) RGB 0..255, output 'features' float32 (batch, {check.feature_dim})", flush=True)
    return [check.path]


def _export_fastreid(cfg, args: argparse.Namespace) -> List[str]:
    try:  # imported here: the stock-fastreid export is a module of its own, not needed by --format onnx
        from fastreid_gan.export.fastreid_format import export_fastreid
    except ImportError as exc:
        raise UsageError(f"--format fastreid is not available in this installation ({exc})") from None
    written = [str(p) for p in export_fastreid(cfg, args.output)]
    for path in written:
        print(f"wrote {path}", flush=True)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Export; 0 on success, 2 on bad input or a failed check (one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        _check_arguments(args)
        cfg = _load_config(args)
        if args.format == "onnx":
            _export_onnx(cfg, args)
        else:
            _export_fastreid(cfg, args)
    except (UsageError, ExportError, ConfigKeyError, CheckpointFileError, WeightsMismatchError,
            FileNotFoundError, ValueError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

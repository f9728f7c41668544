#!/usr/bin/env python
"""Features of a folder of images, or of a registered dataset's split, from any method's checkpoint.

    python tools/extract_features.py --config-file projects/DGNet/configs/synthetic.yml \
        --dataset SyntheticMarket --split query --output query.npz \
        MODEL.WEIGHTS logs/synthetic_market/dgnet/model_final.pth [KEY VALUE ...]
    python tools/extract_features.py --config-file CFG --images DIR --output OUT_DIR MODEL.WEIGHTS W.pth

The feature is what the evaluator ranks: the model's eval forward (``TEST.LMP.ENABLED True`` for LMP's), with
``TEST.FLIP`` as the evaluator applies it; on ``MODEL.DEVICE`` (CPU or CUDA), in batches of ``--batch-size``.
``OUT.npz``: one file (``features``, ``paths``, ``pids``/``camids`` for a dataset, ``meta``); any other
``--output`` is a folder with ``features.npy`` and ``files.txt`` (plus ``pids.npy``/``camids.npy``, ``meta.json``).
Outputs are written atomically.  Bad input stops with exit code 2 and one line.  ``docs/retrieval.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.retrieval.cli import OneLineArgumentParser, load_config, load_model, run_cli
from fastreid_gan.retrieval.feature_extraction import (BAD_IMAGE_POLICIES, SPLITS, RetrievalInputError,
                                                       dataset_images, extract_features, folder_images,
                                                       write_features)


def parser() -> OneLineArgumentParser:
    """The command-line options."""
    p = OneLineArgumentParser(prog="tools/extract_features.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True, help="the config the checkpoint was trained with")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    src.add_argument("--dataset", metavar="NAME", help="a registered dataset (e.g. SyntheticMarket, Market1501)")
    p.add_argument("--split", default="query", choices=SPLITS, help="with --dataset (default: %(default)s)")
    p.add_argument("--output", required=True, metavar="OUT.npz|OUT_DIR", help="one .npz, or a folder")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: TEST.IMS_PER_BATCH)")
    p.add_argument("--on-bad-image", default="skip", choices=BAD_IMAGE_POLICIES,
                   help="an unreadable image file: skip it (named in a warning, counted) or stop (default: "
                        "%(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides, MODEL.WEIGHTS among them (after the options)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Extract and write; 0 on success, 2 on bad input (one line on stderr)."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def run() -> int:
        if args.split != "query" and not args.dataset:
            raise RetrievalInputError("--split needs --dataset (a folder of images has no splits)")
        cfg = load_config(args.config_file, args.opts)
        images = folder_images(args.images) if args.images else dataset_images(args.dataset, args.split)
        model = load_model(cfg)
        start = time.perf_counter()
        result = extract_features(model, images, cfg, batch_size=args.batch_size, on_bad_image=args.on_bad_image,
                                  progress=not args.no_progress)
        result.meta.update({"config_file": args.config_file, "weights": str(cfg.MODEL.WEIGHTS),
                            "meta_architecture": str(cfg.MODEL.META_ARCHITECTURE)})
        written = write_features(result, args.output)
        seconds = time.perf_counter() - start
        skipped = f", {len(result.skipped)} unreadable skipped" if result.skipped else ""
        print(f"{len(result)} images of {images.source} -> {result.features.shape[1]}-d features on "
              f"{cfg.MODEL.DEVICE} in {seconds:.1f} s{skipped}: " + ", ".join(str(p) for p in written), flush=True)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())

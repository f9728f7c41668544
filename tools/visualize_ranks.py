#!/usr/bin/env python
"""Ranked-list pictures of a model on its test dataset: a row per query with its top-k gallery images, plus the
CMC curve and, with TEST.ROC.ENABLED True, the ROC curve.

    python tools/visualize_ranks.py --config-file projects/DGNet/configs/synthetic.yml \
        --num-queries 6 --topk 10 --output logs/ranks MODEL.WEIGHTS logs/synthetic_market/dgnet/model_final.pth
    python tools/visualize_ranks.py --query-features q.npz --gallery-features g.npz --output logs/ranks

With a model: the config's first ``DATASETS.TESTS`` (or ``--dataset``) is encoded as the evaluator encodes it
and ranked as it ranks (``TEST.METRIC``, ``TEST.AQE``, ``TEST.RERANK``, ``TEST.LMP``); with
``--query-features``/``--gallery-features``: the ``tools/extract_features.py --dataset`` outputs of the two splits
(``--config-file`` is then optional and gives only the ``TEST`` keys).  Writes ``ranks.png``, ``ranks.json``,
``cmc.png`` (and ``roc.png``) into ``--output``.  Borders: blue query, green true match, red false match, orange
distractor (pid 0 / -1), grey junk (same id and camera: not ranked).  Bad input: exit code 2, one line.
``docs/retrieval.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.retrieval.cli import OneLineArgumentParser, load_config, load_model, run_cli
from fastreid_gan.retrieval.feature_extraction import (BAD_IMAGE_POLICIES, RetrievalInputError, dataset_images,
                                                       extract_features, read_features)
from fastreid_gan.retrieval.rank_visualization import SELECTIONS, visualize_ranks


def parser() -> OneLineArgumentParser:
    """The command-line options."""
    p = OneLineArgumentParser(prog="tools/visualize_ranks.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=None, help="the config the checkpoint was trained with")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="the test dataset (default: the config's first DATASETS.TESTS)")
    p.add_argument("--query-features", default=None, metavar="Q.npz|DIR",
                   help="extracted query features (tools/extract_features.py --dataset NAME --split query)")
    p.add_argument("--gallery-features", default=None, metavar="G.npz|DIR", help="... and --split gallery")
    p.add_argument("--num-queries", type=int, default=8, help="rows of the picture (default: %(default)s)")
    p.add_argument("--topk", type=int, default=10, help="ranked gallery images per row (default: %(default)s)")
    p.add_argument("--select", default="first", choices=SELECTIONS,
                   help="which queries: the query set's first ones, the lowest or highest AP, or a random "
                        "sample (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="with --select random (default: %(default)s)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="size of each image in the picture (default: INPUT.SIZE_TEST, at least 128 high)")
    p.add_argument("--output", required=True, metavar="DIR", help="where the PNGs go")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: TEST.IMS_PER_BATCH)")
    p.add_argument("--on-bad-image", default="skip", choices=BAD_IMAGE_POLICIES,
                   help="an unreadable image file: skip it (named in a warning) or stop (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides, MODEL.WEIGHTS among them (after the options)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluate and draw; 0 on success, 2 on bad input (one line on stderr)."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def run() -> int:
        start = time.perf_counter()
        from_files = args.query_features is not None or args.gallery_features is not None
        if from_files:
            if args.query_features is None or args.gallery_features is None:
                raise RetrievalInputError("give both --query-features and --gallery-features (or neither, to "
                                          "encode the test dataset with the model)")
            if args.dataset is not None:
                raise RetrievalInputError("--dataset is for encoding with the model; the features' own labels are "
                                          "used with --query-features/--gallery-features")
            cfg = load_config(args.config_file, args.opts)
            query = read_features(args.query_features, "--query-features")
            gallery = read_features(args.gallery_features, "--gallery-features")
            for option, part, split in (("--query-features", query, "query"), ("--gallery-features", gallery,
                                                                                 "gallery")):
                found = part.meta.get("split")
                if found and found != split:
                    raise RetrievalInputError(f"{option} holds the {found} split of {part.meta.get('dataset')}, "
                                              f"not the {split} split: extract it with --split {split}")
            dataset = str(query.meta.get("dataset", ""))
            if gallery.meta.get("dataset", dataset) != dataset:
                raise RetrievalInputError(f"the query features are of {dataset} but the gallery features of "
                                          f"{gallery.meta.get('dataset')}: give both splits of one dataset")
        else:
            if args.config_file is None:
                raise RetrievalInputError("give --config-file CFG with MODEL.WEIGHTS (or extracted "
                                          "--query-features/--gallery-features)")
            cfg = load_config(args.config_file, args.opts)
            tests = list(cfg.DATASETS.TESTS)
            dataset = args.dataset or (tests[0] if tests else "")
            if not dataset:
                raise RetrievalInputError(f"{args.config_file} has no DATASETS.TESTS: give --dataset NAME")
            query_images, gallery_images = dataset_images(dataset, "query"), dataset_images(dataset, "gallery")
            model = load_model(cfg)
            common = dict(batch_size=args.batch_size, on_bad_image=args.on_bad_image, progress=not args.no_progress)
            query = extract_features(model, query_images, cfg, desc="query", **common)
            gallery = extract_features(model, gallery_images, cfg, desc="gallery", **common)
        result = visualize_ranks(query, gallery, cfg, args.output, num_queries=args.num_queries, topk=args.topk,
                                 select=args.select, seed=args.seed,
                                 image_size=tuple(args.image_size) if args.image_size else None, dataset=dataset)
        shown = "  ".join(f"{k} {v:.2f}" for k, v in result.evaluation.metrics.items() if k != "metric")
        print(f"{dataset or 'features'}: {len(query)} queries x {len(gallery)} gallery ({cfg.TEST.METRIC}): {shown}")
        for name in ("ranks", "cmc", "roc", "json"):
            if name in result.files:
                print(f"{name}: {result.files[name]}")
        print(f"done in {time.perf_counter() - start:.1f} s", flush=True)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Evaluate several trained models on several target datasets: a CMC/mAP matrix, without and with LMP.

    python tools/cross_domain_eval.py \
        --model baseline=configs/Synthetic/baseline_market.yml:logs/synthetic_market/baseline/model_final.pth \
        --model dgnet=projects/DGNet/configs/synthetic.yml:logs/synthetic_market/dgnet/model_final.pth \
        --datasets SyntheticMarket,SyntheticDuke --lmp --lmp-parts 4 --output-dir logs/cross_domain [KEY VALUE ...]

``--model NAME=CONFIG[:WEIGHTS]`` (repeatable; ``:untrained`` for random weights, none for the config's
``MODEL.WEIGHTS``) takes a model of any method; trailing ``KEY VALUE`` pairs override every model's config.
Writes ``matrix.md``, ``matrix.json`` and ``heatmap.png`` into ``--output-dir`` once everything is evaluated.
Bad input stops with exit code 2 and one line naming the problem.  The logic: ``fastreid_gan/evaluation/
cross_domain.py``; ``docs/cross_domain.md``.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from typing import List, Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.evaluation import EvaluationDataError
from fastreid_gan.evaluation.cross_domain import (
    CrossDomainInputError,
    check_output_dir,
    parse_dataset_list,
    parse_model_spec,
    parse_parts_list,
    run_cross_domain,
    write_outputs,
)


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Each row also records the tools/train_net.py --eval-only command that gives "
                                       "its numbers (matrix.json, matrix.md).")
    p.add_argument("--model", action="append", default=[], metavar="NAME=CONFIG[:WEIGHTS]",
                   help="a model: its name in the matrix, its config, its weights (':untrained': random weights; "
                        "none: the config's MODEL.WEIGHTS); repeat for more models")
    p.add_argument("--datasets", default=None, metavar="A,B",
                   help="target datasets, fastreid's registered names (default: the models' DATASETS.TESTS)")
    p.add_argument("--lmp", action="store_true",
                   help="evaluate every model without and with local max pooling (TEST.LMP; docs/lmp.md)")
    p.add_argument("--lmp-parts", default=None, metavar="P[,P...]",
                   help="with --lmp: the stripe counts, one row each (default: the config's TEST.LMP.PARTS, 8)")
    p.add_argument("--lmp-pool", default=None, choices=["max", "avg"],
                   help="with --lmp: pooling per stripe (default: the config's TEST.LMP.POOL, max)")
    p.add_argument("--output-dir", default="logs/cross_domain", help="where the outputs go (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the evaluator's and fastreid's log lines")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to every model's config")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the matrix; 0 on success, 2 on bad input (one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        if args.lmp_parts is not None and not args.lmp:
            raise CrossDomainInputError("--lmp-parts needs --lmp (it sets the LMP rows' stripe counts)")
        if args.lmp_pool is not None and not args.lmp:
            raise CrossDomainInputError("--lmp-pool needs --lmp (it sets the LMP rows' pooling)")
        specs = [parse_model_spec(text) for text in args.model]
        datasets: Optional[List[str]] = parse_dataset_list(args.datasets) if args.datasets is not None else None
        parts = parse_parts_list(args.lmp_parts) if args.lmp_parts is not None else None
        check_output_dir(args.output_dir)
        result = run_cross_domain(specs, datasets, lmp=args.lmp, lmp_parts=parts, lmp_pool=args.lmp_pool,
                                  opts=args.opts, progress=lambda line: print(line, flush=True),
                                  command=shlex.join(["python", "tools/cross_domain_eval.py"] + argv))
    except (CrossDomainInputError, EvaluationDataError) as exc:  # named, one line; nothing written
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    written = write_outputs(result, args.output_dir)
    print(f"done in {result.seconds:.0f} s: " + ", ".join(str(p) for p in written.values()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

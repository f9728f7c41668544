#!/usr/bin/env python
"""Images from a trained GAN re-id model, by the method its config names (``MODEL.META_ARCHITECTURE``).

    python tools/generate.py --config-file projects/DGNet/configs/synthetic.yml \
        --weights logs/synthetic_market/dgnet/model_final.pth [--output-dir DIR] [method options] [KEY VALUE ...]

Each method brings its own part (DG-Net: ``projects/DGNet/dgnet/generate_tool.py``: swap grid, interpolation,
``--swap-accuracy``), registered with :func:`fastreid_gan.method_tools.register_method_tool`;
``--config-file CFG --help`` lists the options of CFG's method.  Trailing ``KEY VALUE`` pairs override the config.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.method_tools import get_method_tool, methods_with_tool
from fastreid_gan.model_loading import load_model_for_inference
from fastreid_gan.runner import resolve_device

TOOL = "generate"


def common_parser(add_help: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    p.add_argument("--config-file", required=add_help, help="the config the checkpoint was trained with")
    p.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS of the config)")
    p.add_argument("--output-dir", default="", help="where images go (default: <OUTPUT_DIR>/generate)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    known, _ = common_parser(add_help=False).parse_known_args(argv)
    if not known.config_file:
        common_parser(add_help=True).parse_args(argv)  # prints the usage and exits
    cfg = merge_config(get_cfg(), known.config_file)
    try:
        tool = get_method_tool(TOOL, cfg.MODEL.META_ARCHITECTURE)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2

    parser = common_parser(add_help=True)
    parser.epilog = f"Methods with a '{TOOL}' tool: {', '.join(methods_with_tool(TOOL))}."
    tool.add_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = merge_config(get_cfg(), args.config_file, args.opts)
    if cfg.MODEL.META_ARCHITECTURE != tool.meta_arch:
        raise ValueError(f"The overrides change MODEL.META_ARCHITECTURE to {cfg.MODEL.META_ARCHITECTURE!r}: "
                         f"use a config of that method instead")
    resolve_device(cfg)
    model = load_model_for_inference(cfg, args.weights or cfg.MODEL.WEIGHTS,
                                     source="--weights" if args.weights else "MODEL.WEIGHTS")
    if not args.output_dir:
        args.output_dir = os.path.join(cfg.OUTPUT_DIR, TOOL)
    return tool.run(args, cfg, model)


if __name__ == "__main__":
    sys.exit(main())

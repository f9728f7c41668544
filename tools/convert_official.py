#!/usr/bin/env python
"""Convert officially published GAN re-id checkpoints into fastreid-gan checkpoints.

    python tools/convert_official.py dgnet --gen gen_00100000.pt --id id_00100000.pt \
        [--dis dis_00100000.pt] [--num-classes 751] --output dgnet_market.pth

The output, ``{"model": state_dict, "__converted_from__": "<method>-official"}``, loads with ``MODEL.WEIGHTS``
(fastreid's Checkpointer). ``python tools/convert_official.py -h`` lists the available methods; each method's
conversion table lives in its project (``projects/DGNet/dgnet/convert.py``).
"""
import argparse
import sys
from typing import Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.official_checkpoints import available_converters, get_converter, save_converted


def build_parser() -> argparse.ArgumentParser:
    """``convert_official.py <method> ...`` with one sub-command per registered converter."""
    parser = argparse.ArgumentParser(
        prog="convert_official.py",
        description="Convert officially published checkpoints into fastreid-gan checkpoints "
        "(loadable with MODEL.WEIGHTS / fastreid's Checkpointer).",
    )
    sub = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name in available_converters():
        spec = get_converter(name)
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.add_arguments(p)
        p.add_argument("--output", "-o", required=True, help="converted checkpoint to write (.pth)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the converter CLI on ``argv`` (default: sys.argv[1:]); errors in the inputs give exit code 2 and a
    one-line message."""
    args = build_parser().parse_args(argv)
    spec = get_converter(args.method)
    try:
        state_dict = spec.run(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_converted(state_dict, args.output, spec.tag)
    print(f"wrote {args.output}: {len(state_dict)} tensors (converted from {spec.tag})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

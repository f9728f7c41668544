#!/usr/bin/env python
"""Convert officially published GAN re-id checkpoints into fastreid-gan checkpoints.

    python tools/convert_official.py dgnet --gen gen_00100000.pt --id id_00100000.pt \
        [--dis dis_00100000.pt] [--num-classes 751] --output dgnet_market.pth

The output, ``{"model": state_dict, "__converted_from__": "<method>-official"}``, loads with ``MODEL.WEIGHTS``
(fastreid's Checkpointer). ``python tools/convert_official.py -h`` lists the available methods.
"""
import sys
from typing import Optional, Sequence

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from fastreid_gan.export.converters import main as _main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the converter CLI on ``argv`` (default: sys.argv[1:]); returns the exit code."""
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())

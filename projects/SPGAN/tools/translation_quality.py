#!/usr/bin/env python
"""How good an SPGAN / eSPGAN translation is: the style measure (Fréchet distance of the images' Lab colour
statistics to the target domain, translated vs untranslated source) and, with a re-id model, identity preservation
(re-id of the translated images against their own source identities, vs the untranslated reference).

    python projects/SPGAN/tools/translation_quality.py --source Market1501 \
        --translated datasets/spgan-translated --target DukeMTMC [--split train] [--target-split train] \
        [--size 256x128] [--reid-config CFG --reid-weights W] [--json quality.json] [KEY VALUE ...]

The work is :mod:`spgan.translation_quality`'s (docs/spgan.md). Prints a markdown table; bad input: one line on
stderr, exit code 2.
"""
import sys

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from spgan.translation_quality import main

if __name__ == "__main__":
    sys.exit(main())

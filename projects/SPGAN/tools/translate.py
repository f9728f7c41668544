#!/usr/bin/env python
"""Translate a source dataset into the target style with a trained SPGAN / eSPGAN and write it as a Market-1501
layout dataset (same file names: identities and cameras kept) that ``DATASETS.NAMES ("TranslatedMarket",)`` reads.

    python projects/SPGAN/tools/translate.py --config-file projects/SPGAN/configs/market2duke.yml \
        --weights spgan_m2d.pth [--dataset Market1501] [--output DIR] [--direction source_to_target] \
        [--splits all|train] [--batch 16] [--overwrite] [KEY VALUE ...]

The work is :mod:`spgan.translate_dataset`'s (docs/spgan.md, "Translating a dataset"). Bad input: one line on
stderr, exit code 2.
"""
import sys

import fastreid_gan  # noqa: F401  (fastreid compatibility fixes first)
from spgan.translate_dataset import main

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Generate a synthetic re-id dataset in Market-1501's layout.

Examples::

    python tools/make_synthetic.py --domain market --preset small --root datasets
    python tools/make_synthetic.py --domain duke --preset tiny --root /tmp/data --height 256 --width 128
    # readable by fastreid's stock Market1501 class:
    python tools/make_synthetic.py --domain market --preset tiny --root /tmp/data --folder Market-1501-v15.09.15
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import fastreid_gan  # noqa: F401  (fastreid fixes before anything else)
from fastreid_gan.data import datasets_root
from fastreid_gan.data.synthetic import DOMAINS, PRESETS, read_meta, write_dataset


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--domain", choices=sorted(DOMAINS), default="market")
    p.add_argument("--preset", choices=list(PRESETS), default="small")
    p.add_argument("--root", default=datasets_root(),
                   help="datasets root (default: $FASTREID_DATASETS or ./datasets)")
    p.add_argument("--folder", default=None,
                   help="folder under the root (default synthetic-<domain>[-<preset>])")
    p.add_argument("--height", type=int, default=None, help="image height (default 128)")
    p.add_argument("--width", type=int, default=None, help="image width (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the folder if it exists")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Generate the dataset and print what was written."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        path = write_dataset(args.root, args.domain, args.preset, folder=args.folder, height=args.height,
                             width=args.width, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = read_meta(path) or {}
    counts = meta.get("counts", {})
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s "
          f"(domain {meta.get('domain')}, preset {meta.get('preset')}, {meta.get('height')}x{meta.get('width')}, "
          f"seed {meta.get('seed')}, {meta.get('num_cams')} cameras)")
    print(f"  bounding_box_train: {counts.get('train')} images, {counts.get('train_ids')} ids")
    print(f"  query:              {counts.get('query')} images, {counts.get('test_ids')} ids")
    print(f"  bounding_box_test:  {counts.get('gallery')} images ({counts.get('distractors')} distractors 0000, "
          f"{counts.get('junk')} junk -1)")
    print("  poses/ (FD-GAN keypoints), annotations.json, synthetic.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Write FD-GAN keypoint files (``<dataset>/poses/<stem>.txt``) for images that have none, with MediaPipe BlazePose.

Examples::

    # a folder (or a quoted glob) of images; files go to poses/ beside the image folder
    python projects/FDGAN/tools/estimate_poses.py --images datasets/Market-1501-v15.09.15/bounding_box_train
    python projects/FDGAN/tools/estimate_poses.py --images 'datasets/Market-1501-v15.09.15/*/*.jpg'
    # the splits of a registered fastreid dataset (under $FASTREID_DATASETS, default ./datasets)
    python projects/FDGAN/tools/estimate_poses.py --dataset Market1501 --splits train query gallery
    # mediapipe installed in a separate environment instead of this one
    python projects/FDGAN/tools/estimate_poses.py --images ... --mediapipe-python ~/.venvs/mediapipe/bin/python

Exit codes: 0 done; 1 an image cannot be read; 2 bad arguments or no images; 3 the pose estimator is unavailable
(the message says how to get one).  Every file is written whole (temporary name, then renamed), and existing
files are kept, so a rerun after an error continues where it stopped.
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

from fdgan.pose_estimation import MediaPipeEstimator, PoseEstimatorUnavailableError, estimate_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "query", "gallery")
EXIT_USAGE, EXIT_UNAVAILABLE = 2, 3


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="FOLDER_OR_GLOB",
                        help="image folders (their *.jpg/*.jpeg/*.png/*.bmp, not recursive) or glob patterns")
    source.add_argument("--dataset", metavar="NAME",
                        help="a registered fastreid dataset, read from $FASTREID_DATASETS (default ./datasets)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="with --dataset")
    p.add_argument("--pose-dir", default="",
                   help="write all files into this folder (default: poses/ beside each image's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace existing keypoint files (default: keep them)")
    p.add_argument("--min-visibility", type=float, default=0.5,
                   help="BlazePose visibility below which a joint is written as missing (default 0.5)")
    p.add_argument("--min-detection-confidence", type=float, default=0.5,
                   help="BlazePose person-detection threshold (default 0.5)")
    p.add_argument("--mediapipe-python", default=None, metavar="PYTHON",
                   help="run mediapipe in this interpreter (a separate environment with mediapipe installed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def images_from(patterns: Sequence[str]) -> List[str]:
    """The image files of folders and glob patterns, sorted, each once."""
    found: List[str] = []
    for pattern in patterns:
        if osp.isdir(pattern):
            names = sorted(os.listdir(pattern))
            found += [osp.join(pattern, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            found += sorted(f for f in glob.glob(pattern, recursive=True)
                            if osp.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS))
    return list(dict.fromkeys(found))


def dataset_images(name: str, splits: Sequence[str]) -> List[str]:
    """The image paths of ``splits`` of a registered fastreid dataset."""
    # Imported only here: fastreid (and torch) are not needed for --images.
    import fastreid_gan  # noqa: F401  (fastreid fixes and the synthetic datasets' registration)
    from fastreid_gan.data.samples import split_items

    paths: List[str] = []
    for split in splits:
        paths += [item[0] for item in split_items(name, split)]
    return list(dict.fromkeys(paths))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Estimate and write the keypoint files; print what was done."""
    args = parse_args(argv)
    if not 0.0 <= args.min_visibility <= 1.0:
        print(f"error: --min-visibility must be in [0, 1], got {args.min_visibility}", file=sys.stderr)
        return EXIT_USAGE
    if args.images is not None:
        paths = images_from(args.images)
        what = " ".join(args.images)
    else:
        paths = dataset_images(args.dataset, args.splits)
        what = f"{args.dataset} ({', '.join(args.splits)})"
    if not paths:
        print(f"error: no images ({'/'.join(IMAGE_EXTENSIONS)}) found in {what}", file=sys.stderr)
        return EXIT_USAGE

    try:
        estimator = MediaPipeEstimator(args.min_visibility, args.min_detection_confidence,
                                       python=args.mediapipe_python)
    except PoseEstimatorUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"{len(paths)} images from {what}; estimator: {estimator.description}")
    try:
        with estimator:
            stats = estimate_dataset(paths, estimator, pose_dir=args.pose_dir, overwrite=args.overwrite,
                                     progress=not args.no_progress)
    except PoseEstimatorUnavailableError as e:  # the worker died mid-run; the files written so far are whole
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except OSError as e:  # an unreadable image
        print(f"error: {e}. The keypoint files written so far are complete; fix or remove the image and run "
              f"again to continue (existing files are kept)", file=sys.stderr)
        return 1

    where = args.pose_dir or "poses/ beside each image folder"
    print(f"wrote {stats['written']} keypoint files into {where}, kept {stats['skipped']} existing ones"
          f"{'' if args.overwrite else ' (--overwrite replaces them)'}; {stats['joints_found']:.1f} of 18 joints "
          f"found per image with a person")
    if stats["no_person"]:
        shown = stats["no_person_paths"][:10]
        more = stats["no_person"] - len(shown)
        listing = "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        print(f"no person found in {stats['no_person']} of {stats['written']} images (their files are all "
              f"'-1 -1', i.e. empty pose maps):\n  {listing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

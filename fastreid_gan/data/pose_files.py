"""FD-GAN's keypoint files: ``<dataset>/poses/<image stem>.txt``, one per image, written by the synthetic datasets
and by pose estimators, read by the methods that take poses (FD-GAN).

Format (the published FD-GAN data): 18 lines ``y x``, pixel positions in the ORIGINAL image, OpenPose COCO-18
joint order, ``-1 -1`` for a joint that was not found.  A file that breaks the format is an error naming the
file, the line and the format; a missing file names where it was looked for.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Union

import numpy as np

__all__ = ["POSES_DIR", "POSE_FILE_FORMAT", "PoseFileError", "PoseFileMissingError", "pose_file_for",
           "read_pose_file", "write_pose_file"]

PathLike = Union[str, "os.PathLike[str]"]
POSES_DIR = "poses"
NUM_JOINTS = 18
POSE_FILE_FORMAT = ("18 lines 'y x' (pixels of the original image, OpenPose COCO-18 joint order), '-1 -1' for a "
                    "missing joint")


class PoseFileError(ValueError):
    """A keypoint file that does not follow :data:`POSE_FILE_FORMAT`."""


class PoseFileMissingError(FileNotFoundError):
    """An image has no keypoint file."""


def pose_file_for(image_path: PathLike, pose_dir: str = "") -> str:
    """Where the keypoints of ``image_path`` are: ``<pose_dir>/<stem>.txt`` when ``pose_dir`` is given, else
    ``poses/<stem>.txt`` beside the image's folder (``<dataset>/bounding_box_train/x.jpg`` ->
    ``<dataset>/poses/x.txt``; open-reid's ``<dataset>/images/x.jpg`` likewise)."""
    image_path = os.fspath(image_path)
    stem = osp.splitext(osp.basename(image_path))[0]
    folder = pose_dir or osp.join(osp.dirname(osp.dirname(osp.abspath(image_path))), POSES_DIR)
    return osp.join(folder, stem + ".txt")


def write_pose_file(path: PathLike, keypoints: np.ndarray, visible: np.ndarray) -> None:
    """Write (18, 2) ``(x, y)`` keypoints as 18 lines ``y x`` (1 decimal), ``-1 -1`` where not ``visible``."""
    lines = []
    for (x, y), v in zip(np.asarray(keypoints, float), np.asarray(visible, bool)):
        lines.append(f"{y:.1f} {x:.1f}" if v else "-1 -1")
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def read_pose_file(path: PathLike, num_joints: int = NUM_JOINTS) -> np.ndarray:
    """(num_joints, 2) float64 ``(y, x)`` of a keypoint file, ``-1`` for missing joints (blank lines ignored).

    Raises:
        PoseFileMissingError: the file does not exist.
        PoseFileError: a line is not two numbers, a coordinate is negative but not a missing joint, or the
            file has another number of joints; the message names the file, the line and the format.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise PoseFileMissingError(
            f"Keypoint file not found: {path}. Each image needs one ({POSE_FILE_FORMAT}): the published FD-GAN "
            f"data ships them in poses/; for other images run a pose estimator (OpenPose COCO model) and write "
            f"one file per image, or point MODEL.FDGAN.POSE.DIR at the folder that holds them")
    rows = []
    try:
        with open(path, "r", encoding="ascii") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise PoseFileError(f"{path}: not a text file; expected {POSE_FILE_FORMAT}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            y, x = (float(v) for v in fields)
        except ValueError:
            raise PoseFileError(f"{path}, line {number}: {line.strip()!r} is not two numbers 'y x'; expected "
                                f"{POSE_FILE_FORMAT}") from None
        missing = (y, x) == (-1.0, -1.0)
        if not missing and (y < 0 or x < 0):
            raise PoseFileError(f"{path}, line {number}: {line.strip()!r} has a negative coordinate; a missing "
                                f"joint is written '-1 -1' ({POSE_FILE_FORMAT})")
        rows.append((y, x))
    if len(rows) != num_joints:
        raise PoseFileError(f"{path}: {len(rows)} keypoint lines, expected {num_joints} ({POSE_FILE_FORMAT})")
    return np.asarray(rows, dtype=np.float64)

"""Pose heat-maps, FD-GAN's pose input (paper Sec. 3.2; published ``Preprocessor._generate_pose_map``).

Keypoints are OpenPose COCO-18 joints as ``(y, x)`` pixel positions, ``(-1, -1)`` for a missing joint.  Each
joint becomes one map: a 1 at its pixel, smoothed by a Gaussian of ``sigma`` (published 5) and divided by its
maximum, so values lie in [0, 1]; a missing joint (or one outside the image) gives an all-zero map.
"""
from __future__ import annotations

import random
from typing import Optional, Sequence, Tuple

import numpy as np

from fastreid_gan.data.pose_files import pose_file_for, read_pose_file

__all__ = ["COCO18_JOINTS", "COCO18_LEFT_RIGHT", "joint_heatmaps", "flip_keypoints", "scale_keypoints",
           "image_keypoints", "augment_pose"]

COCO18_JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
                 "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# joints that trade places when the image is mirrored
COCO18_LEFT_RIGHT: Tuple[Tuple[int, int], ...] = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15),
                                                  (16, 17))


def _valid(keypoints: np.ndarray, size: Sequence[int]) -> np.ndarray:
    h, w = size
    y, x = keypoints[:, 0], keypoints[:, 1]
    return (y >= 0) & (x >= 0) & (y < h) & (x < w)


#: scipy.ndimage's default kernel radius, in standard deviations
_TRUNCATE = 4.0


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """scipy.ndimage's sampled Gaussian kernel: radius ``int(4 sigma + 0.5)``, normalised to sum 1."""
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 / (sigma * sigma) * offsets * offsets)
    return kernel / kernel.sum()


def _profile(position: int, length: int, sigma: float, kernel: Optional[np.ndarray] = None) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter1d`` of a unit impulse at ``position`` (its default reflecting borders:
    ``d c b a | a b c d | d c b a``), divided by its max, computed directly: the kernel placed at the impulse
    and at each of its mirror images. (scipy's call costs more than the arithmetic at these sizes, and augmented
    sigmas are continuous, so a cache would miss.)"""
    kernel = _gaussian_kernel(sigma) if kernel is None else kernel
    radius = len(kernel) // 2
    out = np.zeros(length, dtype=np.float64)
    period = 2 * length  # the reflected signal repeats every 2L samples
    repeats = radius // period + 1
    for image in (position, -1 - position):  # the impulse and its mirror about the left border
        for m in range(-repeats, repeats + 1):
            centre = image + m * period
            lo, hi = max(0, centre - radius), min(length, centre + radius + 1)
            if lo < hi:
                out[lo:hi] += kernel[lo - centre + radius:hi - centre + radius]
    return out / out.max()


def joint_heatmaps(keypoints: np.ndarray, size: Sequence[int] = (256, 128), sigma: float = 5.0) -> np.ndarray:
    """(J, H, W) float32 heat-maps of ``keypoints`` (J, 2) integer ``(y, x)`` in the map's pixels.

    The published maps are ``scipy.ndimage.gaussian_filter`` of a 2-D impulse; that filter is separable and so is
    the impulse, so the map is the outer product of two 1-D filtered impulses (the same numbers, about 100x
    faster: the training loader makes 36 maps per pair).
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"keypoints must be (joints, 2) as (y, x) pairs; got shape {keypoints.shape}")
    h, w = (int(s) for s in size)
    maps = np.zeros((len(keypoints), h, w), dtype=np.float32)
    valid = _valid(keypoints, (h, w))
    kernel = _gaussian_kernel(float(sigma))
    for j in np.flatnonzero(valid):
        column = _profile(int(keypoints[j, 0]), h, float(sigma), kernel)
        row = _profile(int(keypoints[j, 1]), w, float(sigma), kernel)
        np.outer(column, row, out=maps[j])
    return maps


def scale_keypoints(keypoints: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]) -> np.ndarray:
    """Keypoints of an image of ``from_size`` (H, W) moved to ``to_size``, truncated to integers as published;
    missing joints stay ``(-1, -1)``."""
    keypoints = np.asarray(keypoints)
    scale = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    scaled = np.floor(keypoints * scale).astype(np.int64)
    missing = (keypoints < 0).any(axis=1)
    scaled[missing] = -1
    return scaled


def flip_keypoints(keypoints: np.ndarray, width: int, swap_left_right: bool = True) -> np.ndarray:
    """Keypoints of the horizontally mirrored image.  ``swap_left_right`` also exchanges left and right joints
    (the mirrored left wrist is a right wrist); the published code does not (``False``)."""
    keypoints = np.asarray(keypoints).copy()
    present = (keypoints >= 0).all(axis=1)
    keypoints[present, 1] = width - 1 - keypoints[present, 1]
    if swap_left_right:
        for left, right in COCO18_LEFT_RIGHT:
            keypoints[[left, right]] = keypoints[[right, left]]
    return keypoints


def image_keypoints(image_path: str, original_size: Sequence[int], size: Sequence[int],
                    pose_dir: str = "") -> np.ndarray:
    """Integer ``(y, x)`` keypoints (18, 2) of an image, from its keypoint file
    (:func:`fastreid_gan.data.pose_files.pose_file_for`; ``pose_dir`` is ``MODEL.FDGAN.POSE.DIR``), moved from
    the image's ``original_size`` (H, W) to the network's ``size``; ``-1`` for missing joints.

    Raises ``PoseFileMissingError`` / ``PoseFileError`` naming the file.
    """
    keypoints = read_pose_file(pose_file_for(image_path, pose_dir))
    return scale_keypoints(keypoints, original_size, size)


def augment_pose(keypoints: np.ndarray, rng: random.Random, sigma_range: Sequence[float] = (4.0, 6.0),
                 integer_sigma: bool = True, drop_joint_prob: float = 0.0) -> Tuple[np.ndarray, float]:
    """FD-GAN's training pose augmentation (Sec. 4.1): ``(keypoints, sigma)`` for one target pose map.

    The Gaussian's sigma is drawn in ``sigma_range``: an integer (the published "gauss" mode: 4, 5 or 6) or, with
    ``integer_sigma=False``, uniformly (the paper's U[4, 6]).  With probability ``drop_joint_prob`` one present joint
    is removed (the published "erase" mode).  ``keypoints`` is not modified.
    """
    low, high = float(sigma_range[0]), float(sigma_range[1])
    sigma = float(rng.randint(int(low), int(high))) if integer_sigma else rng.uniform(low, high)
    keypoints = np.array(keypoints, copy=True)
    if drop_joint_prob > 0 and rng.random() < drop_joint_prob:
        present = np.flatnonzero((keypoints >= 0).all(axis=1))
        if len(present):
            keypoints[present[rng.randrange(len(present))]] = -1
    return keypoints, sigma

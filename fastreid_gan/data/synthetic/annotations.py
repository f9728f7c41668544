"""Reading and writing the per-image annotations: FD-GAN pose files, ``annotations.json``, region masks.

``annotations.json`` (written next to ``bounding_box_train/`` etc.)::

    {"meta": {domain, preset, seed, height, width, num_cams, counts, keypoint_names, ...},
     "identities": {"<pid>": {top_rgb: [r, g, b], bottom_rgb: [...], top_colour: "red", ...}},
     "images": {"<file name>": {split, pid, camid (1-based, as in the name), frame, kind,
                                facing, phase, position, scale, ..., occluded, keypoints: 18 x [x, y, v]}}}

Keypoints are pixel coordinates in OpenPose/COCO-18 order (:data:`skeleton.KEYPOINT_NAMES`), ``v`` is 1 when
the point is visible; an invisible point keeps its projected position.  Pose files ``poses/<stem>.txt`` hold
18 lines ``y x`` (FD-GAN order) with ``-1 -1`` for invisible points (:mod:`fastreid_gan.data.pose_files`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Union

import cv2
import numpy as np

from ..pose_files import POSES_DIR, read_pose_file, write_pose_file  # noqa: F401  (re-exported)
from .skeleton import KP, NUM_KEYPOINTS

PathLike = Union[str, "os.PathLike[str]"]

ANNOTATIONS_FILE = "annotations.json"


def load_annotations(dataset_dir: PathLike) -> Dict[str, Any]:
    """Load ``<dataset_dir>/annotations.json``; identity keys are turned into ``int`` pids.

    Images are keyed by file name (``os.path.basename`` of an image path), unique across the splits.
    """
    with open(os.path.join(os.fspath(dataset_dir), ANNOTATIONS_FILE), "r", encoding="utf-8") as f:
        data = json.load(f)
    data["identities"] = {int(k): v for k, v in data["identities"].items()}
    return data


def _as_points(keypoints: Any) -> np.ndarray:
    """(18, 2) x, y with NaN for missing points, from (18, 2) x, y (negative = missing) or (18, 3) x, y, v."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape not in ((NUM_KEYPOINTS, 2), (NUM_KEYPOINTS, 3)):
        raise ValueError(f"keypoints must be (18, 2) x, y or (18, 3) x, y, v; got {kp.shape}")
    pts = kp[:, :2].copy()
    missing = (pts < 0).any(axis=1)
    if kp.shape[1] == 3:
        missing |= kp[:, 2] <= 0
    pts[missing] = np.nan
    return pts


def _capsule(mask: np.ndarray, a: np.ndarray, b: np.ndarray, thickness: float) -> None:
    shift = 4
    pa = tuple(int(round(v * 16)) for v in a)
    pb = tuple(int(round(v * 16)) for v in b)
    cv2.line(mask, pa, pb, 1, max(1, int(round(thickness))), cv2.LINE_8, shift)


def region_masks(keypoints: Any, height: int, width: int, full_legs: bool = False,
                 cut_arms: bool = True) -> Dict[str, np.ndarray]:
    """Boolean ``torso`` and ``legs`` masks (H, W) from one image's keypoints, well inside the clothes.

    ``keypoints``: (18, 2) x, y (negative = missing) or (18, 3) x, y, v as in ``annotations.json`` (v = 0 is
    missing).  The torso mask is a band along the shoulders-to-hips axis, trimmed at the collar and the belt;
    the legs mask covers the upper thighs, which are the bottom garment for trousers and shorts alike
    (``full_legs=True`` follows hip-knee-ankle instead, for trousers).  Visible forearms are cut out of both,
    as they may be bare skin in front of the body; pass ``cut_arms=False`` for an identity with long sleeves
    (``"sleeves": "long"`` in ``annotations.json``), whose arms are the top's colour.  A region is empty when
    its points are missing or, in side views, when the arm covers it.  Used to read "the colour of this person's top / bottom" from an image, e.g. a generated one.
    """
    pts = _as_points(keypoints)
    masks = {"torso": np.zeros((height, width), np.uint8), "legs": np.zeros((height, width), np.uint8)}

    def mean_of(*names: str) -> np.ndarray:
        sel = pts[[KP[n] for n in names]]
        sel = sel[~np.isnan(sel).any(axis=1)]
        return sel.mean(axis=0) if len(sel) else np.full(2, np.nan)

    top = mean_of("r_shoulder", "l_shoulder")
    if np.isnan(top).any():
        top = mean_of("neck")
    bottom = mean_of("r_hip", "l_hip")
    length, length_known = 0.0, False
    if not (np.isnan(top).any() or np.isnan(bottom).any()):
        axis = bottom - top
        length = float(np.linalg.norm(axis))
        length_known = length >= 2.0
        if length_known:
            direction = axis / length
            r, l = pts[KP["r_shoulder"]], pts[KP["l_shoulder"]]
            if np.isnan(r).any() or np.isnan(l).any():
                thickness = 0.22 * length
            else:
                thickness = float(np.clip(0.6 * np.linalg.norm(r - l), 0.22 * length, 0.5 * length))
            # Round caps stick out by half the thickness: pull the ends in so the band stops short of the
            # collar (12% down) and the belt (8% up).
            a = top + direction * (0.12 * length + thickness / 2)
            b = bottom - direction * (0.08 * length + thickness / 2)
            if np.dot(b - a, direction) <= 0:
                a = b = (a + b) / 2
            _capsule(masks["torso"], a, b, thickness)

    for side in ("r", "l"):
        hip, knee, ankle = pts[KP[f"{side}_hip"]], pts[KP[f"{side}_knee"]], pts[KP[f"{side}_ankle"]]
        if np.isnan(hip).any() or np.isnan(knee).any():
            continue
        thigh = float(np.linalg.norm(knee - hip))
        if thigh < 2.0:
            continue
        thickness = 0.22 * thigh
        if full_legs and not np.isnan(ankle).any():
            _capsule(masks["legs"], hip + 0.3 * (knee - hip), knee, thickness)
            _capsule(masks["legs"], knee, ankle - 0.1 * (ankle - knee), thickness * 0.8)
        else:
            _capsule(masks["legs"], hip + 0.3 * (knee - hip), hip + 0.55 * (knee - hip), thickness)
    # Arms in front of the body (side views) may be bare skin: cut the visible forearms and elbows out.
    arms = np.zeros((height, width), np.uint8)
    arm_thickness = 0.26 * length if length_known else None
    for side in ("r", "l") if cut_arms else ():
        shoulder, elbow, wrist = pts[KP[f"{side}_shoulder"]], pts[KP[f"{side}_elbow"]], pts[KP[f"{side}_wrist"]]
        if np.isnan(elbow).any():
            continue
        t = arm_thickness
        if t is None:
            if np.isnan(shoulder).any() or np.isnan(wrist).any():
                continue
            t = 0.3 * float(np.linalg.norm(elbow - shoulder))
        # short sleeves end about 60% down the upper arm
        start = elbow if np.isnan(shoulder).any() else shoulder + 0.55 * (elbow - shoulder)
        _capsule(arms, start, elbow, t)
        if not np.isnan(wrist).any():
            _capsule(arms, elbow, wrist + 0.2 * (wrist - elbow), t)
    keep = arms == 0
    return {k: v.astype(bool) & keep for k, v in masks.items()}

"""18-keypoint (OpenPose / COCO-18) body model and a procedural walking cycle.

The body lives in a small 3D frame measured in person heights: X points to the person's left, Y points down
(0 at the top of the head, 1 at the soles), Z points where the person faces.  :func:`walking_pose` poses that
body; :func:`project` turns it into image coordinates for a given facing (yaw) and placement, keeping a depth
value ("towards the camera") per point so the renderer can draw in painter's order and decide occlusion.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)
KP: Dict[str, int] = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# OpenPose-style limb list, handy for drawing skeletons in visualisations.
LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

FACE_KEYPOINTS: Tuple[int, ...] = (KP["nose"], KP["r_eye"], KP["l_eye"], KP["r_ear"], KP["l_ear"])

# Facing name -> yaw in degrees. Yaw 0 faces the camera; positive yaw turns the person towards image-right.
FACINGS: Dict[str, float] = {"front": 0.0, "right": 90.0, "back": 180.0, "left": 270.0}

# Proportions (fractions of the body height).
HEAD_CENTER_Y = 0.065
HEAD_RADIUS = (0.048, 0.064)      # (horizontal, vertical) half-axes of the head ellipse
NECK_Y = 0.15
SHOULDER_Y = 0.19
HIP_Y = 0.52
SHOULDER_HALF_WIDTH = 0.105
HIP_HALF_WIDTH = 0.062
THIGH = 0.235
SHIN = 0.215
UPPER_ARM = 0.165
FOREARM = 0.15
ANKLE_Y = 0.955                   # the ankle of the lowest foot after grounding


@dataclass(frozen=True)
class Body:
    """Per-identity body shape and gait."""

    width: float = 1.0            # multiplies every horizontal half-width
    stride: float = 0.38          # thigh swing amplitude (radians)
    arm_swing: float = 0.32       # upper-arm swing amplitude (radians)


@dataclass
class Pose3D:
    """A posed body: the 18 keypoints plus helper points used only for drawing."""

    keypoints: np.ndarray         # (18, 3) X, Y, Z
    extra: Dict[str, np.ndarray]  # named helper points, each (3,)


def _leg(hip: np.ndarray, thigh_angle: float, knee_flex: float) -> Tuple[np.ndarray, np.ndarray]:
    # Angles are measured in the Y-Z plane from straight down; positive swings the leg forward.
    knee = hip + THIGH * np.array([0.0, np.cos(thigh_angle), np.sin(thigh_angle)])
    shin_angle = thigh_angle - knee_flex
    ankle = knee + SHIN * np.array([0.0, np.cos(shin_angle), np.sin(shin_angle)])
    return knee, ankle


def _arm(shoulder: np.ndarray, side: float, swing: float, elbow_flex: float, width: float
         ) -> Tuple[np.ndarray, np.ndarray]:
    # Arms hang slightly away from the body (side = +1 left, -1 right) so they do not vanish into the torso.
    out = 0.012 * width * side
    elbow = shoulder + np.array([out, UPPER_ARM * np.cos(swing), UPPER_ARM * np.sin(swing)])
    fore = swing + elbow_flex
    wrist = elbow + np.array([out * 0.5, FOREARM * np.cos(fore), FOREARM * np.sin(fore)])
    return elbow, wrist


def walking_pose(phase: float, body: Body = Body()) -> Pose3D:
    """Pose the body at ``phase`` (radians) of the walking cycle; the lower ankle rests at ``ANKLE_Y``."""
    w = body.width
    kp = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)
    kp[KP["neck"]] = (0.0, NECK_Y, 0.0)
    kp[KP["r_shoulder"]] = (-SHOULDER_HALF_WIDTH * w, SHOULDER_Y, 0.0)
    kp[KP["l_shoulder"]] = (SHOULDER_HALF_WIDTH * w, SHOULDER_Y, 0.0)
    kp[KP["r_hip"]] = (-HIP_HALF_WIDTH * w, HIP_Y, 0.0)
    kp[KP["l_hip"]] = (HIP_HALF_WIDTH * w, HIP_Y, 0.0)

    # Legs are half a cycle apart; the knee bends while its leg swings forward (cos > 0).
    for side, offset in (("r", 0.0), ("l", np.pi)):
        p = phase + offset
        thigh = body.stride * np.sin(p)
        flex = 0.08 + 0.75 * max(0.0, np.cos(p)) * body.stride / 0.38
        knee, ankle = _leg(kp[KP[f"{side}_hip"]], thigh, flex)
        kp[KP[f"{side}_knee"]] = knee
        kp[KP[f"{side}_ankle"]] = ankle

    # Arms swing against the leg of the same side.
    for side, sign, offset in (("r", -1.0, 0.0), ("l", 1.0, np.pi)):
        swing = -body.arm_swing * np.sin(phase + offset)
        flex = 0.15 + 0.25 * max(0.0, swing) / max(body.arm_swing, 1e-6)
        elbow, wrist = _arm(kp[KP[f"{side}_shoulder"]], sign, swing, flex, w)
        kp[KP[f"{side}_elbow"]] = elbow
        kp[KP[f"{side}_wrist"]] = wrist

    head = np.array([0.0, HEAD_CENTER_Y, 0.005])
    kp[KP["nose"]] = head + (0.0, 0.012, 0.038)  # inside the head outline even in profile
    kp[KP["r_eye"]] = head + (-0.018, -0.004, 0.040)
    kp[KP["l_eye"]] = head + (0.018, -0.004, 0.040)
    kp[KP["r_ear"]] = head + (-0.88 * HEAD_RADIUS[0], 0.004, -0.004)
    kp[KP["l_ear"]] = head + (0.88 * HEAD_RADIUS[0], 0.004, -0.004)

    # Ground the body: the lower ankle sits at ANKLE_Y, so the head bobs during the stride as in real gait.
    dy = ANKLE_Y - max(kp[KP["r_ankle"], 1], kp[KP["l_ankle"], 1])
    kp[:, 1] += dy
    head = head + (0.0, dy, 0.0)
    extra = {"head": head}
    for side in ("r", "l"):
        ankle = kp[KP[f"{side}_ankle"]]
        extra[f"{side}_heel"] = ankle + (0.0, 0.025, -0.012)
        extra[f"{side}_toe"] = ankle + (0.0, 0.03, 0.05)
        wrist, elbow = kp[KP[f"{side}_wrist"]], kp[KP[f"{side}_elbow"]]
        direction = (wrist - elbow) / max(np.linalg.norm(wrist - elbow), 1e-6)
        extra[f"{side}_hand"] = wrist + 0.025 * direction
    return Pose3D(keypoints=kp, extra=extra)


@dataclass(frozen=True)
class Placement:
    """Where and how big the body appears: yaw (degrees), pixels per body height, image position of the head top."""

    yaw: float
    scale: float
    cx: float
    top: float


def project(points: np.ndarray, placement: Placement) -> Tuple[np.ndarray, np.ndarray]:
    """Orthographic projection of (N, 3) body points -> (N, 2) image x, y and (N,) depth towards the camera."""
    a = np.deg2rad(placement.yaw)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    x = placement.cx + placement.scale * (pts[:, 0] * np.cos(a) + pts[:, 2] * np.sin(a))
    y = placement.top + placement.scale * pts[:, 1]
    toward = placement.scale * (-pts[:, 0] * np.sin(a) + pts[:, 2] * np.cos(a))
    return np.stack([x, y], axis=1), toward


def face_visibility(yaw: float) -> np.ndarray:
    """(18,) bool: which face keypoints face the camera at this yaw (body points are always True here).

    A face point is seen when its outward direction on the head points towards the camera: the nose down to
    a profile view, each eye only on its own side, each ear unless the head is turned that ear away.
    """
    a = np.deg2rad(yaw)
    vis = np.ones(NUM_KEYPOINTS, dtype=bool)
    # Outward directions (X, Z) in the head frame, and the minimum camera-facing component to be seen.
    rules = {
        "nose": ((0.0, 1.0), -0.15),
        "r_eye": ((-0.45, 0.9), 0.05),
        "l_eye": ((0.45, 0.9), 0.05),
        "r_ear": ((-1.0, 0.0), -0.35),
        "l_ear": ((1.0, 0.0), -0.35),
    }
    for name, ((dx, dz), thresh) in rules.items():
        toward = -dx * np.sin(a) + dz * np.cos(a)
        vis[KP[name]] = toward > thresh
    return vis

"""Draw one person image: background, the posed body in painter's order, occluder, camera effects.

Everything is decided by an :class:`Identity` (appearance), a :class:`Structure` (pose, placement, background
crop, occluder; sampled per image with :func:`sample_structure`) and a :class:`Camera`.  The renderer also
returns the 18 keypoints with visibility: a keypoint is invisible outside the image, under an occluder, or
behind a body part that is nearer the camera (e.g. the face when the person faces away).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from . import skeleton as sk
from .domains import Camera, Domain
from .identity import Identity
from .scene import OCCLUDERS, crop_scene, draw_occluder

_SHIFT = 4
_ONE = 1 << _SHIFT

# Label ids of drawn part groups (0 = background).
TORSO, PELVIS, LEG_R, LEG_L, ARM_R, ARM_L, HEAD, HAIR_LONG, BAG = range(1, 10)
_K = sk.KP
# Limbs a keypoint belongs to: covered by its own limb it is still visible.  Volumes (torso, pelvis) are
# not exempt: a shoulder or hip on the far side of the torso is hidden by it, one on the near side is not.
_OWNERS: Dict[int, Tuple[int, ...]] = {
    _K["nose"]: (HEAD,), _K["r_eye"]: (HEAD,), _K["l_eye"]: (HEAD,), _K["r_ear"]: (HEAD,), _K["l_ear"]: (HEAD,),
    _K["neck"]: (HEAD, HAIR_LONG),
    _K["r_shoulder"]: (ARM_R,), _K["l_shoulder"]: (ARM_L,),
    _K["r_elbow"]: (ARM_R,), _K["r_wrist"]: (ARM_R,), _K["l_elbow"]: (ARM_L,), _K["l_wrist"]: (ARM_L,),
    _K["r_hip"]: (LEG_R,), _K["l_hip"]: (LEG_L,),
    _K["r_knee"]: (LEG_R,), _K["r_ankle"]: (LEG_R,), _K["l_knee"]: (LEG_L,), _K["l_ankle"]: (LEG_L,),
}


@dataclass(frozen=True)
class Structure:
    """Everything about one image that is not the identity."""

    facing: str                        # front | right | back | left (nominal)
    yaw: float                         # degrees, facing plus jitter
    phase: float                       # walking phase, radians
    cx: float                          # body centre x, fraction of the image width
    feet: float                        # y of the soles, fraction of the image height
    scale: float                       # body height, fraction of the image height
    background: Tuple[float, float]    # relative crop offset in the camera scene
    occluder: str                      # "none" or a scene.OCCLUDERS kind
    exposure: float                    # per-image brightness jitter
    seed: int                          # for noise and occluder shape
    person: bool = True                # False: background only (distractor)

    def to_dict(self) -> Dict[str, object]:
        """JSON-friendly dict."""
        return {
            "facing": self.facing, "yaw": round(self.yaw, 2), "phase": round(self.phase, 3),
            "position": [round(self.cx, 4), round(self.feet, 4)], "scale": round(self.scale, 4),
            "background": [round(v, 4) for v in self.background], "occluder": self.occluder,
            "exposure": round(self.exposure, 4), "person_drawn": self.person,
        }


def sample_structure(rng: np.random.Generator, camera: Camera, identity: Optional[Identity] = None,
                     facing: Optional[str] = None, phase: Optional[float] = None,
                     occlusion: Optional[bool] = None) -> Structure:
    """Random per-image structure for ``camera``; pass ``facing``/``phase`` to continue a tracklet."""
    names = list(sk.FACINGS)
    if facing is None:
        facing = names[int(rng.choice(4, p=np.asarray(camera.facing_weights)))]
    yaw = (sk.FACINGS[facing] + float(rng.normal(0.0, 12.0))) % 360.0
    if phase is None:
        phase = float(rng.uniform(0, 2 * np.pi))
    height = identity.height if identity is not None else 1.0
    scale = float(rng.uniform(*camera.scale_range)) * height
    feet = 1.0 - float(rng.uniform(0.0, 0.05))
    if occlusion is None:
        occlusion = bool(rng.random() < camera.p_occlusion)
    occluder = str(OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]) if occlusion else "none"
    return Structure(
        facing=facing, yaw=yaw, phase=float(phase) % (2 * np.pi),
        cx=0.5 + float(rng.normal(0.0, 0.055)), feet=feet, scale=min(scale, 0.99),
        background=(float(rng.random()), float(rng.random())), occluder=occluder,
        exposure=float(rng.normal(1.0, 0.04)), seed=int(rng.integers(0, 2**31 - 1)),
    )


@dataclass
class Rendered:
    """One rendered image and what is known about it."""

    image: np.ndarray            # (H, W, 3) uint8 RGB
    keypoints: np.ndarray        # (18, 2) float x, y in pixels (also for invisible points)
    visible: np.ndarray          # (18,) bool
    person_mask: np.ndarray      # (H, W) bool, body pixels not hidden by an occluder
    labels: np.ndarray           # (H, W) uint8 part-group labels before occlusion
    occluder_mask: np.ndarray    # (H, W) bool


class _Canvas:
    """Float RGB image plus the per-pixel label of the front-most part and the person's coverage."""

    def __init__(self, background: np.ndarray) -> None:
        self.img = background.astype(np.float32)
        self.h, self.w = background.shape[:2]
        self.labels = np.zeros((self.h, self.w), np.uint8)
        # Labels of the body parts that hide keypoints: arms are thin and pose detectors see hips and
        # shoulders past them; a bag is not the body.
        self.occluding = np.zeros((self.h, self.w), np.uint8)
        self.coverage = np.zeros((self.h, self.w), np.float32)

    def new_mask(self) -> np.ndarray:
        # uint8 on purpose: OpenCV anti-aliases only 8-bit images.
        return np.zeros((self.h, self.w), np.uint8)

    def paint(self, mask: np.ndarray, colour, label: Optional[int]) -> None:
        """Blend ``colour`` (RGB or an image) through ``mask``; label None leaves the labels alone (thin
        straps should not hide keypoints)."""
        x, y, w, h = cv2.boundingRect(mask)  # work on the painted box only: most parts are small
        if w == 0 or h == 0:
            return
        box = (slice(y, y + h), slice(x, x + w))
        a = mask[box].astype(np.float32) * (1.0 / 255.0)
        if isinstance(colour, np.ndarray) and colour.ndim == 3:
            src = colour[box]
        else:
            src = np.asarray(colour, np.float32)
        img = self.img[box]
        img += (src - img) * a[..., None]
        if label is not None:
            solid = a >= 0.5
            self.labels[box][solid] = label
            if label not in (ARM_R, ARM_L, BAG):
                self.occluding[box][solid] = label
        np.maximum(self.coverage[box], a, out=self.coverage[box])


def _fx(p: Sequence[float]) -> Tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _line(mask: np.ndarray, pts: Sequence[Sequence[float]], thickness: float) -> np.ndarray:
    t = max(1, int(round(thickness)))
    for a, b in zip(pts[:-1], pts[1:]):
        cv2.line(mask, _fx(a), _fx(b), 255, t, cv2.LINE_AA, _SHIFT)
    return mask


def _hull(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(np.round(np.asarray(pts) * _ONE).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA, _SHIFT)
    return mask


def _disc(mask: np.ndarray, centre: Sequence[float], rx: float, ry: Optional[float] = None) -> np.ndarray:
    ry = rx if ry is None else ry
    cv2.ellipse(mask, _fx(centre), _fx((max(rx, 0.6), max(ry, 0.6))), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    return mask


def _box3d(centre: Sequence[float], half: Sequence[float]) -> np.ndarray:
    c = np.asarray(centre, float)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return c + signs * np.asarray(half, float)


def _top_texture(identity: Identity, h: int, w: int, top_y: float, s: float) -> np.ndarray:
    """The shirt's colour pattern over the whole image (masked by torso/sleeves when painted)."""
    main = np.asarray(identity.top_rgb, np.float32)
    second = np.asarray(identity.top_pattern_rgb, np.float32)
    yy = (np.arange(h, dtype=np.float32) - top_y)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    pattern = identity.top_pattern
    if pattern == "stripes":
        period = max(3.0, 0.055 * s)
        sel = (np.floor(yy / (period / 2)) % 2 == 1) & np.ones_like(xx, bool)
    elif pattern == "checks":
        period = max(4.0, 0.07 * s)
        sel = (np.floor(yy / (period / 2)) + np.floor(xx / (period / 2))) % 2 == 1
    elif pattern == "two_tone":
        sel = (yy < 0.29 * s) & np.ones_like(xx, bool)
    else:
        sel = np.zeros((h, w), bool)
    return np.where(sel[..., None], second, main).astype(np.float32)


def _head_hair_alpha(head_mask: np.ndarray, centre: np.ndarray, rx: float, ry: float, yaw: float,
                     long_hair: bool) -> np.ndarray:
    """Hair coverage on the head ellipse, from the facing of each point of a head-shaped sphere."""
    out = np.zeros(head_mask.shape, np.float32)
    x0, y0, w, h = cv2.boundingRect(head_mask)
    if w == 0 or h == 0:
        return out
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    u = (xx - centre[0]) / (rx * 1.08)
    v = (yy - centre[1]) / (ry * 1.05)
    depth = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    a = np.deg2rad(yaw)
    forward = u * np.sin(a) + depth * np.cos(a)      # how much this head point faces the way the person does
    cap = np.clip((-0.32 - v) / 0.2 + 0.5, 0, 1)      # top of the head
    nape = 1.2 if long_hair else 0.55
    back = np.clip((0.12 - forward) / 0.2 + 0.5, 0, 1) * np.clip((nape - v) / 0.2 + 0.5, 0, 1)
    out[y0:y0 + h, x0:x0 + w] = np.maximum(cap, back) * (head_mask[y0:y0 + h, x0:x0 + w].astype(np.float32) / 255.0)
    return out


def _draw_person(canvas: _Canvas, identity: Identity, st: Structure, height: int, width: int
                 ) -> Tuple[np.ndarray, np.ndarray, Dict[int, float]]:
    """Draw the body; returns keypoints (18, 2), their depths and the depth of each drawn part group."""
    pose = sk.walking_pose(st.phase, identity.body)
    s = st.scale * height
    place = sk.Placement(yaw=st.yaw, scale=s, cx=st.cx * width, top=st.feet * height - s)
    kp2, kdepth = sk.project(pose.keypoints, place)

    def proj(points) -> Tuple[np.ndarray, np.ndarray]:
        return sk.project(np.asarray(points, float), place)

    extra = {k: proj(v) for k, v in pose.extra.items()}
    bw = identity.width
    skin = identity.skin_rgb
    top_tex = _top_texture(identity, canvas.h, canvas.w, place.top, s)
    groups: List[Tuple[float, int, Callable[[], None]]] = []
    P = pose.keypoints

    def leg(side: str, label: int):
        hip, knee, ankle = (kp2[_K[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        heel, toe = extra[f"{side}_heel"][0][0], extra[f"{side}_toe"][0][0]

        def draw():
            thigh_t, shin_t = 0.095 * bw * s, 0.075 * bw * s
            if identity.bottom_style == "shorts":
                canvas.paint(_line(canvas.new_mask(), [hip, knee], thigh_t * 0.85), skin, label)
                canvas.paint(_line(canvas.new_mask(), [knee, ankle], shin_t), skin, label)
                end = hip + 0.72 * (knee - hip)
                canvas.paint(_line(canvas.new_mask(), [hip, end], thigh_t * 1.12), identity.bottom_rgb, label)
            else:
                canvas.paint(_line(canvas.new_mask(), [hip, knee], thigh_t), identity.bottom_rgb, label)
                canvas.paint(_line(canvas.new_mask(), [knee, ankle], shin_t), identity.bottom_rgb, label)
            canvas.paint(_line(canvas.new_mask(), [heel, toe], 0.05 * s), identity.shoes_rgb, label)

        d = float(np.mean(kdepth[[_K[f"{side}_hip"], _K[f"{side}_knee"], _K[f"{side}_ankle"]]])) - 0.02 * s
        groups.append((d, label, draw))

    def arm(side: str, label: int):
        sh, el, wr = (kp2[_K[f"{side}_{j}"]] for j in ("shoulder", "elbow", "wrist"))
        hand = extra[f"{side}_hand"][0][0]

        def draw():
            upper_t, fore_t = 0.07 * bw * s, 0.058 * bw * s
            if identity.sleeves == "short":
                canvas.paint(_line(canvas.new_mask(), [sh, el, wr], fore_t), skin, label)
                canvas.paint(_line(canvas.new_mask(), [sh, sh + 0.6 * (el - sh)], upper_t * 1.1), top_tex, label)
            else:
                canvas.paint(_line(canvas.new_mask(), [sh, el], upper_t), top_tex, label)
                canvas.paint(_line(canvas.new_mask(), [el, wr], fore_t), top_tex, label)
            canvas.paint(_disc(canvas.new_mask(), hand, 0.024 * s), skin, label)

        d = float(np.mean(kdepth[[_K[f"{side}_shoulder"], _K[f"{side}_elbow"], _K[f"{side}_wrist"]]])) + 0.005 * s
        groups.append((d, label, draw))

    leg("r", LEG_R)
    leg("l", LEG_L)
    arm("r", ARM_R)
    arm("l", ARM_L)

    # Torso: the hull of a box from the shoulders to just below the hips.
    shw, hhw = sk.SHOULDER_HALF_WIDTH * bw, sk.HIP_HALF_WIDTH * bw
    sy, hy = P[_K["neck"], 1] + 0.03, P[_K["r_hip"], 1]
    torso_pts, _ = proj([(sx * (shw + 0.025), sy, sz * 0.065) for sx in (-1, 1) for sz in (-1, 1)]
                        + [(sx * (hhw + 0.042), hy + 0.025, sz * 0.07) for sx in (-1, 1) for sz in (-1, 1)])
    yaw_rad = np.deg2rad(st.yaw)

    def draw_torso():
        canvas.paint(_hull(canvas.new_mask(), torso_pts), top_tex, TORSO)
        if identity.top_pattern == "logo" and np.cos(yaw_rad) > 0.3:
            # A chest print only shows from the front, squeezed as the person turns.
            chest, _ = proj([(0.0, sy + 0.11, 0.055)])
            m = _disc(canvas.new_mask(), chest[0], 0.04 * s * np.cos(yaw_rad), 0.035 * s)
            canvas.paint(m, identity.top_pattern_rgb, TORSO)

    torso_depth = float(np.mean(kdepth[[_K["r_shoulder"], _K["l_shoulder"], _K["r_hip"], _K["l_hip"]]])) - 0.01 * s
    groups.append((torso_depth, TORSO, draw_torso))

    pelvis_pts, _ = proj(_box3d((0.0, hy + 0.02, 0.0), (hhw + 0.045, 0.045, 0.065)))
    groups.append((torso_depth - 0.005 * s, PELVIS,
                   lambda: canvas.paint(_hull(canvas.new_mask(), pelvis_pts), identity.bottom_rgb, PELVIS)))

    head3 = pose.extra["head"]
    head2 = extra["head"][0][0]
    rx, ry = sk.HEAD_RADIUS[0] * s, sk.HEAD_RADIUS[1] * s
    face_vis = sk.face_visibility(st.yaw)

    def draw_head():
        canvas.paint(_line(canvas.new_mask(), [kp2[_K["neck"]], head2], 0.045 * s), skin, HEAD)
        head_mask = _disc(canvas.new_mask(), head2, rx, ry)
        canvas.paint(head_mask, skin, HEAD)
        hair_mask = _disc(canvas.new_mask(), head2, rx * 1.08, ry * 1.05)
        hair = _head_hair_alpha(hair_mask, head2, rx, ry, st.yaw, identity.hair_length == "long")
        canvas.paint((hair * 255).astype(np.uint8), identity.hair_rgb, HEAD)
        if np.cos(yaw_rad) > 0.2:
            for name in ("r_eye", "l_eye"):
                if face_vis[_K[name]]:
                    ex, ey = kp2[_K[name]]
                    xi, yi = int(round(ex)), int(round(ey))
                    if 0 <= xi < canvas.w and 0 <= yi < canvas.h:
                        canvas.img[yi, xi] = 0.45 * canvas.img[yi, xi] + 0.55 * np.float32(30)

    groups.append((float(kdepth[_K["neck"]]) + 0.04 * s, HEAD, draw_head))

    if identity.hair_length == "long":
        hpts, hdepth = proj([head3 + (sx * 0.05, 0.0, -0.03) for sx in (-1, 1)]
                            + [head3 + (sx * 0.058, 0.19, -0.05) for sx in (-1, 1)])
        groups.append((float(hdepth.mean()), HAIR_LONG,
                       lambda: canvas.paint(_hull(canvas.new_mask(), hpts), identity.hair_rgb, HAIR_LONG)))

    if identity.bag:
        side = 1.0 if identity.bag_side == "left" else -1.0
        # The bag hangs at the hip, a little behind it, as shoulder bags do.
        centre = (side * (hhw + 0.07), P[_K["r_hip"], 1], -0.075)
        bag_pts, bag_depth = proj(_box3d(centre, (0.025, 0.05, 0.05)))
        strap, _ = proj([(-side * shw * 0.8, sy - 0.01, 0.0), (centre[0], centre[1] - 0.05, centre[2])])
        strap_rgb = tuple(0.7 * c for c in identity.bag_rgb)

        def draw_bag():
            canvas.paint(_line(canvas.new_mask(), strap, max(1.0, 0.014 * s)), strap_rgb, None)
            canvas.paint(_hull(canvas.new_mask(), bag_pts), identity.bag_rgb, BAG)

        groups.append((float(bag_depth.mean()) + 0.01 * s, BAG, draw_bag))

    # Painter's order: far groups first; ties keep the order above (stable sort).
    depth_of: Dict[int, float] = {}
    for d, label, draw in sorted(groups, key=lambda g: g[0]):
        draw()
        depth_of[label] = d
    return kp2, kdepth, depth_of


def _shade_person(canvas: _Canvas, bbox_cx: float, half_width: float, light_dir: float, strength: float) -> None:
    # Light from one side: a horizontal brightness ramp over the person only, so bodies do not look flat.
    xx = (np.arange(canvas.w, dtype=np.float32) - bbox_cx) / max(half_width, 1.0)
    ramp = 1.0 + strength * np.clip(xx * light_dir, -1.0, 1.0)
    a = canvas.coverage[..., None]
    canvas.img *= 1.0 - a + a * ramp[None, :, None]


def _shadow(img: np.ndarray, cx: float, feet_y: float, s: float, light_dir: float, strength: float) -> None:
    mask = np.zeros(img.shape[:2], np.uint8)
    _disc(mask, (cx - light_dir * 0.12 * s, feet_y), 0.2 * s, 0.035 * s)
    a = cv2.GaussianBlur(mask, (0, 0), max(0.8, 0.01 * s)).astype(np.float32) / 255.0
    img *= (1.0 - strength * a)[..., None]


def apply_camera(img: np.ndarray, camera: Camera, exposure: float, rng: np.random.Generator) -> np.ndarray:
    """Camera effects on a float RGB image: resolution loss, blur, colour cast, exposure, contrast,
    saturation and sensor noise; returns uint8 RGB."""
    h, w = img.shape[:2]
    out = img
    if camera.lowres < 1.0:
        small = cv2.resize(out, (max(8, int(w * camera.lowres)), max(8, int(h * camera.lowres))),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = camera.blur * h / 128.0
    if sigma > 0.25:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = out * (np.asarray(camera.gains, np.float32) * np.float32(camera.brightness * exposure))
    out = (out - 128.0) * camera.contrast + 128.0
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * camera.saturation
    out = out + rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(camera.noise)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def render_image(identity: Optional[Identity], structure: Structure, camera: Camera, domain: Domain,
           scene: np.ndarray, height: int, width: int, camera_effects: bool = True) -> Rendered:
    """Render one image; ``identity`` may be None for a background-only image."""
    rng = np.random.default_rng(structure.seed)
    canvas = _Canvas(crop_scene(scene, structure.background, height, width))
    kp2 = np.full((sk.NUM_KEYPOINTS, 2), -1.0)
    visible = np.zeros(sk.NUM_KEYPOINTS, bool)
    if identity is not None and structure.person:
        s = structure.scale * height
        _shadow(canvas.img, structure.cx * width, structure.feet * height, s, camera.light_dir,
                0.55 * domain.directional_light / 0.22)
        kp2, kdepth, depth_of = _draw_person(canvas, identity, structure, height, width)
        _shade_person(canvas, structure.cx * width, 0.15 * s, camera.light_dir, domain.directional_light)
        visible = _visibility(kp2, kdepth, depth_of, canvas.occluding, structure.yaw, s)
    occluder = np.zeros((height, width), np.float32)
    if structure.occluder != "none":
        occluder = draw_occluder(canvas.img, structure.occluder, rng, domain)
        for k in np.flatnonzero(visible):
            xi, yi = int(round(kp2[k, 0])), int(round(kp2[k, 1]))
            if occluder[yi, xi] >= 0.5:
                visible[k] = False
    image = apply_camera(canvas.img, camera, structure.exposure, rng) if camera_effects else \
        np.clip(np.round(canvas.img), 0, 255).astype(np.uint8)
    occluded = occluder >= 0.5
    return Rendered(
        image=image, keypoints=kp2, visible=visible,
        person_mask=(canvas.labels > 0) & ~occluded, labels=canvas.labels, occluder_mask=occluded,
    )


def _visibility(kp2: np.ndarray, kdepth: np.ndarray, depth_of: Dict[int, float], labels: np.ndarray,
                yaw: float, s: float) -> np.ndarray:
    h, w = labels.shape
    vis = sk.face_visibility(yaw)
    eps = 0.02 * s
    for k in range(sk.NUM_KEYPOINTS):
        x, y = kp2[k]
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < w and 0 <= yi < h):
            vis[k] = False
            continue
        lab = int(labels[yi, xi])
        if lab == 0 or lab in _OWNERS[k]:
            continue
        # Covered by another part: hidden only if that part is in front of the keypoint.
        if depth_of.get(lab, -np.inf) > kdepth[k] + eps:
            vis[k] = False
    return vis

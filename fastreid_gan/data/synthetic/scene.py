"""Backgrounds (one street per domain, each camera watching a stretch of it, each image a crop) and occluders."""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .domains import RGB, Camera, Domain, pick

_SHIFT = 4
_ONE = 1 << _SHIFT


def _p(x: float, y: float) -> Tuple[int, int]:
    # cv2 drawing with sub-pixel precision: coordinates are fixed point with _SHIFT fractional bits.
    return int(round(x * _ONE)), int(round(y * _ONE))


def _col(rgb, factor: float = 1.0) -> Tuple[float, float, float]:
    return tuple(float(np.clip(c * factor, 0, 255)) for c in rgb)  # type: ignore[return-value]


def _vary(rng: np.random.Generator, rgb: RGB, sigma: float = 12.0) -> Tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(np.asarray(rgb, float) + rng.normal(0, sigma, 3), 0, 255))  # type: ignore


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    pts = np.array([_p(x0, y0), _p(x1, y0), _p(x1, y1), _p(x0, y1)], np.int32)
    cv2.fillConvexPoly(img, pts, colour, cv2.LINE_AA, _SHIFT)


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, colour) -> None:
    cv2.ellipse(img, _p(cx, cy), _p(max(ax, 0.5), max(ay, 0.5)), 0, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


def _facade(img: np.ndarray, rng: np.random.Generator, domain: Domain, horizon: float) -> None:
    h, w = img.shape[:2]
    x = 0.0
    while x < w:
        # A run of wall with its own colour and window grid, so a scene has several buildings side by side.
        seg = float(rng.uniform(0.3, 0.9)) * w
        wall = _vary(rng, domain.wall_colours[int(rng.integers(len(domain.wall_colours)))], 10)
        _rect(img, x, 0, x + seg, horizon, wall)
        cols = int(rng.integers(2, 6))
        rows = int(rng.integers(2, 6))
        glass = _vary(rng, (70, 85, 100), 15) if rng.random() < 0.7 else _col(wall, 0.6)
        ww = seg / cols
        hh = horizon / rows
        fill = float(rng.uniform(0.35, 0.7))
        for i in range(cols):
            for j in range(rows):
                if rng.random() < 0.85:
                    gx = x + (i + 0.5) * ww
                    gy = (j + 0.5) * hh
                    shade = float(rng.uniform(0.8, 1.2))
                    _rect(img, gx - ww * fill / 2, gy - hh * fill / 2, gx + ww * fill / 2, gy + hh * fill / 2,
                          _col(glass, shade))
        if rng.random() < 0.5:
            px = x + float(rng.uniform(0, seg))
            _rect(img, px, 0, px + w * 0.04, horizon, _col(wall, 0.8))
        x += seg


def _park(img: np.ndarray, rng: np.random.Generator, domain: Domain, horizon: float) -> None:
    h, w = img.shape[:2]
    sky = np.asarray(domain.sky_colour, np.float32)
    grad = np.linspace(1.0, 0.85, int(np.ceil(horizon)), dtype=np.float32)[:, None, None]
    img[: len(grad)] = np.clip(sky * grad, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        cx = float(rng.uniform(0, w))
        cy = float(rng.uniform(0.1, 0.7)) * horizon
        trunk = _vary(rng, (80, 60, 45), 10)
        _rect(img, cx - w * 0.02, cy, cx + w * 0.02, horizon, trunk)
        leaf = _vary(rng, domain.foliage_colours[int(rng.integers(len(domain.foliage_colours)))], 12)
        for _ in range(int(rng.integers(3, 7))):
            _ellipse(img, cx + float(rng.normal(0, w * 0.06)), cy + float(rng.normal(0, h * 0.05)),
                     float(rng.uniform(0.06, 0.14)) * w, float(rng.uniform(0.05, 0.1)) * h,
                     _col(leaf, float(rng.uniform(0.8, 1.15))))


def _ground(img: np.ndarray, rng: np.random.Generator, domain: Domain, horizon: float) -> None:
    h, w = img.shape[:2]
    ground = _vary(rng, domain.ground_colours[int(rng.integers(len(domain.ground_colours)))], 8)
    _rect(img, 0, horizon, w, h, ground)
    # Paving joints get denser towards the horizon, a cheap perspective cue.
    y = horizon + 2.0
    step = 2.0
    while y < h:
        cv2.line(img, _p(0, y), _p(w, y), _col(ground, 0.85), 1, cv2.LINE_AA, _SHIFT)
        step *= 1.35
        y += step
    for _ in range(int(rng.integers(2, 6))):
        x0 = float(rng.uniform(0, w))
        cv2.line(img, _p(x0, horizon), _p(x0 + float(rng.normal(0, w * 0.6)), h), _col(ground, 0.85), 1,
                 cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.5:
        leaf = domain.foliage_colours[int(rng.integers(len(domain.foliage_colours)))]
        gy = horizon + float(rng.uniform(0, 0.4)) * (h - horizon)
        _rect(img, 0, gy, w, gy + float(rng.uniform(0.05, 0.15)) * h, _vary(rng, leaf, 10))
    if rng.random() < domain.p_snow:
        for _ in range(int(rng.integers(4, 12))):
            _ellipse(img, float(rng.uniform(0, w)), float(rng.uniform(horizon, h)), float(rng.uniform(0.05, 0.2)) * w,
                     float(rng.uniform(0.01, 0.04)) * h, _vary(rng, (228, 230, 235), 5))


def _clutter(img: np.ndarray, rng: np.random.Generator, domain: Domain, horizon: float) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(4, 10))):
        kind = rng.choice(["pole", "bin", "walker", "car", "bike"], p=[0.2, 0.15, 0.35, 0.15, 0.15])
        x = float(rng.uniform(0, w))
        base = float(rng.uniform(horizon, min(h, horizon + 0.5 * (h - horizon))))
        if kind == "pole":
            _rect(img, x, base - 0.55 * h, x + max(1.0, 0.02 * w), base, _vary(rng, (70, 70, 70), 20))
        elif kind == "bin":
            _rect(img, x, base - 0.1 * h, x + 0.07 * w, base, _vary(rng, (60, 90, 70), 25))
        elif kind == "walker":
            # Small far-away people in the domain's clothes colours: clutter a colour histogram cannot ignore.
            size = float(rng.uniform(0.2, 0.4)) * h
            _, top = pick(rng, domain.tops)
            _, bottom = pick(rng, domain.bottoms)
            bw = size * 0.22
            _rect(img, x - bw / 2, base - size * 0.5, x + bw / 2, base, _vary(rng, bottom, 8))
            _rect(img, x - bw * 0.6, base - size * 0.85, x + bw * 0.6, base - size * 0.45, _vary(rng, top, 8))
            _ellipse(img, x, base - size * 0.92, bw * 0.35, size * 0.08, (200, 160, 130))
        elif kind == "car":
            _, paint = pick(rng, domain.tops)
            cw = float(rng.uniform(0.5, 0.9)) * w
            _rect(img, x, base - 0.16 * h, x + cw, base - 0.03 * h, _vary(rng, paint, 10))
            _rect(img, x + 0.15 * cw, base - 0.24 * h, x + 0.8 * cw, base - 0.15 * h, _vary(rng, (60, 70, 85), 8))
            for wx in (x + 0.2 * cw, x + 0.8 * cw):
                _ellipse(img, wx, base - 0.03 * h, 0.05 * w, 0.03 * h, (25, 25, 25))
        else:
            r = 0.035 * h
            frame = _vary(rng, (60, 60, 60), 30)
            for wx in (x, x + 0.14 * w):
                cv2.circle(img, _p(wx, base - r), int(r * _ONE), frame, 1, cv2.LINE_AA, _SHIFT)
            cv2.line(img, _p(x, base - r), _p(x + 0.14 * w, base - r), frame, 1, cv2.LINE_AA, _SHIFT)


def make_panorama(domain: Domain, seed: int, height: int, width: int) -> np.ndarray:
    """The domain's whole street as float32 RGB (1.3 H, (2 C + 10) W, 3): buildings and parks side by side.

    Cameras look at overlapping stretches of it (:func:`camera_view`), so a background hints at the camera
    without giving it away: neighbouring cameras share scenery, and one camera's crops vary.
    """
    rng = np.random.default_rng([seed, domain.code, 9])
    h, w = int(round(1.3 * height)), (2 * domain.num_cams + 10) * width
    # Drawn in uint8 because OpenCV only anti-aliases 8-bit images.
    img = np.zeros((h, w, 3), np.uint8)
    x = 0
    while x < w:
        seg_w = int(rng.integers(2 * width, 5 * width))
        seg = np.zeros((h, seg_w, 3), np.uint8)
        horizon = float(rng.uniform(0.4, 0.65)) * h
        if rng.random() < 0.65:
            _facade(seg, rng, domain, horizon)
        else:
            _park(seg, rng, domain, horizon)
        _ground(seg, rng, domain, horizon)
        _clutter(seg, rng, domain, horizon)
        img[:, x:x + seg_w] = seg[:, : w - x]
        x += seg_w
    # The background is out of focus compared with the person.
    out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.9 * height / 128.0)
    # Muted scenery, as seen past a person in focus; it also keeps the background from dominating colour cues.
    grey = out.mean(axis=2, keepdims=True)
    return grey + 0.45 * (out - grey)


def camera_view(panorama: np.ndarray, camera: Camera, width: int) -> np.ndarray:
    """The stretch of the panorama camera ``camera.index`` sees: 12 W wide, starting 2 W after the previous one."""
    x0 = 2 * width * (camera.index - 1)
    return panorama[:, x0:x0 + 12 * width]


def crop_scene(scene: np.ndarray, offset: Tuple[float, float], height: int, width: int) -> np.ndarray:
    """Crop an (H, W) background at a relative offset in [0, 1]^2 of the free range."""
    sh, sw = scene.shape[:2]
    y0 = int(round(offset[1] * (sh - height)))
    x0 = int(round(offset[0] * (sw - width)))
    return scene[y0:y0 + height, x0:x0 + width].copy()


OCCLUDERS: Tuple[str, ...] = ("pole", "bottom", "side_person", "bush")


def draw_occluder(img: np.ndarray, kind: str, rng: np.random.Generator, domain: Domain) -> np.ndarray:
    """Draw an occluder of ``kind`` in place on a float32 RGB image; returns its (H, W) float32 coverage 0..1."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    if kind == "pole":
        x = float(rng.uniform(0.1, 0.8)) * w
        _rect(mask, x, -1, x + float(rng.uniform(0.1, 0.22)) * w, h + 1, 255)
        colour = _vary(rng, (90, 90, 95), 25)
    elif kind == "bottom":
        top = float(rng.uniform(0.62, 0.82)) * h
        _rect(mask, -1, top, w + 1, h + 1, 255)
        _, colour = pick(rng, domain.tops)
        colour = _vary(rng, colour, 10)
    elif kind == "side_person":
        left = rng.random() < 0.5
        span = float(rng.uniform(0.2, 0.38)) * w
        cx = -span * 0.3 if left else w + span * 0.3
        _ellipse(mask, cx, 0.55 * h, span, 0.6 * h, 255)
        _, colour = pick(rng, domain.tops)
        colour = _vary(rng, colour, 10)
    elif kind == "bush":
        base = float(rng.uniform(0.7, 0.85)) * h
        for _ in range(5):
            _ellipse(mask, float(rng.uniform(0, w)), base + float(rng.uniform(0, 0.1)) * h,
                     float(rng.uniform(0.2, 0.45)) * w, float(rng.uniform(0.08, 0.16)) * h, 255)
        _rect(mask, -1, base + 0.05 * h, w + 1, h + 1, 255)
        colour = _vary(rng, domain.foliage_colours[int(rng.integers(len(domain.foliage_colours)))], 10)
    else:
        raise ValueError(f"unknown occluder {kind!r}")
    # Soft blotchy shading so the occluder is not a flat colour blob.
    blotch = cv2.resize(rng.uniform(0.85, 1.1, size=(4, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    tex = np.asarray(colour, np.float32) * blotch[..., None]
    alpha = mask.astype(np.float32) / 255.0
    img += (tex - img) * alpha[..., None]
    return alpha

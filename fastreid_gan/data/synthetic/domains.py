"""The two synthetic domains (their palettes, scenery and lighting) and their cameras.

``market`` is a bright summer campus seen by 6 cameras; ``duke`` is an overcast winter campus seen by 8 cameras,
with darker clothes.  Palettes are deliberately small (10 top colours, 6 bottom colours, weighted towards
black/white/grey like real crowds) so many identities share their main colours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

RGB = Tuple[int, int, int]
Palette = Tuple[Tuple[str, RGB, float], ...]   # (name, RGB, sampling weight)


@dataclass(frozen=True)
class Domain:
    """Everything that makes one domain look different from the other."""

    name: str
    code: int                        # mixed into every random seed so the domains never share identities
    num_cams: int
    folder: str                      # default dataset folder under the datasets root
    tops: Palette
    bottoms: Palette
    shoes: Palette
    hair: Palette
    skins: Palette
    bags: Palette
    patterns: Tuple[Tuple[str, float], ...]
    p_shorts: float
    p_short_sleeves: float
    p_long_hair: float
    p_bag: float
    # scenery
    wall_colours: Tuple[RGB, ...]
    ground_colours: Tuple[RGB, ...]
    foliage_colours: Tuple[RGB, ...]
    sky_colour: RGB
    p_snow: float
    # lighting: global gain per channel, brightness, how directional the light is (person shading, shadows)
    light_gains: Tuple[float, float, float]
    brightness: float
    contrast: float
    saturation: float
    directional_light: float


MARKET = Domain(
    name="market", code=1, num_cams=6, folder="synthetic-market",
    tops=(
        ("black", (30, 30, 34), 0.15), ("white", (232, 232, 226), 0.15), ("grey", (128, 128, 130), 0.11),
        ("red", (196, 36, 40), 0.09), ("light_blue", (120, 170, 220), 0.10), ("navy", (34, 46, 96), 0.08),
        ("yellow", (232, 200, 60), 0.07), ("green", (60, 140, 70), 0.08), ("pink", (230, 140, 170), 0.09),
        ("purple", (118, 64, 150), 0.08),
    ),
    bottoms=(
        ("black", (28, 28, 32), 0.34), ("jeans", (58, 82, 130), 0.24), ("grey", (110, 110, 114), 0.14),
        ("khaki", (190, 170, 120), 0.12), ("white", (225, 225, 220), 0.09), ("brown", (100, 70, 45), 0.07),
    ),
    shoes=(("black", (25, 25, 25), 0.4), ("white", (235, 235, 235), 0.35), ("grey", (120, 120, 120), 0.15),
           ("brown", (110, 70, 40), 0.10)),
    hair=(("black", (22, 20, 20), 0.65), ("dark_brown", (60, 40, 28), 0.22), ("brown", (120, 80, 45), 0.08),
          ("dyed", (150, 90, 50), 0.05)),
    skins=(("light", (238, 200, 170), 0.45), ("medium", (214, 168, 130), 0.4), ("tan", (170, 120, 85), 0.15)),
    bags=(("black", (30, 30, 30), 0.4), ("brown", (120, 80, 50), 0.2), ("red", (180, 40, 40), 0.15),
          ("blue", (50, 80, 160), 0.15), ("white", (225, 225, 225), 0.1)),
    patterns=(("plain", 0.5), ("stripes", 0.15), ("checks", 0.1), ("logo", 0.15), ("two_tone", 0.1)),
    p_shorts=0.3, p_short_sleeves=0.6, p_long_hair=0.35, p_bag=0.35,
    wall_colours=((200, 190, 170), (170, 90, 70), (150, 150, 150), (215, 210, 200), (120, 100, 90)),
    ground_colours=((190, 180, 160), (160, 160, 155), (175, 150, 120)),
    foliage_colours=((70, 120, 50), (50, 95, 40), (100, 140, 60)),
    sky_colour=(190, 215, 240), p_snow=0.0,
    light_gains=(1.04, 1.0, 0.95), brightness=1.05, contrast=1.1, saturation=1.05, directional_light=0.22,
)

DUKE = Domain(
    name="duke", code=2, num_cams=8, folder="synthetic-duke",
    tops=(
        ("black", (26, 26, 30), 0.22), ("dark_grey", (70, 70, 74), 0.13), ("navy", (30, 40, 80), 0.12),
        ("white", (220, 220, 215), 0.08), ("burgundy", (110, 30, 40), 0.08), ("brown", (100, 70, 50), 0.08),
        ("beige", (190, 170, 140), 0.08), ("olive", (90, 95, 55), 0.07), ("red", (170, 40, 40), 0.07),
        ("teal", (40, 110, 120), 0.07),
    ),
    bottoms=(
        ("black", (25, 25, 28), 0.38), ("dark_jeans", (40, 55, 90), 0.26), ("grey", (95, 95, 100), 0.14),
        ("khaki", (160, 145, 105), 0.1), ("brown", (80, 60, 45), 0.07), ("light_jeans", (100, 125, 165), 0.05),
    ),
    shoes=(("black", (20, 20, 20), 0.5), ("brown", (90, 60, 35), 0.25), ("white", (220, 220, 220), 0.15),
           ("grey", (100, 100, 100), 0.1)),
    hair=(("black", (20, 18, 18), 0.35), ("brown", (90, 60, 40), 0.3), ("blond", (190, 160, 100), 0.2),
          ("red", (140, 60, 30), 0.05), ("grey", (160, 160, 160), 0.1)),
    skins=(("light", (240, 210, 190), 0.5), ("medium", (200, 150, 115), 0.3), ("dark", (120, 80, 55), 0.2)),
    bags=(("black", (25, 25, 25), 0.5), ("grey", (110, 110, 110), 0.2), ("brown", (110, 75, 45), 0.2),
          ("blue", (40, 60, 120), 0.1)),
    patterns=(("plain", 0.6), ("stripes", 0.1), ("checks", 0.1), ("logo", 0.1), ("two_tone", 0.1)),
    p_shorts=0.0, p_short_sleeves=0.05, p_long_hair=0.4, p_bag=0.5,
    wall_colours=((150, 140, 125), (120, 110, 100), (170, 165, 160), (100, 90, 85), (140, 120, 100)),
    ground_colours=((140, 140, 138), (120, 115, 105), (165, 165, 165)),
    foliage_colours=((90, 85, 60), (60, 70, 50), (110, 100, 80)),
    sky_colour=(200, 205, 212), p_snow=0.5,
    light_gains=(0.95, 0.99, 1.07), brightness=0.86, contrast=0.9, saturation=0.8, directional_light=0.08,
)

DOMAINS: Dict[str, Domain] = {d.name: d for d in (MARKET, DUKE)}


def get_domain(name: str) -> Domain:
    """Look a domain up by name ("market" or "duke")."""
    try:
        return DOMAINS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown synthetic domain {name!r}; choose one of {sorted(DOMAINS)}") from None


def pick(rng: np.random.Generator, palette: Palette) -> Tuple[str, RGB]:
    """Draw one (name, RGB) entry of a weighted palette."""
    weights = np.array([w for _, _, w in palette], dtype=np.float64)
    i = int(rng.choice(len(palette), p=weights / weights.sum()))
    return palette[i][0], palette[i][1]


@dataclass(frozen=True)
class Camera:
    """One camera's fixed look; every image it takes jitters around these values."""

    index: int                          # 1-based, as in file names
    gains: Tuple[float, float, float]   # colour cast (RGB multipliers, domain light included)
    brightness: float
    contrast: float
    saturation: float
    blur: float                         # Gaussian sigma in pixels at 128x64
    noise: float                        # Gaussian noise sigma (0..255 scale)
    lowres: float                       # 1 = sharp; <1 downsamples then upsamples (far / cheap cameras)
    p_occlusion: float
    light_dir: float                    # -1..1, where the light comes from horizontally
    facing_weights: Tuple[float, float, float, float]   # front, right, back, left
    scale_range: Tuple[float, float]    # person height as a fraction of the image height


def make_camera(domain: Domain, index: int, seed: int) -> Camera:
    """Deterministic camera ``index`` (1-based) of ``domain`` for the dataset seed."""
    rng = np.random.default_rng([seed, domain.code, 7, index])
    cast = rng.normal(0.0, 0.015, size=3)
    gains = tuple(float(np.clip(g * (1.0 + c), 0.7, 1.35)) for g, c in zip(domain.light_gains, cast))
    # Each camera watches a path at its own angle, so it mostly sees some facings.
    main = int(rng.integers(0, 4))
    weights = np.full(4, 0.12)
    weights[main] += 0.45
    weights[(main + 2) % 4] += 0.2
    weights = weights / weights.sum()
    lo = float(rng.uniform(0.82, 0.88))
    return Camera(
        index=index,
        gains=gains,  # type: ignore[arg-type]
        brightness=float(domain.brightness * rng.uniform(0.92, 1.07)),
        contrast=float(domain.contrast * rng.uniform(0.92, 1.06)),
        saturation=float(domain.saturation * rng.uniform(0.85, 1.08)),
        blur=float(rng.uniform(0.2, 1.1)),
        noise=float(rng.uniform(1.0, 4.5)),
        lowres=float(rng.choice([1.0, 1.0, 0.8, 0.7])),
        p_occlusion=float(rng.uniform(0.05, 0.15)),
        light_dir=float(rng.uniform(-1.0, 1.0)),
        facing_weights=tuple(float(w) for w in weights),  # type: ignore[arg-type]
        scale_range=(lo, lo + float(rng.uniform(0.05, 0.09))),
    )

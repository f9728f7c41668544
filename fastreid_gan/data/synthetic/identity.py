"""Identity attributes: what stays the same about a person across every image of them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import numpy as np

from .domains import RGB, Domain, pick
from .skeleton import Body

# Seed stream tags: identities, distractor people and junk crops never draw from the same stream.
STREAM_IDENTITY = 1
STREAM_EXTRA_PERSON = 2


@dataclass(frozen=True)
class Identity:
    """A person's appearance.  Colours are RGB 0..255 as drawn, before lighting and camera effects."""

    pid: int
    domain: str
    top_colour: str
    top_rgb: RGB
    top_pattern: str                 # plain | stripes | checks | logo | two_tone
    top_pattern_rgb: RGB             # second colour of the pattern
    sleeves: str                     # long | short
    bottom_colour: str
    bottom_rgb: RGB
    bottom_style: str                # trousers | shorts
    shoes_colour: str
    shoes_rgb: RGB
    hair_colour: str
    hair_rgb: RGB
    hair_length: str                 # short | long
    skin: str
    skin_rgb: RGB
    height: float                    # multiplies the person's size in the image
    width: float                     # multiplies every horizontal body measure
    bag: bool
    bag_colour: str
    bag_rgb: RGB
    bag_side: str                    # left | right (the person's side)
    stride: float
    arm_swing: float

    @property
    def body(self) -> Body:
        """Body shape and gait for :func:`skeleton.walking_pose`."""
        return Body(width=self.width, stride=self.stride, arm_swing=self.arm_swing)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (RGB colours as lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    def signature(self) -> Tuple[Any, ...]:
        """Everything visible about this person, for comparing identities."""
        d = self.to_dict()
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(d.items())
                     if k not in ("pid", "domain"))


def _jitter(rng: np.random.Generator, rgb: RGB, sigma: float) -> RGB:
    # Same palette colour, slightly different garment: realistic and it keeps identities from being clones.
    out = np.clip(np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, sigma, 3), 0, 255)
    return tuple(int(round(v)) for v in out)  # type: ignore[return-value]


def identity_rng(seed: int, domain: Domain, pid: int, stream: int = STREAM_IDENTITY) -> np.random.Generator:
    """The random stream of one identity; depends on nothing else, so any subset of identities is stable."""
    return np.random.default_rng([seed, domain.code, stream, pid])


def sample_identity(domain: Domain, pid: int, seed: int, stream: int = STREAM_IDENTITY) -> Identity:
    """Draw identity ``pid`` of ``domain``; the same arguments always give the same person."""
    rng = identity_rng(seed, domain, pid, stream)
    top_name, top = pick(rng, domain.tops)
    pattern_names = [p for p, _ in domain.patterns]
    pattern_weights = np.array([w for _, w in domain.patterns])
    pattern = pattern_names[int(rng.choice(len(pattern_names), p=pattern_weights / pattern_weights.sum()))]
    # The pattern's second colour must differ from the main one or the pattern would not show.
    while True:
        second_name, second = pick(rng, domain.tops)
        if second_name != top_name:
            break
    bottom_name, bottom = pick(rng, domain.bottoms)
    shoes_name, shoes = pick(rng, domain.shoes)
    hair_name, hair = pick(rng, domain.hair)
    skin_name, skin = pick(rng, domain.skins)
    bag_name, bag = pick(rng, domain.bags)
    has_bag = bool(rng.random() < domain.p_bag)
    return Identity(
        pid=pid,
        domain=domain.name,
        top_colour=top_name,
        top_rgb=_jitter(rng, top, 7.0),
        top_pattern=pattern,
        top_pattern_rgb=_jitter(rng, second, 7.0),
        sleeves="short" if rng.random() < domain.p_short_sleeves else "long",
        bottom_colour=bottom_name,
        bottom_rgb=_jitter(rng, bottom, 6.0),
        bottom_style="shorts" if rng.random() < domain.p_shorts else "trousers",
        shoes_colour=shoes_name,
        shoes_rgb=_jitter(rng, shoes, 5.0),
        hair_colour=hair_name,
        hair_rgb=_jitter(rng, hair, 5.0),
        hair_length="long" if rng.random() < domain.p_long_hair else "short",
        skin=skin_name,
        skin_rgb=_jitter(rng, skin, 6.0),
        height=float(np.clip(rng.normal(1.0, 0.045), 0.9, 1.1)),
        width=float(np.clip(rng.normal(1.05, 0.09), 0.85, 1.3)),
        bag=has_bag,
        bag_colour=bag_name if has_bag else "none",
        bag_rgb=_jitter(rng, bag, 5.0) if has_bag else (0, 0, 0),
        bag_side=("left" if rng.random() < 0.5 else "right") if has_bag else "none",
        stride=float(rng.uniform(0.28, 0.45)),
        arm_swing=float(rng.uniform(0.2, 0.42)),
    )

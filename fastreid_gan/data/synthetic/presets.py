"""Dataset size presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Preset:
    """How many identities and images to generate.  Ranges are inclusive (min, max) per identity."""

    name: str
    num_train_ids: int
    num_test_ids: int
    train_images: Tuple[int, int]      # images per training identity
    gallery_images: Tuple[int, int]    # gallery images per test identity
    cams_per_id: Tuple[int, int]       # cameras an identity walks past (at least 2: cross-camera matching)
    max_query_cams: int                # one query per camera, for at most this many of its cameras
    num_distractors: int               # gallery images with pid 0000 (other people, empty background)
    num_junk: int                      # gallery images with pid -1 (bad crops; ignored by the protocol)
    height: int = 128
    width: int = 64


PRESETS: Dict[str, Preset] = {
    "tiny": Preset("tiny", num_train_ids=12, num_test_ids=8, train_images=(5, 7), gallery_images=(4, 6),
                   cams_per_id=(2, 3), max_query_cams=2, num_distractors=4, num_junk=3),
    "small": Preset("small", num_train_ids=150, num_test_ids=150, train_images=(6, 10), gallery_images=(6, 10),
                    cams_per_id=(2, 4), max_query_cams=3, num_distractors=100, num_junk=60),
    # pids stay <= 1501 so fastreid's stock Market1501 reader accepts the market domain at this size too.
    "medium": Preset("medium", num_train_ids=750, num_test_ids=750, train_images=(8, 16), gallery_images=(8, 16),
                     cams_per_id=(2, 5), max_query_cams=4, num_distractors=800, num_junk=400),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}") from None

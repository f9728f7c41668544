"""Swap accuracy on the synthetic datasets: does G(a_i, s_j) wear identity i's clothes?

For a pair of real images of different identities, x = G(s_j, a_i) keeps j's structure (pose, position), so
j's keypoints say where the clothes are.  We read the mean colour of x on the torso and the upper legs
(:func:`fastreid_gan.data.synthetic.region_masks` from j's keypoints) and ask whether this 6-d colour is
closer to identity i's clothes colours (top, bottom; from ``annotations.json``) than to identity j's.
A generator that ignores the appearance code (or copies the structure image) scores about 0; chance is 0.5;
a perfect swap scores 1.  ``real`` in the result is the same test applied to the real image x_i read with
i's own keypoints: the ceiling of the measurement (camera colour casts, shading and patterns keep it < 1).

Pairs whose two identities wear nearly the same colours are skipped: they cannot tell i from j.

Colour alone can be fooled: a generator that ignores the structure code and redraws x_i wherever it is also
puts i's colours on j's torso.  ``structure`` is the second half of a swap: the fraction of pairs whose
edge layout (Sobel magnitude of the gray image: pose, silhouette, background) correlates better with x_j than
with x_i.  Copying x_j scores 1, copying x_i scores 0; a real swap needs both figures well above 0.5.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SwapAccuracy", "swap_accuracy", "clothes_colour", "region_colours", "annotation_for", "edge_layout"]


@dataclass
class SwapAccuracy:
    """Fraction of swaps G(s_j, a_i) whose clothes are closer to identity i's colours than to j's."""

    accuracy: float  # generated images (chance 0.5)
    real: float  # the same test on the appearance providers' real images (the measurement's ceiling)
    pairs: int  # pairs scored
    skipped: int  # pairs skipped (similar colours or an empty clothes region)
    structure: float = float("nan")  # fraction whose edge layout is closer to x_j's than to x_i's (chance 0.5)

    def __str__(self) -> str:
        return (f"swap accuracy {self.accuracy:.3f} over {self.pairs} pairs (chance 0.500; real images "
                f"{self.real:.3f}; {self.skipped} pairs skipped); structure kept {self.structure:.3f} "
                f"(chance 0.500)")


def clothes_colour(identity: Mapping[str, Any]) -> np.ndarray:
    """Identity's (top RGB, bottom RGB) as one 6-vector (0..255)."""
    return np.asarray(list(identity["top_rgb"]) + list(identity["bottom_rgb"]), dtype=np.float64)


def region_colours(image: Tensor, keypoints: Any, image_hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """Mean RGB (0..255) of ``image`` (3, H, W) on the torso and legs masks of ``keypoints``.

    ``keypoints`` (18 x [x, y, v]) are in the stored image's pixel frame ``image_hw`` and are rescaled to
    the tensor's size.  None when either region is empty.
    """
    from fastreid_gan.data.synthetic.annotations import region_masks

    h, w = image.shape[-2:]
    kp = np.asarray(keypoints, dtype=np.float64).copy()
    scale_y, scale_x = h / float(image_hw[0]), w / float(image_hw[1])
    valid = (kp[:, 0] >= 0) & (kp[:, 1] >= 0)
    # pixel centres: x' + 0.5 = (x + 0.5) * scale
    kp[valid, 0] = (kp[valid, 0] + 0.5) * scale_x - 0.5
    kp[valid, 1] = (kp[valid, 1] + 0.5) * scale_y - 0.5
    masks = region_masks(kp, h, w)
    img = image.detach().float().clamp(0, 255).cpu()
    out = []
    for name in ("torso", "legs"):
        m = torch.from_numpy(masks[name])
        if int(m.sum()) == 0:
            return None
        out.append(img[:, m].mean(dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def edge_layout(images: Tensor) -> Tensor:
    """(B, 3, H, W) 0..255 images -> (B, H/2 * W/2) Sobel magnitude of the gray image, 2x2-pooled (tolerates
    the blur of generated images), centred and L2-normalised: a dot product is a Pearson correlation."""
    from .generator import sobel_magnitude

    mag = F.avg_pool2d(sobel_magnitude(images.float().mean(dim=1, keepdim=True)), 2).flatten(1)
    return F.normalize(mag - mag.mean(dim=1, keepdim=True), dim=1)


def annotation_for(path: str, cache: Dict[str, Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(image record, annotations of its dataset) for an image path (``annotations.json`` two levels up)."""
    from fastreid_gan.data.synthetic.annotations import load_annotations

    dataset_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if dataset_dir not in cache:
        if not os.path.isfile(os.path.join(dataset_dir, "annotations.json")):
            raise FileNotFoundError(
                f"{path}: no annotations.json in {dataset_dir}; swap accuracy needs a synthetic dataset "
                f"(SyntheticMarket / SyntheticDuke)"
            )
        cache[dataset_dir] = load_annotations(dataset_dir)
    ann = cache[dataset_dir]
    return ann["images"][os.path.basename(path)], ann


@torch.no_grad()
def swap_accuracy(
    model,
    img_paths: Sequence[str],
    load_image: Callable[[str], Tensor],
    num_pairs: int = 500,
    min_colour_distance: float = 40.0,
    batch_size: int = 32,
    seed: int = 0,
) -> SwapAccuracy:
    """Score ``num_pairs`` random swaps among ``img_paths`` (images of real identities, pid > 0).

    Args:
        model: a DG-Net (``encode_structure``, ``encode_appearance``, ``decode`` on 0..255 images), in eval mode.
        img_paths: candidate images; distractors, junk and background images are ignored.
        load_image: path -> (3, H, W) float tensor in 0..255 at the model's input size (the test transform).
        num_pairs: pairs drawn (with different identities; fewer may be scored, see ``skipped``).
        min_colour_distance: skip pairs whose identities' 6-d clothes colours are closer than this.
    """
    cache: Dict[str, Dict[str, Any]] = {}
    records = []
    for p in img_paths:
        rec, ann = annotation_for(p, cache)
        if rec.get("kind", "person") != "person" or int(rec["pid"]) <= 0:
            continue
        ident = ann["identities"].get(int(rec["pid"]))
        if ident is None:
            continue
        hw = (int(ann["meta"]["height"]), int(ann["meta"]["width"]))
        records.append((p, int(rec["pid"]), rec["keypoints"], clothes_colour(ident), hw))
    if len({r[1] for r in records}) < 2:
        raise ValueError("swap accuracy needs images of at least two identities")

    rng = np.random.default_rng(seed)
    pairs: List[Tuple[int, int]] = []
    skipped = 0
    tries = 0
    while len(pairs) + skipped < num_pairs and tries < num_pairs * 20:
        tries += 1
        i, j = rng.integers(len(records), size=2)
        if records[i][1] == records[j][1]:
            continue
        if np.linalg.norm(records[i][3] - records[j][3]) < min_colour_distance:
            skipped += 1
            continue
        pairs.append((int(i), int(j)))

    device = model.device
    hits, real_hits, structure_hits, scored = 0, 0, 0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        app = torch.stack([load_image(records[i][0]) for i, _ in chunk]).to(device)
        struct = torch.stack([load_image(records[j][0]) for _, j in chunk]).to(device)
        fake = model.decode(model.encode_structure(struct), model.encode_appearance(app))
        e_fake, e_app, e_struct = edge_layout(fake), edge_layout(app), edge_layout(struct)
        closer_to_structure = ((e_fake * e_struct).sum(1) > (e_fake * e_app).sum(1)).tolist()
        for k, (i, j) in enumerate(chunk):
            mean_fake = region_colours(fake[k], records[j][2], records[j][4])
            mean_real = region_colours(app[k], records[i][2], records[i][4])
            if mean_fake is None or mean_real is None:
                skipped += 1
                continue
            c_i, c_j = records[i][3], records[j][3]
            hits += int(np.linalg.norm(mean_fake - c_i) < np.linalg.norm(mean_fake - c_j))
            real_hits += int(np.linalg.norm(mean_real - c_i) < np.linalg.norm(mean_real - c_j))
            structure_hits += int(closer_to_structure[k])
            scored += 1
    if scored == 0:
        raise ValueError("no pair could be scored (all skipped): lower min_colour_distance or add images")
    return SwapAccuracy(hits / scored, real_hits / scored, scored, skipped, structure_hits / scored)

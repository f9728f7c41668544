"""What FD-GAN's generator G(x, p) = G(E(x), p, n) does, in numbers, each next to a baseline measured the same way.

* **Identity preservation** (:func:`identity_preservation`): each query image x of the test split is drawn in
  the pose p of an image of another identity; E's feature of the generated image is ranked against the
  gallery's real images with the evaluator's protocol (Market-1501), distance and flip test.  Rank-1 / mAP of
  the generated queries sit between two references: the real queries (what E does on real images, the upper
  reference; it is the evaluator's figure on those queries) and chance (a random ranking: rank-1 = matches /
  candidates per query, about 1 / #identities).
* **Pose fidelity** (:func:`pose_fidelity`): is the generated person where the target keypoints are?  From the
  target's ground-truth keypoints (``annotations.json`` of a synthetic dataset; the keypoint files otherwise)
  a *body map* is made: exp(-d^2 / 2 s^2), d the distance to the nearest visible limb of the COCO-18 skeleton,
  s = 0.45 x the neck-hip length (a person's outline lies within about 0.3 of it).  The generated image's *edge
  map* (Sobel magnitude, max over RGB, lightly blurred) should lie on it: the score is their Pearson
  correlation.  Its chance level is the correlation of the same edge map with the body map of a *mismatched*
  pose (another random image's keypoints); ``accuracy`` is the fraction of images whose own pose correlates
  better than the mismatched one (chance 0.5).  Only this comparison means something: the plain correlation
  also rewards any edges near the image's centre.  The same test on the real target images (``real_*``) is
  the measurement's ceiling (background edges keep it < 1).  On the synthetic data real images, flat-colour
  silhouettes and drawn skeletons in the right place are closer to their own pose in ~0.85, ~0.98 and ~0.99
  of pairs; a blob much wider than the body, or an image whose edges ignore the pose, is not.
* **Same-pose consistency** (:func:`same_pose_consistency`, the paper's same-pose loss, Eq. 6): two images of
  one person, one target pose, the same noise: the mean L1 distance (0..255 pixels) of the two generations,
  against the same distance for two images of *different* persons.  A feature that carries identity and not
  pose makes ``same_identity`` clearly smaller than ``different_identity`` (``ratio`` < 1); a feature that
  ignores identity gives a ratio near 1.  ``different_identity`` is also the scale: below about one pixel G
  draws nearly the same image whatever its input (a random-init G does) and the ratio says nothing.

Generation is reproducible: the noise comes from a CPU generator seeded per batch (the same values on CPU and
GPU) and each G call runs under a forked, seeded torch RNG, so G's dropout (off in eval mode; the published
code never runs G in eval mode, ``dropout=True`` turns it on as there) draws the same masks on every run and
for both halves of a same-pose pair.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from fastreid_gan.data.samples import eval_image_loader, split_items
from fastreid_gan.data.synthetic.skeleton import LIMBS  # COCO-18 limbs (OpenPose order)
from fastreid_gan.evaluation import evaluate_rank_features

from .pose import image_keypoints, joint_heatmaps

__all__ = ["GenerationDataError", "PoseInputs", "Person", "query_and_gallery", "generate", "generator_dropout",
           "IdentityPreservation", "PoseFidelity", "SamePoseConsistency", "GenerationScores",
           "identity_preservation", "pose_fidelity", "same_pose_consistency", "pair_l1", "generation_scores",
           "body_map", "edge_map", "random_ranking", "draw_noise", "LIMBS"]

# Width of the body map in neck-hip lengths: narrower maps miss a silhouette's outline (the torso's is ~0.3 from
# the skeleton), wider ones stop telling poses apart (measured on the synthetic data, see the module docstring).
BODY_SIGMA = 0.45


class GenerationDataError(ValueError):
    """The images given cannot be scored (too few identities, no pairs, no gallery match)."""


@dataclass(frozen=True)
class Person:
    """One test image of a real identity."""

    path: str
    pid: int
    camid: int


def _pid(value: Any) -> int:
    # fastreid prefixes training pids with the dataset name ("synthetic_market_12")
    return int(value.rsplit("_", 1)[-1]) if isinstance(value, str) else int(value)


def query_and_gallery(dataset: str) -> Tuple[List[Person], List[Person]]:
    """(query, gallery) images of a registered dataset; the gallery keeps its distractors (pid 0), the query
    only real identities."""
    query = [Person(it[0], _pid(it[1]), int(it[2])) for it in split_items(dataset, "query")]
    gallery = [Person(it[0], _pid(it[1]), int(it[2])) for it in split_items(dataset, "gallery")]
    return [p for p in query if p.pid > 0], [p for p in gallery if p.pid >= 0]


class PoseInputs:
    """Images (0..255, the test transform) and pose heat-maps of image paths at the model's input size, as
    the config says (``INPUT.SIZE_TEST``, ``MODEL.FDGAN.POSE.SIGMA / DIR``).

    Keypoint files are read with :func:`fdgan.pose.image_keypoints`: a missing one raises
    ``PoseFileMissingError`` naming the file.
    """

    def __init__(self, cfg: Any) -> None:
        self.size: Tuple[int, int] = (int(cfg.INPUT.SIZE_TEST[0]), int(cfg.INPUT.SIZE_TEST[1]))
        self.sigma = float(cfg.MODEL.FDGAN.POSE.SIGMA)
        self.pose_dir = str(cfg.MODEL.FDGAN.POSE.DIR)
        self._load = eval_image_loader(cfg)
        self._annotations: Dict[str, Optional[Dict[str, Any]]] = {}

    def image(self, path: str) -> Tensor:
        return self._load(path)

    def images(self, paths: Sequence[str]) -> Tensor:
        return torch.stack([self._load(p) for p in paths])

    def keypoints(self, path: str) -> np.ndarray:
        """(18, 2) integer ``(y, x)`` at the model's size from the image's keypoint file, -1 where missing."""
        with Image.open(path) as im:  # only the header is read
            width, height = im.size
        return image_keypoints(path, (height, width), self.size, self.pose_dir)

    def posemaps(self, paths: Sequence[str]) -> Tensor:
        return torch.stack([torch.from_numpy(joint_heatmaps(self.keypoints(p), self.size, self.sigma))
                            for p in paths])

    def reference_keypoints(self, path: str) -> Tuple[np.ndarray, str]:
        """(18, 2) float ``(x, y)`` at the model's size (NaN where not visible) and where they came from:
        ``annotations.json`` beside a synthetic dataset's folders (the ground truth) or the keypoint file."""
        dataset_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        if dataset_dir not in self._annotations:
            self._annotations[dataset_dir] = None
            if os.path.isfile(os.path.join(dataset_dir, "annotations.json")):
                from fastreid_gan.data.synthetic import load_annotations

                self._annotations[dataset_dir] = load_annotations(dataset_dir)
        ann = self._annotations[dataset_dir]
        record = ann["images"].get(os.path.basename(path)) if ann else None
        if record is None:
            yx = self.keypoints(path).astype(np.float64)
            xy = yx[:, ::-1].copy()
            xy[(yx < 0).any(axis=1)] = np.nan
            return xy, "keypoint files"
        kp = np.asarray(record["keypoints"], dtype=np.float64)
        sx = self.size[1] / float(ann["meta"]["width"])
        sy = self.size[0] / float(ann["meta"]["height"])
        # pixel centres: x' + 0.5 = (x + 0.5) * scale
        xy = np.stack([(kp[:, 0] + 0.5) * sx - 0.5, (kp[:, 1] + 0.5) * sy - 0.5], axis=1)
        xy[kp[:, 2] <= 0] = np.nan
        return xy, "annotations.json"


# ---------------------------------------------------------------------------------------------- generation
@contextlib.contextmanager
def generator_dropout(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Run G's dropout layers in training mode (as the published code generates) inside the block."""
    layers = [m for m in model.gen.modules() if isinstance(m, nn.Dropout)] if enabled else []
    before = [m.training for m in layers]
    for m in layers:
        m.train()
    try:
        yield
    finally:
        for m, mode in zip(layers, before):
            m.train(mode)


def draw_noise(batch: int, dim: int, seed: int) -> Tensor:
    """(batch, dim) N(0, 1) noise from a CPU generator seeded with ``seed``: the same values on every device."""
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(model: nn.Module, images: Optional[Tensor], posemaps: Tensor, seed: int, noise: Optional[Tensor] = None,
             dropout: bool = False, features: Optional[Tensor] = None) -> Tensor:
    """G(E(images), posemaps, noise) as 0..255 images (B, 3, H, W).

    ``noise`` (noise_dim,) or (B, noise_dim); by default one N(0, 1) vector per row drawn from ``seed``.  G runs
    under a torch RNG seeded with ``seed`` (restored afterwards), so dropout masks repeat with the seed.
    ``features`` (E's, of ``images``) skips E; ``images`` may then be None.
    """
    device = model.device
    if features is None:
        if images is None:
            raise ValueError("generate needs the source images or their features")
        features = model.encode(images.to(device))
    feats = features.to(device)
    batch = feats.shape[0]
    if noise is None:
        noise = draw_noise(batch, model.gen.noise_dim, seed)
    noise = noise.reshape(-1, model.gen.noise_dim).expand(batch, -1).to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), generator_dropout(model, dropout):
        torch.manual_seed(seed)
        return model.to_pixels(model.generate(posemaps.to(device), feats, noise))


def _batches(n: int, size: int) -> Iterator[Tuple[int, slice]]:
    for k, start in enumerate(range(0, n, size)):
        yield k, slice(start, min(n, start + size))


@torch.no_grad()
def _ranking_features(model: nn.Module, images: Tensor, flip: bool, plain: Optional[Tensor] = None) -> Tensor:
    """E's features as the evaluator ranks them: with ``TEST.FLIP.ENABLED`` the mean with the mirrored image's."""
    feats = model.encode(images) if plain is None else plain
    return ((feats + model.encode(images.flip(dims=[3]))) / 2 if flip else feats).cpu()


@torch.no_grad()
def _encode(model: nn.Module, inputs: PoseInputs, paths: Sequence[str], batch_size: int, flip: bool) -> Tensor:
    out = [_ranking_features(model, inputs.images(paths[s]).to(model.device), flip)
           for _, s in _batches(len(paths), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def _other_identity(rng: np.random.Generator, pool: Sequence[Person], *pids: int) -> Person:
    """A random image of ``pool`` whose identity is none of ``pids``."""
    candidates = [k for k, p in enumerate(pool) if p.pid not in pids]
    if not candidates:
        raise GenerationDataError(f"no image of an identity other than {sorted(set(pids))} to take a pose from: "
                                  f"scoring needs images of at least two identities")
    return pool[candidates[int(rng.integers(len(candidates)))]]


# ---------------------------------------------------------------------------------------------- identity
def random_ranking(q_pids: Sequence[int], q_camids: Sequence[int], g_pids: Sequence[int],
                   g_camids: Sequence[int]) -> Tuple[float, float, int]:
    """Expected (rank-1, mAP) in % of a uniformly random ranking under the Market-1501 protocol, and the number
    of queries with a match.  Per query, N candidates (same-pid same-camera images removed) of which R match:
    E[rank-1] = R / N and, exactly, E[AP] = (H_N + (R - 1)(N - H_N) / (N - 1)) / N (H_N harmonic number)."""
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    r1, ap = [], []
    for pid, cam in zip(q_pids, q_camids):
        keep = ~((g_pids == pid) & (g_camids == cam))
        n, r = int(keep.sum()), int(((g_pids == pid) & keep).sum())
        if r == 0:
            continue
        h = float(np.sum(1.0 / np.arange(1, n + 1)))
        r1.append(r / n)
        ap.append(1.0 if n == 1 else (h + (r - 1) * (n - h) / (n - 1)) / n)
    if not r1:
        raise GenerationDataError("no query has a match in the gallery (same identity, another camera)")
    return 100 * float(np.mean(r1)), 100 * float(np.mean(ap)), len(r1)


@dataclass
class IdentityPreservation:
    """Ranking of E(G(x, p_other)) against the real gallery, in % (Market-1501 protocol)."""

    rank1: float  # generated queries
    mAP: float
    real_rank1: float  # the real queries (upper reference: the evaluator's figures on these queries)
    real_mAP: float
    chance_rank1: float  # a random ranking (expected)
    chance_mAP: float
    queries: int  # queries with a match in the gallery (the others are left out, as by the evaluator)
    identities: int  # gallery identities (distractors excluded)

    def __str__(self) -> str:
        return (f"identity preservation: rank-1 {self.rank1:.1f}% mAP {self.mAP:.1f}% of {self.queries} "
                f"generated queries (real queries {self.real_rank1:.1f}% / {self.real_mAP:.1f}%; chance "
                f"{self.chance_rank1:.1f}% / {self.chance_mAP:.1f}%, {self.identities} identities)")


@torch.no_grad()
def identity_preservation(model: nn.Module, inputs: PoseInputs, query: Sequence[Person], gallery: Sequence[Person],
                          seed: int = 0, batch_size: int = 32, metric: str = "euclidean",
                          dropout: bool = False, flip: bool = False) -> IdentityPreservation:
    """Generate each query in the pose of a random test image of another identity and rank E of the result
    against the real gallery as the evaluator does (``metric``, ``flip``: ``TEST.METRIC``, ``TEST.FLIP.ENABLED``);
    see the module docstring."""
    if not query or not gallery:
        raise GenerationDataError("identity preservation needs query and gallery images")
    rng = np.random.default_rng(seed)
    pool = [p for p in list(query) + list(gallery) if p.pid > 0]
    pose_paths = [_other_identity(rng, pool, q.pid).path for q in query]
    g_feats = _encode(model, inputs, [g.path for g in gallery], batch_size, flip).numpy()
    real, fake = [], []
    for k, s in _batches(len(query), batch_size):
        images = inputs.images([q.path for q in query[s]]).to(model.device)
        feats = model.encode(images)  # G takes the plain feature, whatever the ranking does
        real.append(_ranking_features(model, images, flip, feats))
        out = generate(model, images, inputs.posemaps(pose_paths[s]), seed + k, dropout=dropout, features=feats)
        fake.append(_ranking_features(model, out, flip))
    q_pids, q_cams = [q.pid for q in query], [q.camid for q in query]
    g_pids, g_cams = [g.pid for g in gallery], [g.camid for g in gallery]

    def rank(feats: List[Tensor]) -> Tuple[float, float]:
        res = evaluate_rank_features(torch.cat(feats).numpy(), g_feats, q_pids, g_pids, q_cams, g_cams,
                                     metric=metric)
        return 100 * float(res.cmc[0]), 100 * res.mAP

    (r1, m), (real_r1, real_m) = rank(fake), rank(real)
    chance_r1, chance_m, scored = random_ranking(q_pids, q_cams, g_pids, g_cams)
    return IdentityPreservation(r1, m, real_r1, real_m, chance_r1, chance_m, scored,
                                len({g.pid for g in gallery if g.pid > 0}))


# ---------------------------------------------------------------------------------------------- pose
def body_map(keypoints_xy: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W) float32 nearness to the visible limbs of COCO-18 keypoints ``(x, y)`` (NaN = not visible):
    exp(-d^2 / 2 s^2), d the distance to the nearest limb, s = ``BODY_SIGMA`` x the neck-hip length (0.3 x the
    image height when the neck or both hips are missing); all zeros when no limb is visible."""
    h, w = (int(s) for s in size)
    pts = np.asarray(keypoints_xy, dtype=np.float64)
    vis = ~np.isnan(pts).any(axis=1)
    hips = pts[[8, 11]][vis[[8, 11]]]
    torso = float(np.linalg.norm(hips.mean(axis=0) - pts[1])) if vis[1] and len(hips) else 0.3 * h
    skeleton = np.zeros((h, w), np.uint8)
    for a, b in LIMBS:
        if vis[a] and vis[b]:
            cv2.line(skeleton, (int(round(pts[a, 0])), int(round(pts[a, 1]))),
                     (int(round(pts[b, 0])), int(round(pts[b, 1]))), 1, 1)
    if not skeleton.any():
        return np.zeros((h, w), np.float32)
    distance = cv2.distanceTransform((skeleton == 0).astype(np.uint8), cv2.DIST_L2, 5)
    sigma = max(1.0, BODY_SIGMA * torso)
    return np.exp(-(distance ** 2) / (2 * sigma ** 2)).astype(np.float32)


def edge_map(image: Tensor) -> np.ndarray:
    """(H, W) float32 edge strength of a (3, H, W) 0..255 image: Sobel magnitude, max over RGB, blurred."""
    img = np.ascontiguousarray(image.detach().float().cpu().permute(1, 2, 0).numpy())
    gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)
    sigma = max(1.0, 1.5 * img.shape[0] / 64.0)  # 1.5 px at 64x32, scaled with the image: tolerates G's blur
    return cv2.GaussianBlur(np.sqrt(gx ** 2 + gy ** 2).max(axis=2), (0, 0), sigma)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0  # a flat image correlates with nothing


@dataclass
class PoseFidelity:
    """Correlation of generated images' edges with the target pose's body map (see the module docstring)."""

    correlation: float  # mean, generated image vs its target pose
    mismatched: float  # mean, the same image vs another image's pose (chance level)
    accuracy: float  # fraction with correlation > mismatched (chance 0.5)
    real_correlation: float  # the same on the real target images (the measurement's ceiling)
    real_mismatched: float
    real_accuracy: float
    pairs: int
    keypoints: str  # where the target keypoints came from

    def __str__(self) -> str:
        return (f"pose fidelity: edge/body correlation {self.correlation:.3f} (mismatched pose {self.mismatched:.3f}),"
                f" own pose closer in {self.accuracy:.3f} of {self.pairs} (chance 0.500); real target images "
                f"{self.real_correlation:.3f} / {self.real_mismatched:.3f}, {self.real_accuracy:.3f} "
                f"(keypoints: {self.keypoints})")


@torch.no_grad()
def pose_fidelity(model: nn.Module, inputs: PoseInputs, persons: Sequence[Person], pairs: int = 200, seed: int = 0,
                  batch_size: int = 32, dropout: bool = False) -> PoseFidelity:
    """Draw ``pairs`` (source x, target y of another identity, mismatched z != y) among ``persons``; score
    G(x, p_y) and the real y against y's body map and z's; see the module docstring."""
    pool = [p for p in persons if p.pid > 0]
    if len({p.pid for p in pool}) < 2:
        raise GenerationDataError("pose fidelity needs images of at least two identities")
    rng = np.random.default_rng(seed)
    triples = []
    for _ in range(pairs):
        x = pool[int(rng.integers(len(pool)))]
        y = _other_identity(rng, pool, x.pid)
        z = pool[int(rng.integers(len(pool)))]
        while z.path == y.path:
            z = pool[int(rng.integers(len(pool)))]
        triples.append((x, y, z))
    bodies: Dict[str, np.ndarray] = {}
    sources = set()

    def body(path: str) -> np.ndarray:
        if path not in bodies:
            kp, source = inputs.reference_keypoints(path)
            sources.add(source)
            bodies[path] = body_map(kp, inputs.size)
        return bodies[path]

    scores = []  # (fake own, fake mismatched, real own, real mismatched)
    for k, s in _batches(len(triples), batch_size):
        chunk = triples[s]
        targets = inputs.images([y.path for _, y, _ in chunk])
        fake = generate(model, inputs.images([x.path for x, _, _ in chunk]), inputs.posemaps([y.path for _, y, _ in
                        chunk]), seed + k, dropout=dropout).cpu()
        for i, (_, y, z) in enumerate(chunk):
            own, other = body(y.path), body(z.path)
            if not own.any() or not other.any():
                continue  # no visible limb: nothing to compare with
            e_fake, e_real = edge_map(fake[i]), edge_map(targets[i])
            scores.append((_correlation(e_fake, own), _correlation(e_fake, other),
                           _correlation(e_real, own), _correlation(e_real, other)))
    if not scores:
        raise GenerationDataError("no pair could be scored: the target images have no visible limbs")
    a = np.asarray(scores)
    return PoseFidelity(float(a[:, 0].mean()), float(a[:, 1].mean()), float((a[:, 0] > a[:, 1]).mean()),
                        float(a[:, 2].mean()), float(a[:, 3].mean()), float((a[:, 2] > a[:, 3]).mean()), len(a),
                        " + ".join(sorted(sources)))


# ---------------------------------------------------------------------------------------------- same pose
@torch.no_grad()
def pair_l1(model: nn.Module, images_a: Tensor, images_b: Tensor, posemaps: Tensor, seed: int,
            dropout: bool = False) -> Tensor:
    """Per-pair mean |G(a, p, n) - G(b, p, n)| in 0..255 pixels (B,): the same pose, noise and dropout masks
    for both images, so identical inputs give exactly 0."""
    fake_a = generate(model, images_a, posemaps, seed, dropout=dropout)
    fake_b = generate(model, images_b, posemaps, seed, dropout=dropout)
    return (fake_a - fake_b).abs().flatten(1).mean(dim=1).cpu()


@dataclass
class SamePoseConsistency:
    """Mean L1 (0..255) between two generations in one pose with the same noise (the same-pose loss)."""

    same_identity: float  # two images of one person
    different_identity: float  # two images of different persons (the baseline)
    ratio: float  # same / different: < 1 when E's features carry identity, about 1 when they do not
    pairs: int

    def __str__(self) -> str:
        return (f"same-pose consistency: L1 {self.same_identity:.3f} between two images of one person vs "
                f"{self.different_identity:.3f} of different persons (ratio {self.ratio:.3f}; ~1 when the "
                f"feature ignores identity) over {self.pairs} pairs")


@torch.no_grad()
def same_pose_consistency(model: nn.Module, inputs: PoseInputs, persons: Sequence[Person], pairs: int = 200,
                          seed: int = 0, batch_size: int = 32, dropout: bool = False) -> SamePoseConsistency:
    """Draw ``pairs`` (x1, x2 of one identity; x3 of another; a target pose of a third identity) among
    ``persons`` and compare L1(G(x1, p), G(x2, p)) with L1(G(x1, p), G(x3, p)); see the module docstring."""
    pool = [p for p in persons if p.pid > 0]
    by_pid: Dict[int, List[Person]] = {}
    for p in pool:
        by_pid.setdefault(p.pid, []).append(p)
    multi = sorted(pid for pid, ims in by_pid.items() if len(ims) > 1)
    if not multi or len(by_pid) < 2:
        raise GenerationDataError("same-pose consistency needs two images of one identity and another identity")
    rng = np.random.default_rng(seed)
    quads = []
    for _ in range(pairs):
        ims = by_pid[multi[int(rng.integers(len(multi)))]]
        i, j = rng.choice(len(ims), size=2, replace=False)
        x3 = _other_identity(rng, pool, ims[0].pid)
        candidates = [p for p in pool if p.pid not in (ims[0].pid, x3.pid)] or [p for p in pool if p.pid != ims[0].pid]
        quads.append((ims[int(i)], ims[int(j)], x3, candidates[int(rng.integers(len(candidates)))]))
    same, diff = [], []
    for k, s in _batches(len(quads), batch_size):
        chunk = quads[s]
        posemaps = inputs.posemaps([q[3].path for q in chunk])
        # one seed per chunk for the three generations: the same noise and dropout masks row by row
        fakes = [generate(model, None, posemaps, seed + k, dropout=dropout,
                          features=model.encode(inputs.images([q[i].path for q in chunk]).to(model.device))).cpu()
                 for i in range(3)]
        same.append((fakes[0] - fakes[1]).abs().flatten(1).mean(dim=1))
        diff.append((fakes[0] - fakes[2]).abs().flatten(1).mean(dim=1))
    d_same, d_diff = float(torch.cat(same).mean()), float(torch.cat(diff).mean())
    return SamePoseConsistency(d_same, d_diff, d_same / d_diff if d_diff > 0 else math.nan, len(quads))


# ---------------------------------------------------------------------------------------------- all three
@dataclass
class GenerationScores:
    """The three scores of one model on one dataset's test split."""

    dataset: str
    seed: int
    dropout: bool
    identity: IdentityPreservation
    pose: PoseFidelity
    same_pose: SamePoseConsistency

    def as_dict(self) -> Dict[str, Any]:
        return {"dataset": self.dataset, "seed": self.seed, "dropout": self.dropout,
                "identity_preservation": asdict(self.identity), "pose_fidelity": asdict(self.pose),
                "same_pose_consistency": asdict(self.same_pose)}

    def __str__(self) -> str:
        return "\n".join([f"{self.dataset} (test split, seed {self.seed}, dropout {'on' if self.dropout else 'off'}):",
                          f"  {self.identity}", f"  {self.pose}", f"  {self.same_pose}"])


def generation_scores(model: nn.Module, cfg: Any, dataset: str, pairs: int = 200, seed: int = 0,
                      max_queries: int = 0, dropout: bool = False,
                      progress: Optional[Callable[[str], None]] = None) -> GenerationScores:
    """Identity preservation, pose fidelity and same-pose consistency of ``model`` (eval mode) on ``dataset``'s
    test split; ``max_queries`` > 0 scores that many random queries only; deterministic given ``seed``."""
    inputs = PoseInputs(cfg)
    query, gallery = query_and_gallery(dataset)
    if 0 < max_queries < len(query):
        keep = np.random.default_rng(seed).choice(len(query), size=max_queries, replace=False)
        query = [query[int(k)] for k in sorted(keep)]
    batch = max(1, int(cfg.TEST.IMS_PER_BATCH))
    say = progress or (lambda _: None)
    say(f"identity preservation: {len(query)} queries x {len(gallery)} gallery images")
    identity = identity_preservation(model, inputs, query, gallery, seed, batch, str(cfg.TEST.METRIC), dropout,
                                     bool(cfg.TEST.FLIP.ENABLED))
    persons = [p for p in list(query) + list(gallery) if p.pid > 0]
    say(f"pose fidelity and same-pose consistency: {pairs} pairs each")
    pose = pose_fidelity(model, inputs, persons, pairs, seed, batch, dropout)
    same = same_pose_consistency(model, inputs, persons, pairs, seed, batch, dropout)
    return GenerationScores(dataset, seed, dropout, identity, pose, same)

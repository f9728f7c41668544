"""Plan and write a synthetic dataset to disk in Market-1501's layout (plus poses and annotations).

Layout under ``<root>/<folder>/``::

    bounding_box_train/{pid:04d}_c{cam}s1_{frame:06d}_00.jpg
    query/...            one image per camera for a few cameras of each test identity
    bounding_box_test/...  test identities in every camera they visit, plus distractors (0000_...) and junk (-1_...)
    poses/<stem>.txt     FD-GAN keypoints (see annotations.py)
    annotations.json     identity attributes and per-image structure
    synthetic.json       generation parameters (checked before reusing a folder)

The dataset is written into a temporary sibling folder and renamed into place, so a reader never sees a
half-written dataset and two processes generating at once both end up with one complete copy.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from .annotations import ANNOTATIONS_FILE, POSES_DIR, write_pose_file
from .domains import Camera, Domain, get_domain, make_camera
from .identity import STREAM_EXTRA_PERSON, STREAM_IDENTITY, Identity, sample_identity
from .presets import Preset, get_preset
from .render import Rendered, Structure, render_image, sample_structure
from .scene import camera_view, make_panorama
from .skeleton import FACINGS, KEYPOINT_NAMES

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
META_FILE = "synthetic.json"
JPEG_QUALITY = 95
SPLIT_DIRS: Dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
KINDS = ("person", "distractor", "background", "junk")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ImageSpec:
    """One image to generate."""

    split: str          # train | query | gallery
    pid: int            # pid in the file name: identity pid, 0 (distractor) or -1 (junk)
    cam: int            # 1-based
    frame: int
    kind: str           # one of KINDS
    person: int         # pid of the drawn identity (in ``stream``), -1 for none
    stream: int         # identity seed stream of ``person``
    track: int          # index of this image in its (pid, camera) tracklet

    @property
    def file_name(self) -> str:
        pid = "-1" if self.pid == -1 else f"{self.pid:04d}"
        return f"{pid}_c{self.cam}s1_{self.frame:06d}_00.jpg"


def _split_counts(rng: np.random.Generator, total: int, cams: List[int]) -> Dict[int, int]:
    # Every camera of the identity gets at least one image; the rest are spread at random.
    counts = {c: 1 for c in cams}
    for c in rng.choice(cams, size=max(0, total - len(cams))):
        counts[int(c)] += 1
    return counts


def plan_dataset(domain: Domain, preset: Preset, seed: int = 0) -> List[ImageSpec]:
    """Every image of the dataset, in a fixed order; each identity's images depend only on its own seed."""
    specs: List[ImageSpec] = []
    n_cams = domain.num_cams

    def cameras(rng: np.random.Generator) -> List[int]:
        k = int(rng.integers(preset.cams_per_id[0], min(preset.cams_per_id[1], n_cams) + 1))
        return sorted(int(c) + 1 for c in rng.choice(n_cams, size=k, replace=False))

    for pid in range(1, preset.num_train_ids + 1):
        rng = np.random.default_rng([seed, domain.code, 10, pid])
        cams = cameras(rng)
        counts = _split_counts(rng, int(rng.integers(preset.train_images[0], preset.train_images[1] + 1)), cams)
        for cam in cams:
            base = int(rng.integers(1, 500000))
            for j in range(counts[cam]):
                specs.append(ImageSpec("train", pid, cam, base + 13 * j, "person", pid, STREAM_IDENTITY, j))

    first_test = preset.num_train_ids + 1
    for pid in range(first_test, first_test + preset.num_test_ids):
        rng = np.random.default_rng([seed, domain.code, 11, pid])
        cams = cameras(rng)
        counts = _split_counts(rng, int(rng.integers(preset.gallery_images[0], preset.gallery_images[1] + 1)), cams)
        query_cams = set(int(c) for c in rng.permutation(cams)[: preset.max_query_cams])
        for cam in cams:
            base = int(rng.integers(1, 500000))
            for j in range(counts[cam]):
                specs.append(ImageSpec("gallery", pid, cam, base + 13 * j, "person", pid, STREAM_IDENTITY, j))
            if cam in query_cams:
                j = counts[cam]
                specs.append(ImageSpec("query", pid, cam, base + 13 * j, "person", pid, STREAM_IDENTITY, j))

    per_cam: Dict[Tuple[int, int], int] = {}

    def frame_for(pid: int, cam: int) -> int:
        n = per_cam.get((pid, cam), 0)
        per_cam[(pid, cam)] = n + 1
        return 1 + 29 * n

    for n in range(1, preset.num_distractors + 1):
        rng = np.random.default_rng([seed, domain.code, 12, n])
        cam = int(rng.integers(1, n_cams + 1))
        kind = "background" if rng.random() < 0.3 else "distractor"
        person = -1 if kind == "background" else n
        specs.append(ImageSpec("gallery", 0, cam, frame_for(0, cam), kind, person, STREAM_EXTRA_PERSON, 0))
    for n in range(1, preset.num_junk + 1):
        rng = np.random.default_rng([seed, domain.code, 13, n])
        cam = int(rng.integers(1, n_cams + 1))
        specs.append(ImageSpec("gallery", -1, cam, frame_for(-1, cam), "junk", 100000 + n, STREAM_EXTRA_PERSON, 0))
    return specs


class RenderContext:
    """What all images of one dataset share: identities (cached), cameras and the scenery they see."""

    def __init__(self, domain: Domain, seed: int, height: int, width: int) -> None:
        self.domain, self.seed, self.height, self.width = domain, seed, height, width
        self.cameras: Dict[int, Camera] = {c: make_camera(domain, c, seed) for c in range(1, domain.num_cams + 1)}
        panorama = make_panorama(domain, seed, height, width)
        self.scenes = {c: camera_view(panorama, cam, width) for c, cam in self.cameras.items()}
        self._identities: Dict[Tuple[int, int], Identity] = {}

    def identity(self, pid: int, stream: int) -> Identity:
        """Identity ``pid`` of seed stream ``stream`` (sampled once)."""
        key = (stream, pid)
        if key not in self._identities:
            self._identities[key] = sample_identity(self.domain, pid, self.seed, stream)
        return self._identities[key]


def sample_image_structure(spec: ImageSpec, ctx: RenderContext, identity: Optional[Identity]) -> Structure:
    """The structure of one image: tracklet-consistent facing and phase, then per-image jitter."""
    camera = ctx.cameras[spec.cam]
    code = ctx.domain.code
    key = [ctx.seed, code, 21, spec.pid + 2, spec.cam]
    track = np.random.default_rng(key)
    facing: Optional[str] = list(FACINGS)[int(track.choice(4, p=np.asarray(camera.facing_weights)))]
    phase: Optional[float] = float(track.uniform(0, 2 * np.pi)) + 0.8 * spec.track
    rng = np.random.default_rng(key + [spec.frame])
    if spec.kind != "person":
        facing = phase = None  # unrelated people share no tracklet
    elif rng.random() < 0.3:
        facing = None  # the person turned
    # Queries are picked among the better shots, as in Market-1501.
    occlusion = bool(rng.random() < camera.p_occlusion * (0.5 if spec.split == "query" else 1.0))
    st = sample_structure(rng, camera, identity, facing=facing, phase=phase, occlusion=occlusion)
    if spec.kind == "background":
        st = replace(st, person=False)
    elif spec.kind == "junk":
        # A bad detection: far too close, or cut by the image border.
        if rng.random() < 0.5:
            st = replace(st, scale=st.scale * float(rng.uniform(1.6, 2.4)),
                          feet=float(rng.uniform(1.0, 1.9)))
        else:
            st = replace(st, cx=float(rng.choice([-0.05, 1.05])) + float(rng.normal(0, 0.05)))
    return st


def render_spec(spec: ImageSpec, ctx: RenderContext) -> Tuple[Rendered, Structure]:
    """Render the image of ``spec``."""
    identity = ctx.identity(spec.person, spec.stream) if spec.person >= 0 else None
    st = sample_image_structure(spec, ctx, identity)
    out = render_image(identity, st, ctx.cameras[spec.cam], ctx.domain, ctx.scenes[spec.cam], ctx.height, ctx.width)
    return out, st


def _image_record(spec: ImageSpec, out: Rendered, st: Structure) -> Dict[str, object]:
    body = out.labels > 0
    covered = float((body & out.occluder_mask).sum() / max(1, body.sum())) if st.occluder != "none" else 0.0
    rec: Dict[str, object] = {
        "split": spec.split, "pid": spec.pid, "camid": spec.cam, "frame": spec.frame, "kind": spec.kind,
        "person": spec.person if spec.kind == "person" else None, "track": spec.track,
        "occluded": covered > 0.0, "occluded_fraction": round(covered, 4),
        "keypoints": [[round(float(x), 1), round(float(y), 1), int(v)]
                      for (x, y), v in zip(out.keypoints, out.visible)],
    }
    rec.update(st.to_dict())
    return rec


def _write_into(out_dir: Path, domain: Domain, preset: Preset, seed: int, height: int, width: int,
                progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, int]:
    specs = plan_dataset(domain, preset, seed)
    names = [s.file_name for s in specs]
    assert len(set(names)) == len(names), "file names must be unique across splits"
    for d in list(SPLIT_DIRS.values()) + [POSES_DIR]:
        (out_dir / d).mkdir(parents=True, exist_ok=True)
    ctx = RenderContext(domain, seed, height, width)
    images: Dict[str, object] = {}
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for i, spec in enumerate(specs):
        out, st = render_spec(spec, ctx)
        path = out_dir / SPLIT_DIRS[spec.split] / spec.file_name
        if not cv2.imwrite(str(path), np.ascontiguousarray(out.image[..., ::-1]), params):
            raise OSError(f"could not write {path}")
        write_pose_file(out_dir / POSES_DIR / (path.stem + ".txt"), out.keypoints, out.visible)
        images[spec.file_name] = _image_record(spec, out, st)
        if progress is not None:
            progress(i + 1, len(specs))

    id_pids = sorted({s.pid for s in specs if s.kind == "person"})
    counts = {split: sum(1 for s in specs if s.split == split) for split in SPLIT_DIRS}
    counts.update({
        "train_ids": preset.num_train_ids, "test_ids": preset.num_test_ids,
        "distractors": sum(1 for s in specs if s.pid == 0), "junk": sum(1 for s in specs if s.pid == -1),
    })
    meta = _meta(domain, preset, seed, height, width)
    meta["counts"] = counts
    meta["cameras"] = {str(c): {"gains": [round(g, 4) for g in cam.gains], "blur": round(cam.blur, 3),
                                "noise": round(cam.noise, 3), "lowres": cam.lowres}
                       for c, cam in ctx.cameras.items()}
    annotations = {
        "meta": meta,
        "identities": {str(p): ctx.identity(p, STREAM_IDENTITY).to_dict() for p in id_pids},
        "images": images,
    }
    with open(out_dir / ANNOTATIONS_FILE, "w", encoding="utf-8") as f:
        json.dump(annotations, f, sort_keys=True, separators=(",", ":"))
    # Written last: its presence marks a complete dataset.
    with open(out_dir / META_FILE, "w", encoding="utf-8") as f:
        json.dump(meta, f, sort_keys=True, indent=1)
    return counts


def _meta(domain: Domain, preset: Preset, seed: int, height: int, width: int) -> Dict[str, object]:
    return {
        "generator": "fastreid_gan.data.synthetic", "version": GENERATOR_VERSION, "domain": domain.name,
        "preset": preset.name, "seed": seed, "height": height, "width": width, "num_cams": domain.num_cams,
        "keypoint_names": list(KEYPOINT_NAMES),
        "keypoint_format": "annotations: [x, y, v] pixels, v=1 visible; poses/<stem>.txt: 'y x' per line, "
                           "'-1 -1' invisible",
    }


def default_folder(domain: str, preset: str) -> str:
    """``synthetic-<domain>`` for the default ``small`` preset, ``synthetic-<domain>-<preset>`` otherwise."""
    base = get_domain(domain).folder
    return base if preset == "small" else f"{base}-{preset}"


def read_meta(dataset_dir: PathLike) -> Optional[Dict[str, object]]:
    """The generation parameters of a synthetic dataset folder, or None if it has none."""
    path = Path(dataset_dir) / META_FILE
    if not path.is_file():
        return None
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def write_dataset(root: PathLike, domain: str = "market", preset: str = "small", *, folder: Optional[str] = None,
                  height: Optional[int] = None, width: Optional[int] = None, seed: int = 0,
                  overwrite: bool = False, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Generate a dataset into ``<root>/<folder>`` and return that path.

    ``folder`` defaults to :func:`default_folder`; any name works (e.g. ``Market-1501-v15.09.15`` to be read by
    fastreid's stock ``Market1501``).  ``height``/``width`` default to the preset's (128 x 64).  Raises
    ``FileExistsError`` if the folder exists, unless ``overwrite``.  If another process finishes the same
    folder first, its copy is kept and this one discarded.
    """
    dom = get_domain(domain)
    pre = get_preset(preset)
    height = pre.height if height is None else int(height)
    width = pre.width if width is None else int(width)
    if height < 32 or width < 16:
        raise ValueError(f"image size {height}x{width} is too small (minimum 32x16)")
    root_path = Path(root)
    final = root_path / (folder or default_folder(dom.name, pre.name))
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"{final} already exists (pass overwrite=True / --overwrite to replace it)")
        shutil.rmtree(final)
    root_path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root_path))
    try:
        _write_into(tmp, dom, pre, seed, height, width, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if read_meta(final) is None:
                raise
            logger.info("%s was generated by another process meanwhile; keeping that copy", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_dataset(root: PathLike, domain: str = "market", preset: str = "small", *, folder: Optional[str] = None,
                   height: Optional[int] = None, width: Optional[int] = None, seed: int = 0) -> Path:
    """Return ``<root>/<folder>``, generating it first (with a log line) if it does not exist.

    An existing folder generated with other parameters raises ``ValueError`` rather than being silently used.
    """
    dom = get_domain(domain)
    pre = get_preset(preset)
    height = pre.height if height is None else int(height)
    width = pre.width if width is None else int(width)
    final = Path(root) / (folder or default_folder(dom.name, pre.name))
    if final.exists():
        meta = read_meta(final)
        if meta is not None:
            wanted = _meta(dom, pre, seed, height, width)
            keys = ("version", "domain", "preset", "seed", "height", "width")
            diff = {k: (meta.get(k), wanted[k]) for k in keys if meta.get(k) != wanted[k]}
            if diff:
                found = ", ".join(f"{k}={v[0]!r} (wanted {v[1]!r})" for k, v in diff.items())
                raise ValueError(f"{final} holds a synthetic dataset generated with {found}; delete it or use "
                                 f"another folder")
        return final
    logger.info("Synthetic %s dataset not found at %s: generating preset %r (%dx%d, seed %d)...",
                dom.name, final, pre.name, height, width, seed)
    start = time.perf_counter()
    path = write_dataset(root, dom.name, pre.name, folder=final.name, height=height, width=width, seed=seed)
    meta = read_meta(path) or {}
    logger.info("Generated %s in %.1f s: %s", path, time.perf_counter() - start, meta.get("counts"))
    return path

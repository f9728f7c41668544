"""Keypoint files for images that have none: MediaPipe BlazePose run over the images, its 33 landmarks mapped
to OpenPose COCO-18 and written in FD-GAN's format (:mod:`fastreid_gan.data.pose_files`).

The estimator's weights ship in a registry package: mediapipe 0.10.14's wheel carries
``pose_landmark_full.tflite`` (the legacy ``mediapipe.solutions.pose`` API, ``model_complexity=1``; the lite and
heavy models are downloaded at run time, so they are not offered).  mediapipe runs beside NumPy 2.x (checked
with 2.4.6), but installing it next to this project downgrades protobuf (mediapipe wants ``<5``, tensorboard
2.21 wants ``>=6.31``) and adds ``opencv-contrib-python`` beside ``opencv-python-headless``.  So it can also run
in a separate small environment: :class:`MediaPipeEstimator` with ``python=`` starts this file there as a worker
(``python pose_estimation.py --worker``) that only needs numpy, opencv and mediapipe.

This module therefore imports only numpy at load time: mediapipe, cv2, tqdm and the pose-file writer (which
pulls in fastreid through ``fastreid_gan``) are imported where they are used.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

__all__ = ["COCO18_FROM_BLAZEPOSE", "MEDIAPIPE_VERSION", "MediaPipeEstimator", "PoseEstimator",
           "PoseEstimatorUnavailableError", "blazepose_to_coco18", "estimate_dataset", "unavailable_advice"]

PathLike = Union[str, "os.PathLike[str]"]
Estimate = Tuple[np.ndarray, np.ndarray]

MEDIAPIPE_VERSION = "0.10.14"
NUM_BLAZEPOSE = 33
# COCO-18 joint (fdgan.pose.COCO18_JOINTS order) -> BlazePose landmark.  Left/right are the person's own in both
# (BlazePose 11 LEFT_SHOULDER is COCO-18 l_shoulder).  The neck has no landmark: midpoint of the shoulders.
COCO18_FROM_BLAZEPOSE: Tuple[Tuple[str, Optional[int]], ...] = (
    ("nose", 0), ("neck", None), ("r_shoulder", 12), ("r_elbow", 14), ("r_wrist", 16), ("l_shoulder", 11),
    ("l_elbow", 13), ("l_wrist", 15), ("r_hip", 24), ("r_knee", 26), ("r_ankle", 28), ("l_hip", 23),
    ("l_knee", 25), ("l_ankle", 27), ("r_eye", 5), ("l_eye", 2), ("r_ear", 8), ("l_ear", 7))
NECK_FROM_BLAZEPOSE = (11, 12)
_NECK = 1
_SHOULDERS = (2, 5)  # r_shoulder, l_shoulder in COCO-18

# The worker's answers are the stdout lines with this prefix, so stray prints by libraries cannot be misread.
_WORKER_TAG = "@@fdgan-pose "


class PoseEstimatorUnavailableError(RuntimeError):
    """The pose estimator cannot be imported or cannot run; the message says what was tried and the fixes."""


class PoseEstimator(Protocol):
    """What :func:`estimate_dataset` needs: ``estimate(path)`` -> ``(keypoints (18, 2) x, y in the image's
    pixels, visible (18,) bool)``, or ``None`` when no person is found."""

    def estimate(self, image_path: str) -> Optional[Estimate]:
        ...


def unavailable_advice(tried: str, cause: str) -> str:
    """The message of :class:`PoseEstimatorUnavailableError`: what was tried, why it failed, and the routes."""
    return (
        f"MediaPipe pose estimation is unavailable: {cause}\n"
        f"Tried: {tried}.\n"
        f"Ways to get keypoint files:\n"
        f"  1. Install mediapipe into this environment: pip install \".[pose]\" (mediapipe=={MEDIAPIPE_VERSION}, whose "
        f"wheel ships the BlazePose weights; it runs with NumPy 2.x, but it downgrades protobuf to 4.x (and so "
        f"tensorboard to 2.20) and adds opencv-contrib-python beside opencv-python-headless).\n"
        f"  2. Or keep it in a separate environment (Python 3.9-3.12: mediapipe {MEDIAPIPE_VERSION} has no wheel for "
        f"3.13) and pass its python with --mediapipe-python:\n"
        f"       python3.11 -m venv ~/.venvs/mediapipe && ~/.venvs/mediapipe/bin/pip install "
        f"mediapipe=={MEDIAPIPE_VERSION}\n"
        f"       python projects/FDGAN/tools/estimate_poses.py ... --mediapipe-python ~/.venvs/mediapipe/bin/python\n"
        f"     (only numpy, opencv and mediapipe run there; if NumPy 2 ever fails there, add 'numpy<2').\n"
        f"  3. Or use any OpenPose COCO-18 model and write one file per image, <dataset>/poses/<image stem>.txt: 18 "
        f"lines 'y x' in the original image's pixels, OpenPose COCO-18 joint order, '-1 -1' for a missing joint. "
        f"FD-GAN's authors used a PyTorch OpenPose port with the COCO model, scales 0.5/1/1.5/2 x 368/H, and the "
        f"first (top-most) peak of each joint's heat-map.")


def blazepose_to_coco18(landmarks: np.ndarray, width: int, height: int,
                        min_visibility: float = 0.5) -> Estimate:
    """COCO-18 ``(keypoints (18, 2) x, y pixels, visible (18,) bool)`` from BlazePose ``landmarks`` (33, 4):
    ``x, y`` normalised to the image's width/height, ``z``, ``visibility``.

    A joint is missing when its visibility is below ``min_visibility`` or it lies outside the image (BlazePose
    extrapolates joints beyond the crop); the neck is the shoulders' midpoint when both are present.  Missing
    joints get ``(-1, -1)``.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (NUM_BLAZEPOSE, 4):
        raise ValueError(f"landmarks must be ({NUM_BLAZEPOSE}, 4) x, y, z, visibility (BlazePose); got shape "
                         f"{landmarks.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got width={width}, height={height}")
    points = landmarks[:, :2] * np.array([width, height], dtype=np.float64)
    inside = ((points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
              & np.isfinite(points).all(axis=1))
    present = inside & (landmarks[:, 3] >= min_visibility)

    keypoints = np.full((len(COCO18_FROM_BLAZEPOSE), 2), -1.0)
    visible = np.zeros(len(COCO18_FROM_BLAZEPOSE), dtype=bool)
    for joint, (_, source) in enumerate(COCO18_FROM_BLAZEPOSE):
        if source is not None and present[source]:
            keypoints[joint], visible[joint] = points[source], True
    if visible[list(_SHOULDERS)].all():
        keypoints[_NECK], visible[_NECK] = keypoints[list(_SHOULDERS)].mean(axis=0), True
    return keypoints, visible


# ---- MediaPipe backends: both answer landmarks(path) -> (landmarks (33, 4) or None, (height, width)) ----

def _read_rgb(image_path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {image_path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _new_pose(min_detection_confidence: float) -> Any:
    import mediapipe as mp

    # static_image_mode: every crop is its own picture, no tracking between them; model_complexity=1 is the
    # full model, the only one whose weights are inside the wheel.
    return mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                  min_detection_confidence=min_detection_confidence)


def _landmarks_of(pose: Any, rgb: np.ndarray) -> Optional[np.ndarray]:
    result = pose.process(rgb)
    if result.pose_landmarks is None:
        return None
    return np.array([[p.x, p.y, p.z, p.visibility] for p in result.pose_landmarks.landmark], dtype=np.float64)


class _InProcess:
    """mediapipe imported into this interpreter."""

    def __init__(self, min_detection_confidence: float) -> None:
        tried = f"importing mediapipe into this Python ({sys.executable})"
        try:
            import mediapipe as mp
        except ImportError as e:
            raise PoseEstimatorUnavailableError(unavailable_advice(tried, f"{type(e).__name__}: {e}")) from e
        self.description = f"mediapipe {getattr(mp, '__version__', '?')} in this Python, NumPy {np.__version__}"
        try:
            self._pose = _new_pose(min_detection_confidence)
        except Exception as e:  # a broken install or binary mismatch fails here, not at import
            raise PoseEstimatorUnavailableError(unavailable_advice(
                f"{tried}: {self.description}", f"creating mediapipe.solutions.pose.Pose failed: "
                f"{type(e).__name__}: {e}")) from e

    def landmarks(self, image_path: str) -> Tuple[Optional[np.ndarray], Tuple[int, int]]:
        rgb = _read_rgb(image_path)
        return _landmarks_of(self._pose, rgb), rgb.shape[:2]

    def close(self) -> None:
        self._pose.close()


class _Worker:
    """This file run as ``--worker`` by another Python (a separate environment with mediapipe): one image path
    per stdin line, one tagged JSON answer per stdout line."""

    def __init__(self, python: str, min_detection_confidence: float) -> None:
        self._tried = f"running the mediapipe worker with {python}"
        # mediapipe's logs go to stderr; a file (not a pipe) cannot fill up and block the worker
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        # PYTHONSAFEPATH: the script's folder (this package, with modules named config, pose ...) stays off
        # the worker's sys.path
        env = dict(os.environ, PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1")
        try:
            self._proc = subprocess.Popen(
                [python, osp.abspath(__file__), "--worker", "--min-detection-confidence",
                 repr(float(min_detection_confidence))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        except OSError as e:
            self._stderr.close()
            raise PoseEstimatorUnavailableError(unavailable_advice(self._tried, f"cannot start it: {e}")) from e
        try:
            hello = self._answer()
            if "error" in hello:
                raise PoseEstimatorUnavailableError(unavailable_advice(self._tried, hello["error"]))
        except BaseException:
            self.close()
            raise
        self.description = (f"mediapipe {hello.get('mediapipe', '?')} in {python}, NumPy "
                            f"{hello.get('numpy', '?')}")

    def _stderr_tail(self, chars: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-chars:].strip()

    def _answer(self) -> Dict[str, Any]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith(_WORKER_TAG):
                return json.loads(line[len(_WORKER_TAG):])
        self._proc.wait()
        raise PoseEstimatorUnavailableError(unavailable_advice(
            self._tried, f"the worker exited (code {self._proc.returncode}) without answering; its stderr "
            f"ends with:\n{self._stderr_tail() or '(nothing)'}"))

    def landmarks(self, image_path: str) -> Tuple[Optional[np.ndarray], Tuple[int, int]]:
        assert self._proc.stdin is not None
        if "\n" in image_path:
            raise ValueError(f"image path contains a newline: {image_path!r}")
        try:
            self._proc.stdin.write(osp.abspath(image_path) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died: _answer reports why
        answer = self._answer()
        if "error" in answer:
            raise OSError(answer["error"])
        found = answer["landmarks"]
        return (None if found is None else np.asarray(found, dtype=np.float64)), (answer["height"], answer["width"])

    def close(self) -> None:
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]  # end of input: the worker exits
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()


class MediaPipeEstimator:
    """MediaPipe BlazePose (full model) as a :class:`PoseEstimator`.

    ``python``: run mediapipe in that interpreter (a separate environment) instead of this one.  Raises
    :class:`PoseEstimatorUnavailableError` at construction when mediapipe cannot be imported or run, so nothing
    is written before that is known.
    """

    def __init__(self, min_visibility: float = 0.5, min_detection_confidence: float = 0.5,
                 python: Optional[str] = None) -> None:
        self.min_visibility = float(min_visibility)
        self._backend = (_InProcess(min_detection_confidence) if python is None
                         else _Worker(python, min_detection_confidence))
        self.description = f"BlazePose full ({self._backend.description})"

    def landmarks(self, image_path: str) -> Tuple[Optional[np.ndarray], Tuple[int, int]]:
        """BlazePose's (33, 4) normalised landmarks (``None``: no person) and the image's ``(height, width)``."""
        return self._backend.landmarks(os.fspath(image_path))

    def estimate(self, image_path: str) -> Optional[Estimate]:
        """COCO-18 ``(keypoints, visible)`` of the person in the image, ``None`` when there is none."""
        found, (height, width) = self.landmarks(image_path)
        if found is None:
            return None
        return blazepose_to_coco18(found, width, height, self.min_visibility)

    def close(self) -> None:
        """Release mediapipe (ends the worker)."""
        self._backend.close()

    def __enter__(self) -> "MediaPipeEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- writing a dataset's keypoint files ----

def _write_atomically(path: str, keypoints: np.ndarray, visible: np.ndarray) -> None:
    # Imported here: fastreid_gan pulls in fastreid and torch, which the worker environment does not have.
    from fastreid_gan.data.pose_files import write_pose_file

    folder = osp.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + osp.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write_pose_file(tmp, keypoints, visible)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a partial one
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="img", desc="poses", dynamic_ncols=True)


def estimate_dataset(image_paths: Iterable[PathLike], estimator: PoseEstimator, pose_dir: str = "",
                     overwrite: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Write the keypoint file of every image (:func:`~fastreid_gan.data.pose_files.pose_file_for`: under
    ``pose_dir``, else ``poses/`` beside the image's folder) and return what was done.

    Existing files are kept unless ``overwrite`` (so an interrupted run resumes).  An image without a person
    gets a file of 18 ``-1 -1`` lines and is counted in ``no_person``.  Each file is written to a temporary
    name and renamed, so an error or interruption leaves no partial file.

    Returns ``{"images", "written", "skipped", "no_person", "no_person_paths", "joints_found"}``:
    ``joints_found`` is the mean number of joints found per written image with a person.

    Raises ``ValueError`` before writing anything when two images would share one keypoint file (same stem
    under one ``pose_dir``).
    """
    from fastreid_gan.data.pose_files import pose_file_for

    paths: List[str] = list(dict.fromkeys(os.fspath(p) for p in image_paths))
    targets: Dict[str, str] = {}
    for path in paths:
        target = pose_file_for(path, pose_dir)
        if target in targets:
            raise ValueError(f"{targets[target]} and {path} would both write {target}: their names share the stem; "
                             f"run those folders separately, each with its own --pose-dir")
        targets[target] = path

    stats: Dict[str, Any] = {"images": len(paths), "written": 0, "skipped": 0, "no_person": 0,
                             "no_person_paths": []}
    joints = 0
    none_found = (np.full((len(COCO18_FROM_BLAZEPOSE), 2), -1.0), np.zeros(len(COCO18_FROM_BLAZEPOSE), bool))
    with _progress_bar(len(paths), progress) as bar:
        for target, path in targets.items():
            if not overwrite and osp.exists(target):
                stats["skipped"] += 1
                bar.update(1)
                continue
            found = estimator.estimate(path)
            if found is None:
                stats["no_person"] += 1
                stats["no_person_paths"].append(path)
                found = none_found
            else:
                joints += int(np.count_nonzero(found[1]))
            os.makedirs(osp.dirname(target) or ".", exist_ok=True)
            _write_atomically(target, found[0], found[1])
            stats["written"] += 1
            bar.update(1)
            bar.set_postfix(no_person=stats["no_person"], refresh=False)
    with_person = stats["written"] - stats["no_person"]
    stats["joints_found"] = joints / with_person if with_person else 0.0
    return stats


# ---- worker: `python pose_estimation.py --worker` in an environment with mediapipe (no torch needed) ----

def _say(message: Dict[str, Any]) -> None:
    sys.stdout.write(_WORKER_TAG + json.dumps(message) + "\n")
    sys.stdout.flush()


def _worker_main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="MediaPipe pose worker: image paths on stdin, landmarks out")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--min-detection-confidence", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        import cv2  # noqa: F401
        import mediapipe as mp

        pose = _new_pose(args.min_detection_confidence)
    except Exception as e:  # told to the parent, which raises PoseEstimatorUnavailableError with advice
        _say({"error": f"in {sys.executable} (NumPy {np.__version__}): {type(e).__name__}: {e}"})
        return 3
    _say({"ready": True, "mediapipe": getattr(mp, "__version__", "?"), "numpy": np.__version__})
    for line in sys.stdin:
        path = line.rstrip("\n")
        try:
            rgb = _read_rgb(path)
        except OSError as e:
            _say({"error": str(e)})
            continue
        found = _landmarks_of(pose, rgb)
        _say({"height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
              "landmarks": None if found is None else found.tolist()})
    pose.close()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))

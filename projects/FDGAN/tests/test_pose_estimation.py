"""Keypoint files for images without any (fdgan.pose_estimation, projects/FDGAN/tools/estimate_poses.py): the
BlazePose -> COCO-18 mapping, the writing of a dataset's files (skip, overwrite, no person, nothing partial),
the clear error without mediapipe, the worker protocol (against a stand-in mediapipe), and - where mediapipe is
installed - how well it finds the synthetic people."""
import importlib.util
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import fastreid_gan  # noqa: F401
from fastreid_gan.data import pose_files
from fastreid_gan.data.pose_files import pose_file_for, read_pose_file
from fdgan.pose import COCO18_JOINTS, COCO18_LEFT_RIGHT
from fdgan.pose_estimation import (COCO18_FROM_BLAZEPOSE, MediaPipeEstimator, PoseEstimatorUnavailableError,
                                   blazepose_to_coco18, estimate_dataset)

TOOL = Path(__file__).resolve().parents[1] / "tools" / "estimate_poses.py"
# MediaPipe's PoseLandmark enum, in index order (developers.google.com/mediapipe, pose landmarker)
BLAZEPOSE_NAMES = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE", "RIGHT_EYE_OUTER",
    "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY", "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX",
    "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE",
    "LEFT_HEEL", "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX")
J = {name: j for j, name in enumerate(COCO18_JOINTS)}


def load_tool():
    spec = importlib.util.spec_from_file_location("estimate_poses_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_made_landmarks() -> np.ndarray:
    """33 landmarks at distinct normalised positions inside the image, all clearly visible."""
    lm = np.zeros((33, 4))
    lm[:, 0] = 0.1 + 0.8 * np.arange(33) / 33
    lm[:, 1] = 0.9 - 0.8 * np.arange(33) / 33
    lm[:, 3] = 0.95
    return lm


# ---- the mapping ----

def test_the_mapping_covers_coco18_in_order_with_the_persons_own_left_and_right():
    assert tuple(name for name, _ in COCO18_FROM_BLAZEPOSE) == COCO18_JOINTS
    for name, source in COCO18_FROM_BLAZEPOSE:
        if name == "neck":
            assert source is None
            continue
        side, _, part = name.rpartition("_") if name != "nose" else ("", "", "nose")
        expected = {"r": "RIGHT_", "l": "LEFT_", "": ""}[side] + part.upper()
        assert BLAZEPOSE_NAMES[source] == expected, name


def test_blazepose_landmarks_become_coco18_pixels_with_missing_joints_and_the_neck():
    width, height = 64, 128
    lm = hand_made_landmarks()
    lm[16, 3] = 0.3           # right wrist: not visible enough
    lm[27, 1] = 1.02          # left ankle: below the image
    lm[7, 0] = -0.01          # left ear: left of the image
    lm[8, 0] = 1.0            # right ear: exactly on the right border, outside pixel columns 0..63
    lm[0, 3] = 0.5            # nose: exactly at the threshold counts as visible
    keypoints, visible = blazepose_to_coco18(lm, width, height, min_visibility=0.5)
    assert keypoints.shape == (18, 2) and visible.shape == (18,) and visible.dtype == bool

    missing = {"r_wrist", "l_ankle", "l_ear", "r_ear"}
    assert {COCO18_JOINTS[j] for j in np.flatnonzero(~visible)} == missing
    for name, source in COCO18_FROM_BLAZEPOSE:
        j = J[name]
        if name in missing:
            assert tuple(keypoints[j]) == (-1, -1)
        elif source is not None:
            assert tuple(keypoints[j]) == pytest.approx((lm[source, 0] * width, lm[source, 1] * height))
    shoulders = np.array([lm[11, :2], lm[12, :2]]) * [width, height]
    assert tuple(keypoints[J["neck"]]) == pytest.approx(tuple(shoulders.mean(axis=0)))

    # a lower threshold keeps the right wrist; a higher one loses the nose (0.5)
    _, low = blazepose_to_coco18(lm, width, height, min_visibility=0.2)
    assert low[J["r_wrist"]]
    _, high = blazepose_to_coco18(lm, width, height, min_visibility=0.6)
    assert not high[J["nose"]] and high[J["l_shoulder"]]


def test_the_neck_needs_both_shoulders():
    lm = hand_made_landmarks()
    lm[12, 3] = 0.1  # right shoulder unsure
    keypoints, visible = blazepose_to_coco18(lm, 64, 128)
    assert not visible[J["neck"]] and not visible[J["r_shoulder"]] and visible[J["l_shoulder"]]
    assert tuple(keypoints[J["neck"]]) == (-1, -1)
    lm = hand_made_landmarks()
    lm[11, 1] = -0.2  # left shoulder above the crop
    _, visible = blazepose_to_coco18(lm, 64, 128)
    assert not visible[J["neck"]]


def test_malformed_landmarks_are_refused():
    with pytest.raises(ValueError, match=r"\(33, 4\) x, y, z, visibility"):
        blazepose_to_coco18(np.zeros((17, 3)), 64, 128)
    with pytest.raises(ValueError, match="image size must be positive"):
        blazepose_to_coco18(hand_made_landmarks(), 0, 128)


# ---- writing a dataset's files ----

class FakeEstimator:
    """Answers from a table: image stem -> (keypoints, visible), None (no person) or an exception to raise."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def estimate(self, image_path):
        self.calls.append(os.path.basename(image_path))
        answer = self.answers[Path(image_path).stem]
        if isinstance(answer, Exception):
            raise answer
        return answer


def person(offset: float):
    keypoints = np.stack([10.0 + offset + np.arange(18), 50.0 + offset + 2 * np.arange(18)], axis=1)  # x, y
    visible = np.ones(18, bool)
    visible[[J["l_ankle"], J["r_ear"]]] = False
    return keypoints, visible


def make_images(tmp_path, stems, folder="bounding_box_train"):
    images = tmp_path / "dataset" / folder
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem in stems:
        (images / f"{stem}.jpg").write_bytes(b"not read by the fake estimator")
        paths.append(str(images / f"{stem}.jpg"))
    return paths


def test_estimate_dataset_writes_readable_files_and_counts_images_without_a_person(tmp_path):
    paths = make_images(tmp_path, ["0001_c1s1_000001_00", "0001_c2s1_000002_00", "0002_c1s1_000003_00"])
    fake = FakeEstimator({"0001_c1s1_000001_00": person(0), "0001_c2s1_000002_00": None,
                          "0002_c1s1_000003_00": person(5)})
    stats = estimate_dataset(paths, fake, progress=False)
    assert stats["images"] == 3 and stats["written"] == 3 and stats["skipped"] == 0
    assert stats["no_person"] == 1 and stats["no_person_paths"] == [paths[1]]
    assert stats["joints_found"] == 16

    read = read_pose_file(pose_file_for(paths[0]))
    assert read.shape == (18, 2)
    keypoints, visible = person(0)
    for j in range(18):
        expected = (keypoints[j, 1], keypoints[j, 0]) if visible[j] else (-1, -1)
        assert tuple(read[j]) == pytest.approx(expected)
    assert (read_pose_file(pose_file_for(paths[1])) == -1).all()
    assert pose_file_for(paths[0]) == str(tmp_path / "dataset" / "poses" / "0001_c1s1_000001_00.txt")


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    paths = make_images(tmp_path, ["0001_c1s1_000001_00", "0002_c1s1_000002_00"])
    estimate_dataset(paths[:1], FakeEstimator({"0001_c1s1_000001_00": person(0)}), progress=False)

    fake = FakeEstimator({"0001_c1s1_000001_00": person(7), "0002_c1s1_000002_00": person(1)})
    stats = estimate_dataset(paths, fake, progress=False)
    assert (stats["written"], stats["skipped"]) == (1, 1)
    assert fake.calls == ["0002_c1s1_000002_00.jpg"]
    assert read_pose_file(pose_file_for(paths[0]))[0, 1] == pytest.approx(10.0)  # the first run's x

    stats = estimate_dataset(paths, fake, overwrite=True, progress=False)
    assert (stats["written"], stats["skipped"]) == (2, 0)
    assert read_pose_file(pose_file_for(paths[0]))[0, 1] == pytest.approx(17.0)


def test_an_estimator_error_leaves_no_partial_file(tmp_path, monkeypatch):
    paths = make_images(tmp_path, ["0001_c1s1_000001_00", "0002_c1s1_000002_00"])
    poses = tmp_path / "dataset" / "poses"
    fake = FakeEstimator({"0001_c1s1_000001_00": person(0), "0002_c1s1_000002_00": RuntimeError("model crashed")})
    with pytest.raises(RuntimeError, match="model crashed"):
        estimate_dataset(paths, fake, progress=False)
    assert sorted(os.listdir(poses)) == ["0001_c1s1_000001_00.txt"]  # the finished one, no temporary files

    # a failure half-way through replacing an existing file keeps the old content whole
    before = (poses / "0001_c1s1_000001_00.txt").read_text()

    def write_half(path, keypoints, visible):
        with open(path, "w") as f:
            f.write("1 2\n")
        raise OSError("disk full")

    monkeypatch.setattr(pose_files, "write_pose_file", write_half)
    fake = FakeEstimator({"0001_c1s1_000001_00": person(3)})
    with pytest.raises(OSError, match="disk full"):
        estimate_dataset(paths[:1], fake, overwrite=True, progress=False)
    assert (poses / "0001_c1s1_000001_00.txt").read_text() == before
    assert sorted(os.listdir(poses)) == ["0001_c1s1_000001_00.txt"]


def test_images_that_would_share_a_file_are_refused_before_writing(tmp_path):
    first = make_images(tmp_path, ["0001_c1s1_000001_00"], folder="a")
    second = make_images(tmp_path, ["0001_c1s1_000001_00"], folder="b")
    fake = FakeEstimator({"0001_c1s1_000001_00": person(0)})
    with pytest.raises(ValueError, match="would both write .*0001_c1s1_000001_00.txt"):
        estimate_dataset(first + second, fake, pose_dir=str(tmp_path / "poses"), progress=False)
    assert fake.calls == [] and not (tmp_path / "poses").exists()


# ---- without mediapipe: a clear error, nothing written ----

def test_the_tool_explains_what_to_do_when_mediapipe_is_missing(tmp_path, monkeypatch, capsys):
    paths = make_images(tmp_path, ["0001_c1s1_000001_00"])
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` now raises ImportError
    tool = load_tool()
    assert tool.main(["--images", str(Path(paths[0]).parent), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "MediaPipe pose estimation is unavailable" in err and "importing mediapipe" in err
    assert 'pip install ".[pose]"' in err and "mediapipe==0.10.14" in err and "--mediapipe-python" in err
    assert "OpenPose COCO-18" in err and "18 lines 'y x'" in err and "0.5/1/1.5/2 x 368/H" in err
    assert not (tmp_path / "dataset" / "poses").exists()

    with pytest.raises(PoseEstimatorUnavailableError, match="pip install"):
        MediaPipeEstimator()


def test_a_worker_python_without_mediapipe_is_named(tmp_path, monkeypatch, capsys):
    paths = make_images(tmp_path, ["0001_c1s1_000001_00"])
    broken = tmp_path / "broken" / "mediapipe"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('simulated: built for another NumPy')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))  # the worker imports this mediapipe
    tool = load_tool()
    code = tool.main(["--images", paths[0], "--mediapipe-python", sys.executable, "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert f"running the mediapipe worker with {sys.executable}" in err
    assert "simulated: built for another NumPy" in err and "OpenPose" in err
    assert not (tmp_path / "dataset" / "poses").exists()
    assert tool.main(["--images", paths[0], "--mediapipe-python", str(tmp_path / "no-python")]) == 3
    assert "cannot start it" in capsys.readouterr().err


# ---- the mediapipe route, against a stand-in mediapipe (no weights needed) ----

FAKE_MEDIAPIPE = {
    "__init__.py": "__version__ = 'stand-in'\nfrom . import solutions\n",
    "solutions/__init__.py": "from . import pose\n",
    "solutions/pose.py": """
from types import SimpleNamespace


class Pose:
    def __init__(self, **options):
        assert options["static_image_mode"] and options["model_complexity"] == 1

    def process(self, rgb):
        if rgb.mean() < 10:  # a dark image holds nobody
            return SimpleNamespace(pose_landmarks=None)
        red_first = float(rgb[..., 0].mean() > rgb[..., 2].mean())  # proves the image arrives as RGB
        points = [SimpleNamespace(x=(i + 1) / 40, y=(i + 1) / 40, z=0.0, visibility=0.3 if i == 0 else red_first)
                  for i in range(33)]
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=points))

    def close(self):
        pass
""",
}


def _mediapipe_modules():
    return {k: v for k, v in sys.modules.items() if k == "mediapipe" or k.startswith("mediapipe.")}


@pytest.fixture()
def stand_in_mediapipe(tmp_path):
    """A folder holding a stand-in ``mediapipe``; a real one imported before is hidden meanwhile, and the
    stand-in is forgotten afterwards (so later tests never meet it)."""
    root = tmp_path / "stand_in"
    for name, text in FAKE_MEDIAPIPE.items():
        (root / "mediapipe" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "mediapipe" / name).write_text(text)
    saved = _mediapipe_modules()
    for name in saved:
        del sys.modules[name]
    yield root
    for name in _mediapipe_modules():
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.mark.parametrize("route", ["in-process", "worker"])
def test_the_mediapipe_route_writes_mapped_keypoints(tmp_path, monkeypatch, stand_in_mediapipe, route, capsys):
    images = tmp_path / "dataset" / "query"
    images.mkdir(parents=True)
    red = np.zeros((40, 20, 3), np.uint8)
    red[..., 2] = 200  # BGR: a red picture
    cv2.imwrite(str(images / "0001_c1s1_000001_00.png"), red)
    cv2.imwrite(str(images / "0002_c1s1_000002_00.png"), np.zeros((40, 20, 3), np.uint8))
    args = ["--images", str(images), "--no-progress", "--pose-dir", str(tmp_path / "out")]
    if route == "worker":
        monkeypatch.setenv("PYTHONPATH", str(stand_in_mediapipe))
        args += ["--mediapipe-python", sys.executable]
    else:
        monkeypatch.syspath_prepend(str(stand_in_mediapipe))
    assert load_tool().main(args) == 0
    out = capsys.readouterr().out
    assert "mediapipe stand-in" in out and "no person found in 1 of 2 images" in out
    assert "0002_c1s1_000002_00.png" in out

    read = read_pose_file(tmp_path / "out" / "0001_c1s1_000001_00.txt")
    for name, source in COCO18_FROM_BLAZEPOSE:
        if name == "nose":  # visibility 0.3
            assert tuple(read[J[name]]) == (-1, -1)
        elif source is not None:
            # landmark i sits at ((i+1)/40 of width, (i+1)/40 of height); the file holds y x of the 40x20 image
            assert tuple(read[J[name]]) == pytest.approx(((source + 1), (source + 1) / 2), abs=0.051)
    assert tuple(read[J["neck"]]) == pytest.approx((12.5, 6.25), abs=0.051)
    assert (read_pose_file(tmp_path / "out" / "0002_c1s1_000002_00.txt") == -1).all()


@pytest.mark.parametrize("route", ["in-process", "worker"])
def test_an_unreadable_image_is_named_and_the_run_can_continue(tmp_path, monkeypatch, stand_in_mediapipe, route,
                                                             capsys):
    images = tmp_path / "dataset" / "query"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "0001_c1s1_000001_00.png"), np.full((40, 20, 3), 200, np.uint8))
    (images / "0002_c1s1_000002_00.jpg").write_bytes(b"truncated")
    args = ["--images", str(images), "--no-progress"]
    if route == "worker":
        monkeypatch.setenv("PYTHONPATH", str(stand_in_mediapipe))
        args += ["--mediapipe-python", sys.executable]
    else:
        monkeypatch.syspath_prepend(str(stand_in_mediapipe))
    assert load_tool().main(args) == 1
    err = capsys.readouterr().err
    assert "cannot read image" in err and "0002_c1s1_000002_00.jpg" in err and "run again to continue" in err
    assert sorted(os.listdir(tmp_path / "dataset" / "poses")) == ["0001_c1s1_000001_00.txt"]


# ---- real mediapipe on the synthetic people (only where mediapipe is installed) ----

def real_mediapipe_routes():
    routes = [pytest.param(None, id="in-process")]
    python = os.environ.get("FDGAN_MEDIAPIPE_PYTHON")
    routes.append(pytest.param(python, id="worker", marks=pytest.mark.skipif(
        not python, reason="set FDGAN_MEDIAPIPE_PYTHON to a python with mediapipe to run mediapipe as a worker")))
    return routes


@pytest.mark.parametrize("python", real_mediapipe_routes())
def test_mediapipe_on_synthetic_people(datasets_root, tmp_path, python):
    """Measured with mediapipe 0.10.14 on SyntheticMarketTiny's 76 training crops (128 x 64, drawn figures):
    a person is found in 30 (39%), with a median joint error of 3.7% of the image height over 303 joints
    (8.1% with left and right swapped).  The bounds below are loose versions of those numbers."""
    if python is None:
        pytest.importorskip("mediapipe")
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid_gan.data.synthetic import load_annotations

    dataset = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(datasets_root))
    paths = [item[0] for item in dataset.train]
    annotations = load_annotations(Path(paths[0]).parents[1])["images"]
    with MediaPipeEstimator(python=python) as estimator:
        stats = estimate_dataset(paths, estimator, pose_dir=str(tmp_path / "poses"), progress=False)

    height = cv2.imread(paths[0]).shape[0]
    errors, swapped_errors = [], []
    swap = np.arange(18)
    for left, right in COCO18_LEFT_RIGHT:
        swap[[left, right]] = swap[[right, left]]
    for path in paths:
        found = read_pose_file(pose_file_for(path, str(tmp_path / "poses")))[:, ::-1]  # (x, y)
        truth = np.asarray(annotations[os.path.basename(path)]["keypoints"], float)
        both = (found[:, 0] >= 0) & (truth[:, 2] > 0)
        errors += list(np.linalg.norm(found[both] - truth[both, :2], axis=1) / height)
        both_swapped = (found[swap, 0] >= 0) & (truth[:, 2] > 0)
        swapped_errors += list(np.linalg.norm(found[swap][both_swapped] - truth[both_swapped, :2], axis=1) / height)
    detected = 1 - stats["no_person"] / stats["images"]
    median = float(np.median(errors))
    print(f"mediapipe on {stats['images']} synthetic crops: person found in {detected:.0%}, "
          f"{len(errors)} joints compared, median error {median:.3f} x height "
          f"(left/right swapped: {np.median(swapped_errors):.3f})")
    assert stats["written"] == stats["images"] == len(paths)
    assert detected >= 0.2
    assert median < 0.1
    assert median < float(np.median(swapped_errors))

"""Keypoint files: found beside a dataset's images (the synthetic datasets write them), read into heat-maps,
and every malformed or missing file named with the format expected."""
import os
from pathlib import Path

import numpy as np
import pytest

import fastreid_gan  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY

from fastreid_gan.data.pose_files import PoseFileError, PoseFileMissingError, pose_file_for, read_pose_file
from fastreid_gan.data.synthetic import load_annotations
from fdgan.pose import image_keypoints, joint_heatmaps


def test_synthetic_keypoints_are_found_and_become_heatmaps_at_the_joints(datasets_root):
    dataset = DATASET_REGISTRY.get("SyntheticMarketTiny")(root=str(datasets_root))
    image_path = dataset.train[0][0]
    folder = Path(image_path).parents[1]
    annotations = load_annotations(folder)["images"][os.path.basename(image_path)]["keypoints"]
    meta = load_annotations(folder)["meta"]
    original = (meta["height"], meta["width"])
    assert pose_file_for(image_path) == str(folder / "poses" / (Path(image_path).stem + ".txt"))
    read = read_pose_file(pose_file_for(image_path))
    for (x, y, v), (ry, rx) in zip(annotations, read):
        if v:
            assert (ry, rx) == pytest.approx((y, x), abs=0.051)
        else:
            assert (ry, rx) == (-1, -1)
    keypoints = image_keypoints(image_path, original, (64, 32))
    maps = joint_heatmaps(keypoints, (64, 32), sigma=2.0)
    for joint, (y, x) in enumerate(keypoints):
        if y >= 0:
            assert np.unravel_index(maps[joint].argmax(), maps[joint].shape) == (y, x)
            assert (y, x) == (int(read[joint, 0] * 64 / original[0]), int(read[joint, 1] * 32 / original[1]))
        else:
            assert not maps[joint].any()
    # a configured folder instead of the one beside the images
    assert pose_file_for(image_path, "/data/poses") == f"/data/poses/{Path(image_path).stem}.txt"


@pytest.mark.parametrize("content, message", [
    ("1 2\n" * 17, "17 keypoint lines, expected 18"),
    ("1 2\n" * 17 + "nose 3\n", "line 18: 'nose 3' is not two numbers"),
    ("1 2\n" * 17 + "1 2 3\n", "line 18: '1 2 3' is not two numbers"),
    ("1 2\n" * 17 + "-5 3\n", "line 18: '-5 3' has a negative coordinate; a missing joint is written '-1 -1'"),
])
def test_a_malformed_keypoint_file_is_named(tmp_path, content, message):
    path = tmp_path / "0001_c1s1_000001_00.txt"
    path.write_text(content)
    with pytest.raises(PoseFileError, match=message) as info:
        read_pose_file(path)
    assert str(path) in str(info.value) and "18 lines 'y x'" in str(info.value)


def test_a_missing_or_binary_keypoint_file_is_named(tmp_path):
    image = tmp_path / "dataset" / "bounding_box_train" / "0001_c1s1_000001_00.jpg"
    with pytest.raises(PoseFileMissingError, match=r"Keypoint file not found: .*dataset/poses/0001_c1s1_000001_00.txt"
                                                   r".*MODEL.FDGAN.POSE.DIR"):
        image_keypoints(str(image), (128, 64), (64, 32))
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(PoseFileError, match="not a text file"):
        read_pose_file(binary)

"""FD-GAN's training pairs: the published 1 positive + 3 negatives per anchor, shared targets for positive pairs,
erasing on the origins only, determinism, and keypoint errors before training starts."""
import random

import numpy as np
import pytest
import torch

import fastreid_gan  # noqa: F401
from fastreid_gan.config import get_cfg, merge_config
from fastreid_gan.data.build import build_train_set
from fastreid_gan.data.pose_files import PoseFileError, PoseFileMissingError, pose_file_for
from fdgan.pairs import PairBatchSampler, PosePairDataset, build_pair_loader
from fdgan.pose import augment_pose, joint_heatmaps

from test_fdgan import CONFIG, SMALL


def _cfg(*opts):
    return merge_config(get_cfg(), str(CONFIG), SMALL + ["MODEL.FDGAN.STAGE", "2", "SEED", "3"] + list(opts))


def test_sampler_gives_one_positive_then_three_negatives_per_anchor():
    sampler = PairBatchSampler(size=10, batch_size=8, seed=5, negatives=3)
    keys = sampler.keys(0) + sampler.keys(1)
    assert [slot for _, slot, _ in keys] == [0, 1, 2, 3] * 4
    anchors = [index for index, _, _ in keys]
    assert all(len(set(anchors[k:k + 4])) == 1 for k in range(0, 16, 4))  # consecutive pairs share the anchor
    assert len(set(anchors[::4])) == 4
    assert sampler.samples_per_pass == 40
    # a pure function of (seed, position): another sampler, or rank 1 of 2, agrees on the global stream
    assert PairBatchSampler(10, 8, 5).keys(1) == sampler.keys(1)
    rank1 = PairBatchSampler(10, 4, 5, rank=1, world_size=2)
    assert rank1.keys(0) == sampler.keys(0)[4:]
    assert PairBatchSampler(10, 8, 6).keys(0) != sampler.keys(0)


def test_pairs_targets_and_erasing(datasets_root):
    cfg = _cfg("INPUT.REA.ENABLED", "True", "INPUT.REA.PROB", "1.0")
    loader = build_pair_loader(cfg)
    dataset = loader.dataset
    keys = loader.batch_sampler.keys(0)
    pairs = [dataset[key] for key in keys]
    for (_, slot, _), pair in zip(keys, pairs):
        assert pair["images"].shape == (2, 3, 64, 32) and pair["target_poses"].shape == (2, 18, 64, 32)
        same_id = bool(pair["targets"][0] == pair["targets"][1])
        assert int(pair["same"]) == int(slot == 0) == int(same_id)
        if slot == 0:  # both branches generate the same target
            assert torch.equal(pair["target_images"][0], pair["target_images"][1])
            assert torch.equal(pair["target_poses"][0], pair["target_poses"][1])
        assert float(pair["target_poses"].max()) == pytest.approx(1.0)
    # erasing (probability 1 here) paints the origins, never the targets: a target is a resized (maybe mirrored)
    # training image, whose pixels come from the image itself
    erase_value = torch.tensor(cfg.INPUT.REA.VALUE).view(3, 1, 1)
    painted = lambda im: ((im - erase_value).abs().sum(0) < 1e-3).float().mean()  # noqa: E731
    assert all(painted(pair["images"][0]) > 0.01 for pair in pairs)
    assert all(painted(pair["target_images"][0]) < 0.01 for pair in pairs)
    # deterministic: the same key gives the same pair
    again = dataset[keys[1]]
    assert all(torch.equal(again[k], pairs[1][k]) for k in ("images", "target_images", "target_poses"))


def test_stage1_reads_no_keypoints(datasets_root):
    cfg = _cfg("MODEL.FDGAN.STAGE", "1")
    loader = build_pair_loader(cfg, with_targets=False)
    pair = loader.dataset[loader.batch_sampler.keys(0)[0]]
    assert "target_poses" not in pair and pair["images"].shape == (2, 3, 64, 32)


def test_missing_and_malformed_keypoints_are_named_before_training(datasets_root, tmp_path):
    cfg = _cfg()
    train_set = build_train_set(cfg)
    items = train_set.img_items
    pose_dir = tmp_path / "poses"
    pose_dir.mkdir()
    def copy_keypoints(item):
        source = pose_file_for(item[0])
        (pose_dir / source.rsplit("/", 1)[-1]).write_text(open(source).read())

    for item in items[1:]:  # every image but the first has a keypoint file in the configured folder
        copy_keypoints(item)
    with pytest.raises(PoseFileMissingError, match=items[0][0].rsplit("/", 1)[-1][:-4] + r".*POSE.ON_MISSING skip"):
        PosePairDataset(train_set, (64, 32), pose_dir=str(pose_dir))
    skipped = PosePairDataset(train_set, (64, 32), pose_dir=str(pose_dir), on_missing="skip")
    assert len(skipped) == len(items) - 1
    copy_keypoints(items[0])
    bad = pose_file_for(items[2][0], str(pose_dir))
    with open(bad, "w") as f:
        f.write("10 20\n" * 17)
    with pytest.raises(PoseFileError, match="17"):
        PosePairDataset(train_set, (64, 32), pose_dir=str(pose_dir), on_missing="error")


def test_pose_augmentation_draws_published_sigmas_and_drops_joints():
    keypoints = np.array([[10, 5]] * 18)
    rng = random.Random(0)
    sigmas = {augment_pose(keypoints, rng)[1] for _ in range(60)}
    assert sigmas == {4.0, 5.0, 6.0}  # published: an integer in [4, 6]
    continuous = [augment_pose(keypoints, rng, integer_sigma=False)[1] for _ in range(20)]
    assert all(4 <= s <= 6 for s in continuous) and len(set(continuous)) == 20
    dropped, _ = augment_pose(keypoints, rng, drop_joint_prob=1.0)
    assert (dropped < 0).all(axis=1).sum() == 1 and (keypoints >= 0).all()  # the input is not modified
    assert joint_heatmaps(dropped, (32, 16)).reshape(18, -1).max(1).tolist().count(0.0) == 1

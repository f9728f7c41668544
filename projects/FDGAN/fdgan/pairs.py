"""FD-GAN's training data: verification pairs with target images and target pose maps (paper Sec. 3.4, 4.1).

Pairs as published (open-reid's ``RandomPairSampler``, ``neg_pos_ratio`` 3): every anchor of a seeded shuffle
gives 1 positive pair (another image of its identity) and then ``MODEL.FDGAN.NEGATIVES_PER_POSITIVE`` negative
pairs (an image of another identity), consecutive in the stream, so a batch of 4k pairs holds k positives.  A
pass over the data is ``(1 + negatives) x N`` pairs.  ``SOLVER.IMS_PER_BATCH`` counts PAIRS for FD-GAN (the
published ``-b``).

Each pair ``(x1, x2)`` gets, per branch k, a target image y'_k (a random OTHER image of x_k's identity, resized
and mirrored with its keypoints, never erased) and y'_k's pose heat-maps; for a positive pair branch 2 takes
branch 1's target image and pose, so both branches generate the same target (what makes Eq. 5 meaningful).  The
origins x_k get the training transform (fastreid's ``INPUT.*`` without erasing) and then random erasing
(``INPUT.REA``) on the origins only.  Every draw comes from the pair's own seed: the stream is a pure function
of ``(SEED, pair position, rank)``, whatever the number of workers, so a resumed run continues it exactly.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fastreid.data.data_utils import read_image
from fastreid.utils import comm

from fastreid_gan.data.build import SeededInfiniteBatchSampler, build_train_set, _train_seed, _worker_init
from fastreid_gan.data.pairs import seeded_rng
from fastreid_gan.data.pose_files import PoseFileError, PoseFileMissingError, pose_file_for, read_pose_file

from .pose import augment_pose, flip_keypoints, joint_heatmaps, scale_keypoints

__all__ = ["PairBatchSampler", "PosePairDataset", "build_pair_loader"]

logger = logging.getLogger(__name__)


class PairBatchSampler(SeededInfiniteBatchSampler):
    """Batches of ``(anchor index, slot, pair seed)`` keys: pair position q of the global stream is slot
    ``q % (1 + negatives)`` (0 = the positive) of the anchor at position ``q // (1 + negatives)`` of the seeded
    shuffle of the training images.  ``batch_size`` is pairs per rank; ``size`` the training images."""

    def __init__(self, size: int, batch_size: int, seed: int, negatives: int = 3, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(size, batch_size, seed, rank, world_size)
        if negatives < 0:
            raise ValueError(f"MODEL.FDGAN.NEGATIVES_PER_POSITIVE must be >= 0, got {negatives}")
        self.pairs_per_anchor = 1 + int(negatives)

    @property
    def samples_per_pass(self) -> int:
        """Pairs in one pass over the images (the published epoch)."""
        return self.size * self.pairs_per_anchor

    def keys(self, batch: int) -> List[Tuple[int, int, int]]:  # type: ignore[override]
        first = (batch * self.world_size + self.rank) * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            anchor = position // self.pairs_per_anchor
            index = int(self._permutation(anchor // self.size)[anchor % self.size])
            seed = int(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
            keys.append((index, position % self.pairs_per_anchor, seed))
        return keys


class PosePairDataset(Dataset):
    """``dataset[(anchor, slot, seed)]`` -> one pair (see the module docstring).

    Fields: ``images`` (2, 3, H, W) the erased origins in 0..255, ``targets`` (2,) their identities, ``same``
    (1 when slot 0: a positive pair), ``img_paths`` the two origin paths and, with ``with_targets``,
    ``target_images`` (2, 3, H, W) in 0..255 and ``target_poses`` (2, J, H, W) in [0, 1].

    Keypoints of every image are read when the dataset is built: a missing or malformed file stops there, naming
    the file (``on_missing="error"``), or the image is left out and counted (``"skip"``).
    """

    def __init__(self, comm_dataset: Any, size: Sequence[int], *, with_targets: bool = True, pose_dir: str = "",
                 on_missing: str = "error", flip_prob: float = 0.5, swap_left_right: bool = True,
                 sigma_range: Sequence[float] = (4.0, 6.0), integer_sigma: bool = True,
                 drop_joint_prob: float = 0.0, erasing: Optional[T.RandomErasing] = None) -> None:
        if on_missing not in ("error", "skip"):
            raise ValueError(f"MODEL.FDGAN.POSE.ON_MISSING must be 'error' or 'skip', got {on_missing!r}")
        self.dataset = comm_dataset
        self.size = (int(size[0]), int(size[1]))
        self.with_targets = with_targets
        self.flip_prob = float(flip_prob)
        self.swap_left_right = swap_left_right
        self.sigma_range, self.integer_sigma = tuple(sigma_range), integer_sigma
        self.drop_joint_prob = float(drop_joint_prob)
        self.erasing = erasing
        self.target_transform = T.Compose([T.Resize(self.size, interpolation=T.InterpolationMode.BICUBIC)])
        items = list(comm_dataset.img_items)
        self.keypoints: Dict[int, np.ndarray] = {}
        if with_targets:
            kept = self._read_keypoints(items, pose_dir, on_missing)
        else:
            kept = list(range(len(items)))
        self.indices = kept  # training images usable as anchors and targets
        by_pid: Dict[Any, List[int]] = defaultdict(list)
        for index in kept:
            by_pid[items[index][1]].append(index)
        self.by_pid = dict(by_pid)
        self.pids = sorted(self.by_pid, key=str)
        if len(self.pids) < 2:
            raise ValueError(f"FD-GAN's verification pairs need at least 2 training identities, the training set "
                             f"has {len(self.pids)} (DATASETS.NAMES)")

    def _read_keypoints(self, items: List[tuple], pose_dir: str, on_missing: str) -> List[int]:
        kept, skipped = [], []
        for index, item in enumerate(items):
            path = item[0]
            try:
                self.keypoints[index] = read_pose_file(pose_file_for(path, pose_dir))
            except (PoseFileMissingError, PoseFileError) as exc:
                if on_missing == "error":
                    raise type(exc)(f"{exc} (or set MODEL.FDGAN.POSE.ON_MISSING skip to leave such images out "
                                    f"of training)") from None
                skipped.append(path)
                continue
            kept.append(index)
        if skipped:
            logger.warning("FD-GAN: %d of %d training images have no usable keypoint file and are left out "
                           "(MODEL.FDGAN.POSE.ON_MISSING skip), e.g. %s", len(skipped), len(items), skipped[:3])
        if not kept:
            raise PoseFileMissingError(f"No training image has a usable keypoint file (first: {items[0][0]}): "
                                       f"see docs/fdgan.md, 'Pose data'")
        return kept

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.pids)

    @property
    def img_items(self) -> List[tuple]:
        return [self.dataset.img_items[i] for i in self.indices]

    # ------------------------------------------------------------------ one pair
    def _other_of(self, index: int, rng: random.Random) -> int:
        """A random other image of ``index``'s identity (itself when it is the only one)."""
        candidates = self.by_pid[self.dataset.img_items[index][1]]
        if len(candidates) == 1:
            return index
        pick = candidates[rng.randrange(len(candidates) - 1)]
        return candidates[-1] if pick == index else pick

    def _negative_of(self, index: int, rng: random.Random) -> int:
        pid = self.dataset.img_items[index][1]
        other = self.pids[rng.randrange(len(self.pids) - 1)]
        if other == pid:
            other = self.pids[-1]
        candidates = self.by_pid[other]
        return candidates[rng.randrange(len(candidates))]

    def _target(self, index: int, rng: random.Random) -> Tuple[torch.Tensor, torch.Tensor]:
        """(image 0..255 (3, H, W), pose maps (J, H, W)) of training image ``index`` as a generation target."""
        image = read_image(self.dataset.img_items[index][0])
        keypoints = scale_keypoints(self.keypoints[index], (image.height, image.width), self.size)
        image = self.target_transform(image)
        if rng.random() < self.flip_prob:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            keypoints = flip_keypoints(keypoints, self.size[1], self.swap_left_right)
        keypoints, sigma = augment_pose(keypoints, rng, self.sigma_range, self.integer_sigma, self.drop_joint_prob)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
        return pixels, torch.from_numpy(joint_heatmaps(keypoints, self.size, sigma))

    def _origin(self, index: int) -> torch.Tensor:
        image = self.dataset[index]["images"].float()
        return self.erasing(image) if self.erasing is not None else image

    def __getitem__(self, key: Tuple[int, int, int]) -> Dict[str, Any]:
        shuffled, slot, seed = key
        anchor = self.indices[shuffled]
        rng = random.Random(seed)  # pair choice and target augmentation: independent of the transforms' draws
        partner = self._other_of(anchor, rng) if slot == 0 else self._negative_of(anchor, rng)
        with seeded_rng(seed):  # fastreid's transforms and the eraser draw from the global RNGs
            origins = [self._origin(anchor), self._origin(partner)]
        items = self.dataset.img_items
        pair = {
            "images": torch.stack(origins),
            "targets": torch.tensor([self.dataset.pid_dict[items[i][1]] for i in (anchor, partner)]),
            "same": torch.tensor(int(slot == 0)),
            "img_paths": (items[anchor][0], items[partner][0]),
        }
        if self.with_targets:
            first = self._target(self._other_of(anchor, rng), rng)
            second = first if slot == 0 else self._target(self._other_of(partner, rng), rng)
            pair["target_images"] = torch.stack([first[0], second[0]])
            pair["target_poses"] = torch.stack([first[1], second[1]])
        return pair


def build_pair_loader(cfg: Any, with_targets: bool = True) -> DataLoader:
    """The FD-GAN training loader over ``cfg.DATASETS.NAMES``: ``SOLVER.IMS_PER_BATCH`` pairs per global batch;
    stage I needs no targets (``with_targets=False`` reads no keypoints)."""
    f = cfg.MODEL.FDGAN
    erasing = None
    if cfg.INPUT.REA.ENABLED:
        erasing = T.RandomErasing(p=float(cfg.INPUT.REA.PROB), value=[float(v) for v in cfg.INPUT.REA.VALUE])
    dataset = PosePairDataset(
        build_train_set(cfg), cfg.INPUT.SIZE_TRAIN, with_targets=with_targets, pose_dir=f.POSE.DIR,
        on_missing=f.POSE.ON_MISSING, flip_prob=float(cfg.INPUT.FLIP.PROB) if cfg.INPUT.FLIP.ENABLED else 0.0,
        swap_left_right=f.POSE.FLIP_SWAP_LEFT_RIGHT, sigma_range=f.POSE.AUG_SIGMA,
        integer_sigma=f.POSE.AUG_SIGMA_INTEGER, drop_joint_prob=f.POSE.AUG_DROP_JOINT_PROB, erasing=erasing)
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} (pairs) is not divisible by "
                         f"{world_size} processes")
    sampler = PairBatchSampler(len(dataset), cfg.SOLVER.IMS_PER_BATCH // world_size, _train_seed(cfg),
                               f.NEGATIVES_PER_POSITIVE, comm.get_rank(), world_size)
    num_workers = int(cfg.DATALOADER.NUM_WORKERS)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(),
                      worker_init_fn=_worker_init if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(sampler.seed))

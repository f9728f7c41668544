"""fastreid_gan.data.open_reid: the open-reid layout of FD-GAN's prepared zips (images/, poses/, meta.json,
splits.json) read as fastreid datasets, and its clear errors."""
import json
import os
import re
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from PIL import Image

import fastreid_gan.data  # noqa: F401  (registers the datasets)
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY

from fastreid_gan.config import get_cfg
from fastreid_gan.data.build import build_test_loader, build_train_set
from fastreid_gan.data.dataset_errors import DatasetFormatError, DatasetNotFoundError
from fastreid_gan.data.open_reid import OpenReIDLayout
from fastreid_gan.data.pose_files import pose_file_for, read_pose_file, write_pose_file

# Market-like: pid 0 is background (gallery only), 1..3 train, 4..5 test; cameras 0..2 of 6 used.
# pid -> {camera: number of images}
MARKET_IMAGES: Dict[int, Dict[int, int]] = {
    0: {0: 1, 2: 1},
    1: {0: 2, 1: 1},
    2: {1: 2, 2: 1},
    3: {0: 1, 2: 2},
    4: {0: 2, 1: 1, 2: 1},
    5: {1: 1, 2: 2},
}
MARKET_SPLIT = {"trainval": [1, 2, 3], "query": [4, 5], "gallery": [0, 4, 5]}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def make_open_reid(folder: Path, images: Dict[int, Dict[int, int]], splits: List[dict], num_cameras: int,
                   name: str = "Market1501", extra_meta: Optional[dict] = None) -> Dict[str, list]:
    """An open-reid dataset folder like open-reid writes it; returns ``meta['identities']``."""
    (folder / "images").mkdir(parents=True)
    (folder / "poses").mkdir()
    identities = [[[] for _ in range(num_cameras)] for _ in range(max(images) + 1)]
    rng = np.random.default_rng(0)
    for pid, cams in images.items():
        for cam, count in cams.items():
            for n in range(count):
                fname = f"{pid:08d}_{cam:02d}_{n:04d}.jpg"
                identities[pid][cam].append(fname)
                Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)).save(folder / "images" / fname)
                keypoints = np.stack([np.full(18, 4.0), np.linspace(1, 15, 18)], axis=1)  # (x, y)
                write_pose_file(folder / "poses" / (fname[:-4] + ".txt"), keypoints, np.arange(18) % 5 != 0)
    meta = {"name": name, "shot": "multiple", "num_cameras": num_cameras, "identities": identities}
    meta.update(extra_meta or {})
    _write_json(folder / "meta.json", meta)
    _write_json(folder / "splits.json", splits)
    return identities


@pytest.fixture()
def market_root(tmp_path: Path) -> Path:
    make_open_reid(tmp_path / "market1501", MARKET_IMAGES, [MARKET_SPLIT], num_cameras=6)
    return tmp_path


def _count(pids: List[int]) -> int:
    return sum(sum(MARKET_IMAGES[p].values()) for p in pids)


@pytest.mark.parametrize("name,folder", [("OpenReIDMarket1501", "market1501"), ("OpenReIDDukeMTMC", "dukemtmc"),
                                         ("OpenReIDCUHK03", "cuhk03")])
def test_registered(name, folder):
    cls = DATASET_REGISTRY.get(name)
    assert issubclass(cls, OpenReIDLayout) and cls.dataset_dir == folder


def test_market_loads_split_0(market_root):
    data = DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))
    folder = market_root / "market1501"
    assert data.protocol == "split"
    assert len(data.train) == _count([1, 2, 3]) and len(data.query) == _count([4, 5])
    assert len(data.gallery) == _count([0, 4, 5])
    assert {p for _, p, _ in data.train} == {f"openreid_market1501_{p}" for p in (1, 2, 3)}
    assert {c for _, _, c in data.train} == {f"openreid_market1501_{c}" for c in (0, 1, 2)}
    assert {p for _, p, _ in data.query} == {4, 5} and {p for _, p, _ in data.gallery} == {0, 4, 5}
    # every item is an existing file whose open-reid name encodes its (int, 0-based) pid and camera
    for path, pid, cam in data.query + data.gallery:
        stem = Path(path).stem
        assert Path(path).parent == folder / "images" and os.path.isfile(path)
        assert (int(stem.split("_")[0]), int(stem.split("_")[1])) == (pid, cam)
        assert isinstance(pid, int) and isinstance(cam, int)
    listed = {f for f in os.listdir(folder / "images") if int(f[:8]) in MARKET_SPLIT["trainval"]}
    assert {Path(p).name for p, _, _ in data.train} == listed
    assert CommDataset(data.train, relabel=True).num_classes == 3


def test_query_images_are_junk_for_themselves(market_root):
    """open-reid's query images are also in its gallery, with the same camera: fastreid's evaluation drops
    same-pid same-camera gallery images, so a query never matches itself and each has a cross-camera match."""
    with warnings.catch_warnings():  # the pure-python ranking is fine for a few images
        warnings.simplefilter("ignore", UserWarning)
        from fastreid.evaluation.rank import evaluate_rank
    data = DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))
    gallery = {p: (pid, cam) for p, pid, cam in data.gallery}
    assert all(gallery[p] == (pid, cam) for p, pid, cam in data.query)
    q_pids = np.array([p for _, p, _ in data.query])
    g_pids = np.array([p for _, p, _ in data.gallery])
    q_cams = np.array([c for _, _, c in data.query])
    g_cams = np.array([c for _, _, c in data.gallery])
    # a distance that ranks the query itself first: the evaluation must skip it, and still be perfect
    dist = (q_pids[:, None] != g_pids[None, :]).astype(np.float32)
    paths = [p for p, _, _ in data.gallery]
    for i, (path, _, _) in enumerate(data.query):
        dist[i, paths.index(path)] = -1.0
    cmc, all_ap, _ = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, use_cython=False)
    assert cmc[0] == pytest.approx(1.0) and np.mean(all_ap) == pytest.approx(1.0)


def test_root_from_env_and_fastreid_loaders(market_root, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(market_root))
    data = DATASET_REGISTRY.get("OpenReIDMarket1501")()
    assert data.dataset_dir == os.path.join(str(market_root), "market1501")

    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    train_set = build_train_set(cfg, names=["OpenReIDMarket1501"])
    sample = train_set[0]
    assert tuple(sample["images"].shape) == (3, *cfg.INPUT.SIZE_TRAIN)
    assert train_set.num_classes == 3 and 0 <= sample["targets"] < 3

    loader, num_query = build_test_loader(cfg, "OpenReIDMarket1501")
    assert num_query == _count([4, 5]) and len(loader.dataset) == _count([4, 5]) + _count([0, 4, 5])


def test_combineall_adds_each_test_image_once(market_root):
    data = DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root), combineall=True)
    paths = [p for p, _, _ in data.train]
    assert len(paths) == len(set(paths)) == _count([1, 2, 3, 4, 5])  # background (pid 0) left out, as fastreid
    assert CommDataset(data.train, relabel=True).num_classes == 5


def test_pose_file_of_a_train_image(market_root):
    data = DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))
    path = data.train[0][0]
    pose = pose_file_for(path)
    assert pose == os.path.join(str(market_root), "market1501", "poses", Path(path).stem + ".txt")
    assert pose == os.path.join(data.poses_dir, Path(path).stem + ".txt")
    keypoints = read_pose_file(pose)
    assert keypoints.shape == (18, 2) and keypoints[0].tolist() == [-1.0, -1.0] and keypoints[1, 1] == 4.0


def test_meta_file_lists_protocol(tmp_path):
    images = {0: {0: 1}, 1: {0: 1, 1: 1}, 2: {0: 2, 1: 2}, 3: {0: 1, 1: 2}}
    split = {"trainval": [1], "query": [2, 3], "gallery": [0, 2, 3]}
    extra = {"query_fnames": ["00000002_00_0001.jpg", "00000003_01_0000.jpg"],
             "gallery_fnames": ["00000000_00_0000.jpg", "00000002_00_0000.jpg", "00000002_01_0000.jpg",
                                "00000002_01_0001.jpg", "00000003_00_0000.jpg", "00000003_01_0001.jpg"]}
    make_open_reid(tmp_path / "dukemtmc", images, [split], num_cameras=8, name="DukeMTMC", extra_meta=extra)
    cls = DATASET_REGISTRY.get("OpenReIDDukeMTMC")
    data = cls(root=str(tmp_path))
    assert data.protocol == "meta-files"
    assert [(Path(p).name, pid, cam) for p, pid, cam in data.query] == [
        ("00000002_00_0001.jpg", 2, 0), ("00000003_01_0000.jpg", 3, 1)]
    assert len(data.gallery) == 6 and not {p for p, _, _ in data.query} & {p for p, _, _ in data.gallery}
    by_split = cls(root=str(tmp_path), protocol="split")
    assert by_split.protocol == "split" and len(by_split.query) == 7 and len(by_split.gallery) == 8
    with pytest.raises(ValueError, match="protocol='standard'"):
        cls(root=str(tmp_path), protocol="standard")
    meta = tmp_path / "dukemtmc" / "meta.json"
    _edit_json(meta, lambda m: m["query_fnames"].append("00000003_02_0000.jpg"))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{meta}: 'query_fnames' lists '00000003_02_0000.jpg', "
                                                           "which is not an image of 'identities'")):
        cls(root=str(tmp_path))


def test_cuhk03_splits(tmp_path):
    images = {pid: {0: 2, 1: 2} for pid in range(6)}
    splits = [{"trainval": [0, 1, 2, 3], "query": [4, 5], "gallery": [4, 5]},
              {"trainval": [2, 3, 4, 5], "query": [0, 1], "gallery": [0, 1]}]
    make_open_reid(tmp_path / "cuhk03", images, splits, num_cameras=2, name="cuhk03")
    cls = DATASET_REGISTRY.get("OpenReIDCUHK03")
    first, second = cls(root=str(tmp_path)), cls(root=str(tmp_path), split=1)
    assert {p for _, p, _ in first.query} == {4, 5} and sorted(first.query) == sorted(first.gallery)
    assert {p for _, p, _ in second.query} == {0, 1}
    assert {p for _, p, _ in second.train} == {f"openreid_cuhk03_{p}" for p in (2, 3, 4, 5)}
    with pytest.raises(ValueError, match=r"split 2 is out of range: .*splits\.json holds 2 split\(s\), "
                                         r"indices 0\.\.1"):
        cls(root=str(tmp_path), split=2)


# ---- errors --------------------------------------------------------------------------------------------------
def test_missing_folder_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        DATASET_REGISTRY.get("OpenReIDDukeMTMC")(root=str(tmp_path))
    msg = str(info.value)
    assert str(tmp_path / "dukemtmc") in msg and "meta.json" in msg and "splits.json" in msg
    assert "FASTREID_DATASETS" in msg and "<root>/dukemtmc/images" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_root_pointing_at_the_dataset_itself(market_root):
    inside = market_root / "market1501"
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"{inside} itself holds meta.json: point "
                                                             "FASTREID_DATASETS at its parent")):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(inside))
    # the generic base reads the folder it is given
    assert len(OpenReIDLayout(root=str(inside)).train) == _count([1, 2, 3])


@pytest.mark.parametrize("missing", ["images", "meta.json", "splits.json"])
def test_missing_part_names_it(market_root, missing):
    target = market_root / "market1501" / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"{target} not found")):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))


@pytest.mark.parametrize("which", ["meta.json", "splits.json"])
def test_invalid_json_names_file(market_root, which):
    path = market_root / "market1501" / which
    path.write_text('{"identities": [', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path} is not valid JSON")):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text(encoding="utf-8"))
    obj = edit(obj) or obj
    _write_json(path, obj)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("identities"), "no 'identities' list"),
    (lambda m: m.update(num_cameras=8),
     "it describes 'Market1501' with 8 cameras; OpenReIDMarket1501 expects Market-1501 with 6"),
    (lambda m: m["identities"][1][0].append("00000002_00_0009.jpg"),
     r"identities\[1\]\[0\] lists '00000002_00_0009.jpg'; names there must be 00000001_00_<n:04d>.jpg"),
    (lambda m: m["identities"][2].__setitem__(1, "x.jpg"), r"identities\[2\]\[1\] is not a list"),
])
def test_malformed_meta(market_root, edit, message):
    path = market_root / "market1501" / "meta.json"
    _edit_json(path, edit)
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}: ") + message):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))


@pytest.mark.parametrize("splits,message", [
    ({"trainval": [1]}, "not a non-empty list of splits"),
    ([{"trainval": [1, 2], "query": [4]}], "split 0 has no 'gallery' list of pids"),
    ([{"trainval": [1, 2], "query": [4], "gallery": [4, 9]}], "split 0 'gallery' lists pid 9, outside the 6 "
                                                               "identities"),
    ([{"trainval": [1, 4], "query": [4], "gallery": [4]}], r"split 0 trains on test identities .*\[4\]"),
])
def test_malformed_splits(market_root, splits, message):
    path = market_root / "market1501" / "splits.json"
    _write_json(path, splits)
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}: ") + message):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))


def test_missing_images_named(market_root):
    images = market_root / "market1501" / "images"
    gone = sorted(os.listdir(images))[:7]
    for f in gone:
        (images / f).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root))
    msg = str(info.value)
    assert f"7 image(s) listed in {market_root / 'market1501' / 'meta.json'} are missing from {images}" in msg
    assert ", ".join(gone[:5]) + " and 2 more" in msg and "re-extract" in msg


def test_meta_files_protocol_needs_the_lists(market_root):
    with pytest.raises(DatasetFormatError, match="needs 'query_fnames' and 'gallery_fnames'"):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root), protocol="meta-files")


def test_split_out_of_range(market_root):
    with pytest.raises(ValueError, match=r"split 1 is out of range: .* holds 1 split\(s\), indices 0\.\.0"):
        DATASET_REGISTRY.get("OpenReIDMarket1501")(root=str(market_root), split=1)
